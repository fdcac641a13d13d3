package query

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"strings"
	"testing"

	"github.com/apache/iceberg-go"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/lake/laketest"
	"github.com/sluicehq/sluice/internal/row"
)

// writeLakeFile writes events as one lake file: a plain export file, or
// for parquet a data file of the catalog's table, committed.
func writeLakeFile(t *testing.T, s lake.Storage, cat *lake.Catalog, f lake.File, events ...string) {
	t.Helper()
	if f.Ext == "" {
		f.Ext = "parquet"
	}
	var r row.Rower
	b := lake.NewBuffer()
	for _, ev := range events {
		row, err := r.Row([]byte(ev), nil)
		if err != nil {
			t.Fatal(err)
		}
		b.Append(row)
	}
	if f.Ext == "parquet" {
		var cols []lake.Column
		for _, c := range b.Columns() {
			cols = append(cols, lake.Column{Name: c.Name, Kind: c.Cell.Kind})
		}
		tbl, err := cat.Create(t.Context(), f.Table, cols)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err = cat.AddColumns(t.Context(), tbl, cols)
		if err != nil {
			t.Fatal(err)
		}
		df, _, err := cat.WriteFile(t.Context(), s, tbl, f.Date, path.Base(f.Path()), b)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := cat.Append(t.Context(), tbl, []iceberg.DataFile{df}, lake.Offsets{lake.OffsetKey(f.Topic, f.Partition): f.Last}); err != nil {
			t.Fatal(err)
		}
		return
	}
	w, err := s.Create(context.Background(), f.Path())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write(w, f.Ext); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// newLake makes an empty lake on disk, with its catalog.
func newLake(t *testing.T) (*lake.Local, *lake.Catalog) {
	t.Helper()
	return laketest.Open(t, t.TempDir())
}

func TestQueryLake(t *testing.T) {
	ctx := context.Background()
	s, cat := newLake(t)
	f := lake.File{Table: "trip", Date: "2025-01-01", Topic: "sluice.raw", Partition: 0, First: 0, Last: 1, Ext: "parquet"}
	writeLakeFile(t, s, cat, f,
		`{"event_type":"trip","collector_tstamp":"2025-01-01T00:18:38.000000Z","payload":{"fare":10.5,"zone":"JFK"}}`,
		`{"event_type":"trip","collector_tstamp":"2025-01-01T01:00:00.000000Z","payload":{"fare":2,"zone":null}}`)
	// A later file adds a column: older rows read it as null.
	f.Date, f.First, f.Last = "2025-01-02", 2, 2
	writeLakeFile(t, s, cat, f, `{"event_type":"trip","collector_tstamp":"2025-01-02T00:00:00.000000Z","payload":{"fare":1,"tip":3}}`)

	eng, err := Open(ctx, s, cat, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	tables, err := eng.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 1 || tables[0].Name != "trip" || tables[0].Rows != 3 || tables[0].Files != 2 || tables[0].Format != "iceberg" {
		t.Errorf("Tables() = %+v", tables)
	}
	res, err := eng.Query(ctx, `SELECT event_date, count(*) AS n, sum(fare) AS fare, count(tip) AS tips,
		min(collector_tstamp) AS first FROM trip GROUP BY 1 ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ format, want string }{
		{"csv", "event_date,n,fare,tips,first\n2025-01-01,2,12.5,0,2025-01-01 00:18:38\n2025-01-02,1,1,1,2025-01-02 00:00:00\n"},
		{"json", `{"event_date":"2025-01-01","n":2,"fare":12.5,"tips":0,"first":"2025-01-01 00:18:38"}` + "\n" +
			`{"event_date":"2025-01-02","n":1,"fare":1,"tips":1,"first":"2025-01-02 00:00:00"}` + "\n"},
		{"table", "event_date  n  fare  tips  first\n2025-01-01  2  12.5  0     2025-01-01 00:18:38\n2025-01-02  1  1     1     2025-01-02 00:00:00\n(2 rows)\n"},
	} {
		var buf bytes.Buffer
		if err := Write(&buf, res, tc.format); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, buf.String()); diff != "" {
			t.Errorf("%s output (-want +got):\n%s", tc.format, diff)
		}
	}
	if err := Write(&bytes.Buffer{}, res, "xml"); err == nil || !strings.Contains(err.Error(), "table, csv, json") {
		t.Errorf("unknown format: %v", err)
	}
}

// TestJSONKeepsKeyOrder: nested objects read back with their keys in the
// order the event had them, in every format, and JSON functions still work.
func TestJSONKeepsKeyOrder(t *testing.T) {
	ctx := context.Background()
	s, cat := newLake(t)
	writeLakeFile(t, s, cat, lake.File{Table: "checkout", Date: "2025-01-01", Topic: "sluice.raw", Last: 0},
		`{"event_type":"checkout","payload":{"items":[{"sku":"b","qty":2,"alpha":1}],"order":{"zeta":1,"alpha":{"y":1,"b":2}}}}`)
	eng, err := Open(ctx, s, cat, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	res, err := eng.Query(ctx, `SELECT items, "order", "order"->>'zeta' AS zeta FROM checkout;`)
	if err != nil {
		t.Fatal(err)
	}
	for format, want := range map[string]string{
		"json":  `{"items":[{"sku":"b","qty":2,"alpha":1}],"order":{"zeta":1,"alpha":{"y":1,"b":2}},"zeta":"1"}` + "\n",
		"csv":   "items,order,zeta\n\"[{\"\"sku\"\":\"\"b\"\",\"\"qty\"\":2,\"\"alpha\"\":1}]\",\"{\"\"zeta\"\":1,\"\"alpha\"\":{\"\"y\"\":1,\"\"b\"\":2}}\",1\n",
		"table": "items                            order                             zeta\n[{\"sku\":\"b\",\"qty\":2,\"alpha\":1}]  {\"zeta\":1,\"alpha\":{\"y\":1,\"b\":2}}  1\n(1 row)\n",
	} {
		var buf bytes.Buffer
		if err := Write(&buf, res, format); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, buf.String()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", format, diff)
		}
	}
}

func TestQueryEmptyLake(t *testing.T) {
	s, cat := newLake(t)
	eng, err := Open(context.Background(), s, cat, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if _, err := eng.Query(context.Background(), "SELECT * FROM trip"); err == nil {
		t.Error("a query of a missing table succeeded")
	}
}

func TestQueryCSVAndAvroTables(t *testing.T) {
	ctx := context.Background()
	s, cat := newLake(t)
	writeLakeFile(t, s, cat, lake.File{Table: "agg", Date: "2025-01-01", Topic: "t", Partition: 0, First: 0, Last: 1, Ext: "csv.gz"},
		`{"station":"59 ST","entries":12}`, `{"station":"TIMES SQ","entries":30}`)
	writeLakeFile(t, s, cat, lake.File{Table: "arch", Date: "2025-01-01", Topic: "t", Partition: 0, First: 0, Last: 0, Ext: "avro"}, `{"a":1}`)
	eng, err := Open(ctx, s, cat, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	res, err := eng.Query(ctx, "SELECT sum(entries), count(*), min(event_date) FROM agg")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	Write(&buf, res, "csv")
	if !strings.HasSuffix(buf.String(), "42,2,2025-01-01\n") {
		t.Errorf("csv.gz table: %s", buf.String())
	}
	tables, _ := eng.Tables(ctx)
	if len(tables) != 2 || tables[1].Name != "arch" || tables[1].Rows != -1 || !strings.Contains(tables[1].Format, "not queryable") {
		t.Errorf("Tables() = %+v, want arch listed as not queryable", tables)
	}
}

// TestConfine checks that a confined engine still reads the lake, pages
// results, and reads or writes no other file, nor can be freed.
func TestConfine(t *testing.T) {
	ctx := t.Context()
	s, cat := newLake(t)
	f := lake.File{Table: "trip", Date: "2025-01-01", Topic: "sluice.raw", Partition: 0, First: 0, Last: 2, Ext: "parquet"}
	writeLakeFile(t, s, cat, f,
		`{"event_type":"trip","collector_tstamp":"2025-01-01T00:18:38.000000Z","payload":{"fare":1}}`,
		`{"event_type":"trip","collector_tstamp":"2025-01-01T01:00:00.000000Z","payload":{"fare":2}}`,
		`{"event_type":"trip","collector_tstamp":"2025-01-01T02:00:00.000000Z","payload":{"fare":3}}`)
	eng, err := Open(ctx, s, cat, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if err := eng.Confine(ctx); err != nil {
		t.Fatal(err)
	}
	res, more, err := eng.Page(ctx, "SELECT fare FROM trip ORDER BY fare;", 1, 1)
	if err != nil || !more || len(res.Rows) != 1 || fmt.Sprint(res.Rows[0][0]) != "2" {
		t.Fatalf("page 2 of 1 row: %v, more %v, %v", res.Rows, more, err)
	}
	if res, more, err = eng.Page(ctx, "SELECT fare FROM trip ORDER BY fare", 2, 5); err != nil || more || len(res.Rows) != 1 {
		t.Fatalf("last page: %v, more %v, %v", res.Rows, more, err)
	}
	var streamed []any
	if err := eng.Stream(ctx, "SELECT fare FROM trip ORDER BY fare", func(_, _ []string) error { return nil },
		func(v []any) error { streamed = append(streamed, v[0]); return nil }); err != nil || len(streamed) != 3 {
		t.Fatalf("streamed %v, %v", streamed, err)
	}
	out := t.TempDir()
	for _, q := range []string{
		"SELECT * FROM read_csv('/etc/hostname')",
		"COPY (SELECT 1) TO '" + out + "/x.csv'",
		"SET GLOBAL enable_external_access = true",
		"SELECT * FROM trip; COPY (SELECT 1) TO '" + out + "/y.csv'",
	} {
		if _, _, err := eng.Page(ctx, q, 0, 10); err == nil {
			t.Errorf("%s: allowed", q)
		}
		if err := eng.Exec(ctx, q); err == nil {
			t.Errorf("Exec %s: allowed", q)
		}
	}
	if _, _, err := eng.Page(ctx, "SELECT count(*) FROM trip", 0, 1); err != nil {
		t.Errorf("the lake after the refusals: %v", err)
	}
}
