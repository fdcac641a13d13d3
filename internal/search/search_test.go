package search

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/searchtest"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

// TestConformance runs the sink conformance suite on the search sink,
// against a real OpenSearch node behind a proxy that can play the server
// down.
func TestConformance(t *testing.T) {
	srv := searchtest.Shared(t)
	sinktest.Run(t, func(t *testing.T) *sinktest.Destination {
		prefix := searchtest.Prefix(t)
		p := newProxy(t, srv.URL)
		cfg := testConfig(p.URL, prefix)
		cfg.Topics = []string{sinktest.Topic}
		os := node{t: t, url: srv.URL}
		return &sinktest.Destination{
			New: func(t *testing.T, env sink.Env) sink.Sink {
				s, err := New(cfg, env.DLQTopic, nil, env.Logger, env.Metrics)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Held:   func(t *testing.T) map[string]int { return os.rootIDs(prefix + "conformance*") },
			Stop:   p.down.Store,
			Points: []string{PointBulkSent},
		}
	})
}

// testConfig is a config for the tests: indices and offsets under prefix.
func testConfig(url, prefix string) Config {
	cfg := DefaultConfig()
	cfg.URLs = []string{url}
	cfg.Index = prefix + "{event_type}-{yyyy.MM.dd}"
	cfg.OffsetsIndex = prefix + "offsets"
	cfg.Replicas = 0
	return cfg
}

// proxy stands between the sink and the server; down makes it drop every
// connection, as a server that is down does.
type proxy struct {
	*httptest.Server
	down atomic.Bool
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		body, _ := io.ReadAll(r.Body)
		relay(w, r, target, body, nil)
	}))
	t.Cleanup(p.Close)
	return p
}

// relay sends on to target a request a test's proxy took (its body read),
// and answers with the server's answer, through edit when set.
func relay(w http.ResponseWriter, r *http.Request, target string, body []byte, edit func(status int, answer []byte) []byte) {
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	req.Header.Del("Accept-Encoding") // the answer is read here, so plain
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if edit != nil {
		answer = edit(resp.StatusCode, answer)
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(answer)
}

// node reads what the server holds, for the tests' checks.
type node struct {
	t   testing.TB
	url string
}

// do sends one request to the node. A 503 is asked again for up to 30 s:
// a search or refresh that reaches an index created a moment ago, whose
// shards have not started yet, fails with "all shards failed", and that
// is the node catching up, not an answer.
func (n node) do(method, path string, body any) (int, []byte) {
	n.t.Helper()
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			n.t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(n.t.Context(), method, n.url+path, rd)
		if err != nil {
			n.t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			n.t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			n.t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return resp.StatusCode, b
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// get decodes a GET's JSON answer into v, failing on an error status.
func (n node) get(path string, body, v any) {
	n.t.Helper()
	method := http.MethodGet
	if body != nil {
		method = http.MethodPost
	}
	status, b := n.do(method, path, body)
	if status != http.StatusOK {
		n.t.Fatalf("%s %s: status %d: %s", method, path, status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		n.t.Fatalf("%s: %v", path, err)
	}
}

// rootIDs counts, by root_id, the documents of the indices matching
// pattern, read by scrolling through them all.
func (n node) rootIDs(pattern string) map[string]int {
	n.t.Helper()
	out := map[string]int{}
	if status, b := n.do(http.MethodPost, "/"+pattern+"/_refresh?allow_no_indices=true", nil); status != http.StatusOK {
		n.t.Fatalf("refresh %s: status %d: %s", pattern, status, b)
	}
	type page struct {
		ScrollID string `json:"_scroll_id"`
		Hits     struct {
			Hits []struct {
				Source struct {
					RootID string `json:"root_id"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	var p page
	n.get("/"+pattern+"/_search?scroll=1m&allow_no_indices=true", map[string]any{"size": 5000, "_source": []string{"root_id"}}, &p)
	for len(p.Hits.Hits) > 0 {
		for _, h := range p.Hits.Hits {
			out[h.Source.RootID]++
		}
		id := p.ScrollID
		p = page{}
		n.get("/_search/scroll", map[string]any{"scroll": "1m", "scroll_id": id}, &p)
	}
	return out
}

// count is the documents of the indices matching pattern, refreshed.
func (n node) count(pattern string) int {
	n.t.Helper()
	n.do(http.MethodPost, "/"+pattern+"/_refresh?allow_no_indices=true", nil)
	var c struct {
		Count int `json:"count"`
	}
	n.get("/"+pattern+"/_count?allow_no_indices=true", nil, &c)
	return c.Count
}

// fieldType is the mapped type of a field (a dotted path) in index.
func (n node) fieldType(index, field string) string {
	n.t.Helper()
	var got map[string]struct {
		Mappings map[string]struct {
			Mapping map[string]struct {
				Type string `json:"type"`
			} `json:"mapping"`
		} `json:"mappings"`
	}
	n.get("/"+index+"/_mapping/field/"+field, nil, &got)
	for _, idx := range got {
		for _, m := range idx.Mappings {
			for _, v := range m.Mapping {
				return v.Type
			}
		}
	}
	return ""
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newSearch(t testing.TB, cfg Config, schemas Schemas) *Search {
	t.Helper()
	s, err := New(cfg, "dlq", schemas, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIndexName(t *testing.T) {
	for in, want := range map[string]string{
		"TripEvent":    "tripevent",
		"_private":     "private",
		"a b/c*d":      "a_b_c_d",
		"":             "unknown",
		"page-view.v2": "page-view.v2",
	} {
		if got := indexName(in); got != want {
			t.Errorf("indexName(%q) = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"{event_type", "{yyyy.MM.ddx}", "Trips-{event_type}", "a b{event_type}"} {
		if _, err := parseIndex(bad); err == nil {
			t.Errorf("parseIndex(%q) = nil error", bad)
		}
	}
	p, err := parseIndex("ev-{event_type}-{yyyy.MM.dd}")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.wildcard("trip"); got != "ev-trip-*" {
		t.Errorf("wildcard = %q", got)
	}
	at := time.Date(2025, 1, 2, 23, 59, 0, 0, time.FixedZone("", -3600))
	if got := p.name("trip", at); got != "ev-trip-2025.01.03" {
		t.Errorf("name = %q, want the UTC date", got)
	}
}

// The status never shows a password, not even one written in a URL.
func TestDetailsHideSecrets(t *testing.T) {
	cfg := DefaultConfig()
	cfg.URLs = []string{"https://sluice:s3cret@search-1:9200", "http://search-2:9200"}
	b, err := json.Marshal(newSearch(t, cfg, nil).Details())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("s3cret")) || !bytes.Contains(b, []byte("search-2:9200")) {
		t.Errorf("details %s", b)
	}
}

// Into a data stream, an event's own @timestamp is kept, never doubled:
// the server refuses a document with a key twice.
func TestOwnTimestampKept(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataStreams, cfg.Index = true, "logs-{event_type}"
	s := newSearch(t, cfg, nil)
	b := s.NewBuffer("events", 0).(*buffer)
	for _, v := range []string{`{"@timestamp":"2025-01-01T00:00:00Z","event_type":"log"}`, `{"event_type":"log","collector_tstamp":"2025-01-02T00:00:00Z"}`} {
		if _, err := b.Add(&kgo.Record{Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	first, second := string(b.source(&b.docs[0])), string(b.source(&b.docs[1]))
	if first != `{"@timestamp":"2025-01-01T00:00:00Z","event_type":"log"}` {
		t.Errorf("an event with its own @timestamp became %s", first)
	}
	if second != `{"event_type":"log","collector_tstamp":"2025-01-02T00:00:00Z","@timestamp":"2025-01-02T00:00:00.000000Z"}` {
		t.Errorf("an event without one became %s", second)
	}
}

// Requests in flight halve after a round the server pushed back on, down
// to one, and grow by one a clean round, up to in_flight.
func TestAdaptInFlight(t *testing.T) {
	cfg := DefaultConfig()
	cfg.InFlight = 8
	s := newSearch(t, cfg, nil)
	var got []int32
	for _, pushedBack := range []bool{true, true, true, true, false, false, false, false, false, false, false, false} {
		s.adapt(pushedBack)
		got = append(got, s.inFlight.Load())
	}
	if want := []int32{4, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8, 8}; !slices.Equal(got, want) {
		t.Errorf("in flight %v, want %v", got, want)
	}
}

// The templates of types whose index patterns overlap (page-* holds
// page-view-2025.01.01) have priorities apart: the server takes both,
// and each type's index gets its own template's mapping.
func TestOverlappingTemplates(t *testing.T) {
	srv := searchtest.Shared(t)
	prefix := searchtest.Prefix(t)
	s := newSearch(t, testConfig(srv.URL, prefix), nil)
	buf := s.NewBuffer("events", 0)
	for i, typ := range []string{"page", "page-view"} {
		v := fmt.Sprintf(`{"event_type":%q,"payload":{"n":%d},"collector_tstamp":"2025-01-01T00:00:00Z","root_id":"r%d"}`, typ, i, i)
		if _, err := buf.Add(&kgo.Record{Offset: int64(i), Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Write(t.Context(), &sink.Range{Topic: "events", Last: 1, Buffer: buf}); err != nil {
		t.Fatalf("Write with overlapping templates: %v", err)
	}
	n := node{t: t, url: srv.URL}
	if got := n.count(prefix + "page-view-*"); got != 1 {
		t.Errorf("page-view indices hold %d documents, want 1", got)
	}
	// page-view's own template wins; page's matches too, below it.
	var sim struct {
		Overlapping []struct {
			IndexPatterns []string `json:"index_patterns"`
		} `json:"overlapping"`
	}
	status, b := n.do(http.MethodPost, "/_index_template/_simulate_index/"+prefix+"page-view-2025.01.01", nil)
	if err := json.Unmarshal(b, &sim); status != http.StatusOK || err != nil {
		t.Fatalf("simulate: %d %s", status, b)
	}
	if len(sim.Overlapping) != 1 || !slices.Equal(sim.Overlapping[0].IndexPatterns, []string{prefix + "page-*"}) {
		t.Errorf("templates below page-view's: %+v, want page's alone", sim.Overlapping)
	}
}
