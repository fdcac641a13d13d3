package loader

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/catalogtest"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/lake/laketest"
	"github.com/sluicehq/sluice/internal/row"
	"github.com/sluicehq/sluice/internal/s3test"
	"github.com/sluicehq/sluice/internal/schema"
	"github.com/sluicehq/sluice/internal/sink"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type env struct {
	t      *testing.T
	broker *bus.Broker
	cc     bus.ClientConfig
	store  lake.Storage
	cat    *lake.Catalog
	sent   int // events sent by send
}

// fileFirst is the first offset of a data file named <topic>-<partition>-<first>-<last>.parquet.
func fileFirst(p string) int64 {
	parts := strings.Split(strings.TrimSuffix(path.Base(p), ".parquet"), "-")
	n, _ := strconv.ParseInt(parts[len(parts)-2], 10, 64)
	return n
}

// newEnv starts a broker and a local lake.
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	store, err := lake.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return newEnvOn(t, store, openCatalog(t, dir, lake.CatalogConfig{}, lake.S3Config{}))
}

func openCatalog(t *testing.T, url string, cc lake.CatalogConfig, s3 lake.S3Config) *lake.Catalog {
	t.Helper()
	cat, err := lake.OpenCatalog(t.Context(), url, cc, s3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return cat
}

// newS3Env starts a broker and a lake in a bucket of the in-process S3
// server, with the embedded catalog.
func newS3Env(t *testing.T) *env {
	return newS3EnvWith(t, func(string) lake.CatalogConfig {
		return lake.CatalogConfig{URI: filepath.Join(t.TempDir(), "catalog.db")}
	})
}

// newRESTEnv is newS3Env with the tables in a real Iceberg REST catalog.
func newRESTEnv(t *testing.T) *env {
	return newS3EnvWith(t, func(endpoint string) lake.CatalogConfig { return catalogtest.REST(t, endpoint) })
}

// newS3EnvWith is newS3Env with the catalog that catalog gives for the S3
// server at endpoint.
func newS3EnvWith(t *testing.T, catalog func(endpoint string) lake.CatalogConfig) *env {
	t.Helper()
	endpoint, bucket := s3test.Bucket(t)
	s3 := lake.S3Config{Endpoint: endpoint, Region: s3test.Region,
		PathStyle: true, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey}
	url := "s3://" + bucket + "/lake"
	store, err := lake.NewS3(url, s3)
	if err != nil {
		t.Fatal(err)
	}
	return newEnvOn(t, store, openCatalog(t, url, catalog(endpoint), s3))
}

func newEnvOn(t *testing.T, store lake.Storage, cat *lake.Catalog) *env {
	t.Helper()
	b, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: t.TempDir(), Partitions: 3}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	e := &env{t: t, broker: b, cc: bus.ClientConfig{Brokers: []string{b.Addr()}}, store: store, cat: cat}
	cl := e.producer()
	defer cl.Close()
	if err := bus.EnsureTopics(t.Context(), cl, 3, 1, "sluice.raw", "sluice.dlq"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) producer() *kgo.Client {
	cl, err := bus.NewProducer(e.cc, bus.ProducerConfig{}, testLogger(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	return cl
}

// produce writes n raw events of two types, a few dead letters and one
// record that is not JSON; it returns the ids every table must hold.
func (e *env) produce(n int) (ids map[string]bool) {
	e.t.Helper()
	return e.produceFrom(0, n)
}

// produceFrom is produce with ids from from on.
func (e *env) produceFrom(from, n int) (ids map[string]bool) {
	e.t.Helper()
	cl := e.producer()
	defer cl.Close()
	ids = make(map[string]bool)
	var recs []*kgo.Record
	for i := from; i < from+n; i++ {
		id := fmt.Sprintf("id-%05d", i)
		typ := []string{"yellow_taxi_trip", "PageView"}[i%2]
		// Two days, so files land in two event_date partitions.
		ts := time.Date(2025, 1, 1+i%2, 0, 0, i%60, 0, time.UTC).Format("2006-01-02T15:04:05.000000Z")
		v := fmt.Sprintf(`{"event_type":%q,"schema_version":"1-0-0","payload":{"n":%d,"fare":%d.5,"zone":"Z%d"},"collector_tstamp":%q,"root_id":%q,"collector_id":"c"}`,
			typ, i, i, i%7, ts, id)
		recs = append(recs, &kgo.Record{Topic: "sluice.raw", Key: []byte(id), Value: []byte(v),
			Headers: []kgo.RecordHeader{{Key: "event_type", Value: []byte(typ)}}})
		ids[id] = true
	}
	for i := range 5 {
		id := fmt.Sprintf("dlq-%d-%d", from, i)
		v := fmt.Sprintf(`{"stage":"collector","reason":"missing_field","errors":[{"path":"/payload","message":"payload is required"}],"failed_at":"2025-01-01T00:00:00.000000Z","root_id":%q,"original":{"event_type":"x"}}`, id)
		recs = append(recs, &kgo.Record{Topic: "sluice.dlq", Key: []byte(id), Value: []byte(v)})
		ids[id] = true
	}
	bad := fmt.Sprintf("bad-%d", from)
	recs = append(recs, &kgo.Record{Topic: "sluice.raw", Key: []byte("bad"), Value: []byte("not json"),
		Headers: []kgo.RecordHeader{{Key: "root_id", Value: []byte(bad)}}})
	ids[bad] = true
	if err := cl.ProduceSync(e.t.Context(), recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// loader is a lake sink on its runner, as sluice up runs it.
func (e *env) loader(mutate func(*Config)) (*sink.Runner, *Lake) {
	e.t.Helper()
	cfg := DefaultConfig()
	cfg.Topics = []string{"sluice.raw", "sluice.dlq"} // the tests write events as the collector does
	cfg.FlushRows = 37
	cfg.FlushInterval = 200 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	l, err := New(cfg, e.store, e.cat, "sluice.dlq", nil, testLogger(e.t), reg)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := sink.New("lake", cfg.Config, l, sink.Env{Logger: testLogger(e.t), Metrics: reg, Kafka: e.cc, DLQTopic: "sluice.dlq"})
	if err != nil {
		e.t.Fatal(err)
	}
	return r, l
}

// waitLoaded waits until the lake's progress reaches every partition's end.
func (e *env) waitLoaded(topics ...string) {
	e.t.Helper()
	cl, _ := bus.NewClient(e.cc, testLogger(e.t))
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(e.t.Context(), topics...)
	if err != nil {
		e.t.Fatal(err)
	}
	// Generous: under the race detector, with other packages' tests on the
	// same 2 cores, a REST catalog's commits take seconds each.
	deadline := time.Now().Add(90 * time.Second)
	for {
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			p, err := lake.ReadProgress(context.Background(), e.store, o.Topic, o.Partition)
			if err != nil || p.Committed < o.Offset-1 || p.Pending != nil {
				done = false
			}
		})
		if done {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("the lake did not catch up with Kafka within 90s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lakeIDs counts each root_id across the catalog tables' current
// snapshots, and checks that every data file in the lake is one of theirs:
// none is left where a later commit or a reader of the files could take
// it.
func (e *env) lakeIDs() map[string]int {
	e.t.Helper()
	counts := make(map[string]int)
	names, err := e.cat.Names(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	referenced := map[string]bool{}
	for _, name := range names {
		for _, row := range laketest.TableRows(e.t, e.store, e.cat, name) {
			id, _ := row["root_id"].(string)
			counts[id]++
			referenced[row["_file"].(string)] = true
		}
	}
	objs, err := e.store.List(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range objs {
		if strings.Contains(o.Path, "/data/") && !referenced[o.Path] {
			e.t.Errorf("data file in no snapshot: %s", o.Path)
		}
	}
	return counts
}

func (e *env) checkExactlyOnce(ids map[string]bool) {
	e.t.Helper()
	counts := e.lakeIDs()
	for id := range ids {
		if counts[id] != 1 {
			e.t.Errorf("record %s is in %d files, want exactly 1", id, counts[id])
		}
	}
	for id, n := range counts {
		if !ids[id] {
			e.t.Errorf("unexpected record %s (%d times)", id, n)
		}
	}
}

func run(t *testing.T, l *sink.Runner) (stop func() error) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return sync.OnceValue(func() error {
		cancel()
		return <-done
	})
}

func TestLoadRoundTrip(t *testing.T) {
	e := newEnv(t)
	ids := e.produce(500)
	r, _ := e.loader(nil)
	stop := run(t, r)
	e.waitLoaded("sluice.raw", "sluice.dlq")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.checkExactlyOnce(ids)

	names, err := e.cat.Names(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := gocmp.Diff([]string{"dead_letter", "page_view", "yellow_taxi_trip"}, names); diff != "" {
		t.Errorf("tables (-want +got):\n%s", diff)
	}
	jan2 := int32(time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC).Unix() / 86400)
	for _, r := range laketest.TableRows(t, e.store, e.cat, "page_view") {
		if r["event_date"] != jan2 || !strings.Contains(r["_file"].(string), "/event_date=2025-01-02/") {
			t.Errorf("page_view row in %s has event_date %v: want 2025-01-02 (from collector_tstamp)", r["_file"], r["event_date"])
		}
	}
}

// TestTopicMadeAgain deletes the raw topic after a load and makes it
// again, as resetting Kafka does: the new topic's offsets start from 0,
// below those the lake holds. The restarted loader takes its events as a
// new epoch, in files of their own, and the lake keeps the old ones:
// every event of both topics once. A restart after that resumes in the
// new epoch.
func TestTopicMadeAgain(t *testing.T) {
	e := newEnv(t)
	ids := e.produce(200)
	r, _ := e.loader(nil)
	stop := run(t, r)
	e.waitLoaded("sluice.raw", "sluice.dlq")
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	cl := e.producer()
	adm := kadm.NewClient(cl)
	if _, err := adm.DeleteTopics(t.Context(), "sluice.raw"); err != nil {
		t.Fatal(err)
	}
	// Deletion completes in the background; the topic is made again once
	// it is gone.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := bus.EnsureTopics(t.Context(), cl, 3, 1, "sluice.raw")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("make the topic again: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cl.Close()
	maps.Copy(ids, e.produceFrom(200, 40))

	for round := range 2 {
		r, l := e.loader(nil)
		stop := run(t, r)
		e.waitLoaded("sluice.raw", "sluice.dlq")
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		e.checkExactlyOnce(ids)
		for p := range int32(3) {
			prog, err := lake.ReadProgress(t.Context(), e.store, "sluice.raw", p)
			if err != nil || prog.Epoch != 1 {
				t.Errorf("round %d: progress of sluice.raw/%d = %+v, %v; want epoch 1", round, p, prog, err)
			}
		}
		if round == 0 {
			if got := testutil.ToFloat64(l.metrics.rows.WithLabelValues("page_view")); got == 0 {
				t.Errorf("the new topic's page views were not loaded")
			}
		}
	}
	objs, err := e.store.List(t.Context(), "page_view/data/")
	if err != nil {
		t.Fatal(err)
	}
	var epoch1 int
	for _, o := range objs {
		if strings.Contains(o.Path, "/sluice.raw~1-") {
			epoch1++
		}
	}
	if epoch1 == 0 {
		t.Errorf("no data file of the new topic is named sluice.raw~1: %v", objs)
	}
}

// TestCrashAtEveryPoint stops the loader at each dangerous point of a
// flush, as a crash would, then runs a fresh loader on the same lake: every
// record must be in exactly one file.
func TestCrashAtEveryPoint(t *testing.T) {
	for _, point := range Points {
		for lakeKind, newEnv := range map[string]func(*testing.T) *env{"local": newEnv, "s3": newS3Env, "rest": newRESTEnv} {
			t.Run(lakeKind+"/"+point, func(t *testing.T) { crashAt(t, newEnv(t), point) })
		}
	}
}

func crashAt(t *testing.T, e *env, point string) {
	ids := e.produce(400)
	crashed, _ := e.loader(nil)
	flushes := 0
	crashed.Crash = func(p string) error {
		if p != point {
			return nil
		}
		if flushes++; flushes == 3 {
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	if err := crashed.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "injected crash") {
		t.Fatalf("Run = %v, want the injected crash", err)
	}
	// A fresh loader with other batch sizes resumes from the lake.
	fresh, _ := e.loader(func(c *Config) { c.FlushRows = 1000 })
	stop := run(t, fresh)
	e.waitLoaded("sluice.raw", "sluice.dlq")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.checkExactlyOnce(ids)
}

// TestCatalogOutage kills the REST catalog while the loader writes: the
// loader reports the fault and waits, and once the catalog is back (the
// same database, as after a crash) it commits the rest, every record
// exactly once.
func TestCatalogOutage(t *testing.T) {
	var srv *catalogtest.Server
	e := newS3EnvWith(t, func(endpoint string) lake.CatalogConfig {
		srv = catalogtest.Start(t, endpoint)
		return srv.Config(t)
	})
	ids := e.produce(200)
	r, _ := e.loader(nil)
	stop := run(t, r)
	defer stop()
	e.waitLoaded("sluice.raw", "sluice.dlq")

	srv.Kill()
	maps.Copy(ids, e.produceFrom(200, 200))
	deadline := time.Now().Add(30 * time.Second)
	for r.Status().LastError == nil {
		if time.Now().After(deadline) {
			t.Fatal("the loader did not report the catalog down within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if msg := r.Status().LastError.Message; !strings.HasPrefix(msg, "destination: ") {
		t.Errorf("while the catalog is down the loader says %q", msg)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	e.waitLoaded("sluice.raw", "sluice.dlq")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.checkExactlyOnce(ids)
}

// TestTableSettings writes a table as CSV.gz, partitioned by a payload
// field rather than collector_tstamp.
func TestTableSettings(t *testing.T) {
	e := newEnv(t)
	cl := e.producer()
	for i, pickup := range []string{"2024-12-31T23:59:00", "2025-01-01 00:18:38.000000000"} {
		v := fmt.Sprintf(`{"event_type":"trip","schema_version":"1","payload":{"pickup":%q},"collector_tstamp":"2026-01-01T00:00:00.000000Z","root_id":"t%d"}`, pickup, i)
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "sluice.raw", Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	r, _ := e.loader(func(c *Config) {
		c.Tables = map[string]Table{"trip": {Format: "csv.gz", TimeField: "pickup"}}
	})
	stop := run(t, r)
	e.waitLoaded("sluice.raw")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	objs, err := e.store.List(t.Context(), "trip/")
	if err != nil {
		t.Fatal(err)
	}
	var dates []string
	for _, o := range objs {
		f, ok := lake.ParseFile(o.Path)
		if !ok || f.Ext != "csv.gz" {
			t.Errorf("file %s: want a .csv.gz data file", o.Path)
		}
		dates = append(dates, f.Date)
	}
	if len(dates) != 2 || dates[0] != "2024-12-31" || dates[1] != "2025-01-01" {
		t.Errorf("event dates %v, want 2024-12-31 and 2025-01-01 from the pickup field", dates)
	}
	if _, err := New(Config{Config: sink.Config{Topics: []string{"x"}, Group: "g", FlushRows: 1, FlushBytes: 1, FlushInterval: 1, MemoryLimit: 1},
		Tables: map[string]Table{"t": {Format: "orc"}}}, e.store, e.cat, "sluice.dlq", nil, testLogger(t), prometheus.NewRegistry()); err == nil {
		t.Error("an unknown table format was accepted")
	}
}

// TestColumnTypes gives a table's columns exact types: strings become
// timestamps and integers doubles, and an event with a value that does not
// fit is sent to the dead-letter topic as type_mismatch, never kept as a
// string.
func TestColumnTypes(t *testing.T) {
	e := newEnv(t)
	e.send(`"pickup":"2025-01-01T00:18:38","fare":10,"code":"7"`, `"pickup":"2025-01-02 01:00:00","fare":2.5,"code":"x"`)
	r, l := e.loader(func(c *Config) {
		c.Tables = map[string]Table{"trip": {Columns: map[string]row.Kind{"pickup": row.KindTimestamp, "fare": row.KindFloat, "code": row.KindInt}}}
	})
	stop := run(t, r)
	e.waitLoaded("sluice.raw")
	e.waitLoaded("sluice.dlq")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := e.columnTypes("trip")
	want := map[string]string{"pickup": "TIMESTAMP", "fare": "DOUBLE", "code": "INT(64"}
	for col, typ := range want {
		if !strings.HasPrefix(got[col], typ) {
			t.Errorf("column %s is %s, want %s", col, got[col], typ)
		}
	}
	if n := testutil.ToFloat64(l.metrics.mismatches.WithLabelValues("trip")); n != 1 {
		t.Errorf("mismatches = %v, want 1 (code \"x\" is not a bigint)", n)
	}
	e.checkDeadLetter("c1", ReasonTypeMismatch, "/code")
}

// send writes events of type trip with the given payloads, root ids c0,
// c1 and so on, to one partition, in order.
func (e *env) send(payloads ...string) {
	e.t.Helper()
	cl := e.producer()
	defer cl.Close()
	for i, p := range payloads {
		ev := fmt.Sprintf(`{"event_type":"trip","schema_version":"1","payload":{%s},"collector_tstamp":"2026-01-01T00:00:00.000000Z","root_id":"c%d"}`, p, e.sent)
		e.sent++
		_ = i
		if err := cl.ProduceSync(e.t.Context(), &kgo.Record{Topic: "sluice.raw", Key: []byte("k"), Value: []byte(ev),
			Headers: []kgo.RecordHeader{{Key: "root_id", Value: fmt.Appendf(nil, "c%d", e.sent-1)}}}).FirstErr(); err != nil {
			e.t.Fatal(err)
		}
	}
}

// checkDeadLetter checks that dead_letter holds the event with root id id,
// for reason, at path.
func (e *env) checkDeadLetter(id, reason, path string) {
	e.t.Helper()
	for _, r := range laketest.TableRows(e.t, e.store, e.cat, lake.DeadLetterTable) {
		if r["root_id"] == id {
			if r["reason"] != reason || !strings.Contains(fmt.Sprint(r["errors"]), `"path":"`+path+`"`) {
				e.t.Errorf("dead letter of %s: reason %v, errors %v; want %s at %s", id, r["reason"], r["errors"], reason, path)
			}
			return
		}
	}
	e.t.Errorf("no dead letter of %s", id)
}

// TestTypesAreStable loads a table in flushes, each waited for: a column
// that is null in a whole flush keeps its type; a null never sets one; a
// value of another type dead-letters its event and the type stays; and a
// field that appears later is a new column.
func TestTypesAreStable(t *testing.T) {
	e := newEnv(t)
	r, l := e.loader(nil)
	stop := run(t, r)
	defer stop()
	flush := func(payloads ...string) map[string]string {
		e.send(payloads...)
		e.waitLoaded("sluice.raw")
		e.waitLoaded("sluice.dlq")
		return e.columnTypes("trip")
	}
	flush(`"n":1,"flag":true,"note":null`, `"n":2,"flag":false,"note":null`)
	types := flush(`"n":3,"flag":null,"note":null`)
	if !strings.HasPrefix(types["flag"], "BOOLEAN") {
		t.Errorf("flag, null in the whole flush, was written as %s, want BOOLEAN", types["flag"])
	}
	if _, ok := types["note"]; ok {
		t.Errorf("note, never anything but null, is a column of type %s", types["note"])
	}
	types = flush(`"n":"four","flag":true`, `"n":5,"flag":true,"note":"hello","zone":"Z1"`)
	for col, want := range map[string]string{"n": "INT(64", "flag": "BOOLEAN", "note": "STRING", "zone": "STRING"} {
		if !strings.HasPrefix(types[col], want) {
			t.Errorf("column %s was written as %s, want %s", col, types[col], want)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.checkDeadLetter("c3", ReasonTypeMismatch, "/n")
	if n := testutil.ToFloat64(l.metrics.mismatches.WithLabelValues("trip")); n != 1 {
		t.Errorf("mismatches = %v, want 1", n)
	}

	tbl, err := e.cat.Load(t.Context(), "trip")
	if err != nil {
		t.Fatal(err)
	}
	var schema []string
	for _, f := range tbl.Schema().Fields() {
		if !slices.Contains([]string{"n", "flag", "note", "zone"}, f.Name) {
			continue
		}
		schema = append(schema, f.Name+" "+f.Type.String())
	}
	if diff := gocmp.Diff([]string{"n long", "flag boolean", "note string", "zone string"}, schema); diff != "" {
		t.Errorf("schema (-want +got):\n%s", diff)
	}
	var ns []any
	for _, r := range laketest.TableRows(t, e.store, e.cat, "trip") {
		ns = append(ns, r["n"])
	}
	slices.SortFunc(ns, func(a, b any) int { return cmp.Compare(a.(int64), b.(int64)) })
	if diff := gocmp.Diff([]any{int64(1), int64(2), int64(3), int64(5)}, ns); diff != "" {
		t.Errorf("n (-want +got):\n%s", diff)
	}
}

// TestSchemaColumnTypes types columns from the event's schema: a
// date-time string becomes a timestamp and an integer property a bigint
// even when a value arrives as 1.0; a table's own setting wins.
func TestSchemaColumnTypes(t *testing.T) {
	e := newEnv(t)
	reg, err := schema.Load(fstest.MapFS{"ride/1-0-0.json": {Data: []byte(`{"type":"object","properties":{
		"at":{"type":"string","format":"date-time"},"n":{"type":"integer"},"fare":{"type":"number"},"code":{"type":"integer"}}}`)}})
	if err != nil {
		t.Fatal(err)
	}
	cl := e.producer()
	for i, v := range []string{`"at":"2025-01-01T00:18:38","n":1.0,"fare":3,"code":7`, `"at":"2025-01-02 01:00:00Z","n":2,"fare":2.5,"code":8`} {
		ev := fmt.Sprintf(`{"event_type":"ride","schema_version":"1-0-0","payload":{%s},"collector_tstamp":"2026-01-01T00:00:00.000000Z","root_id":"s%d"}`, v, i)
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "sluice.raw", Value: []byte(ev)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	r, l := e.loader(func(c *Config) {
		c.Tables = map[string]Table{"ride": {Columns: map[string]row.Kind{"code": row.KindString}}}
	})
	l.schemas = reg
	stop := run(t, r)
	e.waitLoaded("sluice.raw")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := e.columnTypes("ride")
	for col, typ := range map[string]string{"at": "TIMESTAMP", "n": "INT(64", "fare": "DOUBLE", "code": "STRING"} {
		if !strings.HasPrefix(got[col], typ) {
			t.Errorf("column %s is %s, want %s", col, got[col], typ)
		}
	}
}

// columnTypes reads the Parquet types of the columns of a table's last
// data file.
func (e *env) columnTypes(table string) map[string]string {
	e.t.Helper()
	objs, err := e.store.List(e.t.Context(), table+"/data/")
	if err != nil || len(objs) == 0 {
		e.t.Fatalf("%s files %v (%v), want some", table, objs, err)
	}
	slices.SortFunc(objs, func(a, b lake.Object) int { return cmp.Compare(fileFirst(a.Path), fileFirst(b.Path)) })
	data, err := e.store.ReadObject(e.t.Context(), objs[len(objs)-1].Path)
	if err != nil {
		e.t.Fatal(err)
	}
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		e.t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range pf.Schema().Fields() {
		got[f.Name()] = f.Type().String()
	}
	return got
}

// TestCompactionDuringLoading compacts the tables again and again while
// the loader writes them in small flushes: a reader never sees a row twice
// or a row count go down, the loader never writes a range twice, and at
// the end every event is in the lake once, in fewer files.
func TestCompactionDuringLoading(t *testing.T) {
	for kind, newEnv := range map[string]func(*testing.T) *env{"local": newEnv, "rest": newRESTEnv} {
		t.Run(kind, func(t *testing.T) { compactDuringLoading(t, newEnv(t)) })
	}
}

func compactDuringLoading(t *testing.T, e *env) {
	r, _ := e.loader(func(c *Config) { c.FlushRows = 20; c.FlushInterval = 20 * time.Millisecond })
	stop := run(t, r)
	defer stop()
	ids := map[string]bool{}
	done, stopCompacting := make(chan struct{}), make(chan struct{})
	var compactions, rewritten int
	go func() {
		defer close(done)
		last := 0
		for ctx := t.Context(); ctx.Err() == nil; {
			for _, table := range []string{"yellow_taxi_trip", "page_view"} {
				res, err := e.cat.Compact(ctx, e.store, table, 1<<20)
				if err != nil && !errors.Is(err, lake.ErrNoTable) && !strings.Contains(err.Error(), "run it again") {
					t.Errorf("compact %s: %v", table, err)
					return
				}
				if res.FilesBefore > 0 {
					compactions++
					rewritten += res.FilesBefore
				}
			}
			seen := map[string]bool{}
			rows := 0
			for _, table := range []string{"yellow_taxi_trip", "page_view"} {
				if _, err := e.cat.Load(ctx, table); err != nil {
					continue
				}
				for _, row := range laketest.TableRows(t, e.store, e.cat, table) {
					id := row["root_id"].(string)
					if seen[id] {
						t.Errorf("a reader sees %s twice", id)
					}
					seen[id] = true
					rows++
				}
			}
			if rows < last {
				t.Errorf("a reader saw %d rows after %d", rows, last)
			}
			last = rows
			select {
			case <-stopCompacting:
				return
			case <-time.After(20 * time.Millisecond): // a breath for the loader's commits
			}
		}
	}()
	for range 4 {
		maps.Copy(ids, e.produceFrom(len(ids), 300))
		time.Sleep(300 * time.Millisecond)
	}
	e.waitLoaded("sluice.raw", "sluice.dlq")
	close(stopCompacting)
	<-done
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if compactions == 0 {
		t.Fatal("no compaction happened while the loader wrote")
	}
	// A fresh loader resumes after compactions: it writes nothing twice.
	r2, _ := e.loader(nil)
	stop2 := run(t, r2)
	time.Sleep(500 * time.Millisecond)
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	// The files compactions replaced are in old snapshots only: expiring
	// those removes them, and no snapshot-less file stays.
	for _, table := range []string{"yellow_taxi_trip", "page_view"} {
		if n, err := e.cat.Expire(t.Context(), table, 0, 1); err != nil || n == 0 {
			t.Errorf("expire %s: %d snapshots, %v", table, n, err)
		}
	}
	e.checkExactlyOnce(ids)
	t.Logf("%d compactions rewrote %d files", compactions, rewritten)
}

// TestSnapshotsExpire loads a table in many small flushes: the loader
// expires old snapshots as it goes, so their number and the metadata
// files stay bounded, and no row is lost with them.
func TestSnapshotsExpire(t *testing.T) {
	for kind, newEnv := range map[string]func(*testing.T) *env{"local": newEnv, "rest": newRESTEnv} {
		t.Run(kind, func(t *testing.T) { snapshotsExpire(t, newEnv(t)) })
	}
}

func snapshotsExpire(t *testing.T, e *env) {
	ids := e.produce(150)
	r, _ := e.loader(func(c *Config) {
		c.FlushRows, c.FlushInterval = 2, time.Millisecond
		c.SnapshotMaxAge, c.SnapshotMinCount = time.Nanosecond, 5
	})
	stop := run(t, r)
	e.waitLoaded("sluice.raw", "sluice.dlq")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.checkExactlyOnce(ids)
	tbl, err := e.cat.Load(t.Context(), "yellow_taxi_trip")
	if err != nil {
		t.Fatal(err)
	}
	total, _ := strconv.Atoi(tbl.CurrentSnapshot().Summary.Properties["total-records"])
	made := tbl.Metadata().LastSequenceNumber()
	if n := len(tbl.Metadata().Snapshots()); made <= 10 || n > 10 || total != 75 {
		t.Errorf("%d snapshots made, %d kept holding %d rows; want over 10 made, at most 10 kept, holding 75", made, n, total)
	}
	metadata, err := e.store.List(t.Context(), "yellow_taxi_trip/metadata/")
	if err != nil {
		t.Fatal(err)
	}
	jsons := 0
	for _, o := range metadata {
		if strings.HasSuffix(o.Path, ".metadata.json") {
			jsons++
		}
	}
	if jsons > 21 {
		t.Errorf("%d metadata files kept, want at most 21", jsons)
	}
}
