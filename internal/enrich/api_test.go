package enrich

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flakyAPI answers GET /forms/{id} by the id's name: slow-* after 100 ms,
// missing-* 404, hang-* never in time, flaky-* 503, 500 and 429 before
// succeeding, and others at once. It counts calls per id.
type flakyAPI struct {
	mu    sync.Mutex
	calls map[string]int
	down  atomic.Bool // every answer a 500
}

func (f *flakyAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/forms/")
	f.mu.Lock()
	f.calls[id]++
	n := f.calls[id]
	f.mu.Unlock()
	switch {
	case f.down.Load():
		w.WriteHeader(http.StatusInternalServerError)
		return
	case strings.HasPrefix(id, "slow-"):
		time.Sleep(60 * time.Millisecond)
	case strings.HasPrefix(id, "missing-"):
		http.NotFound(w, r)
		return
	case strings.HasPrefix(id, "hang-"):
		time.Sleep(600 * time.Millisecond)
	case strings.HasPrefix(id, "flaky-") && n <= 3:
		w.Header().Set("Retry-After", "0")
		w.WriteHeader([]int{http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusTooManyRequests}[n-1])
		return
	}
	fmt.Fprintf(w, `{"id":%q}`, id)
}

func testAPI(t *testing.T, srvURL string) *API {
	t.Helper()
	cfg := DefaultAPIConfig()
	cfg.URL = srvURL + "/forms/{payload.form_id}"
	cfg.Timeout, cfg.Backoff, cfg.MaxBackoff = 300*time.Millisecond, time.Millisecond, 5*time.Millisecond
	cfg.Retries, cfg.BreakerFailures, cfg.BreakerCooldown = 4, 5, 200*time.Millisecond
	a, err := NewAPI(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func doc(id string) []byte { return fmt.Appendf(nil, `{"payload":{"form_id":%q}}`, id) }

// TestAPIOutcomes sends many events over few ids of every kind at once:
// each ends fetched, not found or failed, calls stay within the distinct
// ids plus retries, and a slow id does not hold up the others.
func TestAPIOutcomes(t *testing.T) {
	api := &flakyAPI{calls: map[string]int{}}
	srv := httptest.NewServer(api)
	defer srv.Close()
	a := testAPI(t, srv.URL)
	a.cfg.BreakerFailures = 0 // the breaker has a test of its own
	ids := []string{"ok-1", "ok-2", "slow-1", "missing-1", "hang-1", "flaky-1", "flaky-2"}
	type result struct {
		id   string
		body string
		err  error
		took time.Duration
	}
	results := make(chan result, 700)
	var wg sync.WaitGroup
	for i := range 700 {
		id := ids[i%len(ids)]
		wg.Go(func() {
			start := time.Now()
			b, err := a.Fetch(t.Context(), doc(id))
			results <- result{id, string(b), err, time.Since(start)}
		})
	}
	wg.Wait()
	close(results)
	for r := range results {
		switch {
		case strings.HasPrefix(r.id, "missing-"):
			if !errors.Is(r.err, ErrNotFound) {
				t.Errorf("%s: %v, want not found", r.id, r.err)
			}
		case strings.HasPrefix(r.id, "hang-"):
			if !errors.Is(r.err, ErrFailed) {
				t.Errorf("%s: %v, want failed", r.id, r.err)
			}
		default:
			if r.err != nil || r.body != fmt.Sprintf(`{"id":%q}`, r.id) {
				t.Errorf("%s: %q %v", r.id, r.body, r.err)
			}
			if strings.HasPrefix(r.id, "ok-") && r.took > 250*time.Millisecond {
				t.Errorf("%s took %v: held up by a slow id", r.id, r.took)
			}
		}
	}
	// Distinct ids, plus 3 retries for each flaky id, plus 4 for the one
	// that always times out: merging and the cache make the rest free.
	if calls, bound := a.Calls.Load(), int64(len(ids)+2*3+4); calls > bound {
		api.mu.Lock()
		t.Errorf("%d calls, want at most %d: %v", calls, bound, api.calls)
		api.mu.Unlock()
	}
	before := a.Calls.Load()
	if _, err := a.Fetch(t.Context(), doc("ok-1")); err != nil || a.Calls.Load() != before || a.CacheHits.Load() == 0 {
		t.Errorf("a cached id was fetched again: %v", err)
	}
	if _, err := a.Fetch(t.Context(), doc("missing-1")); !errors.Is(err, ErrNotFound) || a.Calls.Load() != before {
		t.Errorf("a 404 was not cached: %v", err)
	}
	if _, err := a.Fetch(t.Context(), []byte(`{"payload":{}}`)); !errors.Is(err, ErrFailed) {
		t.Errorf("missing template variable: %v", err)
	}
}

// TestBreakerOpensAndCloses: a failing host trips the breaker, calls then
// fail without reaching it, and after the cooldown one probe closes it.
func TestBreakerOpensAndCloses(t *testing.T) {
	api := &flakyAPI{calls: map[string]int{}}
	srv := httptest.NewServer(api)
	defer srv.Close()
	a := testAPI(t, srv.URL)
	a.cfg.Retries = 0
	hostname := mustHost(t, srv.URL)
	api.down.Store(true)
	for i := range 5 {
		if _, err := a.Fetch(t.Context(), doc(fmt.Sprint("d-", i))); !errors.Is(err, ErrFailed) {
			t.Fatalf("call %d to a failing host: %v", i, err)
		}
	}
	if !a.BreakerOpen(hostname) {
		t.Fatal("the breaker did not open after 5 failures")
	}
	calls := a.Calls.Load()
	if _, err := a.Fetch(t.Context(), doc("d-x")); !errors.Is(err, ErrBreakerOpen) || a.Calls.Load() != calls {
		t.Errorf("with the breaker open: %v, calls %d→%d", err, calls, a.Calls.Load())
	}
	api.down.Store(false)
	time.Sleep(250 * time.Millisecond)
	if _, err := a.Fetch(t.Context(), doc("d-y")); err != nil {
		t.Fatalf("probe after the cooldown: %v", err)
	}
	if a.BreakerOpen(hostname) {
		t.Error("the breaker did not close after a good probe")
	}
}

func mustHost(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
