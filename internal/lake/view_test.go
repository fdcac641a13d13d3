package lake_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/apache/iceberg-go"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/row"
)

// TestViews makes a view, replaces its SQL, and finds it as other
// readers of the catalog would, on every kind of lake. The same SQL again
// is no new version; a table's name cannot be a view's.
func TestViews(t *testing.T) {
	schema := func(names ...string) *iceberg.Schema {
		fields := make([]iceberg.NestedField, len(names))
		for i, n := range names {
			fields[i] = lake.NewField(i+1, lake.Column{Name: n, Kind: row.KindInt})
		}
		return iceberg.NewSchema(0, fields...)
	}
	for _, kind := range lakeKinds {
		t.Run(kind, func(t *testing.T) {
			ctx := t.Context()
			_, cat := openLake(t, kind)
			if _, err := cat.LoadView(ctx, "daily"); !errors.Is(err, lake.ErrNoTable) {
				t.Fatalf("LoadView of no view = %v, want ErrNoTable", err)
			}
			v1, err := cat.ReplaceView(ctx, "daily", "SELECT 1 AS n", schema("n"), map[string]string{"sluice.run": "r1"})
			if err != nil {
				t.Fatal(err)
			}
			again, err := cat.ReplaceView(ctx, "daily", "SELECT 1 AS n", schema("n"), map[string]string{"sluice.run": "r2"})
			if err != nil {
				t.Fatal(err)
			}
			if again.Version != v1.Version {
				t.Errorf("the same view again made version %d after %d, want none", again.Version, v1.Version)
			}
			v2, err := cat.ReplaceView(ctx, "daily", "SELECT 1 AS n, 2 AS m", schema("n", "m"), nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := cat.LoadView(ctx, "daily")
			if err != nil {
				t.Fatal(err)
			}
			if got.Version <= v1.Version || got.Version != v2.Version || got.SQL != "SELECT 1 AS n, 2 AS m" {
				t.Errorf("view after replace = version %d, %q; want version %d > %d, the new SQL", got.Version, got.SQL, v2.Version, v1.Version)
			}
			var cols []string
			for _, f := range got.Schema.Fields() {
				cols = append(cols, f.Name)
			}
			if diff := cmp.Diff([]string{"n", "m"}, cols); diff != "" {
				t.Errorf("view columns (-want +got):\n%s", diff)
			}
			names, err := cat.ViewNames(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"daily"}, names); diff != "" {
				t.Errorf("views (-want +got):\n%s", diff)
			}
			if tables, err := cat.Names(ctx); err != nil || len(tables) != 0 {
				t.Errorf("tables = %v, %v; a view is none", tables, err)
			}

			if _, err := cat.Create(ctx, "trip", []lake.Column{{Name: "n", Kind: row.KindInt}}); err != nil {
				t.Fatal(err)
			}
			if _, err := cat.ReplaceView(ctx, "trip", "SELECT 1 AS n", schema("n"), nil); err == nil || !strings.Contains(err.Error(), "a table of that name") {
				t.Errorf("a view named as a table = %v, want an error that says so", err)
			}

			if err := cat.DropView(ctx, "daily"); err != nil {
				t.Fatal(err)
			}
			if _, err := cat.LoadView(ctx, "daily"); !errors.Is(err, lake.ErrNoTable) {
				t.Errorf("LoadView after DropView = %v, want ErrNoTable", err)
			}
		})
	}
}
