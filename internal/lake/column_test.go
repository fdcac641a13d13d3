package lake

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/row"
)

// TestBufferCells fills a buffer across many blocks and text chunks, with
// sparse columns, repeated fields, long values and a Reset, and reads every
// cell back.
func TestBufferCells(t *testing.T) {
	b := NewBuffer()
	for round := range 2 {
		want := map[string][]row.Cell{}
		const rows = 3*blockRows + 17
		for r := range rows {
			var fields []row.Field
			add := func(name string, c row.Cell) {
				fields = append(fields, row.Field{Name: name, Cell: c})
			}
			add("n", row.Cell{Kind: row.KindInt, I: int64(r * (round + 1))})
			if r%3 == 0 {
				add("sparse", row.Cell{Kind: row.KindString, B: []byte(fmt.Sprint("s", r))})
			}
			text := strings.Repeat("x", r%100)
			if r == 700 {
				text = strings.Repeat("long", maxTextChunk) // a chunk of its own
			}
			add("text", row.Cell{Kind: row.KindString, B: []byte("first")})
			add("text", row.Cell{Kind: row.KindString, B: []byte(text)}) // repeated: the last wins
			add("f", row.Cell{Kind: row.KindFloat, F: float64(r) / 4})
			add("f", row.Cell{}) // a repeated field may become null
			if round == 1 && r > rows-5 {
				add("late", row.Cell{Kind: row.KindBool, I: 1})
			}
			b.Append(fields)
			for _, name := range []string{"n", "sparse", "text", "f", "late"} {
				var got row.Cell
				for _, f := range fields {
					if f.Name == name {
						got = f.Cell
					}
				}
				if len(got.B) == 0 {
					got.B = nil
				}
				want[name] = append(want[name], got)
			}
		}
		if b.Rows() != rows {
			t.Fatalf("round %d: rows = %d", round, b.Rows())
		}
		got := map[string][]row.Cell{}
		for _, f := range b.Columns() {
			it := cells{c: b.cols[f.Name]}
			for range rows {
				c := it.next()
				if len(c.B) == 0 {
					c.B = nil
				}
				got[f.Name] = append(got[f.Name], c)
			}
		}
		if round == 0 {
			delete(want, "late")
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("round %d cells (-want +got):\n%s", round, diff)
		}
		if b.Bytes() < rows*9 {
			t.Errorf("round %d: bytes = %d, less than the cells hold", round, b.Bytes())
		}
		b.Reset()
		if b.Rows() != 0 || b.Bytes() != 0 || len(b.Columns()) != 0 {
			t.Fatalf("after reset: rows %d, bytes %d, columns %v", b.Rows(), b.Bytes(), b.Columns())
		}
	}
}

// TestBufferTake fills buffers of runs of rows of every size (sparse
// columns, columns that appear late, text in many chunks and a long
// value), takes them one after another into a buffer, and reads the same
// cells as a buffer the rows were appended to; rows appended after a take
// read too. The taken buffers are left empty.
func TestBufferTake(t *testing.T) {
	rowOf := func(r int) []row.Field {
		fields := []row.Field{{Name: "n", Cell: row.Cell{Kind: row.KindInt, I: int64(r)}}}
		if r%3 == 0 {
			fields = append(fields, row.Field{Name: "sparse", Cell: row.Cell{Kind: row.KindString, B: []byte(fmt.Sprint("s", r))}})
		}
		text := strings.Repeat("x", r%100)
		if r == 1500 {
			text = strings.Repeat("long", maxTextChunk)
		}
		fields = append(fields, row.Field{Name: "text", Cell: row.Cell{Kind: row.KindString, B: []byte(text)}})
		if r > 2000 {
			fields = append(fields, row.Field{Name: "late", Cell: row.Cell{Kind: row.KindJSON, B: []byte(fmt.Sprintf(`{"r":%d}`, r))}})
		}
		return fields
	}
	read := func(b *Buffer) map[string][]row.Cell {
		out := map[string][]row.Cell{}
		for _, f := range b.Columns() {
			it := cells{c: b.cols[f.Name]}
			for range b.Rows() {
				c := it.next()
				if len(c.B) == 0 {
					c.B = nil
				}
				out[f.Name] = append(out[f.Name], c)
			}
		}
		return out
	}
	whole, taken := NewBuffer(), NewBuffer()
	r := 0
	for _, run := range []int{1, 700, 3, blockRows, blockRows - 1, 2 * blockRows, 0, 1000, 17} {
		part := NewBuffer()
		for range run {
			whole.Append(rowOf(r))
			part.Append(rowOf(r))
			r++
		}
		taken.Take(part)
		if part.Rows() != 0 || part.Bytes() != 0 || len(part.Columns()) != 0 {
			t.Fatalf("a taken buffer holds %d rows, %d bytes", part.Rows(), part.Bytes())
		}
		// A row appended after a take, as the runner's slow path does.
		whole.Append(rowOf(r))
		taken.Append(rowOf(r))
		r++
	}
	if taken.Rows() != whole.Rows() {
		t.Fatalf("rows = %d, want %d", taken.Rows(), whole.Rows())
	}
	if diff := cmp.Diff(read(whole), read(taken)); diff != "" {
		t.Fatalf("cells of the taken buffers (-appended +taken):\n%s", diff)
	}
	if diff := cmp.Diff(whole.Columns(), taken.Columns()); diff != "" {
		t.Errorf("columns (-appended +taken):\n%s", diff)
	}
	if taken.Bytes() < whole.Rows()*9 {
		t.Errorf("bytes = %d, less than the cells hold", taken.Bytes())
	}
}

func BenchmarkBufferAppend(b *testing.B) {
	var r row.Rower
	ev := []byte(`{"event_type":"yellow_taxi_trip","collector_tstamp":"2025-01-01T00:00:00.000000Z","root_id":"0199","payload":{"VendorID":1,"tpep_pickup_datetime":"2025-01-01T00:18:38","passenger_count":1,"trip_distance":1.6,"store_and_fwd_flag":"N","PULocationID":229,"fare_amount":10,"total_amount":18}}`)
	buf := NewBuffer()
	var row []row.Field
	for b.Loop() {
		var err error
		if row, err = r.Row(ev, row[:0]); err != nil {
			b.Fatal(err)
		}
		buf.Append(row)
		if buf.Rows() == 100_000 {
			buf.Reset()
		}
	}
	b.SetBytes(int64(len(ev)))
}

// BenchmarkWriteDataFile writes 100,000 TLC trips, as the loader buffers
// them, as a data file: the loader's flush, without the catalog.
func BenchmarkWriteDataFile(b *testing.B) {
	data, err := os.ReadFile("../../cmd/sluicebench/testdata/tlc_yellow_2025-01_first500.ndjson")
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	buf := NewBuffer()
	var rw row.Rower
	var fields []row.Field
	for i := range 100_000 {
		if fields, err = rw.Row(lines[i%len(lines)], fields[:0]); err != nil {
			b.Fatal(err)
		}
		buf.Append(fields)
	}
	var cols []FileColumn
	for i, c := range buf.Columns() {
		cols = append(cols, FileColumn{Name: c.Name, ID: i + 1, Kind: c.Cell.Kind})
	}
	var df DataFile
	for b.Loop() {
		if df, err = buf.WriteDataFile(io.Discard, cols, len(cols)+1, 20089); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Rows())*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(df.Bytes), "file-bytes")
}
