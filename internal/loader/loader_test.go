package loader

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/internal/bus"
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
}

// newEnv starts a broker and a local lake.
func newEnv(t *testing.T) *env {
	t.Helper()
	store, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newEnvOn(t, store)
}

// newS3Env starts a broker and a lake in a bucket of the in-process S3
// server.
func newS3Env(t *testing.T) *env {
	t.Helper()
	endpoint, bucket := s3test.Bucket(t)
	store, err := lake.NewS3("s3://"+bucket+"/lake", lake.S3Config{Endpoint: endpoint, Region: s3test.Region,
		PathStyle: true, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return newEnvOn(t, store)
}

func newEnvOn(t *testing.T, store lake.Storage) *env {
	t.Helper()
	b, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: t.TempDir(), Partitions: 3}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	e := &env{t: t, broker: b, cc: bus.ClientConfig{Brokers: []string{b.Addr()}}, store: store}
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
	cl := e.producer()
	defer cl.Close()
	ids = make(map[string]bool)
	var recs []*kgo.Record
	for i := range n {
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
		id := fmt.Sprintf("dlq-%d", i)
		v := fmt.Sprintf(`{"stage":"collector","reason":"missing_field","errors":[{"path":"/payload","message":"payload is required"}],"failed_at":"2025-01-01T00:00:00.000000Z","root_id":%q,"original":{"event_type":"x"}}`, id)
		recs = append(recs, &kgo.Record{Topic: "sluice.dlq", Key: []byte(id), Value: []byte(v)})
		ids[id] = true
	}
	recs = append(recs, &kgo.Record{Topic: "sluice.raw", Key: []byte("bad"), Value: []byte("not json"),
		Headers: []kgo.RecordHeader{{Key: "root_id", Value: []byte("bad-1")}}})
	ids["bad-1"] = true
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
	l, err := New(cfg, e.store, "sluice.dlq", nil, testLogger(e.t), reg)
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
	deadline := time.Now().Add(30 * time.Second)
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
			e.t.Fatal("the lake did not catch up with Kafka within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lakeIDs counts each root_id across every data file, and checks that no
// temporary file is left where a query could see it.
func (e *env) lakeIDs() map[string]int {
	e.t.Helper()
	counts := make(map[string]int)
	objs, err := e.store.List(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range objs {
		if strings.HasPrefix(o.Path, "_sluice/") {
			continue
		}
		if _, ok := lake.ParseFile(o.Path); !ok {
			e.t.Errorf("stray object in the lake: %s", o.Path)
			continue
		}
		data, err := e.store.ReadObject(context.Background(), o.Path)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, row := range laketest.ReadParquet(e.t, data) {
			id, _ := row["root_id"].(string)
			counts[id]++
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
	return func() error {
		cancel()
		return <-done
	}
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

	tables, err := lake.Tables(t.Context(), e.store)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"yellow_taxi_trip", "page_view", "dead_letter"} {
		if len(tables[want]) == 0 {
			t.Errorf("no files for table %s (have %v)", want, keys(tables))
		}
	}
	for _, o := range tables["page_view"] {
		f, _ := lake.ParseFile(o.Path)
		if f.Date != "2025-01-02" {
			t.Errorf("page_view file %s: want event_date=2025-01-02 (from collector_tstamp)", o.Path)
		}
	}
}

func keys[M ~map[string]V, V any](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestCrashAtEveryPoint stops the loader at each dangerous point of a
// flush, as a crash would, then runs a fresh loader on the same lake: every
// record must be in exactly one file.
func TestCrashAtEveryPoint(t *testing.T) {
	for _, point := range Points {
		for lakeKind, newEnv := range map[string]func(*testing.T) *env{"local": newEnv, "s3": newS3Env} {
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
		Tables: map[string]Table{"t": {Format: "orc"}}}, e.store, "sluice.dlq", nil, testLogger(t), prometheus.NewRegistry()); err == nil {
		t.Error("an unknown table format was accepted")
	}
}

// TestColumnTypes gives a table's columns exact types: strings become
// timestamps and integers doubles, and a value that does not fit is kept as
// a string and counted, never lost.
func TestColumnTypes(t *testing.T) {
	e := newEnv(t)
	cl := e.producer()
	for i, v := range []string{`"pickup":"2025-01-01T00:18:38","fare":10,"code":"7"`, `"pickup":"2025-01-02 01:00:00","fare":2.5,"code":"x"`} {
		ev := fmt.Sprintf(`{"event_type":"trip","schema_version":"1","payload":{%s},"collector_tstamp":"2026-01-01T00:00:00.000000Z","root_id":"c%d"}`, v, i)
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "sluice.raw", Value: []byte(ev)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	r, l := e.loader(func(c *Config) {
		c.Tables = map[string]Table{"trip": {Columns: map[string]row.Kind{"pickup": row.KindTimestamp, "fare": row.KindFloat, "code": row.KindInt}}}
	})
	stop := run(t, r)
	e.waitLoaded("sluice.raw")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := e.columnTypes("trip")
	want := map[string]string{"pickup": "TIMESTAMP", "fare": "DOUBLE", "code": "STRING"}
	for col, typ := range want {
		if !strings.HasPrefix(got[col], typ) {
			t.Errorf("column %s is %s, want %s", col, got[col], typ)
		}
	}
	if n := testutil.ToFloat64(l.metrics.conflicts.WithLabelValues("trip")); n != 1 {
		t.Errorf("conflicts = %v, want 1 (code \"x\" is not a bigint)", n)
	}
	if n := testutil.ToFloat64(l.metrics.unconverted.WithLabelValues("trip", "code")); n != 1 {
		t.Errorf("unconverted = %v, want 1 (code \"x\" is not a bigint)", n)
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

// columnTypes reads the Parquet types of the columns of a table's one file.
func (e *env) columnTypes(table string) map[string]string {
	e.t.Helper()
	objs, err := e.store.List(e.t.Context(), table+"/")
	if err != nil || len(objs) != 1 {
		e.t.Fatalf("%s files %v (%v), want one", table, objs, err)
	}
	data, err := e.store.ReadObject(e.t.Context(), objs[0].Path)
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
