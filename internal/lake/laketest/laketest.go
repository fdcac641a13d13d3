// Package laketest reads lake files back in tests, independently of the
// writers under test.
package laketest

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/apache/iceberg-go"
	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/row"
)

// ReadParquet reads a Parquet file's rows as maps of column to value, by
// physical type: int64, int32, float64, bool, string (byte arrays), nil
// for null.
func ReadParquet(t testing.TB, data []byte) []map[string]any {
	t.Helper()
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("not a valid Parquet file: %v", err)
	}
	fields := pf.Schema().Fields()
	r := parquet.NewReader(bytes.NewReader(data), pf.Schema())
	defer r.Close()
	rows := make([]parquet.Row, r.NumRows())
	n, err := r.ReadRows(rows)
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	out := make([]map[string]any, 0, n)
	for _, row := range rows[:n] {
		m := make(map[string]any, len(row))
		for _, v := range row {
			name := fields[v.Column()].Name()
			switch {
			case v.IsNull():
				m[name] = nil
			case v.Kind() == parquet.Int64:
				m[name] = v.Int64()
			case v.Kind() == parquet.Int32: // dates, days since the epoch
				m[name] = v.Int32()
			case v.Kind() == parquet.Double:
				m[name] = v.Double()
			case v.Kind() == parquet.Boolean:
				m[name] = v.Boolean()
			default:
				m[name] = string(v.ByteArray())
			}
		}
		out = append(out, m)
	}
	return out
}

// TableRows reads the rows of a catalog table's current snapshot, as
// ReadParquet does, with the path of the file each came from under
// "_file".
func TableRows(t testing.TB, store lake.Storage, cat *lake.Catalog, table string) []map[string]any {
	t.Helper()
	tbl, err := cat.Load(t.Context(), table)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := tbl.Scan().PlanFiles(t.Context())
	if err != nil {
		t.Fatalf("plan %s: %v", table, err)
	}
	var out []map[string]any
	for _, task := range tasks {
		path := cat.Path(task.File.FilePath())
		data, err := store.ReadObject(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		rows := ReadParquet(t, data)
		if int64(len(rows)) != task.File.Count() {
			t.Errorf("%s holds %d rows, its manifest says %d", path, len(rows), task.File.Count())
		}
		for _, r := range rows {
			r["_file"] = path
			out = append(out, r)
		}
	}
	return out
}

// Commit writes events (JSON objects, flattened as the loader flattens
// them) as one data file of table's event date (YYYY-MM-DD), made with the
// events' columns the first time, and commits it with the Kafka offset
// last of partition t/0: lake content for tests of what reads it.
func Commit(t testing.TB, store lake.Storage, cat *lake.Catalog, table, date string, last int64, events ...string) {
	t.Helper()
	var r row.Rower
	b := lake.NewBuffer()
	for _, ev := range events {
		fields, err := r.Row([]byte(ev), nil)
		if err != nil {
			t.Fatal(err)
		}
		b.Append(fields)
	}
	var cols []lake.Column
	for _, c := range b.Columns() {
		cols = append(cols, lake.Column{Name: c.Name, Kind: c.Cell.Kind})
	}
	tbl, err := cat.Create(t.Context(), table, cols)
	if err != nil {
		t.Fatal(err)
	}
	if tbl, err = cat.AddColumns(t.Context(), tbl, cols); err != nil {
		t.Fatal(err)
	}
	df, _, err := cat.WriteFile(t.Context(), store, tbl, date, fmt.Sprintf("test-%d.parquet", last), b)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cat.Append(t.Context(), tbl, []iceberg.DataFile{df}, lake.Offsets{lake.OffsetKey("t", 0): last}); err != nil {
		t.Fatal(err)
	}
}

// Open makes a lake on local disk in dir, with its catalog, closed when
// the test ends.
func Open(t testing.TB, dir string) (*lake.Local, *lake.Catalog) {
	t.Helper()
	store, err := lake.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := lake.OpenCatalog(t.Context(), dir, lake.CatalogConfig{}, lake.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return store, cat
}
