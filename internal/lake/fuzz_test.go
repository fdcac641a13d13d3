package lake_test

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/row"
)

// damageCols are the columns of damageSeed's file.
var damageCols = map[int]lake.FileColumn{1: {Name: "n", ID: 1, Kind: row.KindInt}, 2: {Name: "s", ID: 2, Kind: row.KindString},
	3: {Name: "at", ID: 3, Kind: row.KindTimestamp}, 4: {Name: "j", ID: 4, Kind: row.KindJSON}}

// damageSeed is a small data file of every column kind, nulls included.
func damageSeed(tb testing.TB) []byte {
	tb.Helper()
	buf := lake.NewBuffer()
	buf.Append([]row.Field{{Name: "n", Cell: row.Cell{Kind: row.KindInt, I: 7}}, {Name: "s", Cell: row.Cell{Kind: row.KindString, B: []byte("x")}},
		{Name: "at", Cell: row.Cell{Kind: row.KindTimestamp, I: 1e15}}, {Name: "j", Cell: row.Cell{Kind: row.KindJSON, B: []byte(`{"a":1}`)}}})
	buf.Append([]row.Field{{Name: "n"}, {Name: "s", Cell: row.Cell{Kind: row.KindString, B: []byte("y")}}})
	var file bytes.Buffer
	cols := []lake.FileColumn{damageCols[1], damageCols[2], damageCols[3], damageCols[4]}
	if _, err := buf.WriteDataFile(&file, cols, 5, 20089); err != nil {
		tb.Fatal(err)
	}
	return file.Bytes()
}

// FuzzReadDataFile feeds the data-file reader, which compaction and
// migration run on files of the lake that another engine may have
// written or a disk may have damaged: it should return an error, never
// crash. A footer that claims gigabytes once made the reader allocate
// them before looking (testdata/fuzz holds that file), and so did a page
// header's sizes (an allocation that ended a fuzzing worker in CI).
func FuzzReadDataFile(f *testing.F) {
	f.Add(damageSeed(f))
	f.Add([]byte("PAR1PAR1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out := lake.NewBuffer()
		defer out.Reset()
		lake.ReadDataFile(data, damageCols, out)
	})
}

// TestReadDataFileBoundsDamage writes a huge length (2³¹ and 2³⁵ as
// Thrift varints) over, and into, every byte of a data file, as damage to
// a size in its footer or a page header would: each read ends with an
// error or rows, and allocates no more than a page may hold. The reader
// allocated up to 2.8 GB for one such 1.4 KB file before the checks.
func TestReadDataFileBoundsDamage(t *testing.T) {
	seed := damageSeed(t)
	var ms runtime.MemStats
	for i := range len(seed) - 8 {
		for _, v := range [][]byte{{0xff, 0xff, 0xff, 0xff, 0x07}, {0x80, 0x80, 0x80, 0x80, 0x80, 0x01}} {
			over := bytes.Clone(seed)
			copy(over[i:len(over)-8], v)
			into := append(append(bytes.Clone(seed[:i]), v...), seed[i+1:]...)
			for _, data := range [][]byte{over, into} {
				runtime.ReadMemStats(&ms)
				before := ms.TotalAlloc
				out := lake.NewBuffer()
				lake.ReadDataFile(data, damageCols, out)
				out.Reset()
				runtime.ReadMemStats(&ms)
				if a := ms.TotalAlloc - before; a > 300<<20 {
					t.Errorf("%x at byte %d of %d: the read allocated %d MB", v, i, len(seed), a>>20)
				}
			}
		}
	}
}
