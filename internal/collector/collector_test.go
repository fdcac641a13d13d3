package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/schema"
)

const tripEvent = `{"event_type":"yellow_taxi_trip","schema_version":"1-0-0","event_id":"trips.parquet:1",` +
	`"payload":{"VendorID":1,"tpep_pickup_datetime":"2025-01-01T00:18:38","passenger_count":1.0,"trip_distance":1.60,` +
	`"store_and_fwd_flag":"N","PULocationID":229,"DOLocationID":237,"fare_amount":10.0,"Airport_fee":null}}`

type harness struct {
	t      *testing.T
	broker *bus.Broker
	dir    string
	addr   string
	prod   *kgo.Client
	col    *Collector
	srv    *httptest.Server
	reg    *prometheus.Registry
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newHarness(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	return newEdgeHarness(t, mutate, nil)
}

// newEdgeHarness is newHarness with edge's schemas, for a collector that
// validates at the edge.
func newEdgeHarness(t *testing.T, mutate func(*Config), edge *Edge) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), addr: "127.0.0.1:0"}
	h.startBroker()
	t.Cleanup(func() { h.broker.Close() })
	h.addr = h.broker.Addr()
	logger := testLogger(t)
	cc := bus.ClientConfig{Brokers: []string{h.addr}}
	prod, err := bus.NewProducer(cc, bus.ProducerConfig{Linger: time.Millisecond, MaxRecordBytes: 2 << 20}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	if err := bus.EnsureTopics(t.Context(), prod, 3, 1, "sluice.raw", "sluice.dlq"); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ID = "collector-test"
	cfg.ProduceTimeout = 2 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	h.reg = prometheus.NewRegistry()
	// The collector serves its process's ops endpoints, as in sluice up.
	proc := app.NewProcess(logger)
	col, err := New(cfg, prod, logger, h.reg, app.NewOps(app.OpsConfig{}, proc, h.reg, "collector-test", nil), edge)
	if err != nil {
		t.Fatal(err)
	}
	proc.Add(col)
	col.SetState(health.Running) // served by httptest rather than Run
	h.prod, h.col = prod, col
	h.srv = httptest.NewServer(col.Handler())
	t.Cleanup(h.srv.Close)
	return h
}

func (h *harness) startBroker() {
	h.t.Helper()
	b, err := bus.StartBroker(bus.BrokerConfig{Addr: h.addr, Dir: h.dir, Partitions: 3}, testLogger(h.t))
	if err != nil {
		h.t.Fatal(err)
	}
	h.broker = b
}

type response struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func (h *harness) do(method, path string, body []byte, headers ...string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			h.t.Fatalf("%s %s: answer is not JSON: %v: %s", method, path, err, raw)
		}
	}
	return r
}

func (h *harness) post(path, body string, headers ...string) response {
	h.t.Helper()
	return h.do(http.MethodPost, path, []byte(body), append([]string{"Content-Type", "application/json"}, headers...)...)
}

// consume reads a topic from the start until it has n records.
func consume(t *testing.T, brokers, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: got %d records, want %d", topic, len(recs), n)
		}
		recs = append(recs, f.Records()...)
	}
	return recs
}

func headers(r *kgo.Record) map[string]string {
	m := make(map[string]string)
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestCollectValidEvent(t *testing.T) {
	h := newHarness(t, nil)
	before := time.Now().UTC()
	resp := h.post("/api/v1/collect", tripEvent)
	if resp.code != http.StatusOK {
		t.Fatalf("POST = %d %s, want 200", resp.code, resp.raw)
	}
	rootID, _ := resp.body["root_id"].(string)
	if !uuidV7.MatchString(rootID) {
		t.Fatalf("root_id %q is not a UUID v7", rootID)
	}

	rec := consume(t, h.addr, "sluice.raw", 1)[0]
	if string(rec.Key) != rootID {
		t.Errorf("key = %q, want root_id %q", rec.Key, rootID)
	}
	wantHeaders := map[string]string{"event_type": "yellow_taxi_trip", "schema_version": "1-0-0", "root_id": rootID}
	if diff := cmp.Diff(wantHeaders, headers(rec)); diff != "" {
		t.Errorf("headers mismatch (-want +got):\n%s", diff)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(rec.Value, &got); err != nil {
		t.Fatalf("stored value is not JSON: %v", err)
	}
	var sent map[string]json.RawMessage
	json.Unmarshal([]byte(tripEvent), &sent)
	for k, v := range sent {
		if string(got[k]) != string(v) {
			t.Errorf("field %s changed: sent %s, stored %s", k, v, got[k])
		}
	}
	if string(got["root_id"]) != `"`+rootID+`"` || string(got["collector_id"]) != `"collector-test"` {
		t.Errorf("stamp: root_id %s, collector_id %s", got["root_id"], got["collector_id"])
	}
	var ts string
	json.Unmarshal(got["collector_tstamp"], &ts)
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || !strings.HasSuffix(ts, "Z") || !strings.Contains(ts, ".") {
		t.Errorf("collector_tstamp %q: want UTC RFC 3339 with fractional seconds (%v)", ts, err)
	}
	if at.Before(before.Truncate(time.Microsecond)) || at.After(time.Now()) {
		t.Errorf("collector_tstamp %v is outside the request (%v..now)", at, before)
	}
	if len(got) != len(sent)+3 {
		t.Errorf("stored %d fields, want the %d sent plus 3", len(got), len(sent))
	}
}

func TestCollectInvalidEventsAreDeadLettered(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name, body, reason string
		wantOriginal       string // JSON of the original as stored
	}{
		{"invalid_json", `{"event_type": "trip",`, event.ReasonInvalidJSON, `"{\"event_type\": \"trip\","`},
		{"not json at all", `hello`, event.ReasonInvalidJSON, `"hello"`},
		{"missing_field", `{"event_type":"trip","payload":{}}`, event.ReasonMissingField, `{"event_type":"trip","payload":{}}`},
		{"wrong_type", `{"event_type":"trip","schema_version":"1","payload":"x"}`, event.ReasonWrongType, `{"event_type":"trip","schema_version":"1","payload":"x"}`},
		{"empty_field", `{"event_type":"","schema_version":"1","payload":{}}`, event.ReasonEmptyField, `{"event_type":"","schema_version":"1","payload":{}}`},
	}
	rootIDs := make(map[string]int)
	for i, tt := range tests {
		resp := h.post("/api/v1/collect", tt.body)
		if resp.code != http.StatusBadRequest || resp.body["error"] != tt.reason {
			t.Fatalf("%s: POST = %d %s, want 400 %s", tt.name, resp.code, resp.raw, tt.reason)
		}
		if d, _ := resp.body["details"].([]any); len(d) == 0 {
			t.Errorf("%s: answer has no details: %s", tt.name, resp.raw)
		}
		rootIDs[resp.body["root_id"].(string)] = i
	}
	for _, rec := range consume(t, h.addr, "sluice.dlq", len(tests)) {
		i, ok := rootIDs[string(rec.Key)]
		if !ok {
			t.Fatalf("unexpected DLQ record %s", rec.Value)
		}
		tt := tests[i]
		var f struct {
			event.Failed
			Original json.RawMessage `json:"original"`
		}
		if err := json.Unmarshal(rec.Value, &f); err != nil {
			t.Fatalf("%s: DLQ value is not JSON: %v", tt.name, err)
		}
		if f.Stage != "collector" || f.Reason != tt.reason || f.RootID != string(rec.Key) || len(f.Errors) == 0 || f.FailedAt == "" {
			t.Errorf("%s: failed record %s", tt.name, rec.Value)
		}
		if string(f.Original) != tt.wantOriginal {
			t.Errorf("%s: original = %s, want %s", tt.name, f.Original, tt.wantOriginal)
		}
		if got := headers(rec); got["reason"] != tt.reason || got["stage"] != "collector" {
			t.Errorf("%s: DLQ headers %v", tt.name, got)
		}
	}
}

// batchResult is the batch answer's documented shape.
type batchResult struct {
	Accepted  int          `json:"accepted"`
	Rejected  int          `json:"rejected"`
	RootIDs   []string     `json:"root_ids"`
	Errors    []batchError `json:"errors"`
	NonFinite int          `json:"non_finite"`
}

func TestCollectBatch(t *testing.T) {
	h := newHarness(t, nil)
	valid := func(id string) string {
		return `{"event_type":"trip","schema_version":"1-0-0","event_id":"` + id + `","payload":{"n":1}}`
	}
	f := func(contentType, body string, wantRejected []batchError) {
		t.Helper()
		resp := h.post("/api/v1/collect/batch", body, "Content-Type", contentType)
		if resp.code != http.StatusOK {
			t.Fatalf("batch = %d %s", resp.code, resp.raw)
		}
		var got batchResult
		json.Unmarshal([]byte(resp.raw), &got)
		if got.Accepted != 3 || got.Rejected != len(wantRejected) || len(got.RootIDs) != 3 {
			t.Errorf("accepted %d rejected %d root_ids %d, want 3, %d, 3", got.Accepted, got.Rejected, len(got.RootIDs), len(wantRejected))
		}
		for i := range got.Errors {
			got.Errors[i].Message = "" // messages are for people; reasons are the contract
		}
		if diff := cmp.Diff(wantRejected, got.Errors); diff != "" {
			t.Errorf("errors mismatch (-want +got):\n%s", diff)
		}
	}
	f("application/json", "["+valid("a")+`,{"event_type":"x"},`+valid("b")+`,7,`+valid("c")+"]",
		[]batchError{{Index: 1, Reason: "missing_field"}, {Index: 3, Reason: "wrong_type"}})
	f("application/x-ndjson", valid("d")+"\n{broken\n\n"+valid("e")+"\n"+valid("f")+"\n",
		[]batchError{{Index: 1, Reason: "invalid_json"}})

	raw := consume(t, h.addr, "sluice.raw", 6)
	var ids []string
	for _, r := range raw {
		var v struct {
			EventID string `json:"event_id"`
		}
		json.Unmarshal(r.Value, &v)
		ids = append(ids, v.EventID)
	}
	if len(ids) != 6 {
		t.Errorf("raw topic holds %v, want the 6 valid events", ids)
	}
	dlq := consume(t, h.addr, "sluice.dlq", 3)
	var reasons []string
	for _, r := range dlq {
		reasons = append(reasons, headers(r)["reason"])
	}
	if len(reasons) != 3 {
		t.Errorf("DLQ reasons %v, want the 3 rejected events", reasons)
	}

	// A body that is not an array at all is one failed event.
	resp := h.post("/api/v1/collect/batch", `[{"a":1},`)
	if resp.code != http.StatusBadRequest || resp.body["error"] != "invalid_json" {
		t.Errorf("broken array = %d %s, want 400 invalid_json", resp.code, resp.raw)
	}
	consume(t, h.addr, "sluice.dlq", 4)
}

func TestRequestRejections(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.MaxBodyBytes = 1 << 10
		c.MaxBatchBytes = 4 << 10
		c.BatchMax = 3
		c.APIKeys = []string{"k1", "k2"}
	})
	key := []string{"X-API-Key", "k1"}
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	// A gzip bomb: a small body that inflates far past the limit.
	bomb := gz(bytes.Repeat([]byte(" "), 64<<20))
	if len(bomb) > 1<<20 {
		t.Fatalf("bomb is %d bytes compressed; want it small", len(bomb))
	}
	small := []byte(tripEvent)
	tests := []struct {
		name    string
		method  string
		path    string
		body    []byte
		headers []string
		code    int
		errCode string
	}{
		{"ok with X-API-Key", "POST", "/api/v1/collect", small, key, 200, ""},
		{"ok with bearer", "POST", "/api/v1/collect", small, []string{"Authorization", "Bearer k2"}, 200, ""},
		{"ok gzip", "POST", "/api/v1/collect", gz(small), append([]string{"Content-Encoding", "gzip"}, key...), 200, ""},
		{"no key", "POST", "/api/v1/collect", small, nil, 401, "unauthorized"},
		{"wrong key", "POST", "/api/v1/collect/batch", small, []string{"Authorization", "Bearer nope"}, 401, "unauthorized"},
		{"too large", "POST", "/api/v1/collect", bytes.Repeat([]byte("x"), 2<<10), key, 413, "body_too_large"},
		{"gzip bomb", "POST", "/api/v1/collect", bomb, append([]string{"Content-Encoding", "gzip"}, key...), 413, "body_too_large"},
		{"gzip bomb batch", "POST", "/api/v1/collect/batch", bomb, append([]string{"Content-Encoding", "gzip"}, key...), 413, "body_too_large"},
		{"too many events", "POST", "/api/v1/collect/batch", []byte("[{},{},{},{}]"), key, 413, "too_many_events"},
		{"bad gzip", "POST", "/api/v1/collect", []byte("not gzip"), append([]string{"Content-Encoding", "gzip"}, key...), 400, "invalid_encoding"},
		{"brotli", "POST", "/api/v1/collect", small, append([]string{"Content-Encoding", "br"}, key...), 415, "unsupported_encoding"},
		{"form", "POST", "/api/v1/collect", small, append([]string{"Content-Type", "application/x-www-form-urlencoded"}, key...), 415, "unsupported_media_type"},
		{"text batch", "POST", "/api/v1/collect/batch", small, append([]string{"Content-Type", "text/plain"}, key...), 415, "unsupported_media_type"},
		{"GET collect", "GET", "/api/v1/collect", nil, key, 405, "method_not_allowed"},
		{"PUT batch", "PUT", "/api/v1/collect/batch", small, key, 405, "method_not_allowed"},
		{"DELETE healthz", "DELETE", "/healthz", nil, nil, 405, "method_not_allowed"},
		{"unknown route", "GET", "/api/v2/collect", nil, nil, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdrs := append([]string{"Content-Type", "application/json"}, tt.headers...)
			resp := h.do(tt.method, tt.path, tt.body, hdrs...)
			if resp.code != tt.code {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, resp.code, resp.raw, tt.code)
			}
			if tt.errCode != "" && resp.body["error"] != tt.errCode {
				t.Errorf("error = %v, want %s (%s)", resp.body["error"], tt.errCode, resp.raw)
			}
			if tt.code == 405 && resp.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if tt.code == 401 && resp.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// TestBrokerDownNoFalseAck stops the broker while clients send: every
// event answered 2xx must be in the topic once the broker is back, and the
// collector answers 503 with Retry-After while it is down.
func TestBrokerDownNoFalseAck(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ProduceTimeout = 500 * time.Millisecond })
	type result struct {
		code   int
		rootID string
	}
	results := make(chan result, 10_000)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/api/v1/collect", strings.NewReader(tripEvent))
				req.Header.Set("Content-Type", "application/json")
				resp, err := h.srv.Client().Do(req)
				if err != nil {
					continue
				}
				var body struct {
					RootID string `json:"root_id"`
				}
				json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				results <- result{resp.StatusCode, body.RootID}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	h.broker.Close()
	time.Sleep(1500 * time.Millisecond)

	// While the broker is down, a request is answered 503, promptly.
	start := time.Now()
	if resp := h.post("/api/v1/collect", tripEvent); resp.code != http.StatusServiceUnavailable {
		t.Errorf("with the broker down: %d %s, want 503", resp.code, resp.raw)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("503 took %v; want it within the produce timeout", took)
	}
	if resp := h.do("GET", "/readyz", nil); resp.code != http.StatusServiceUnavailable {
		t.Errorf("readyz with the broker down = %d, want 503", resp.code)
	}

	h.startBroker()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp := h.post("/api/v1/collect", tripEvent); resp.code == http.StatusOK {
			results <- result{200, resp.body["root_id"].(string)}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the collector did not recover after the broker restarted")
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	for range 4 {
		<-done
	}
	close(results)

	acked := make(map[string]bool)
	codes := make(map[int]int)
	for r := range results {
		codes[r.code]++
		if r.code == 200 {
			acked[r.rootID] = true
		}
	}
	t.Logf("answers: %v", codes)
	if codes[503] == 0 {
		t.Error("no 503 while the broker was down")
	}
	for code := range codes {
		if code != 200 && code != 503 {
			t.Errorf("unexpected answer %d", code)
		}
	}
	// Everything acknowledged is stored (503s may be stored too: a 503
	// says "not confirmed", never "dropped").
	stored := make(map[string]bool)
	for _, r := range consume(t, h.addr, "sluice.raw", len(acked)) {
		stored[string(r.Key)] = true
	}
	for id := range acked {
		if !stored[id] {
			t.Errorf("event %s was answered 200 but is not in sluice.raw", id)
		}
	}
}

func TestServiceRoutes(t *testing.T) {
	h := newHarness(t, nil)
	if r := h.do("GET", "/healthz", nil); r.code != 200 {
		t.Errorf("healthz = %d", r.code)
	}
	if r := h.do("GET", "/readyz", nil); r.code != 200 {
		t.Errorf("readyz = %d %s", r.code, r.raw)
	}
	if r := h.do("GET", "/api/v1", nil); r.code != 200 || r.body["collector_id"] != "collector-test" {
		t.Errorf("welcome = %d %s", r.code, r.raw)
	}
	if r := h.do("GET", "/api/v1/docs/", nil); r.code != 200 || !strings.Contains(r.raw, "swagger-ui-bundle.js") {
		t.Errorf("docs = %d", r.code)
	}
	if r := h.do("GET", "/api/v1/docs/swagger-ui-bundle.js", nil); r.code != 200 || len(r.raw) < 100_000 {
		t.Errorf("docs bundle = %d, %d bytes", r.code, len(r.raw))
	}
	h.post("/api/v1/collect", tripEvent)
	h.post("/api/v1/collect", `{}`)
	metrics := h.do("GET", "/metrics", nil).raw
	for _, want := range []string{
		`sluice_collector_http_requests_total{code="200",route="/api/v1/collect"} 1`,
		`sluice_collector_http_requests_total{code="400",route="/api/v1/collect"} 1`,
		`sluice_collector_events_accepted_total 1`,
		`sluice_collector_events_rejected_total{reason="missing_field"} 1`,
		`sluice_collector_produce_latency_seconds_count 2`,
		`sluice_collector_http_requests_in_flight 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestOpenAPICoversRoutes keeps the OpenAPI document in step with the mux.
func TestOpenAPICoversRoutes(t *testing.T) {
	h := newHarness(t, nil)
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Tags []string `json:"tags"`
		} `json:"paths"`
	}
	r := h.do("GET", "/api/v1/openapi.json", nil)
	if err := json.Unmarshal([]byte(r.raw), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q", doc.OpenAPI)
	}
	want := map[string]string{
		"/api/v1/collect": "post", "/api/v1/collect/batch": "post", "/api/v1": "get",
		"/api/v1/openapi.json": "get", "/api/v1/docs/": "get", "/healthz": "get", "/readyz": "get", "/metrics": "get",
		"/api/v1/status": "get",
	}
	for path, method := range want {
		if _, ok := doc.Paths[path][method]; !ok {
			t.Errorf("openapi.json does not document %s %s", strings.ToUpper(method), path)
		}
		if r := h.do(strings.ToUpper(method), path, nil); r.code == 404 {
			t.Errorf("documented %s %s is not served", method, path)
		}
	}
	// The console's routes are the ops handler's (internal/console tests
	// them); the rest are the collector's.
	own := 0
	for _, ops := range doc.Paths {
		for _, op := range ops {
			if !slices.Contains(op.Tags, "console") {
				own++
				break
			}
		}
	}
	if own != len(want) {
		t.Errorf("openapi.json documents %d paths not of the console, want %d", own, len(want))
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.ID = "x"
	if err := c.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	c.MaxInflightBytes = 10
	c.BatchMax = 0
	c.APIKeys = []string{""}
	err := c.Validate()
	for _, want := range []string{"max in-flight", "batch max", "API key is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

// TestKcatReadsWhatTheCollectorWrote proves that an outside Kafka tool
// (kcat, on librdkafka) reads the embedded broker.
func TestKcatReadsWhatTheCollectorWrote(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("SLUICE_REQUIRE_TOOLS") != "" {
			t.Fatal("kcat is not installed; 'make test' installs it (apt-get install kcat)")
		}
		t.Skip("kcat is not installed; 'make test' installs it")
	}
	h := newHarness(t, nil)
	var want []string
	for range 5 {
		r := h.post("/api/v1/collect", tripEvent)
		if r.code != 200 {
			t.Fatalf("POST = %d %s", r.code, r.raw)
		}
		want = append(want, r.body["root_id"].(string))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, "-C", "-b", h.addr, "-t", "sluice.raw",
		"-o", "beginning", "-e", "-q", "-f", "%k %h %s\\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		key, rest, _ := strings.Cut(line, " ")
		if !strings.Contains(rest, "event_type=yellow_taxi_trip") || !strings.Contains(rest, `"VendorID":1`) {
			t.Errorf("kcat line lacks the header or payload: %s", line)
		}
		got = append(got, key)
	}
	if diff := cmp.Diff(slices.Sorted(slices.Values(want)), slices.Sorted(slices.Values(got))); diff != "" {
		t.Errorf("root ids read by kcat (-want +got):\n%s", diff)
	}
}

// TestClientHangupDoesNotFailOthers: franz-go fails every buffered record
// of a partition when one record's context is canceled, so the collector
// must not tie records to request contexts. Clients that hang up mid-request
// must leave every other client's answer 200.
//
// The produce timeout is generous: clients that hang up still leave their
// records queued (they are not failed, which is the point), so under the race
// detector on a loaded CI machine patient clients can wait behind them for
// seconds. A failure by cancellation answers at once, not at the timeout.
func TestClientHangupDoesNotFailOthers(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ProduceTimeout = 30 * time.Second })
	batch := "[" + strings.TrimSuffix(strings.Repeat(tripEvent+",", 200), ",") + "]"
	ctx, stop := context.WithTimeout(t.Context(), 3*time.Second)
	defer stop()
	failures := make(chan string, 1000)
	done := make(chan struct{})
	for w := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; ctx.Err() == nil; i++ {
				if w%2 == 0 {
					// A client that gives up after a moment.
					rctx, cancel := context.WithTimeout(ctx, time.Duration(i%3)*time.Millisecond)
					req, _ := http.NewRequestWithContext(rctx, "POST", h.srv.URL+"/api/v1/collect/batch", strings.NewReader(batch))
					req.Header.Set("Content-Type", "application/json")
					if resp, err := h.srv.Client().Do(req); err == nil {
						resp.Body.Close()
					}
					cancel()
					continue
				}
				req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/api/v1/collect/batch", strings.NewReader(batch))
				req.Header.Set("Content-Type", "application/json")
				resp, err := h.srv.Client().Do(req)
				if err != nil {
					continue // the test's own deadline
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failures <- fmt.Sprintf("%d %s", resp.StatusCode, body)
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
	close(failures)
	for f := range failures {
		t.Errorf("a patient client was refused: %s", f)
	}
}

// TestInflightBytesBounded floods the collector with more batch bytes than
// its in-flight budget: requests wait their turn (back-pressure), none
// fails, and the bytes held never exceed the budget.
func TestInflightBytesBounded(t *testing.T) {
	const budget = 512 << 10
	h := newHarness(t, func(c *Config) {
		c.MaxBodyBytes = 64 << 10
		c.MaxBatchBytes = 256 << 10
		c.MaxInflightBytes = budget
	})
	events := strings.TrimSuffix(strings.Repeat(tripEvent+",", 200), ",")
	body := "[" + events + "]" // about 100 KiB
	gauge := func() float64 {
		for _, line := range strings.Split(h.do("GET", "/metrics", nil).raw, "\n") {
			if v, ok := strings.CutPrefix(line, "sluice_collector_inflight_body_bytes "); ok {
				var f float64
				fmt.Sscan(v, &f)
				return f
			}
		}
		t.Fatal("no sluice_collector_inflight_body_bytes metric")
		return 0
	}
	stop := make(chan struct{})
	peak := make(chan float64)
	go func() {
		var max float64
		for {
			select {
			case <-stop:
				peak <- max
				return
			default:
			}
			if g := gauge(); g > max {
				max = g
			}
		}
	}()
	codes := make(chan int, 64)
	for range 64 {
		go func() {
			// Chunked, so the collector cannot know the size and must
			// reserve the whole batch limit.
			req, _ := http.NewRequest("POST", h.srv.URL+"/api/v1/collect/batch", io.MultiReader(strings.NewReader(body)))
			req.Header.Set("Content-Type", "application/json")
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	for range 64 {
		if code := <-codes; code != http.StatusOK {
			t.Errorf("a request under back-pressure was answered %d, want 200", code)
		}
	}
	close(stop)
	got := <-peak
	if got > budget {
		t.Errorf("peak in-flight body bytes %v > budget %d", got, budget)
	}
	if got < 256<<10 {
		t.Errorf("peak in-flight body bytes %v: the flood never reached the collector", got)
	}
	if g := gauge(); g != 0 {
		t.Errorf("in-flight body bytes after the flood = %v, want 0", g)
	}
}

// runCollector runs the harness's collector as a real server, returning its
// address and a function that stops it and returns Run's error.
func runCollector(t *testing.T, mutate func(*Config)) (*harness, string, func() error) {
	t.Helper()
	h := newHarness(t, func(c *Config) {
		c.Addr = "127.0.0.1:0"
		if mutate != nil {
			mutate(c)
		}
	})
	addr, err := h.col.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.col.Run(ctx) }()
	return h, addr.String(), func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of shutdown")
			return nil
		}
	}
}

func TestSlowClientIsCutOff(t *testing.T) {
	_, addr, stop := runCollector(t, func(c *Config) { c.ReadHeaderTimeout = 300 * time.Millisecond })
	defer stop()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Half a request line, then nothing: a slowloris.
	conn.Write([]byte("POST /api/v1/collect HTTP/1.1\r\nHost: x\r\n"))
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(conn)
	if took := time.Since(start); err != nil || took > 3*time.Second {
		t.Errorf("slow client held the connection for %v (err %v); want it closed after the header timeout", took, err)
	}
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	h, addr, stop := runCollector(t, nil)
	// A request whose body is still arriving when shutdown begins.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/collect", pr)
	req.Header.Set("Content-Type", "application/json")
	answer := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answer <- 0
			return
		}
		resp.Body.Close()
		answer <- resp.StatusCode
	}()
	pw.Write([]byte(tripEvent[:20]))
	time.Sleep(200 * time.Millisecond) // the request is in flight
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(200 * time.Millisecond)
	pw.Write([]byte(tripEvent[20:]))
	pw.Close()
	if code := <-answer; code != http.StatusOK {
		t.Errorf("in-flight request during shutdown = %d, want 200", code)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run after shutdown: %v", err)
	}
	consume(t, h.addr, "sluice.raw", 1)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the collector still accepts connections after shutdown")
	}
}

// TestReasonCountersFromTheStart: every rejection reason's counter is there
// at 0 before the first rejection, for alerts and dashboards.
func TestReasonCountersFromTheStart(t *testing.T) {
	h := newHarness(t, nil)
	metrics := h.do("GET", "/metrics", nil).raw
	for _, reason := range []string{"invalid_json", "missing_field", "wrong_type", "empty_field", "event_too_large"} {
		if want := `sluice_collector_events_rejected_total{reason="` + reason + `"} 0`; !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestEdgeValidation: with validation schema, a payload that breaks its
// schema is answered 400 schema_violation with every violation, and
// dead-lettered; a valid one is 200; in a batch each event is judged alone.
// With the default (envelope), the same event is accepted.
func TestEdgeValidation(t *testing.T) {
	reg, err := schema.Load(fstest.MapFS{"checkout/1-0-0.json": {Data: []byte(`{"type":"object","required":["order_id","amount"],
		"properties":{"order_id":{"type":"string"},"amount":{"type":"number","minimum":0},"ts":{"type":"string","format":"date-time"}}}`)}})
	if err != nil {
		t.Fatal(err)
	}
	bad := `{"event_type":"checkout","schema_version":"1-0-0","payload":{"amount":-3,"ts":"yesterday"}}`
	good := `{"event_type":"checkout","schema_version":"1-0-0","payload":{"order_id":"o-1","amount":42.5,"ts":"2025-01-01T10:00:00Z"}}`
	unknown := `{"event_type":"refund","schema_version":"1-0-0","payload":{}}`

	h := newEdgeHarness(t, func(c *Config) { c.Validation = ValidateSchema }, &Edge{Schemas: reg, RejectUnknown: true})
	r := h.post("/api/v1/collect", bad)
	if r.code != 400 || r.body["error"] != "schema_violation" {
		t.Fatalf("bad event = %d %s", r.code, r.raw)
	}
	var paths []string
	for _, d := range r.body["details"].([]any) {
		paths = append(paths, d.(map[string]any)["path"].(string))
	}
	if diff := cmp.Diff([]string{"/payload", "/payload/amount", "/payload/ts"}, paths); diff != "" {
		t.Errorf("violations (-want +got):\n%s\n%s", diff, r.raw)
	}
	if r := h.post("/api/v1/collect", good); r.code != 200 {
		t.Errorf("good event = %d %s", r.code, r.raw)
	}
	if r := h.post("/api/v1/collect", unknown); r.code != 400 || r.body["error"] != "unknown_schema" {
		t.Errorf("event with no schema = %d %s", r.code, r.raw)
	}
	r = h.do("POST", "/api/v1/collect/batch", []byte(good+"\n"+bad+"\n"), "Content-Type", "application/x-ndjson")
	if r.code != 200 || r.body["accepted"] != float64(1) || r.body["rejected"] != float64(1) || !strings.Contains(r.raw, `"reason":"schema_violation"`) {
		t.Errorf("batch = %d %s", r.code, r.raw)
	}
	dead := consume(t, h.addr, "sluice.dlq", 3)
	reasons := map[string]int{}
	for _, d := range dead {
		reasons[string(d.Headers[1].Value)]++
	}
	if reasons["schema_violation"] != 2 || reasons["unknown_schema"] != 1 {
		t.Errorf("dead letters by reason %v", reasons)
	}

	envelopeOnly := newHarness(t, nil)
	if r := envelopeOnly.post("/api/v1/collect", bad); r.code != 200 {
		t.Errorf("with validation envelope, a schema violation = %d %s, want 200 (the enricher judges it)", r.code, r.raw)
	}
	if _, err := New(func() Config { c := DefaultConfig(); c.ID, c.Validation = "x", ValidateSchema; return c }(), h.prod,
		testLogger(t), prometheus.NewRegistry(), nil, nil); err == nil {
		t.Error("validation schema without a registry was accepted")
	}
}

// TestStreamOrder: requests of one stream (Sluice-Stream, Sluice-Sequence)
// reach every partition in their numbered order, even when a later one
// arrives first; a request without the headers is not held.
func TestStreamOrder(t *testing.T) {
	h := newHarness(t, nil)
	batch := func(seq int) []byte {
		var b []byte
		for i := range 30 {
			b = fmt.Appendf(b, `{"event_type":"t","schema_version":"1","payload":{"seq":%d,"i":%d}}`+"\n", seq, i)
		}
		return b
	}
	send := func(seq int) response {
		return h.do("POST", "/api/v1/collect/batch", batch(seq), "Content-Type", "application/x-ndjson",
			"Sluice-Stream", "replay-1", "Sluice-Sequence", strconv.Itoa(seq))
	}
	if r := send(1); r.code != 200 {
		t.Fatalf("request 1 = %d %s", r.code, r.raw)
	}
	third := make(chan response, 1)
	go func() { third <- send(3) }() // early: it must wait for 2
	time.Sleep(300 * time.Millisecond)
	if r := send(2); r.code != 200 {
		t.Fatalf("request 2 = %d %s", r.code, r.raw)
	}
	if r := <-third; r.code != 200 {
		t.Fatalf("request 3 = %d %s", r.code, r.raw)
	}
	last := map[int32]float64{} // by partition, the last (seq*1000 + i) seen
	for _, rec := range consume(t, h.addr, "sluice.raw", 90) {
		var ev struct {
			Payload struct{ Seq, I float64 } `json:"payload"`
		}
		json.Unmarshal(rec.Value, &ev)
		at := ev.Payload.Seq*1000 + ev.Payload.I
		if at < last[rec.Partition] {
			t.Fatalf("partition %d: seq %v event %v after seq %v: out of the stream's order",
				rec.Partition, ev.Payload.Seq, ev.Payload.I, math.Floor(last[rec.Partition]/1000))
		}
		last[rec.Partition] = at
	}
}

// TestNonFiniteNumbers posts events with NaN and ±Infinity, as Python's
// json.dumps writes pandas' missing floats: by default they are accepted
// with null stored in their place, and counted; set to reject, they are
// answered 400 non_finite_number with the path, and dead-lettered as sent.
func TestNonFiniteNumbers(t *testing.T) {
	event := func(id, fare string) string {
		return `{"event_type": "trip", "schema_version": "1-0-0", "event_id": "` + id + `", "payload": {"fare": ` + fare + `, "tip": 1.5}}`
	}
	payloads := func(recs []*kgo.Record) map[string]string {
		out := map[string]string{}
		for _, r := range recs {
			var v struct {
				EventID string          `json:"event_id"`
				Payload json.RawMessage `json:"payload"`
			}
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Fatalf("stored event is not JSON: %s", r.Value)
			}
			out[v.EventID] = string(v.Payload)
		}
		return out
	}
	t.Run("null", func(t *testing.T) {
		h := newHarness(t, nil)
		resp := h.post("/api/v1/collect", event("s", "NaN"))
		if resp.code != http.StatusOK || resp.body["non_finite"] != 1.0 {
			t.Fatalf("POST = %d %s, want 200 with non_finite 1", resp.code, resp.raw)
		}
		resp = h.post("/api/v1/collect/batch", "["+event("a1", "1")+","+event("a2", "-Infinity")+","+event("a3", "Infinity")+"]")
		var got batchResult
		json.Unmarshal([]byte(resp.raw), &got)
		if resp.code != http.StatusOK || got.Accepted != 3 || got.NonFinite != 2 {
			t.Fatalf("array batch = %d %s, want 3 accepted, 2 non-finite", resp.code, resp.raw)
		}
		resp = h.post("/api/v1/collect/batch", event("n1", "NaN")+"\n"+event("n2", "2")+"\n", "Content-Type", "application/x-ndjson")
		json.Unmarshal([]byte(resp.raw), &got)
		if resp.code != http.StatusOK || got.Accepted != 2 || got.NonFinite != 1 {
			t.Fatalf("NDJSON batch = %d %s, want 2 accepted, 1 non-finite", resp.code, resp.raw)
		}
		want := map[string]string{"s": `{"fare": null, "tip": 1.5}`, "a1": `{"fare": 1, "tip": 1.5}`, "a2": `{"fare": null, "tip": 1.5}`,
			"a3": `{"fare": null, "tip": 1.5}`, "n1": `{"fare": null, "tip": 1.5}`, "n2": `{"fare": 2, "tip": 1.5}`}
		if diff := cmp.Diff(want, payloads(consume(t, h.addr, "sluice.raw", 6))); diff != "" {
			t.Errorf("stored payloads (-want +got):\n%s", diff)
		}
		if n := testutil.ToFloat64(h.col.metrics.nonFinite); n != 4 {
			t.Errorf("sluice_collector_non_finite_numbers_total = %v, want 4", n)
		}
	})
	t.Run("reject", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.NonFinite = NonFiniteReject })
		resp := h.post("/api/v1/collect", event("s", "NaN"))
		details, _ := resp.body["details"].([]any)
		if resp.code != http.StatusBadRequest || resp.body["error"] != "non_finite_number" || len(details) != 1 ||
			details[0].(map[string]any)["path"] != "/payload/fare" || !strings.Contains(resp.raw, "send null") {
			t.Fatalf("POST = %d %s, want 400 non_finite_number at /payload/fare saying to send null", resp.code, resp.raw)
		}
		resp = h.post("/api/v1/collect/batch", "["+event("a1", "1")+","+event("a2", "-Infinity")+"]")
		var got batchResult
		json.Unmarshal([]byte(resp.raw), &got)
		if resp.code != http.StatusOK || got.Accepted != 1 || len(got.Errors) != 1 || got.Errors[0].Index != 1 ||
			got.Errors[0].Reason != "non_finite_number" || !strings.HasPrefix(got.Errors[0].Message, "/payload/fare: ") {
			t.Fatalf("array batch = %d %s, want element 1 rejected at /payload/fare", resp.code, resp.raw)
		}
		// The dead letters hold the events as sent.
		var originals []string
		for _, r := range consume(t, h.addr, "sluice.dlq", 2) {
			var f struct {
				Reason   string `json:"reason"`
				Original string `json:"original"`
			}
			json.Unmarshal(r.Value, &f)
			if f.Reason != "non_finite_number" {
				t.Errorf("dead letter reason %q", f.Reason)
			}
			originals = append(originals, f.Original)
		}
		slices.Sort(originals)
		if diff := cmp.Diff([]string{event("a2", "-Infinity"), event("s", "NaN")}, originals); diff != "" {
			t.Errorf("dead-lettered originals (-want +got):\n%s", diff)
		}
		if got := payloads(consume(t, h.addr, "sluice.raw", 1)); got["a1"] == "" {
			t.Errorf("raw topic holds %v, want a1", got)
		}
	})
}

// TestConcurrentRequestsKeepTheirRecords posts many single events and
// batches at once. A request's records come from slabs that later requests
// reuse once Kafka has answered, so every stored record must still be
// exactly the event its own request sent, under its own root id.
func TestConcurrentRequestsKeepTheirRecords(t *testing.T) {
	h := newHarness(t, nil)
	const workers, requests, perBatch = 8, 40, 5
	want := map[string]string{} // root id: the payload's n
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range requests {
				n := (w*requests + i) * perBatch
				event := func(n int) string {
					return fmt.Sprintf(`{"event_type":"t","schema_version":"1","payload":{"n":%d,"pad":%q}}`, n, strings.Repeat("x", n%300))
				}
				var ids []string
				if i%2 == 0 {
					r := h.post("/api/v1/collect", event(n))
					if r.code != http.StatusOK {
						t.Errorf("POST = %d %s", r.code, r.raw)
						return
					}
					ids = []string{r.body["root_id"].(string)}
				} else {
					var b strings.Builder
					for j := range perBatch {
						b.WriteString(event(n+j) + "\n")
					}
					r := h.do(http.MethodPost, "/api/v1/collect/batch", []byte(b.String()), "Content-Type", "application/x-ndjson")
					if r.code != http.StatusOK {
						t.Errorf("POST batch = %d %s", r.code, r.raw)
						return
					}
					for _, id := range r.body["root_ids"].([]any) {
						ids = append(ids, id.(string))
					}
				}
				mu.Lock()
				for j, id := range ids {
					want[id] = strconv.Itoa(n + j)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	got := map[string]string{}
	for _, rec := range consume(t, h.addr, "sluice.raw", len(want)) {
		var ev struct {
			RootID  string `json:"root_id"`
			Payload struct {
				N   json.Number `json:"n"`
				Pad string      `json:"pad"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(rec.Value, &ev); err != nil {
			t.Fatalf("stored value is not JSON: %v: %s", err, rec.Value)
		}
		n, _ := strconv.Atoi(string(ev.Payload.N))
		if string(rec.Key) != ev.RootID || headers(rec)["root_id"] != ev.RootID || len(ev.Payload.Pad) != n%300 {
			t.Fatalf("record mixes requests: key %s, header %s, value %s", rec.Key, headers(rec)["root_id"], rec.Value)
		}
		got[ev.RootID] = string(ev.Payload.N)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored events (-answered +stored):\n%s", diff)
	}
}
