package lake_test

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/catalogtest"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/lake/laketest"
	"github.com/sluicehq/sluice/internal/row"
	"github.com/sluicehq/sluice/internal/s3test"
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
		var ok bool
		tbl, ok, err = cat.Append(ctx, tbl, []iceberg.DataFile{df}, lake.Offsets{"raw/0": 1})
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
	// The manifest bounds each column by its values, nulls left out, as
	// Iceberg serialises them (little-endian doubles and days).
	f8 := func(f float64) []byte { b, _ := iceberg.Float64Literal(f).MarshalBinary(); return b }
	day, _ := iceberg.DateLiteral(20089).MarshalBinary()
	if diff := cmp.Diff(map[int][]byte{1: f8(2.5), 3: day}, tasks[0].File.LowerBoundValues()); diff != "" {
		t.Errorf("lower bounds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[int][]byte{1: f8(12), 3: day}, tasks[0].File.UpperBoundValues()); diff != "" {
		t.Errorf("upper bounds (-want +got):\n%s", diff)
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

// TestMigrate turns a lake of the layout before the catalog into catalog
// tables: a column that one file holds only as nulls (written then as
// strings) takes the type of its values, rows are unchanged, old files are
// gone, and a second run does nothing. A loader refuses the old lake until
// then.
func TestMigrate(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	store, err := lake.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	legacy := func(f lake.File, rows ...[]row.Field) {
		buf := lake.NewBuffer()
		for _, r := range rows {
			buf.Append(r)
		}
		if err := lake.Put(ctx, store, f.Path(), func(w io.Writer) error { _, err := buf.Write(w, f.Ext); return err }); err != nil {
			t.Fatal(err)
		}
	}
	flag := func(v *bool) row.Field {
		if v == nil {
			return row.Field{Name: "flag"}
		}
		return row.Field{Name: "flag", Cell: row.Cell{Kind: row.KindBool, I: map[bool]int64{false: 0, true: 1}[*v]}}
	}
	yes := true
	n := func(i int64) row.Field { return row.Field{Name: "n", Cell: row.Cell{Kind: row.KindInt, I: i}} }
	legacy(lake.File{Table: "trip", Date: "2025-01-01", Topic: "raw", Partition: 0, First: 0, Last: 1, Ext: "parquet"},
		[]row.Field{n(1), flag(nil)}, []row.Field{n(2), flag(nil)})
	legacy(lake.File{Table: "trip", Date: "2025-01-02", Topic: "raw", Partition: 0, First: 2, Last: 2, Ext: "parquet"},
		[]row.Field{n(3), flag(&yes)})
	legacy(lake.File{Table: "export", Date: "2025-01-02", Topic: "raw", Partition: 0, First: 3, Last: 3, Ext: "csv.gz"},
		[]row.Field{n(4)})

	if err := lake.CheckLayout(ctx, store); err == nil || !strings.Contains(err.Error(), "sluice lake migrate") {
		t.Fatalf("CheckLayout of an old lake = %v, want the way to migrate it", err)
	}
	cat, err := lake.OpenCatalog(ctx, dir, lake.CatalogConfig{}, lake.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	for run, want := range []int{2, 0} {
		got, err := lake.Migrate(ctx, store, cat)
		if err != nil || got != want {
			t.Fatalf("run %d: Migrate = %d, %v; want %d files", run, got, err, want)
		}
	}
	if err := lake.CheckLayout(ctx, store); err != nil {
		t.Errorf("CheckLayout after migrating: %v", err)
	}
	tbl, err := cat.Load(ctx, "trip")
	if err != nil {
		t.Fatal(err)
	}
	var schema []string
	for _, f := range tbl.Schema().Fields() {
		schema = append(schema, f.Name+" "+f.Type.String())
	}
	if diff := cmp.Diff([]string{"n long", "flag boolean", "event_date date"}, schema); diff != "" {
		t.Errorf("schema (-want +got):\n%s", diff)
	}
	var got []string
	for _, r := range laketest.TableRows(t, store, cat, "trip") {
		got = append(got, fmt.Sprintf("%v %v %v", r["n"], r["flag"], r["event_date"]))
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{"1 <nil> 20089", "2 <nil> 20089", "3 true 20090"}, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	offsets, _ := lake.TableOffsets(tbl)
	if diff := cmp.Diff(lake.Offsets{"raw/0": 2}, offsets); diff != "" {
		t.Errorf("offsets (-want +got):\n%s", diff)
	}
	if _, err := store.ReadObject(ctx, "export/event_date=2025-01-02/raw-0-3-3.csv.gz"); err != nil {
		t.Errorf("the CSV.gz export table was touched: %v", err)
	}
}

// TestOrphans removes the files under a table that no snapshot
// references, a write that never committed, once they are older than the
// grace period, on every kind of lake: on disk, and on S3 with the
// embedded catalog or a REST catalog.
func TestOrphans(t *testing.T) {
	for _, kind := range lakeKinds {
		t.Run(kind, func(t *testing.T) {
			ctx := t.Context()
			store, cat := openLake(t, kind)
			tbl, err := cat.Create(ctx, "trip", []lake.Column{{Name: "n", Kind: row.KindInt}})
			if err != nil {
				t.Fatal(err)
			}
			write := func(name string) iceberg.DataFile {
				buf := lake.NewBuffer()
				buf.Append([]row.Field{{Name: "n", Cell: row.Cell{Kind: row.KindInt, I: 1}}})
				df, _, err := cat.WriteFile(ctx, store, tbl, "2025-01-01", name, buf)
				if err != nil {
					t.Fatal(err)
				}
				return df
			}
			if _, _, err = cat.Append(ctx, tbl, []iceberg.DataFile{write("raw-0-0-0.parquet")}, lake.Offsets{"raw/0": 0}); err != nil {
				t.Fatal(err)
			}
			write("raw-0-1-1.parquet") // written, never committed
			orphan := "trip/data/event_date=2025-01-01/raw-0-1-1.parquet"

			// Within the grace period, it may be a commit in flight.
			if got, err := cat.Orphans(ctx, "trip", time.Hour, false); err != nil || len(got) != 0 {
				t.Fatalf("orphans older than an hour = %v, %v; want none", got, err)
			}
			time.Sleep(1100 * time.Millisecond) // S3 keeps times to the second
			got, err := cat.Orphans(ctx, "trip", time.Millisecond, true)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{orphan}, got); diff != "" {
				t.Fatalf("orphans (-want +got):\n%s", diff)
			}
			if _, err := cat.Orphans(ctx, "trip", time.Millisecond, false); err != nil {
				t.Fatal(err)
			}
			objs, err := store.List(ctx, "trip/data/")
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != 1 || objs[0].Path != "trip/data/event_date=2025-01-01/raw-0-0-0.parquet" {
				t.Errorf("data files after orphan removal: %v, want the committed one only", objs)
			}
			tbl, err = cat.Load(ctx, "trip")
			if err != nil {
				t.Fatal(err)
			}
			if rows := laketest.TableRows(t, store, cat, "trip"); len(rows) != 1 {
				t.Errorf("the table reads %d rows after orphan removal, want 1", len(rows))
			}
		})
	}
}

// lakeKinds are the lakes a catalog test runs on: on disk, and on S3
// with the embedded catalog or a REST catalog.
var lakeKinds = []string{"local", "s3", "rest"}

// openLake opens a new lake of a kind of lakeKinds.
func openLake(t *testing.T, kind string) (lake.Storage, *lake.Catalog) {
	t.Helper()
	var (
		url   = t.TempDir()
		cc    lake.CatalogConfig
		s3cfg lake.S3Config
		store lake.Storage
		err   error
	)
	if kind == "local" {
		store, err = lake.NewLocal(url)
	} else {
		endpoint, bucket := s3test.Bucket(t)
		s3cfg = lake.S3Config{Endpoint: endpoint, Region: s3test.Region, PathStyle: true,
			AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey}
		cc.URI = filepath.Join(url, "catalog.db")
		if kind == "rest" {
			cc = catalogtest.REST(t, endpoint)
		}
		url = "s3://" + bucket + "/lake"
		store, err = lake.NewS3(url, s3cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	cat, err := lake.OpenCatalog(t.Context(), url, cc, s3cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return store, cat
}

// TestRESTCatalogNeedsS3 refuses a REST catalog for a lake on local disk,
// where the catalog could not write the tables' metadata, and says why.
func TestRESTCatalogNeedsS3(t *testing.T) {
	_, err := lake.OpenCatalog(t.Context(), t.TempDir(), lake.CatalogConfig{URI: "http://127.0.0.1:1"}, lake.S3Config{})
	if err == nil || !strings.Contains(err.Error(), "a REST catalog needs a lake on S3") {
		t.Errorf("OpenCatalog of a REST catalog for a local lake = %v", err)
	}
}

// TestCatalogsStartTogether opens the REST catalog's new namespace from
// several processes' worth of catalogs at once, as a deployment's stages
// start: every one opens it. The REST catalog on SQLite answered the
// loser of the namespace's creation 500, and an aggregator of the
// multi-instance test exited.
func TestCatalogsStartTogether(t *testing.T) {
	endpoint, bucket := s3test.Bucket(t)
	s3cfg := lake.S3Config{Endpoint: endpoint, Region: s3test.Region, PathStyle: true,
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey}
	cc := catalogtest.REST(t, endpoint)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			cat, err := lake.OpenCatalog(t.Context(), "s3://"+bucket+"/lake", cc, s3cfg)
			if err != nil {
				t.Errorf("catalog %d: %v", i, err)
				return
			}
			cat.Close()
		})
	}
	wg.Wait()
}

// TestManifestsMerged appends many times, as the loader does every few
// seconds: each append writes a manifest, and they are merged once there
// are a few, so that a reader's plan stays short; every row still reads.
func TestManifestsMerged(t *testing.T) {
	ctx := t.Context()
	store, cat := laketest.Open(t, t.TempDir())
	tbl, err := cat.Create(ctx, "trip", []lake.Column{{Name: "n", Kind: row.KindInt}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		buf := lake.NewBuffer()
		buf.Append([]row.Field{{Name: "n", Cell: row.Cell{Kind: row.KindInt, I: int64(i)}}})
		df, _, err := cat.WriteFile(ctx, store, tbl, "2025-01-01", fmt.Sprintf("raw-0-%d-%d.parquet", i, i), buf)
		if err != nil {
			t.Fatal(err)
		}
		if tbl, _, err = cat.Append(ctx, tbl, []iceberg.DataFile{df}, lake.Offsets{"raw/0": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	manifests, err := tbl.CurrentSnapshot().Manifests(fs)
	if err != nil {
		t.Fatal(err)
	}
	if len(manifests) > 8 {
		t.Errorf("30 appends left %d manifests, want at most 8", len(manifests))
	}
	if rows := laketest.TableRows(t, store, cat, "trip"); len(rows) != 30 {
		t.Errorf("the table reads %d rows, want 30", len(rows))
	}
}
