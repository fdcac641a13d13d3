package source

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzRows reads arbitrary bytes as a typed CSV file and as NDJSON: no
// input crashes it, and every row it yields is a JSON object.
func FuzzRows(f *testing.F) {
	for _, s := range []string{"a,b,t\n1,2.5,2025-01-01 00:18:38\n", "a,b\n\"x\"\"y\",\n", "{\"a\":1}\n[1]\n", "\ufeffa\n1\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &Source{Location: "fuzz", TimeLayout: DefaultTimeLayout, BadRow: func(int64, string, error) {},
			Columns: map[string]string{"a": "int", "b": "float", "t": "timestamp", "c": "bool"}}
		check := func(n int64, row []byte) error {
			var m map[string]any
			if err := json.Unmarshal(row, &m); err != nil || m == nil {
				t.Fatalf("row %d is not a JSON object: %v: %s", n, err, row)
			}
			return nil
		}
		none := func(int64) error { return nil }
		_ = src.csvRows(bytes.NewReader(data), none, check)
		_ = src.ndjsonRows(bytes.NewReader(data), none, check)
	})
}
