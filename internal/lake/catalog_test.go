package lake_test

import (
	"testing"

	"github.com/apache/iceberg-go"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/lake/laketest"
	"github.com/sluicehq/sluice/internal/row"
)

// TestCatalogAppend commits a data file with the offsets it holds, and
// checks that the same offsets again commit nothing: the loader's
// rewrite of a range after a crash.
func TestCatalogAppend(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	store, err := lake.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := lake.OpenCatalog(ctx, dir, lake.CatalogConfig{}, lake.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	tbl, err := cat.Create(ctx, "trip", []lake.Column{{Name: "fare", Kind: row.KindFloat}, {Name: "zone", Kind: row.KindString}})
	if err != nil {
		t.Fatal(err)
	}
	buf := lake.NewBuffer()
	buf.Append([]row.Field{{Name: "fare", Cell: row.Cell{Kind: row.KindInt, I: 12}}, {Name: "zone"}})
	buf.Append([]row.Field{{Name: "fare", Cell: row.Cell{Kind: row.KindFloat, F: 2.5}}})
	df, stats, err := cat.WriteFile(ctx, store, tbl, "2025-01-01", "raw-0-0-1.parquet", buf)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Rows != 2 {
		t.Errorf("rows = %d, want 2", stats.Rows)
	}
	for i, want := range []bool{true, false} {
		ok, err := cat.Append(ctx, "trip", []iceberg.DataFile{df}, lake.Offsets{"raw/0": 1})
		if err != nil {
			t.Fatal(err)
		}
		if ok != want {
			t.Errorf("append %d: appended = %v, want %v", i, ok, want)
		}
	}
	tbl, err = cat.Load(ctx, "trip")
	if err != nil {
		t.Fatal(err)
	}
	offsets, err := lake.TableOffsets(tbl)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(lake.Offsets{"raw/0": 1}, offsets); diff != "" {
		t.Errorf("offsets (-want +got):\n%s", diff)
	}
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 || tasks[0].File.Count() != 2 {
		t.Fatalf("planned %d files, want one of 2 rows", len(tasks))
	}
	data, err := store.ReadObject(ctx, cat.Path(tasks[0].File.FilePath()))
	if err != nil {
		t.Fatal(err)
	}
	// fare's integer is a double, as the table types it; zone, null in
	// every row, is still there; event_date is the partition's day.
	want := []map[string]any{
		{"fare": 12.0, "zone": nil, "event_date": int32(20089)},
		{"fare": 2.5, "zone": nil, "event_date": int32(20089)},
	}
	if diff := cmp.Diff(want, laketest.ReadParquet(t, data)); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}
