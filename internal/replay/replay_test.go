package replay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/source"
)

// collector is an httptest stand-in for the collector's batch and single
// endpoints that records the event ids it accepted. With flaky set it
// answers a share of requests with 503, 500 or 429, or drops the
// connection, before or after taking the events.
type collector struct {
	mu       sync.Mutex
	accepted map[string]int
	flaky    bool
	reject   string // event ids containing this are rejected as invalid
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var lines [][]byte
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	roll := rand.IntN(10)
	if c.flaky && roll < 4 {
		switch roll {
		case 0:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 1:
			w.WriteHeader(http.StatusInternalServerError)
		case 2:
			w.WriteHeader(http.StatusTooManyRequests)
		case 3:
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}
		return
	}
	type batchError struct {
		Index  int    `json:"index"`
		Reason string `json:"reason"`
	}
	var errs []batchError
	for i, l := range lines {
		var ev struct {
			EventID string `json:"event_id"`
		}
		if json.Unmarshal(l, &ev) != nil || ev.EventID == "" {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		if c.reject != "" && strings.Contains(ev.EventID, c.reject) {
			errs = append(errs, batchError{i, "invalid_type"})
			continue
		}
		c.accepted[ev.EventID]++
	}
	if c.flaky && roll == 4 { // taken, but the answer is lost: sent again
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"accepted": len(lines) - len(errs), "rejected": len(errs), "errors": errs})
}

func writeNDJSON(t *testing.T, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rows.ndjson")
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"i":%d,"s":"x"}`+"\n", i)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFlakyCollectorLosesNothing replays through a collector that fails
// 40% of requests in every way and loses half of the answers it does
// take: every event is accepted at least once, none is in --failed-out.
func TestFlakyCollectorLosesNothing(t *testing.T) {
	c := &collector{accepted: map[string]int{}, flaky: true}
	srv := httptest.NewServer(c)
	defer srv.Close()
	src, err := source.New(writeNDJSON(t, 3000), "")
	if err != nil {
		t.Fatal(err)
	}
	var failed bytes.Buffer
	cfg := DefaultConfig()
	cfg.Collector, cfg.EventType, cfg.Batch, cfg.FailedOut = srv.URL, "row", 50, &failed
	cfg.Backoff, cfg.MaxBackoff, cfg.Retries = time.Millisecond, 5*time.Millisecond, 30
	st := &Stats{}
	if err := Run(t.Context(), cfg, []*source.Source{src}, []*Stats{st}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3000; i++ {
		if c.accepted[fmt.Sprintf("rows:%d", i)] == 0 {
			t.Fatalf("event rows:%d was lost", i)
		}
	}
	if failed.Len() != 0 || st.Failed.Load() != 0 || st.Accepted.Load() != 3000 {
		t.Errorf("failed %d, accepted %d, failed-out %q", st.Failed.Load(), st.Accepted.Load(), failed.String())
	}
	if st.Retried.Load() == 0 {
		t.Error("no request was retried against a flaky collector")
	}
}

// TestFailedOutHoldsWhatNeverSucceeded: rejected events and events the
// collector never took are in --failed-out with their reason, and only they.
func TestFailedOutHoldsWhatNeverSucceeded(t *testing.T) {
	c := &collector{accepted: map[string]int{}, reject: ":7"} // rows:7, rows:70..79, ...
	srv := httptest.NewServer(c)
	src, err := source.New(writeNDJSON(t, 100), "")
	if err != nil {
		t.Fatal(err)
	}
	var failed bytes.Buffer
	cfg := DefaultConfig()
	cfg.Collector, cfg.EventType, cfg.Batch, cfg.FailedOut = srv.URL, "row", 10, &failed
	st := &Stats{}
	if err := Run(t.Context(), cfg, []*source.Source{src}, []*Stats{st}); err != nil {
		t.Fatal(err)
	}
	srv.Close() // now nothing succeeds
	cfg.Retries, cfg.Backoff = 1, time.Millisecond
	st2 := &Stats{}
	src.Name = "again"
	if err := Run(t.Context(), cfg, []*source.Source{src}, []*Stats{st2}); err != nil {
		t.Fatal(err)
	}
	var got []string
	reasons := map[string]int{}
	sc := bufio.NewScanner(&failed)
	for sc.Scan() {
		var f struct {
			Reason string `json:"reason"`
			Event  struct {
				EventID string `json:"event_id"`
			} `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("failed-out line %q: %v", sc.Text(), err)
		}
		got = append(got, f.Event.EventID)
		reasons[f.Reason]++
	}
	var want []string
	for i := 1; i <= 100; i++ {
		if strings.Contains(fmt.Sprintf("rows:%d", i), ":7") {
			want = append(want, fmt.Sprintf("rows:%d", i))
		}
	}
	for i := 1; i <= 100; i++ {
		want = append(want, fmt.Sprintf("again:%d", i))
	}
	slicesSort(got)
	slicesSort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("failed-out event ids (-want +got):\n%s", diff)
	}
	if reasons["invalid_type"] != 11 || reasons["gave_up"] != 100 {
		t.Errorf("reasons %v, want 11 invalid_type and 100 gave_up", reasons)
	}
	if st.Rejected.Load() != 11 || st.Accepted.Load() != 89 || st2.Failed.Load() != 100 {
		t.Errorf("rejected %d accepted %d failed %d", st.Rejected.Load(), st.Accepted.Load(), st2.Failed.Load())
	}
}

func slicesSort(s []string) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

// TestSourcesOverHTTP reads the TLC Parquet sample with range requests and
// a gzipped CSV streamed, both from an httptest server, with CSV columns
// typed.
func TestSourcesOverHTTP(t *testing.T) {
	dir := t.TempDir()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("\ufeffC/A,ENTRIES,EXITS     ,DATE\nA002,7,3,05/27/2023\nA003,,4.0,05/28/2023\n"))
	zw.Close()
	os.WriteFile(filepath.Join(dir, "t.csv.gz"), gz.Bytes(), 0o644)
	data, err := os.ReadFile("../sample/data/yellow_tripdata_2025-02_sample5000.parquet")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "trips.parquet"), data, 0o644)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()

	src, err := source.New(srv.URL+"/trips.parquet", "")
	if err != nil {
		t.Fatal(err)
	}
	n := int64(0)
	if err := src.Rows(t.Context(), nil, func(i int64, row []byte) error {
		n = i
		if _, _, err := event.ObjectMembers(row, "", nil, nil); err != nil {
			t.Fatalf("row %d is not an object: %s", i, row)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 5000 {
		t.Errorf("read %d rows over HTTP, want 5000", n)
	}

	src, err = source.New(srv.URL+"/t.csv.gz", "")
	if err != nil {
		t.Fatal(err)
	}
	src.Columns, src.Strict = map[string]string{"ENTRIES": "int", "EXITS": "int", "DATE": "timestamp"}, true
	var rows []string
	if err := src.Rows(t.Context(), nil, func(_ int64, row []byte) error {
		rows = append(rows, string(row))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"C/A":"A002","ENTRIES":7,"EXITS":3,"DATE":"2023-05-27T00:00:00"}`,
		`{"C/A":"A003","ENTRIES":null,"EXITS":4,"DATE":"2023-05-28T00:00:00"}`,
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("csv rows (-want +got):\n%s", diff)
	}
	if src.Name != "t" {
		t.Errorf("name %q, want t", src.Name)
	}

	gz.Reset()
	zw = gzip.NewWriter(&gz)
	zw.Write([]byte(`{"a":1}` + "\n" + `{"a":2}` + "\n"))
	zw.Close()
	os.WriteFile(filepath.Join(dir, "e.ndjson.gz"), gz.Bytes(), 0o644)
	if src, err = source.New(srv.URL+"/e.ndjson.gz", ""); err != nil {
		t.Fatal(err)
	}
	rows = nil
	if err := src.Rows(t.Context(), nil, func(_ int64, row []byte) error {
		rows = append(rows, string(row))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{`{"a":1}`, `{"a":2}`}, rows); diff != "" || src.Name != "e" {
		t.Errorf("ndjson.gz rows (-want +got):\n%s (name %q)", diff, src.Name)
	}
}

// TestTimeWarp paces rows by their event time, sped up: 2 s of event time
// at 10× takes about 0.2 s; a stray earlier row does not wait.
func TestTimeWarp(t *testing.T) {
	c := &collector{accepted: map[string]int{}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	p := filepath.Join(t.TempDir(), "warp.ndjson")
	os.WriteFile(p, []byte(`{"at":"2025-01-01T00:00:00"}
{"at":"2024-12-31T23:00:00"}
{"at":"2025-01-01T00:00:01"}
{"at":1735689602}
`), 0o644)
	src, err := source.New(p, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Collector, cfg.EventType, cfg.Batch, cfg.TimeWarp, cfg.TimeField = srv.URL, "tick", 1, 10, "at"
	start := time.Now()
	if err := Run(t.Context(), cfg, []*source.Source{src}, []*Stats{{}}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 180*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("2 s of event time at 10x took %v, want about 200 ms", took)
	}
	if len(c.accepted) != 4 {
		t.Errorf("accepted %d rows, want 4", len(c.accepted))
	}
}

func TestKafkaRecord(t *testing.T) {
	key, val, err := kafkaRecord([]byte(`{"C/A":"A002","UNIT":"R051","NOTE":"a, \"b\"","ENTRIES":2040,"X":null}`), "UNIT", "csv")
	if err != nil {
		t.Fatal(err)
	}
	if string(key) != "R051" || string(val) != `A002,R051,"a, ""b""",2040,` {
		t.Errorf("key %q value %q", key, val)
	}
	if _, _, err := kafkaRecord([]byte(`{"a":1}`), "UNIT", "json"); err == nil {
		t.Error("a row without its key field was accepted")
	}
}

// TestBadRowsAreKept: rows that cannot be read are counted as rejected and
// kept in --failed-out, the others are sent, and ids stay row positions.
func TestBadRowsAreKept(t *testing.T) {
	c := &collector{accepted: map[string]int{}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.ndjson"), []byte("{\"x\":1}\nnot json\n\n{\"x\":3}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.csv"), []byte("n,m\n1,2\n3\n4,x\n5,6\n"), 0o644)
	var srcs []*source.Source
	for _, name := range []string{"a.ndjson", "b.csv"} {
		src, err := source.New(filepath.Join(dir, name), "")
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, src)
	}
	srcs[1].Columns = map[string]string{"m": "int"}
	var failed bytes.Buffer
	cfg := DefaultConfig()
	cfg.Collector, cfg.EventType, cfg.FailedOut = srv.URL, "row", &failed
	stats := []*Stats{{}, {}}
	if err := Run(t.Context(), cfg, srcs, stats); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for id := range c.accepted {
		ids = append(ids, id)
	}
	slicesSort(ids)
	if diff := cmp.Diff([]string{"a:1", "a:3", "b:1", "b:4"}, ids); diff != "" {
		t.Errorf("accepted ids (-want +got):\n%s", diff)
	}
	if n := strings.Count(failed.String(), `"reason":"unreadable_row"`); n != 3 {
		t.Errorf("failed-out has %d unreadable rows, want 3:\n%s", n, failed.String())
	}
	if stats[0].Rejected.Load() != 1 || stats[1].Rejected.Load() != 2 || stats[1].Rows.Load() != 4 {
		t.Errorf("rejected %d and %d, rows %d", stats[0].Rejected.Load(), stats[1].Rejected.Load(), stats[1].Rows.Load())
	}
}

// TestRequestsAreNumbered: a producer's concurrent requests are one stream
// numbered in file order (the collector keeps that order), the first
// answered before the rest are sent; --unordered sends no numbers.
func TestRequestsAreNumbered(t *testing.T) {
	for _, unordered := range []bool{false, true} {
		type seen struct {
			stream string
			seq    int
			first  int // the index of the request's first row
		}
		var (
			mu       sync.Mutex
			got      []seen
			inflight int
			overlap  bool // a request arrived while request 1 was in flight
		)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var ev struct {
				Payload struct{ I int } `json:"payload"`
			}
			line, _ := bufio.NewReader(r.Body).ReadBytes('\n')
			json.Unmarshal(line, &ev)
			seq, _ := strconv.Atoi(r.Header.Get("Sluice-Sequence"))
			mu.Lock()
			got = append(got, seen{r.Header.Get("Sluice-Stream"), seq, ev.Payload.I})
			if inflight > 0 && len(got) == 2 {
				overlap = true
			}
			inflight++
			mu.Unlock()
			io.Copy(io.Discard, r.Body)
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			inflight--
			mu.Unlock()
			json.NewEncoder(w).Encode(map[string]any{"accepted": 10})
		}))
		src, err := source.New(writeNDJSON(t, 400), "")
		if err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.Collector, cfg.EventType, cfg.Batch, cfg.Concurrency, cfg.Unordered = srv.URL, "row", 10, 4, unordered
		if err := Run(t.Context(), cfg, []*source.Source{src}, []*Stats{{}}); err != nil {
			t.Fatal(err)
		}
		srv.Close()
		if len(got) != 40 {
			t.Fatalf("unordered=%v: %d requests, want 40", unordered, len(got))
		}
		if unordered {
			for _, s := range got {
				if s.stream != "" || s.seq != 0 {
					t.Fatalf("--unordered sent stream %q sequence %d", s.stream, s.seq)
				}
			}
			continue
		}
		if overlap {
			t.Error("a second request was sent before the first was answered")
		}
		for _, s := range got {
			if s.stream == "" || s.stream != got[0].stream {
				t.Fatalf("requests in streams %q and %q, want one", got[0].stream, s.stream)
			}
			if s.first != (s.seq-1)*10 {
				t.Errorf("request %d starts at row %d, want %d: the numbers do not follow the file", s.seq, s.first, (s.seq-1)*10)
			}
		}
	}
}
