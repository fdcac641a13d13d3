package source

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParquetRowsTLC(t *testing.T) {
	f, err := os.Open("../sample/data/yellow_tripdata_2025-02_sample5000.parquet")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	var rows []map[string]any
	err = ParquetRows(f, st.Size(), DefaultTimeLayout, func(row []byte) error {
		var m map[string]any
		if err := json.Unmarshal(row, &m); err != nil {
			t.Fatalf("row is not JSON: %v: %s", err, row)
		}
		rows = append(rows, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5000 {
		t.Fatalf("read %d rows, want 5000", len(rows))
	}
	nulls := 0
	for _, r := range rows {
		if r["passenger_count"] == nil {
			nulls++
		}
		if len(r) != 20 {
			t.Fatalf("row has %d columns, want 20: %v", len(r), r)
		}
	}
	if nulls != 1125 {
		t.Errorf("null passenger_count = %d, want 1125 (SOURCES.md)", nulls)
	}
	pickup, _ := rows[0]["tpep_pickup_datetime"].(string)
	if len(pickup) != len("2025-02-01T00:00:00") || pickup[:7] != "2025-02" {
		t.Errorf("pickup %q: want ISO 8601 like 2025-02-01T00:18:38", pickup)
	}
}

func TestAppendFloatKeepsFloats(t *testing.T) {
	var got []string
	for _, f := range []float64{1, -2.5, 1e21, 0} {
		got = append(got, string(appendFloat(nil, f, 64)))
	}
	if diff := cmp.Diff([]string{"1.0", "-2.5", "1e+21", "0.0"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
