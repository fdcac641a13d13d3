package lake_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hamba/avro/v2/ocf"
	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/lake/laketest"
	"github.com/sluicehq/sluice/internal/row"
	"github.com/sluicehq/sluice/internal/s3test"
)

func TestTableName(t *testing.T) {
	for in, want := range map[string]string{
		"yellow_taxi_trip": "yellow_taxi_trip", "YellowTaxiTrip": "yellow_taxi_trip", "page-view": "page_view",
		"com.acme/Sign Up!": "com_acme_sign_up", "": "unnamed", "___": "unnamed", "2fa": "t_2fa", "a\x00b": "a_b",
		"_sluice": "sluice", "Café": "café",
	} {
		if got := lake.TableName(in); got != want {
			t.Errorf("TableName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFilePathRoundTrip(t *testing.T) {
	f := lake.File{Table: "trip", Date: "2025-01-01", Topic: "sluice.raw", Partition: 2, First: 10, Last: 99, Ext: "parquet"}
	if got := f.Path(); got != "trip/event_date=2025-01-01/sluice.raw-2-10-99.parquet" {
		t.Fatalf("Path() = %s", got)
	}
	back, ok := lake.ParseFile(f.Path())
	if !ok || back != f {
		t.Errorf("ParseFile(%s) = %+v, %v", f.Path(), back, ok)
	}
	for _, bad := range []string{"trip/x.parquet", "_sluice/progress/t/0.json", "trip/event_date=2025-01-01/.sluice.raw-2-10-99.parquet.123.tmp"} {
		if _, ok := lake.ParseFile(bad); ok {
			t.Errorf("ParseFile(%q) accepted", bad)
		}
	}
}

// storages runs a test against every Storage: a local directory and a
// bucket on the in-process S3 server.
func storages(t *testing.T, f func(t *testing.T, s lake.Storage)) {
	t.Run("local", func(t *testing.T) {
		s, err := lake.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		f(t, s)
	})
	t.Run("s3", func(t *testing.T) {
		endpoint, bucket := s3test.Bucket(t)
		s, err := lake.NewS3("s3://"+bucket+"/lake", lake.S3Config{Endpoint: endpoint, Region: s3test.Region,
			PathStyle: true, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Check(t.Context()); err != nil {
			t.Fatal(err)
		}
		f(t, s)
	})
}

func TestStorage(t *testing.T) {
	storages(t, func(t *testing.T, s lake.Storage) {
		ctx := context.Background()
		w, err := s.Create(ctx, "a/b/c.parquet")
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("hello"))
		if objs, _ := s.List(ctx, ""); len(objs) != 0 {
			t.Errorf("an uncommitted object is listed: %v", objs)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		aborted, _ := s.Create(ctx, "a/b/d.parquet")
		aborted.Write([]byte("partial"))
		aborted.Abort()
		other, _ := s.Create(ctx, "z.json")
		other.Write([]byte("{}"))
		if err := other.Commit(); err != nil {
			t.Fatal(err)
		}
		objs, err := s.List(ctx, "a/")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]lake.Object{{Path: "a/b/c.parquet", Size: 5}}, objs, cmpopts.IgnoreFields(lake.Object{}, "Modified")); diff != "" {
			t.Errorf("List mismatch (-want +got):\n%s", diff)
		}
		// Orphan removal spares young files by these times.
		if len(objs) == 1 && (time.Since(objs[0].Modified) > time.Minute || time.Until(objs[0].Modified) > time.Minute) {
			t.Errorf("listed as written at %v, not now", objs[0].Modified)
		}
		if b, err := s.ReadObject(ctx, "a/b/c.parquet"); err != nil || string(b) != "hello" {
			t.Errorf("ReadObject = %q, %v", b, err)
		}
		if _, err := s.ReadObject(ctx, "nope"); !errors.Is(err, lake.ErrNotExist) {
			t.Errorf("ReadObject(missing) = %v, want ErrNotExist", err)
		}
		if _, err := s.Create(ctx, "../escape"); err == nil {
			t.Error("a path outside the lake was accepted")
		}
		if err := s.Delete(ctx, "a/b/c.parquet"); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "a/b/c.parquet"); err != nil {
			t.Errorf("deleting a missing object: %v", err)
		}
		if objs, _ := s.List(ctx, ""); len(objs) != 1 || objs[0].Path != "z.json" {
			t.Errorf("after delete: %v", objs)
		}
	})
}

func TestMirror(t *testing.T) {
	storages(t, func(t *testing.T, s lake.Storage) {
		ctx := context.Background()
		put := func(p, data string) {
			w, _ := s.Create(ctx, p)
			w.Write([]byte(data))
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		put("t/event_date=2025-01-01/raw-0-0-9.parquet", "one")
		put("_sluice/progress/raw/0.json", "{}")
		dir := t.TempDir()
		m, err := lake.Mirror(ctx, s, dir)
		if err != nil {
			t.Fatal(err)
		}
		put("t/event_date=2025-01-01/raw-0-10-19.parquet", "two")
		if m, err = lake.Mirror(ctx, s, dir); err != nil {
			t.Fatal(err)
		}
		objs, _ := m.List(ctx, "")
		if diff := cmp.Diff([]lake.Object{{Path: "t/event_date=2025-01-01/raw-0-0-9.parquet", Size: 3}, {Path: "t/event_date=2025-01-01/raw-0-10-19.parquet", Size: 3}}, objs,
			cmpopts.IgnoreFields(lake.Object{}, "Modified")); diff != "" {
			t.Errorf("mirror holds (-want +got):\n%s", diff)
		}
	})
}

func TestProgress(t *testing.T) {
	storages(t, func(t *testing.T, s lake.Storage) { testProgress(t, s) })
}

func testProgress(t *testing.T, s lake.Storage) {
	ctx := context.Background()
	p, err := lake.ReadProgress(ctx, s, "sluice.raw", 1)
	if err != nil || p.Committed != -1 || p.Pending != nil {
		t.Fatalf("fresh progress = %+v, %v", p, err)
	}
	want := lake.Progress{Committed: 41, Pending: &lake.Range{First: 42, Last: 99}}
	if err := lake.WriteProgress(ctx, s, "sluice.raw", 1, want); err != nil {
		t.Fatal(err)
	}
	got, err := lake.ReadProgress(ctx, s, "sluice.raw", 1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
}

// TestBufferParquet writes rows with new fields, nulls, nested values and
// a type conflict, and reads the file back.
func TestBufferParquet(t *testing.T) {
	var r row.Rower
	b := lake.NewBuffer()
	for _, ev := range []string{
		`{"event_type":"trip","collector_tstamp":"2025-01-01T00:18:38.123456Z","payload":{"fare":10,"zone":"JFK","tags":["a"]}}`,
		`{"event_type":"trip","collector_tstamp":"2025-01-01T00:19:00.000000Z","payload":{"fare":12.5,"zone":null,"tip":1,"event_type":"x"}}`,
		`{"event_type":"trip","collector_tstamp":"2025-01-01T00:20:00.000000Z","payload":{"fare":3,"zone":7,"ok":true}}`,
	} {
		fields, err := r.Row([]byte(ev), nil)
		if err != nil {
			t.Fatal(err)
		}
		b.Append(fields)
	}
	var buf bytes.Buffer
	conflicts, err := b.WriteParquet(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if conflicts != 1 {
		t.Errorf("conflicts = %d, want 1 (zone: 7 among strings)", conflicts)
	}
	pf, err := parquet.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, f := range pf.Schema().Fields() {
		order = append(order, f.Name())
	}
	if diff := cmp.Diff([]string{"event_type", "collector_tstamp", "fare", "zone", "tags", "tip", "payload_event_type", "ok"}, order); diff != "" {
		t.Errorf("file columns not in the events' order (-want +got):\n%s", diff)
	}
	rows := laketest.ReadParquet(t, buf.Bytes())
	if len(rows) != 3 {
		t.Fatalf("read %d rows, want 3", len(rows))
	}
	want := map[string]any{
		"event_type": "trip", "fare": 12.5, "zone": nil, "tip": int64(1), "payload_event_type": "x", "tags": nil, "ok": nil,
	}
	for k, v := range want {
		if got := rows[1][k]; !cmp.Equal(got, v) {
			t.Errorf("row 1 %s = %#v, want %#v", k, got, v)
		}
	}
	if got := rows[2]["zone"]; got != "7" {
		t.Errorf("conflicting value = %#v, want the string \"7\"", got)
	}
	if got := rows[0]["fare"]; got != 10.0 {
		t.Errorf("int among doubles = %#v, want 10.0", got)
	}
	cols := b.Columns()
	kinds := map[string]row.Kind{}
	for _, c := range cols {
		kinds[c.Name] = c.Cell.Kind
	}
	if diff := cmp.Diff(map[string]row.Kind{"event_type": row.KindString, "collector_tstamp": row.KindTimestamp, "fare": row.KindFloat,
		"zone": row.KindString, "tags": row.KindJSON, "tip": row.KindInt, "payload_event_type": row.KindString, "ok": row.KindBool}, kinds); diff != "" {
		t.Errorf("column kinds (-want +got):\n%s", diff)
	}
}

// TestBufferFormats writes the same rows as CSV.gz and Avro and reads them
// back with independent readers.
func TestBufferFormats(t *testing.T) {
	var r row.Rower
	b := lake.NewBuffer()
	for _, ev := range []string{
		`{"event_type":"trip","collector_tstamp":"2025-01-01T00:18:38.123456Z","payload":{"fare":10,"zone":"JFK, T4","tags":["a"],"2nd":true}}`,
		`{"event_type":"trip","collector_tstamp":"2025-01-01T00:19:00.000000Z","payload":{"fare":12.5,"zone":null}}`,
	} {
		fields, err := r.Row([]byte(ev), nil)
		if err != nil {
			t.Fatal(err)
		}
		b.Append(fields)
	}

	var gz bytes.Buffer
	if _, err := b.Write(&gz, "csv.gz"); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(zr).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"event_type", "collector_tstamp", "fare", "zone", "tags", "2nd"},
		{"trip", "2025-01-01T00:18:38.123456Z", "10", "JFK, T4", `["a"]`, "true"},
		{"trip", "2025-01-01T00:19:00.000000Z", "12.5", "", "", ""},
	}
	if diff := cmp.Diff(want, recs); diff != "" {
		t.Errorf("csv (-want +got):\n%s", diff)
	}

	var av bytes.Buffer
	if _, err := b.Write(&av, "avro"); err != nil {
		t.Fatal(err)
	}
	dec, err := ocf.NewDecoder(&av)
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for dec.HasNext() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, m)
	}
	if len(rows) != 2 {
		t.Fatalf("avro rows = %d, want 2", len(rows))
	}
	if got := rows[0]["fare"]; got != 10.0 {
		t.Errorf("avro fare = %#v, want 10.0", got)
	}
	if got := rows[0]["_2nd"]; got != true {
		t.Errorf("avro _2nd (renamed from 2nd) = %#v, want true", got)
	}
	if got := rows[1]["zone"]; got != nil {
		t.Errorf("avro null zone = %#v", got)
	}
	if ts, ok := rows[0]["collector_tstamp"].(time.Time); !ok || ts.UnixMicro() != time.Date(2025, 1, 1, 0, 18, 38, 123456000, time.UTC).UnixMicro() {
		t.Errorf("avro timestamp = %#v", rows[0]["collector_tstamp"])
	}
	if _, err := b.Write(&bytes.Buffer{}, "orc"); err == nil {
		t.Error("an unknown format was accepted")
	}
}

// TestDataFileRequired: a column that holds a value of its kind in every
// row of a data file is written required, which Iceberg readers take for
// an optional field; any null, missing value or value of another kind
// keeps it optional. Both read back as written.
func TestDataFileRequired(t *testing.T) {
	b := lake.NewBuffer()
	b.Append([]row.Field{{Name: "n", Cell: row.Cell{Kind: row.KindInt, I: 1}}, {Name: "s", Cell: row.Cell{Kind: row.KindString, B: []byte("a")}},
		{Name: "gone", Cell: row.Cell{Kind: row.KindBool, I: 1}}, {Name: "f", Cell: row.Cell{Kind: row.KindInt, I: 2}}})
	b.Append([]row.Field{{Name: "n", Cell: row.Cell{Kind: row.KindInt, I: 3}}, {Name: "s"}, {Name: "f", Cell: row.Cell{Kind: row.KindFloat, F: 2.5}}})
	cols := []lake.FileColumn{{Name: "n", ID: 1, Kind: row.KindInt}, {Name: "s", ID: 2, Kind: row.KindString},
		{Name: "gone", ID: 3, Kind: row.KindBool}, {Name: "f", ID: 4, Kind: row.KindFloat}}
	var file bytes.Buffer
	if _, err := b.WriteDataFile(&file, cols, 5, 20089); err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(bytes.NewReader(file.Bytes()), int64(file.Len()))
	if err != nil {
		t.Fatal(err)
	}
	required := map[string]bool{}
	for _, f := range pf.Schema().Fields() {
		required[f.Name()] = f.Required()
	}
	if diff := cmp.Diff(map[string]bool{"n": true, "s": false, "gone": false, "f": false, lake.EventDate: true}, required); diff != "" {
		t.Errorf("required columns (-want +got):\n%s", diff)
	}
	got := laketest.ReadParquet(t, file.Bytes())
	want := []map[string]any{
		{"n": int64(1), "s": "a", "gone": true, "f": 2.0, lake.EventDate: int32(20089)},
		{"n": int64(3), "s": nil, "gone": nil, "f": 2.5, lake.EventDate: int32(20089)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows read back (-want +got):\n%s", diff)
	}
}
