// Package laketest reads lake files back in tests, independently of the
// writers under test.
package laketest

import (
	"bytes"
	"io"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// ReadParquet reads a Parquet file's rows as maps of column to value, by
// physical type: int64, float64, bool, string (byte arrays), nil for null.
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
