package search

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/schema"
	"github.com/sluicehq/sluice/internal/searchtest"
	"github.com/sluicehq/sluice/internal/sink"
)

// pipe is a search sink on its runner, fed from a topic of an embedded
// broker.
type pipe struct {
	t      *testing.T
	cc     bus.ClientConfig
	prod   *kgo.Client
	topic  string
	dlq    string
	search *Search
	runner *sink.Runner
	cancel context.CancelFunc
	done   chan error
	ids    map[string]bool
	next   int
	logs   logBuffer
}

// logBuffer keeps what the sink logged, for checks that it shows no
// secret.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startPipe(t *testing.T, cfg Config, schemas Schemas) *pipe {
	t.Helper()
	p := newPipe(t)
	p.start(cfg, schemas)
	return p
}

// newPipe starts the broker and its topics.
func newPipe(t *testing.T) *pipe {
	t.Helper()
	logger := testLogger(t)
	b, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: t.TempDir(), Partitions: 3}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	p := &pipe{t: t, cc: bus.ClientConfig{Brokers: []string{b.Addr()}}, topic: "events", dlq: "dlq", ids: map[string]bool{}}
	if p.prod, err = bus.NewProducer(p.cc, bus.ProducerConfig{}, logger); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.prod.Close)
	if err := bus.EnsureTopics(t.Context(), p.prod, 3, 1, p.topic, p.dlq); err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs a fresh sink, as a new process would.
func (p *pipe) start(cfg Config, schemas Schemas) {
	t := p.t
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &p.logs), &slog.HandlerOptions{Level: slog.LevelInfo}))
	var err error
	cfg.Topics, cfg.Group = []string{p.topic}, "search-test"
	cfg.FlushInterval = 200 * time.Millisecond
	reg := prometheus.NewRegistry()
	env := sink.Env{Logger: logger, Metrics: reg, Kafka: p.cc, DLQTopic: p.dlq}
	if p.search, err = New(cfg, p.dlq, schemas, logger, reg); err != nil {
		t.Fatal(err)
	}
	if p.runner, err = sink.New("search", cfg.Config, p.search, env); err != nil {
		t.Fatal(err)
	}
	p.runner.SetState(health.Running)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	p.cancel, p.done = cancel, make(chan error, 1)
	go func() { p.done <- p.runner.Run(ctx) }()
	t.Cleanup(p.stop)
}

func (p *pipe) stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	if err := <-p.done; err != nil {
		p.t.Errorf("runner: %v", err)
	}
	p.cancel = nil
}

// produce sends n trip events; payload gives the i-th one's payload.
func (p *pipe) produce(n int, payload func(i int) string) {
	p.t.Helper()
	var recs []*kgo.Record
	for range n {
		i := p.next
		p.next++
		id := fmt.Sprintf("trip-%06d", i)
		ts := time.Date(2025, 1, 1+i%2, 10, 0, 0, 0, time.UTC).Format(event.TimeLayout)
		v := fmt.Sprintf(`{"event_type":"trip","schema_version":"1-0-0","payload":%s,"collector_tstamp":%q,"root_id":%q}`, payload(i), ts, id)
		recs = append(recs, &kgo.Record{Topic: p.topic, Key: []byte(id), Value: []byte(v),
			Headers: []kgo.RecordHeader{{Key: event.HeaderEventType, Value: []byte("trip")}, {Key: event.HeaderRootID, Value: []byte(id)}}})
		p.ids[id] = true
	}
	if err := p.prod.ProduceSync(p.t.Context(), recs...).FirstErr(); err != nil {
		p.t.Fatal(err)
	}
}

// waitCaughtUp waits until the offsets index holds every partition's end.
func (p *pipe) waitCaughtUp(within time.Duration) {
	p.t.Helper()
	ends, err := kadm.NewClient(p.prod).ListEndOffsets(p.t.Context(), p.topic)
	if err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for {
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			pos, err := p.search.Resume(p.t.Context(), p.topic, o.Partition)
			done = done && err == nil && pos.Committed >= o.Offset-1
		})
		if done {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the sink did not catch up within %v (ready: %v)", within, p.runner.Health().Ready())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// replayFromStart deletes the sink's offsets and runs it again over the
// whole topic, as after a lost offsets index, until it has caught up.
func (p *pipe) replayFromStart(n node, cfg Config) {
	p.t.Helper()
	if status, b := n.do(http.MethodDelete, "/"+cfg.OffsetsIndex, nil); status != http.StatusOK {
		p.t.Fatalf("delete the offsets: %d %s", status, b)
	}
	p.start(cfg, nil)
	p.waitCaughtUp(30 * time.Second)
	p.stop()
}

// deadLetters reads the dead-letter topic.
func (p *pipe) deadLetters() []event.Failed {
	p.t.Helper()
	cl, err := bus.NewClient(p.cc, testLogger(p.t), kgo.ConsumeTopics(p.dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		p.t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(p.t.Context(), p.dlq)
	if err != nil {
		p.t.Fatal(err)
	}
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	var out []event.Failed
	ctx, cancel := context.WithTimeout(p.t.Context(), 10*time.Second)
	defer cancel()
	for int64(len(out)) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var f event.Failed
			if err := json.Unmarshal(r.Value, &f); err != nil {
				p.t.Errorf("dead letter %s: %v", r.Value, err)
			}
			out = append(out, f)
		})
	}
	return out
}

// checkOnce checks that the indices matching pattern hold every produced
// event but those in skip, each exactly once.
func (p *pipe) checkOnce(n node, pattern string, skip map[string]bool) {
	p.t.Helper()
	got := n.rootIDs(pattern)
	for id := range p.ids {
		if want := map[bool]int{true: 0, false: 1}[skip[id]]; got[id] != want {
			p.t.Errorf("%s is indexed %d times, want %d", id, got[id], want)
		}
	}
	for id := range got {
		if !p.ids[id] {
			p.t.Errorf("unexpected document %s", id)
		}
	}
}

// schemaDir is a registry holding trip/1-0-0: n an integer, fare a
// number, zone a string, at a date-time.
func schemaDir(t *testing.T) *schema.Registry {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "trip"), 0o755); err != nil {
		t.Fatal(err)
	}
	doc := `{"type":"object","properties":{"n":{"type":"integer"},"fare":{"type":"number"},"zone":{"type":"string"},"at":{"type":"string","format":"date-time"}}}`
	if err := os.WriteFile(filepath.Join(dir, "trip", "1-0-0.json"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := schema.Load(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A field that is a number in the template and a string in one event:
// that event is a dead letter saying why and where, and the rest are
// indexed with the schema's types, even where the first document would
// have typed the field otherwise.
func TestMappingConflict(t *testing.T) {
	srv := searchtest.Shared(t)
	prefix := searchtest.Prefix(t)
	n := node{t: t, url: srv.URL}
	p := startPipe(t, testConfig(srv.URL, prefix), schemaDir(t))
	p.produce(60, func(i int) string {
		switch i {
		case 0:
			// The first document's fare looks like an integer: without
			// the template, fare would be a long.
			return `{"n":0,"fare":3,"zone":"Z0","at":"2025-01-01T10:00:00Z"}`
		case 7:
			return `{"n":"seven","fare":7.5,"zone":"Z7","at":"2025-01-01T10:00:00Z"}`
		}
		return fmt.Sprintf(`{"n":%d,"fare":%d.5,"zone":"Z%d","at":"2025-01-01T10:00:00Z"}`, i, i, i%3)
	})
	p.waitCaughtUp(30 * time.Second)
	p.checkOnce(n, prefix+"trip-*", map[string]bool{"trip-000007": true})
	dead := p.deadLetters()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1: %+v", len(dead), dead)
	}
	d := dead[0]
	if d.Reason != ReasonIndexRejected || d.RootID != "trip-000007" || len(d.Errors) != 1 || d.Errors[0].Path != "/payload/n" ||
		!strings.Contains(d.Errors[0].Message, "mapper_parsing_exception") || !bytes.Contains(d.Original, []byte(`"seven"`)) {
		t.Errorf("dead letter = %+v (errors %+v), want index_rejected of trip-000007 at /payload/n with the server's error and the original", d, d.Errors)
	}
	index := prefix + "trip-2025.01.01"
	for field, want := range map[string]string{"payload.n": "long", "payload.fare": "double", "payload.zone": "keyword",
		"payload.at": "date", "collector_tstamp": "date", "root_id": "keyword"} {
		if got := n.fieldType(index, field); got != want {
			t.Errorf("%s is mapped as %q, want %q", field, got, want)
		}
	}
	if got := testutil.ToFloat64(p.search.metrics.documents.WithLabelValues("trip", "dead_lettered")); got != 1 {
		t.Errorf("dead_lettered documents = %v, want 1", got)
	}
}

// flipper is a proxy that forwards every request to the server, then
// tells the sink that some of the documents the server indexed were
// rejected for the moment (429, es_rejected_execution_exception), and
// answers some _bulk requests with a 429 of its own: the sink sends them
// again, and, its ids being stable, they are indexed once.
func flipper(t *testing.T, target string, flipped, refused *atomic.Int64) *httptest.Server {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		bulk := strings.HasPrefix(r.URL.Path, "/_bulk")
		if bulk && calls.Add(1)%4 == 0 {
			refused.Add(1)
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":{"type":"circuit_breaking_exception","reason":"too many requests"},"status":429}`))
			return
		}
		relay(w, r, target, body, func(status int, answer []byte) []byte {
			if !bulk || status != http.StatusOK {
				return answer
			}
			var got bulkAnswer
			if json.Unmarshal(answer, &got) == nil {
				for i, item := range got.Items {
					for op, v := range item {
						if i%3 == 1 && v.Status < 300 {
							flipped.Add(1)
							item[op] = bulkItemAnswer{Status: 429, Error: &itemError{Type: "es_rejected_execution_exception", Reason: "rejected execution of coordinating operation"}}
						}
					}
				}
				got.Errors = true
				answer, _ = json.Marshal(got)
			}
			return answer
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Under rejections, of whole requests and of documents, on a node whose
// write queue is tiny too: every document is indexed exactly once in the
// end, none is dead-lettered, and the retries are counted.
func TestRejectionsUnderLoad(t *testing.T) {
	srv := searchtest.Start(t, "thread_pool.write.size=1", "thread_pool.write.queue_size=1")
	prefix := searchtest.Prefix(t)
	var flipped, refused atomic.Int64
	proxy := flipper(t, srv.URL, &flipped, &refused)
	cfg := testConfig(proxy.URL, prefix)
	cfg.BulkDocs, cfg.InFlight, cfg.FlushRows = 40, 6, 2000
	p := startPipe(t, cfg, nil)
	for range 5 {
		p.produce(1000, func(i int) string { return fmt.Sprintf(`{"n":%d,"zone":"Z%d"}`, i, i%5) })
	}
	p.waitCaughtUp(2 * time.Minute)
	p.checkOnce(node{t: t, url: srv.URL}, prefix+"trip-*", nil)
	if dead := p.deadLetters(); len(dead) > 0 {
		t.Errorf("%d dead letters, want none: %+v", len(dead), dead[0])
	}
	retried := testutil.ToFloat64(p.search.metrics.documents.WithLabelValues("trip", "retried"))
	if flipped.Load() == 0 || refused.Load() == 0 || retried < float64(flipped.Load()) {
		t.Errorf("retried %v documents; the proxy rejected %d documents and refused %d requests", retried, flipped.Load(), refused.Load())
	}
	t.Logf("%d documents rejected by the proxy, %d requests refused, %v documents sent again", flipped.Load(), refused.Load(), retried)
}

// The server killed while events flow, then started again: the sink
// waits, says it is not ready, and catches up with no loss, no duplicate
// and no crash.
func TestServerRestart(t *testing.T) {
	srv := searchtest.Start(t)
	prefix := searchtest.Prefix(t)
	p := startPipe(t, testConfig(srv.URL, prefix), nil)
	payload := func(i int) string { return fmt.Sprintf(`{"n":%d}`, i) }
	p.produce(500, payload)
	p.waitCaughtUp(30 * time.Second)
	srv.Kill()
	for range 5 {
		p.produce(200, payload)
		time.Sleep(200 * time.Millisecond)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.runner.Health().Ready() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the sink is still ready with its server down")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("with the server down: %v", p.runner.Health().Ready())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	p.produce(300, payload)
	p.waitCaughtUp(2 * time.Minute)
	select {
	case err := <-p.done:
		t.Fatalf("the runner stopped: %v", err)
	default:
	}
	p.checkOnce(node{t: t, url: srv.URL}, prefix+"trip-*", nil)
	if dead := p.deadLetters(); len(dead) > 0 {
		t.Errorf("%d dead letters, want none: %+v", len(dead), dead[0])
	}
}

// Data streams: documents are created with @timestamp, and created again
// (a replay from the start, its offsets lost) they are not duplicated.
func TestDataStreams(t *testing.T) {
	srv := searchtest.Shared(t)
	prefix := searchtest.Prefix(t)
	n := node{t: t, url: srv.URL}
	cfg := testConfig(srv.URL, prefix)
	cfg.DataStreams, cfg.Index = true, prefix+"{event_type}"
	p := newPipe(t)
	p.start(cfg, nil)
	p.produce(200, func(i int) string { return fmt.Sprintf(`{"n":%d}`, i) })
	p.waitCaughtUp(30 * time.Second)
	p.stop()
	var streams struct {
		DataStreams []struct {
			Name string `json:"name"`
		} `json:"data_streams"`
	}
	n.get("/_data_stream/"+prefix+"trip", nil, &streams)
	if len(streams.DataStreams) != 1 {
		t.Fatalf("data streams %+v, want %strip", streams, prefix)
	}
	p.replayFromStart(n, cfg)
	p.checkOnce(n, prefix+"trip", nil)
	if got := n.fieldType(prefix+"trip", "@timestamp"); got != "date" {
		t.Errorf("@timestamp is mapped as %q, want date", got)
	}
	if dead := p.deadLetters(); len(dead) > 0 {
		t.Errorf("%d dead letters, want none: %+v", len(dead), dead[0])
	}
}

// External versioning: each document's version is its Kafka offset, and a
// replay of the same records (its offsets lost) meets 409s that count as
// done: nothing is dead-lettered, nothing duplicated, no version goes back.
func TestExternalVersioning(t *testing.T) {
	srv := searchtest.Shared(t)
	prefix := searchtest.Prefix(t)
	n := node{t: t, url: srv.URL}
	cfg := testConfig(srv.URL, prefix)
	cfg.Versioning = "external"
	p := newPipe(t)
	p.start(cfg, nil)
	p.produce(150, func(i int) string { return fmt.Sprintf(`{"n":%d}`, i) })
	p.waitCaughtUp(30 * time.Second)
	p.stop()
	p.replayFromStart(n, cfg)
	p.checkOnce(n, prefix+"trip-*", nil)
	if dead := p.deadLetters(); len(dead) > 0 {
		t.Errorf("%d dead letters, want none: %+v", len(dead), dead[0])
	}
	var hit struct {
		Hits struct {
			Hits []struct {
				Version int64 `json:"_version"`
			} `json:"hits"`
		} `json:"hits"`
	}
	n.get("/"+prefix+"trip-*/_search", map[string]any{"version": true, "size": 1, "query": map[string]any{"term": map[string]any{"root_id": "trip-000149"}}}, &hit)
	// trip-000149 is one of the last records of its partition: its
	// version is its offset there, which is at least 149/3.
	if len(hit.Hits.Hits) != 1 || hit.Hits.Hits[0].Version < 40 {
		t.Errorf("trip-000149: %+v, want one document versioned by its Kafka offset", hit)
	}
}

// A request the server refuses as a whole (413, too large) is split: its
// documents go alone, the ones small enough are indexed, and the one too
// large for the server becomes a dead letter saying so.
func TestRequestTooLarge(t *testing.T) {
	srv := searchtest.Shared(t)
	prefix := searchtest.Prefix(t)
	target := srv.URL
	const limit = 4 << 10
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.HasPrefix(r.URL.Path, "/_bulk") && len(body) > limit {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			w.Write([]byte(`{"error":{"type":"content_too_long_exception","reason":"request body is too large"},"status":413}`))
			return
		}
		relay(w, r, target, body, nil)
	}))
	defer proxy.Close()
	p := startPipe(t, testConfig(proxy.URL, prefix), nil)
	p.produce(40, func(i int) string {
		if i == 13 {
			return fmt.Sprintf(`{"n":%d,"note":%q}`, i, strings.Repeat("x", 2*limit))
		}
		return fmt.Sprintf(`{"n":%d}`, i)
	})
	p.waitCaughtUp(60 * time.Second)
	p.checkOnce(node{t: t, url: srv.URL}, prefix+"trip-*", map[string]bool{"trip-000013": true})
	dead := p.deadLetters()
	if len(dead) != 1 || dead[0].RootID != "trip-000013" || dead[0].Reason != ReasonIndexRejected ||
		!strings.Contains(dead[0].Errors[0].Message, "too large") {
		t.Errorf("dead letters %+v, want trip-000013's, too large", dead)
	}
}
