package console

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/dlq"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/lake/laketest"
	"github.com/sluicehq/sluice/internal/query"
)

// fixture is a console over an embedded broker holding raw events and
// dead letters, and a lake with one table.
type fixture struct {
	srv  *httptest.Server
	prod *kgo.Client
	cc   bus.ClientConfig
}

const (
	rawTopic = "sluice.raw"
	dlqTopic = "sluice.dlq"
	logTopic = "sluice.replays"
)

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	b, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: t.TempDir(), Partitions: 2}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cc := bus.ClientConfig{Brokers: []string{b.Addr()}}
	prod, err := bus.NewProducer(cc, bus.ProducerConfig{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	if err := bus.EnsureTopics(t.Context(), prod, 2, 1, rawTopic, dlqTopic); err != nil {
		t.Fatal(err)
	}
	store, cat := laketest.Open(t, t.TempDir())
	laketest.Commit(t, store, cat, "trip", "2025-01-01", 2,
		`{"event_type":"trip","collector_tstamp":"2025-01-01T00:00:00.000000Z","payload":{"zone":"JFK","fare":10.5}}`,
		`{"event_type":"trip","collector_tstamp":"2025-01-01T01:00:00.000000Z","payload":{"zone":"JFK","fare":2}}`,
		`{"event_type":"trip","collector_tstamp":"2025-01-01T02:00:00.000000Z","payload":{"zone":"LGA","fare":7}}`)
	qs, err := NewQueries(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := New(cfg, Deps{
		Status: func(context.Context) app.Status { return app.Status{InstanceID: "test-1", Ready: true} },
		Kafka:  cc, Raw: rawTopic, DLQ: dlqTopic,
		Replayer: dlq.New(cc, dlq.Topics{DLQ: dlqTopic, Raw: rawTopic, Log: logTopic}, logger),
		Lake: func(ctx context.Context) (*query.Engine, *lake.Catalog, func(), error) {
			eng, err := query.Open(ctx, store, cat, query.Options{})
			if err != nil {
				return nil, nil, nil, err
			}
			return eng, cat, func() { eng.Close() }, nil
		},
		Queries: qs,
		Logger:  logger,
	})
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, prod: prod, cc: cc}
}

// do sends a request with key (if any) and decodes a JSON answer into out.
func (f *fixture) do(t *testing.T, method, path, key, body string, out any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, b)
		}
	}
	if resp.StatusCode >= 300 && out != nil {
		if e, ok := out.(*map[string]any); ok {
			_ = json.Unmarshal(b, e)
		}
	}
	return resp.StatusCode
}

func (f *fixture) deadLetters(t *testing.T, n int) {
	t.Helper()
	at := time.Now().UTC()
	var recs []*kgo.Record
	for i := range n {
		reason := []string{"enrichment_failed", "schema_violation"}[i%2]
		original := fmt.Sprintf(`{"event_type":"page_view","schema_version":"1-0-0","payload":{"i":%d,"url":"/p%d"},"collector_tstamp":%q,"root_id":"r%d","collector_id":"c1"}`,
			i, i, event.FormatTime(at), i)
		recs = append(recs, bus.DeadLetter(dlqTopic, event.NewFailed(event.StageEnricher, reason,
			[]event.FieldError{{Path: "/payload/url", Message: "not found"}}, fmt.Sprintf("r%d", i), []byte(original), at), nil))
	}
	if err := f.prod.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestDeadLettersPagingAndReplay(t *testing.T) {
	f := newFixture(t, Config{})
	f.deadLetters(t, 9)

	// Pages of 4, by partition and offset, each dead letter once.
	seen := map[string]bool{}
	after, pages := "", 0
	for {
		var page struct {
			DeadLetters []dlq.DeadLetter `json:"dead_letters"`
			Next        string           `json:"next"`
		}
		if code := f.do(t, "GET", "/api/v1/deadletters?limit=4&after="+after, "", "", &page); code != 200 {
			t.Fatalf("page %d: %d", pages, code)
		}
		pages++
		for _, d := range page.DeadLetters {
			if seen[d.RootID] {
				t.Errorf("%s on two pages", d.RootID)
			}
			seen[d.RootID] = true
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if len(seen) != 9 || pages != 3 {
		t.Fatalf("%d dead letters on %d pages, want 9 on 3", len(seen), pages)
	}
	var filtered struct {
		DeadLetters []dlq.DeadLetter `json:"dead_letters"`
	}
	f.do(t, "GET", "/api/v1/deadletters?reason=schema_violation&since=1h", "", "", &filtered)
	if len(filtered.DeadLetters) != 4 {
		t.Errorf("schema_violation: %d, want 4", len(filtered.DeadLetters))
	}
	var stats struct {
		Buckets []struct {
			Reason string `json:"reason"`
			Count  int    `json:"count"`
		} `json:"buckets"`
	}
	f.do(t, "GET", "/api/v1/deadletters/stats?since=1h&bucket=1h", "", "", &stats)
	counts := map[string]int{}
	for _, b := range stats.Buckets {
		counts[b.Reason] += b.Count
	}
	if diff := cmp.Diff(map[string]int{"enrichment_failed": 5, "schema_violation": 4}, counts); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}

	// A dry run, then the replay of the enrichment failures, then again.
	var rep dlq.Report
	f.do(t, "POST", "/api/v1/deadletters/replay", "", `{"reason":"enrichment_failed","dry_run":true}`, &rep)
	if rep.Matched != 5 || rep.Replayed != 5 || !rep.DryRun {
		t.Errorf("dry run %+v", rep)
	}
	f.do(t, "POST", "/api/v1/deadletters/replay", "", `{"reason":"enrichment_failed"}`, &rep)
	if rep.Replayed != 5 || rep.ID == "" {
		t.Errorf("replay %+v", rep)
	}
	f.do(t, "POST", "/api/v1/deadletters/replay", "", `{"reason":"enrichment_failed"}`, &rep)
	if rep.Replayed != 0 || rep.AlreadyReplayed != 5 {
		t.Errorf("replay again %+v: want nothing sent", rep)
	}

	// One fixed: sent once; the second try is 409.
	d := filtered.DeadLetters[0]
	path := fmt.Sprintf("/api/v1/deadletters/%d/%d", d.Partition, d.Offset)
	var one dlq.DeadLetter
	if code := f.do(t, "GET", path, "", "", &one); code != 200 || one.Reason != "schema_violation" || one.ReplayedIn != "" {
		t.Fatalf("GET %s: %d %+v", path, code, one)
	}
	fixed := `{"by":"alice","original":{"event_type":"page_view","schema_version":"1-0-0","payload":{"i":99,"url":"/fixed"}}}`
	if code := f.do(t, "POST", path+"/replay", "", fixed, &rep); code != 200 || rep.Replayed != 1 {
		t.Fatalf("replay the fixed one: %d %+v", code, rep)
	}
	var e map[string]any
	if code := f.do(t, "POST", path+"/replay", "", fixed, &e); code != http.StatusConflict || e["error"] != "already_replayed" {
		t.Errorf("replaying it again: %d %v, want 409 already_replayed", code, e)
	}
	if code := f.do(t, "POST", fmt.Sprintf("/api/v1/deadletters/%d/%d/replay", filtered.DeadLetters[1].Partition, filtered.DeadLetters[1].Offset), "",
		`{"original":{"event_type":"page_view"}}`, &e); code != http.StatusUnprocessableEntity {
		t.Errorf("a fix that is no event: %d %v, want 422", code, e)
	}
	if code := f.do(t, "GET", "/api/v1/deadletters/0/999999", "", "", &e); code != http.StatusNotFound {
		t.Errorf("a dead letter past the end: %d", code)
	}

	var replays struct {
		Replays []replaySummary `json:"replays"`
	}
	f.do(t, "GET", "/api/v1/replays", "", "", &replays)
	if len(replays.Replays) != 2 || replays.Replays[0].DeadLetters != 1 || replays.Replays[0].Fixed != 1 || replays.Replays[1].DeadLetters != 5 ||
		replays.Replays[0].By != "alice (console at 127.0.0.1)" || replays.Replays[1].By != "console at 127.0.0.1" {
		t.Errorf("replays, newest first: %+v", replays.Replays)
	}

	// The raw topic holds each replayed event once: 5 and the fixed one.
	var page recordsPage
	total := 0
	for p := range 2 {
		f.do(t, "GET", fmt.Sprintf("/api/v1/topics/%s/records?partition=%d&limit=100", rawTopic, p), "", "", &page)
		total += len(page.Records)
	}
	if total != 6 {
		t.Errorf("raw topic: %d records, want 6", total)
	}
}

func TestTopicRecordsPaging(t *testing.T) {
	f := newFixture(t, Config{})
	var recs []*kgo.Record
	for i := range 25 {
		recs = append(recs, &kgo.Record{Topic: rawTopic, Partition: 0, Key: fmt.Appendf(nil, "k%d", i),
			Value: fmt.Appendf(nil, `{"event_type":"page_view","i":%d}`, i), Headers: []kgo.RecordHeader{{Key: "event_type", Value: []byte("page_view")}}})
	}
	recs = append(recs, &kgo.Record{Topic: rawTopic, Partition: 0, Value: []byte("not json")})
	cl, err := bus.NewClient(f.cc, slog.New(slog.DiscardHandler), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var topics struct {
		Topics []topicInfo `json:"topics"`
	}
	f.do(t, "GET", "/api/v1/topics", "", "", &topics)
	if len(topics.Topics) != 2 || topics.Topics[1].Topic != rawTopic || topics.Topics[1].Offsets != 26 {
		t.Fatalf("topics %+v", topics.Topics)
	}
	var page recordsPage
	next, got := int64(0), 0
	for range 10 {
		f.do(t, "GET", fmt.Sprintf("/api/v1/topics/%s/records?partition=0&offset=%d&limit=10", rawTopic, next), "", "", &page)
		got += len(page.Records)
		if len(page.Records) > 0 && page.Records[0].Offset != next {
			t.Errorf("page from %d starts at %d", next, page.Records[0].Offset)
		}
		next = page.Next
		if next >= page.End {
			break
		}
	}
	if got != 26 || page.End != 26 {
		t.Errorf("read %d records, end %d; want 26", got, page.End)
	}
	if last := page.Records[len(page.Records)-1]; string(last.Value) != `"not json"` || page.Records[0].Headers["event_type"] != "page_view" {
		t.Errorf("last record %s, headers %v", last.Value, page.Records[0].Headers)
	}
	f.do(t, "GET", fmt.Sprintf("/api/v1/topics/%s/records?partition=0&time=%s&limit=5", rawTopic, time.Now().Add(time.Hour).Format(time.RFC3339)), "", "", &page)
	if len(page.Records) != 0 || page.Next != 26 {
		t.Errorf("records after an hour from now: %d, next %d", len(page.Records), page.Next)
	}
	var e map[string]any
	if code := f.do(t, "GET", "/api/v1/topics/nope/records", "", "", &e); code != http.StatusNotFound {
		t.Errorf("a missing topic: %d %v", code, e)
	}
}

// TestLiveTail reads the live stream, filtered by a field's value, and
// resumes it from its last id without losing or repeating a record.
func TestLiveTail(t *testing.T) {
	f := newFixture(t, Config{})
	open := func(from string) (*bufio.Reader, func()) {
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/api/v1/topics/"+rawTopic+"/live?field=zone&value=JFK&from="+from, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("live: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return bufio.NewReader(resp.Body), func() { cancel(); resp.Body.Close() }
	}
	// next reads events until one with data; it returns its id and data.
	next := func(r *bufio.Reader) (id, data string) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read the stream: %v", err)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: ") && line != "data: {}":
				data = line[6:]
			case line == "" && data != "":
				return id, data
			}
		}
	}
	produce := func(zone string, i int) {
		v := fmt.Sprintf(`{"event_type":"trip","payload":{"zone":%q,"i":%d}}`, zone, i)
		if err := f.prod.ProduceSync(t.Context(), &kgo.Record{Topic: rawTopic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	r, stop := open("")
	// The stream starts at the end: the ready event comes first.
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "retry:") {
		t.Fatalf("first line %q", line)
	}
	produce("LGA", 0)
	produce("JFK", 1)
	id, data := next(r)
	if !strings.Contains(data, `\"i\":1`) && !strings.Contains(data, `"i":1`) {
		t.Fatalf("first JFK event: %s", data)
	}
	stop()
	// Paused: two more arrive, one of them JFK; resumed from the id.
	produce("JFK", 2)
	produce("EWR", 3)
	produce("JFK", 4)
	r, stop = open(id)
	defer stop()
	for _, want := range []string{`"i":2`, `"i":4`} {
		if _, data := next(r); !strings.Contains(data, want) {
			t.Errorf("after resuming: %s, want %s", data, want)
		}
	}
}

func TestLakeAndQuery(t *testing.T) {
	f := newFixture(t, Config{})
	var tables struct {
		Tables []query.Table `json:"tables"`
	}
	f.do(t, "GET", "/api/v1/lake/tables", "", "", &tables)
	if len(tables.Tables) != 1 || tables.Tables[0].Name != "trip" || tables.Tables[0].Rows != 3 {
		t.Fatalf("tables %+v", tables.Tables)
	}
	var d tableDetail
	if code := f.do(t, "GET", "/api/v1/lake/tables/trip", "", "", &d); code != 200 {
		t.Fatalf("table: %d", code)
	}
	if d.Rows != 3 || len(d.Files) != 1 || len(d.Snapshots) != 1 || d.Snapshots[0].ID == "" || len(d.Partitions) != 1 ||
		d.Partitions[0].Partition != "2025-01-01" || len(d.PartitionedBy) != 1 {
		t.Errorf("detail %+v", d)
	}
	var page queryPage
	f.do(t, "GET", "/api/v1/lake/tables/trip/preview?limit=2", "", "", &page)
	if len(page.Rows) != 2 || !page.More {
		t.Errorf("preview %+v", page)
	}
	sql := `{"sql":"SELECT zone, sum(fare) AS fare FROM trip GROUP BY zone ORDER BY zone","limit":1,"offset":1}`
	f.do(t, "POST", "/api/v1/query", "", sql, &page)
	if diff := cmp.Diff([][]any{{"LGA", 7.0}}, page.Rows); diff != "" || page.More || page.Offset != 1 {
		t.Errorf("query page 2 (-want +got):\n%s (more %v)", diff, page.More)
	}
	var e map[string]any
	for _, bad := range []string{
		`{"sql":"COPY (SELECT 1) TO '/tmp/x.csv'"}`,
		`{"sql":"SELECT * FROM read_csv('/etc/hostname')"}`,
		`{"sql":"SELECT * FROM nope"}`,
		`{"sql":""}`,
		`not json`,
	} {
		if code := f.do(t, "POST", "/api/v1/query", "", bad, &e); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
	resp, err := http.Get(f.srv.URL + "/api/v1/query.csv?sql=" + strings.ReplaceAll("SELECT zone, fare FROM trip ORDER BY fare", " ", "%20"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "zone,fare\nJFK,2\nLGA,7\nJFK,10.5\n" {
		t.Errorf("csv:\n%s", b)
	}

	// Saved queries.
	if code := f.do(t, "POST", "/api/v1/queries", "", `{"name":"fares","sql":"SELECT 1","chart":{"kind":"bar","x":"a","y":"b"}}`, nil); code != 200 {
		t.Errorf("save: %d", code)
	}
	var saved struct {
		Queries []SavedQuery `json:"queries"`
	}
	f.do(t, "GET", "/api/v1/queries", "", "", &saved)
	if len(saved.Queries) != 1 || saved.Queries[0].Name != "fares" || !strings.Contains(string(saved.Queries[0].Chart), `"bar"`) {
		t.Errorf("saved %+v", saved.Queries)
	}
	if code := f.do(t, "DELETE", "/api/v1/queries/fares", "", "", nil); code != http.StatusNoContent {
		t.Errorf("delete: %d", code)
	}
	if code := f.do(t, "DELETE", "/api/v1/queries/fares", "", "", nil); code != http.StatusNotFound {
		t.Errorf("delete again: %d", code)
	}
	// The batch layer has not run: empty pages.
	f.do(t, "GET", "/api/v1/jobs/runs", "", "", &page)
	if len(page.Rows) != 0 {
		t.Errorf("job runs %+v", page)
	}
}

func TestKeys(t *testing.T) {
	f := newFixture(t, Config{ReadKeys: []string{"reader"}, AdminKeys: []string{"admin"}})
	var who map[string]any
	for _, tc := range []struct {
		method, path, key, body string
		want                    int
	}{
		{"GET", "/api/v1/whoami", "", "", 401},
		{"GET", "/api/v1/whoami", "wrong", "", 401},
		{"GET", "/api/v1/deadletters", "reader", "", 200},
		{"GET", "/api/v1/deadletters?key=reader", "", "", 200}, // as EventSource sends it
		{"POST", "/api/v1/deadletters/replay", "reader", `{"dry_run":true}`, 403},
		{"POST", "/api/v1/deadletters/replay", "admin", `{"dry_run":true}`, 200},
		{"POST", "/api/v1/query", "reader", `{"sql":"SELECT 1"}`, 200},
		{"POST", "/api/v1/queries", "reader", `{"name":"x","sql":"SELECT 1"}`, 403},
		{"DELETE", "/api/v1/deadletters", "admin", "", 405},
		{"GET", "/", "", "", 200}, // the page itself asks for a key
		{"GET", "/api/v1/nope", "admin", "", 404},
	} {
		var out any = &who
		if tc.path == "/" {
			out = nil // HTML
		}
		if code := f.do(t, tc.method, tc.path, tc.key, tc.body, out); code != tc.want {
			t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.path, tc.key, code, tc.want)
		}
	}
	f.do(t, "GET", "/api/v1/whoami", "reader", "", &who)
	if who["role"] != "read" || who["auth"] != true {
		t.Errorf("whoami with a read key: %v", who)
	}
}

// TestOpenAPICoversRoutes keeps the console's routes and the OpenAPI
// document (internal/collector/openapi.json) in step: each route is
// documented, tagged console, and each path so tagged is served.
func TestOpenAPICoversRoutes(t *testing.T) {
	b, err := os.ReadFile("../collector/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Tags []string `json:"tags"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if slices.Contains(op.Tags, "console") && path != "/" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	served := map[string]bool{}
	for _, r := range routes {
		served[r.method+" "+r.pattern] = true
	}
	if diff := cmp.Diff(documented, served); diff != "" {
		t.Errorf("documented (-) and served (+) console routes differ:\n%s", diff)
	}
	f := newFixture(t, Config{})
	for key := range served {
		method, pattern, _ := strings.Cut(key, " ")
		if method == "GET" && strings.HasSuffix(pattern, "/live") {
			continue // a stream: TestLiveTail
		}
		path := strings.NewReplacer("{topic}", rawTopic, "{partition}", "0", "{offset}", "0", "{table}", "trip", "{name}", "x").Replace(pattern)
		var e map[string]any
		f.do(t, method, path, "", "{}", &e)
		if e["message"] == "no such route; see /api/v1/docs/" {
			t.Errorf("%s %s is documented but not served", method, path)
		}
	}
}
