package enrich

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/sluicehq/sluice/internal/retry"
)

// APIConfig configures calls to an HTTP API that enriches events.
type APIConfig struct {
	// URL is a template: {payload.form_id} is the event's value at that
	// path, escaped.
	URL string
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Concurrency bounds the calls in flight, in all and per host.
	Concurrency, PerHost int
	// Retries of an attempt that timed out, failed to connect, or got 5xx
	// or 429, after Backoff doubling up to MaxBackoff with full jitter,
	// never sooner than a Retry-After.
	Retries             int
	Backoff, MaxBackoff time.Duration
	// Answers are cached for CacheTTL, and 404s for NegativeTTL, up to
	// CacheSize entries.
	CacheTTL, NegativeTTL time.Duration
	CacheSize             int
	// After BreakerFailures failed calls in a row to a host, calls to it
	// fail at once for BreakerCooldown; then one call tries it again.
	BreakerFailures int
	BreakerCooldown time.Duration
}

// DefaultAPIConfig returns the documented defaults.
func DefaultAPIConfig() APIConfig {
	return APIConfig{Timeout: 2 * time.Second, Concurrency: 64, PerHost: 32, Retries: 4,
		Backoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second, CacheTTL: 5 * time.Minute,
		NegativeTTL: 30 * time.Second, CacheSize: 100_000, BreakerFailures: 10, BreakerCooldown: 5 * time.Second}
}

// Errors of Fetch; the enricher turns them into dead-letter reasons.
var (
	ErrNotFound    = errors.New("not found")         // enrichment_not_found
	ErrFailed      = errors.New("enrichment failed") // enrichment_failed
	ErrBreakerOpen = errors.New("circuit is open")   // enrichment_failed, without a call
	errMissingVar  = errors.New("template variable missing")
)

// API calls an enrichment API with bounded concurrency, retries, a circuit
// breaker per host, a TTL cache and a negative cache, and merges identical
// calls in flight. It is safe for concurrent use: calls complete out of
// order, so a slow key never holds up others.
type API struct {
	cfg    APIConfig
	client *http.Client
	vars   [][]string // the template split: literal, path, literal, …

	sem   chan struct{}
	mu    sync.Mutex
	hosts map[string]*host
	cache map[string]cached
	group singleflight.Group

	// Calls counts HTTP requests made; CacheHits answers from the cache.
	Calls, CacheHits atomic.Int64
	now              func() time.Time
}

type host struct {
	sem      chan struct{}
	failures int
	openTill time.Time
	probing  bool
}

type cached struct {
	body    []byte
	err     error
	expires time.Time
}

var templateVar = regexp.MustCompile(`\{([^{}]+)\}`)

// NewAPI checks the template and readies the client; nil means a client
// of its own with connections kept for every call the bounds allow.
func NewAPI(cfg APIConfig, client *http.Client) (*API, error) {
	if _, err := url.Parse(templateVar.ReplaceAllString(cfg.URL, "x")); err != nil || cfg.URL == "" {
		return nil, fmt.Errorf("api url template %q: want a URL such as http://host/forms/{payload.form_id}", cfg.URL)
	}
	if client == nil {
		// http.DefaultClient keeps two idle connections per host, so at
		// PerHost calls in flight most calls would dial anew.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = max(cfg.Concurrency, 1)
		t.MaxIdleConnsPerHost = max(cfg.PerHost, 1)
		client = &http.Client{Transport: t}
	}
	a := &API{cfg: cfg, client: client, sem: make(chan struct{}, max(cfg.Concurrency, 1)),
		hosts: map[string]*host{}, cache: map[string]cached{}, now: time.Now}
	rest := cfg.URL
	for _, m := range templateVar.FindAllStringSubmatchIndex(cfg.URL, -1) {
		a.vars = append(a.vars, []string{cfg.URL[len(cfg.URL)-len(rest) : m[0]], cfg.URL[m[2]:m[3]]})
		rest = cfg.URL[m[1]:]
	}
	a.vars = append(a.vars, []string{rest})
	return a, nil
}

// URL renders the template for an event document.
func (a *API) URL(doc []byte) (string, error) {
	var b []byte
	for _, part := range a.vars {
		b = append(b, part[0]...)
		if len(part) == 1 {
			continue
		}
		v := lookup(doc, part[1])
		if v == nil || v[0] == 'n' || v[0] == '{' || v[0] == '[' {
			return "", fmt.Errorf("%w: %s", errMissingVar, part[1])
		}
		b = append(b, url.PathEscape(keyText(v))...)
	}
	return string(b), nil
}

// Fetch returns the API's answer for an event document.
func (a *API) Fetch(ctx context.Context, doc []byte) ([]byte, error) {
	u, err := a.URL(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFailed, err)
	}
	a.mu.Lock()
	c, ok := a.cache[u]
	a.mu.Unlock()
	if ok && a.now().Before(c.expires) {
		a.CacheHits.Add(1)
		return c.body, c.err
	}
	v, err, _ := a.group.Do(u, func() (any, error) {
		body, err := a.call(ctx, u)
		switch {
		case err == nil:
			a.remember(u, cached{body: body, expires: a.now().Add(a.cfg.CacheTTL)})
		case errors.Is(err, ErrNotFound):
			a.remember(u, cached{err: err, expires: a.now().Add(a.cfg.NegativeTTL)})
		}
		return body, err
	})
	body, _ := v.([]byte)
	return body, err
}

func (a *API) remember(u string, c cached) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= a.cfg.CacheSize {
		now := a.now()
		for k, e := range a.cache {
			if now.After(e.expires) || len(a.cache) >= a.cfg.CacheSize {
				delete(a.cache, k)
			}
			if len(a.cache) < a.cfg.CacheSize*9/10 {
				break
			}
		}
	}
	a.cache[u] = c
}

// call makes the request, with retries, under the concurrency bounds and
// the host's breaker.
func (a *API) call(ctx context.Context, u string) ([]byte, error) {
	parsed, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFailed, err)
	}
	h := a.host(parsed.Host)
	backoff := retry.Backoff{Min: a.cfg.Backoff, Max: a.cfg.MaxBackoff}
	var last error
	for attempt := 0; ; attempt++ {
		if err := a.admit(h); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFailed, err)
		}
		body, retryAfter, err := a.attempt(ctx, h, u)
		a.settle(h, err)
		if err == nil || errors.Is(err, ErrNotFound) {
			return body, err
		}
		last = err
		var perm permanent
		if errors.As(err, &perm) || ctx.Err() != nil || attempt >= a.cfg.Retries {
			return nil, fmt.Errorf("%w after %d attempts: %w", ErrFailed, attempt+1, last)
		}
		if err := backoff.Wait(ctx, retryAfter); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFailed, err)
		}
	}
}

// permanent is an answer that retrying cannot change (4xx but 404, 429).
type permanent struct{ status int }

func (p permanent) Error() string { return "status " + strconv.Itoa(p.status) }

func (a *API) attempt(ctx context.Context, h *host, u string) ([]byte, time.Duration, error) {
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	defer func() { <-a.sem }()
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	defer func() { <-h.sem }()

	actx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, permanent{0}
	}
	a.Calls.Add(1)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, 0, err
	}
	switch s := resp.StatusCode; {
	case s == http.StatusOK:
		return body, 0, nil
	case s == http.StatusNotFound:
		return nil, 0, ErrNotFound
	case s == http.StatusTooManyRequests || s >= 500:
		var ra time.Duration
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
			ra = time.Duration(n) * time.Second
		}
		return nil, ra, fmt.Errorf("status %d", s)
	default:
		return nil, 0, permanent{s}
	}
}

func (a *API) host(name string) *host {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.hosts[name]
	if h == nil {
		h = &host{sem: make(chan struct{}, max(a.cfg.PerHost, 1))}
		a.hosts[name] = h
	}
	return h
}

// admit lets a call through the host's breaker: always when closed, one
// probe at a time once an open breaker has cooled down.
func (a *API) admit(h *host) error {
	if a.cfg.BreakerFailures <= 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if h.failures < a.cfg.BreakerFailures {
		return nil
	}
	if a.now().Before(h.openTill) || h.probing {
		return ErrBreakerOpen
	}
	h.probing = true
	return nil
}

// settle records an attempt's outcome in the host's breaker. A 404 or
// another definite answer is the host working.
func (a *API) settle(h *host, err error) {
	if a.cfg.BreakerFailures <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	h.probing = false
	var perm permanent
	if err == nil || errors.Is(err, ErrNotFound) || errors.As(err, &perm) {
		h.failures = 0
		return
	}
	h.failures++
	if h.failures >= a.cfg.BreakerFailures {
		h.openTill = a.now().Add(a.cfg.BreakerCooldown)
	}
}

// BreakerOpen reports whether calls to the host are being refused.
func (a *API) BreakerOpen(hostname string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.hosts[hostname]
	return h != nil && h.failures >= a.cfg.BreakerFailures && a.now().Before(h.openTill)
}
