// Package laketest reads lake files back in tests, independently of the
// writers under test.
package laketest

import (
	"bytes"
	"io"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/internal/lake"
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
