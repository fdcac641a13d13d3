package lake

import (
	"testing"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/sluicehq/sluice/internal/row"
)

// TestOlderTableMergesManifests: a table made before appends merged
// manifests (without the property) gets it with its next commit, so a
// lake written by an earlier Sluice stops growing a manifest a commit.
func TestOlderTableMergesManifests(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	store, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := OpenCatalog(ctx, dir, CatalogConfig{}, S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	sc := iceberg.NewSchema(0, NewField(1, Column{Name: "n", Kind: row.KindInt}),
		iceberg.NestedField{ID: 2, Name: EventDate, Type: iceberg.PrimitiveTypes.Date})
	if _, err := cat.cat.CreateTable(ctx, cat.ident("old"), sc, catalog.WithLocation(cat.root+"/old")); err != nil {
		t.Fatal(err)
	}
	tbl, err := cat.Load(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tbl.Properties()[table.ManifestMergeEnabledKey]; ok {
		t.Fatal("the old table already merges manifests")
	}
	buf := NewBuffer()
	buf.Append([]row.Field{{Name: "n", Cell: row.Cell{Kind: row.KindInt, I: 1}}})
	df, _, err := cat.WriteFile(ctx, store, tbl, "2025-01-01", "raw-0-0-0.parquet", buf)
	if err != nil {
		t.Fatal(err)
	}
	if tbl, _, err = cat.Append(ctx, tbl, []iceberg.DataFile{df}, Offsets{"raw/0": 0}); err != nil {
		t.Fatal(err)
	}
	for k, v := range mergeProperties {
		if got := tbl.Properties()[k]; got != v {
			t.Errorf("after a commit, %s = %q, want %q", k, got, v)
		}
	}
}
