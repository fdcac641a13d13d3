package lake

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBufferCells fills a buffer across many blocks and text chunks, with
// sparse columns, repeated fields, long values and a Reset, and reads every
// cell back.
func TestBufferCells(t *testing.T) {
	b := NewBuffer()
	for round := range 2 {
		want := map[string][]Cell{}
		const rows = 3*blockRows + 17
		for r := range rows {
			var row []Field
			add := func(name string, c Cell) {
				row = append(row, Field{Name: name, Cell: c})
			}
			add("n", Cell{Kind: KindInt, I: int64(r * (round + 1))})
			if r%3 == 0 {
				add("sparse", Cell{Kind: KindString, B: []byte(fmt.Sprint("s", r))})
			}
			text := strings.Repeat("x", r%100)
			if r == 700 {
				text = strings.Repeat("long", maxTextChunk) // a chunk of its own
			}
			add("text", Cell{Kind: KindString, B: []byte("first")})
			add("text", Cell{Kind: KindString, B: []byte(text)}) // repeated: the last wins
			add("f", Cell{Kind: KindFloat, F: float64(r) / 4})
			add("f", Cell{}) // a repeated field may become null
			if round == 1 && r > rows-5 {
				add("late", Cell{Kind: KindBool, I: 1})
			}
			b.Append(row)
			for _, name := range []string{"n", "sparse", "text", "f", "late"} {
				var got Cell
				for _, f := range row {
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
		got := map[string][]Cell{}
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

func BenchmarkBufferAppend(b *testing.B) {
	var r Rower
	ev := []byte(`{"event_type":"yellow_taxi_trip","collector_tstamp":"2025-01-01T00:00:00.000000Z","root_id":"0199","payload":{"VendorID":1,"tpep_pickup_datetime":"2025-01-01T00:18:38","passenger_count":1,"trip_distance":1.6,"store_and_fwd_flag":"N","PULocationID":229,"fare_amount":10,"total_amount":18}}`)
	buf := NewBuffer()
	var row []Field
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

func TestCoerce(t *testing.T) {
	ts := func(s string) Cell {
		tm, _ := ParseTime(s)
		return Cell{Kind: KindTimestamp, I: tm.UnixMicro()}
	}
	str := func(s string) Cell { return Cell{Kind: KindString, B: []byte(s)} }
	for _, tc := range []struct {
		in   Cell
		want Kind
		out  Cell
		ok   bool
	}{
		{str("2025-01-01T00:18:38"), KindTimestamp, ts("2025-01-01T00:18:38Z"), true},
		{str("2025-01-01 00:18:38.5"), KindTimestamp, ts("2025-01-01T00:18:38.5Z"), true},
		{Cell{Kind: KindInt, I: 1735690718}, KindTimestamp, ts("2025-01-01T00:18:38Z"), true},
		{Cell{Kind: KindInt, I: 1735690718123}, KindTimestamp, ts("2025-01-01T00:18:38.123Z"), true},
		{str("soon"), KindTimestamp, str("soon"), false},
		{Cell{Kind: KindInt, I: 3}, KindFloat, Cell{Kind: KindFloat, F: 3}, true},
		{str("2.5"), KindFloat, Cell{Kind: KindFloat, F: 2.5}, true},
		{Cell{Kind: KindFloat, F: 4}, KindInt, Cell{Kind: KindInt, I: 4}, true},
		{Cell{Kind: KindFloat, F: 4.5}, KindInt, Cell{Kind: KindFloat, F: 4.5}, false},
		{str("7"), KindInt, Cell{Kind: KindInt, I: 7}, true},
		{str("true"), KindBool, Cell{Kind: KindBool, I: 1}, true},
		{Cell{Kind: KindInt, I: 7}, KindString, str("7"), true},
		{str(`a"b`), KindJSON, Cell{Kind: KindJSON, B: []byte(`"a\"b"`)}, true},
		{Cell{}, KindInt, Cell{}, true},
	} {
		out, ok := Coerce(tc.in, tc.want)
		if diff := cmp.Diff(tc.out, out); diff != "" || ok != tc.ok {
			t.Errorf("Coerce(%v %q, %v) = ok %v, want %v; cell (-want +got):\n%s", tc.in.Kind, tc.in.Text(), tc.want, ok, tc.ok, diff)
		}
	}
	if _, err := ParseKind("timestamp"); err != nil {
		t.Error(err)
	}
	if _, err := ParseKind("varchar"); err == nil {
		t.Error("ParseKind accepted varchar")
	}
}
