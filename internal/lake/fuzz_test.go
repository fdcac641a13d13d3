package lake_test

import (
	"bytes"
	"testing"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/row"
)

// FuzzReadDataFile feeds the data-file reader, which compaction and
// migration run on files of the lake that another engine may have
// written or a disk may have damaged: it should return an error, never
// crash. A footer that claims gigabytes once made the reader allocate
// them before looking (testdata/fuzz holds that file).
func FuzzReadDataFile(f *testing.F) {
	cols := []lake.FileColumn{{Name: "n", ID: 1, Kind: row.KindInt}, {Name: "s", ID: 2, Kind: row.KindString},
		{Name: "at", ID: 3, Kind: row.KindTimestamp}, {Name: "j", ID: 4, Kind: row.KindJSON}}
	buf := lake.NewBuffer()
	buf.Append([]row.Field{{Name: "n", Cell: row.Cell{Kind: row.KindInt, I: 7}}, {Name: "s", Cell: row.Cell{Kind: row.KindString, B: []byte("x")}},
		{Name: "at", Cell: row.Cell{Kind: row.KindTimestamp, I: 1e15}}, {Name: "j", Cell: row.Cell{Kind: row.KindJSON, B: []byte(`{"a":1}`)}}})
	buf.Append([]row.Field{{Name: "n"}, {Name: "s", Cell: row.Cell{Kind: row.KindString, B: []byte("y")}}})
	var file bytes.Buffer
	if _, err := buf.WriteDataFile(&file, cols, 5, 20089); err != nil {
		f.Fatal(err)
	}
	f.Add(file.Bytes())
	f.Add([]byte("PAR1PAR1"))
	byID := map[int]lake.FileColumn{}
	for _, c := range cols {
		byID[c.ID] = c
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out := lake.NewBuffer()
		defer out.Reset()
		lake.ReadDataFile(data, byID, out)
	})
}
