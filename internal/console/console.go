// Package console is Sluice's web console and the JSON API under /api/v1/
// that it reads, served by every process that serves the status API: the
// pipeline's state and lag, the topics and a live tail of them, the dead
// letters and their replay, the lake's tables, SQL over them, and the
// batch layer's runs and failing checks.
//
// The console has no back door: each screen reads the documented endpoints
// (internal/collector/openapi.json), with the same keys as any client. A
// read key may look; only an admin key may replay. No answer is ever a
// whole topic or a whole query result: records, dead letters and rows come
// a page at a time, and a CSV download is streamed.
package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/dlq"
	"github.com/sluicehq/sluice/internal/httpapi"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/query"
)

// Config is who may use the console and its API.
type Config struct {
	ReadKeys  []string `yaml:"read_keys" flag:"console-read-key" secret:"true" doc:"Keys that may look at the console and its API (GET), sent as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'; the console asks for one. With neither read nor admin keys, anyone who reaches the address may use it, replays included."`
	AdminKeys []string `yaml:"admin_keys" flag:"console-admin-key" secret:"true" doc:"Keys that may also change things: replay dead letters, save queries."`
}

// Validate reports empty keys.
func (c Config) Validate() error {
	var errs []error
	for _, k := range c.ReadKeys {
		if k == "" {
			errs = append(errs, config.Field("read_keys", "a key is empty"))
		}
	}
	for _, k := range c.AdminKeys {
		if k == "" {
			errs = append(errs, config.Field("admin_keys", "a key is empty"))
		}
	}
	return errors.Join(errs...)
}

// Lake opens the lake's query engine and catalog for one request; done
// releases them.
type Lake func(ctx context.Context) (eng *query.Engine, cat *lake.Catalog, done func(), err error)

// Deps are what the console reads and writes.
type Deps struct {
	// Status is the process's status, as /api/v1/status answers it.
	Status func(ctx context.Context) app.Status
	// Kafka reaches the cluster, for topics and dead letters.
	Kafka bus.ClientConfig
	// Topics are the pipeline's topic names.
	Raw, DLQ string
	// Replayer reads and replays the dead letters.
	Replayer *dlq.Replayer
	// Lake opens the lake, or is nil when the process has none.
	Lake Lake
	// Queries keeps the saved queries, or is nil.
	Queries *Queries
	Logger  *slog.Logger
}

// Console serves the console's pages and API.
type Console struct {
	cfg  Config
	deps Deps
	mux  *http.ServeMux
	now  func() time.Time
}

// route is an endpoint of the console's API: its path pattern, method,
// and whether it changes things (an admin key's).
type route struct {
	pattern, method string
	admin           bool
	handler         func(*Console, http.ResponseWriter, *http.Request)
}

// routes are the console's API, each documented in the OpenAPI document
// (TestOpenAPICoversRoutes).
var routes = []route{
	{"/api/v1/whoami", http.MethodGet, false, (*Console).whoami},
	{"/api/v1/topics", http.MethodGet, false, (*Console).topics},
	{"/api/v1/topics/{topic}/records", http.MethodGet, false, (*Console).records},
	{"/api/v1/topics/{topic}/live", http.MethodGet, false, (*Console).live},
	{"/api/v1/deadletters", http.MethodGet, false, (*Console).deadLetters},
	{"/api/v1/deadletters/stats", http.MethodGet, false, (*Console).deadLetterStats},
	{"/api/v1/deadletters/replay", http.MethodPost, true, (*Console).replayMatching},
	{"/api/v1/deadletters/{partition}/{offset}", http.MethodGet, false, (*Console).deadLetter},
	{"/api/v1/deadletters/{partition}/{offset}/replay", http.MethodPost, true, (*Console).replayOne},
	{"/api/v1/replays", http.MethodGet, false, (*Console).replays},
	{"/api/v1/lake/tables", http.MethodGet, false, (*Console).tables},
	{"/api/v1/lake/tables/{table}", http.MethodGet, false, (*Console).table},
	{"/api/v1/lake/tables/{table}/preview", http.MethodGet, false, (*Console).preview},
	// A query is a POST for its body's size, but only reads.
	{"/api/v1/query", http.MethodPost, false, (*Console).query},
	{"/api/v1/query.csv", http.MethodGet, false, (*Console).queryCSV},
	{"/api/v1/queries", http.MethodGet, false, (*Console).savedQueries},
	{"/api/v1/queries", http.MethodPost, true, (*Console).saveQuery},
	{"/api/v1/queries/{name}", http.MethodDelete, true, (*Console).deleteQuery},
	{"/api/v1/jobs/runs", http.MethodGet, false, (*Console).jobRuns},
	{"/api/v1/jobs/failures", http.MethodGet, false, (*Console).checkFailures},
}

// New builds the console's handler.
func New(cfg Config, deps Deps) *Console {
	c := &Console{cfg: cfg, deps: deps, mux: http.NewServeMux(), now: time.Now}
	// Patterns without methods, so that a wrong method is answered 405 in
	// JSON (httpapi.Methods) rather than by the mux.
	byPattern := map[string][]route{}
	var patterns []string
	for _, r := range routes {
		if byPattern[r.pattern] == nil {
			patterns = append(patterns, r.pattern)
		}
		byPattern[r.pattern] = append(byPattern[r.pattern], r)
	}
	for _, p := range patterns {
		handlers := map[string]http.Handler{}
		var methods []string
		for _, r := range byPattern[p] {
			handle := r.handler
			handlers[r.method] = c.allow(r.admin, func(w http.ResponseWriter, req *http.Request) { handle(c, w, req) })
			methods = append(methods, r.method)
			if r.method == http.MethodGet {
				handlers[http.MethodHead] = handlers[r.method]
				methods = append(methods, http.MethodHead)
			}
		}
		c.mux.Handle(p, httpapi.Methods(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlers[r.Method].ServeHTTP(w, r)
		}), methods...))
	}
	c.mux.Handle("/api/v1/", http.HandlerFunc(httpapi.NotFound))
	// The pages hold no data: they load without a key, then ask for one.
	c.mux.Handle("/", httpapi.Methods(http.HandlerFunc(c.ui), http.MethodGet, http.MethodHead))
	return c
}

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.mux.ServeHTTP(w, r) }

// role is what a request's key may do.
type role int

const (
	roleNone role = iota
	roleRead
	roleAdmin
)

func (c *Console) role(r *http.Request) role {
	if len(c.cfg.ReadKeys) == 0 && len(c.cfg.AdminKeys) == 0 {
		return roleAdmin
	}
	given := r.Header.Get("X-API-Key")
	if auth := r.Header.Get("Authorization"); given == "" && len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		given = strings.TrimSpace(auth[7:])
	}
	if given == "" {
		// EventSource cannot send headers: the live tail passes its key in
		// the query.
		given = r.URL.Query().Get("key")
	}
	if given == "" {
		return roleNone
	}
	match := func(keys []string) bool {
		ok := 0
		for _, k := range keys {
			ok |= subtle.ConstantTimeCompare([]byte(given), []byte(k))
		}
		return ok == 1
	}
	switch {
	case match(c.cfg.AdminKeys):
		return roleAdmin
	case match(c.cfg.ReadKeys):
		return roleRead
	}
	return roleNone
}

// allow lets a request through when its key may read, or with admin, may
// change things.
func (c *Console) allow(admin bool, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch ro := c.role(r); {
		case ro == roleNone:
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			httpapi.WriteError(w, http.StatusUnauthorized, "unauthorized",
				"send a console key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
		case admin && ro != roleAdmin:
			httpapi.WriteError(w, http.StatusForbidden, "forbidden", "this key may look, not change things: use an admin key")
		default:
			h(w, r)
		}
	})
}

// whoami says what the request's key may do, so the console shows only
// what it can use.
func (c *Console) whoami(w http.ResponseWriter, r *http.Request) {
	ro := c.role(r)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"role":     map[role]string{roleRead: "read", roleAdmin: "admin"}[ro],
		"auth":     len(c.cfg.ReadKeys)+len(c.cfg.AdminKeys) > 0,
		"lake":     c.deps.Lake != nil,
		"topics":   map[string]string{"raw": c.deps.Raw, "dlq": c.deps.DLQ},
		"instance": c.instance(r.Context()),
	})
}

func (c *Console) instance(ctx context.Context) string {
	if c.deps.Status == nil {
		return ""
	}
	return c.deps.Status(ctx).InstanceID
}

// badRequest answers 400 with what to send instead.
func badRequest(w http.ResponseWriter, msg string) {
	httpapi.WriteError(w, http.StatusBadRequest, "bad_request", msg)
}

// unavailable answers 503 for what the process cannot reach now.
func unavailable(w http.ResponseWriter, err error) {
	w.Header().Set("Retry-After", "1")
	httpapi.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
}

// intParam reads a query parameter as an int in [lo, hi], def when absent.
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, errors.New(name + ": want a whole number from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi))
	}
	return n, nil
}

// timeParam reads a query parameter as a time, or a duration back from
// now.
func (c *Console) timeParam(r *http.Request, name string) (time.Time, error) {
	t, err := dlq.ParseWhen(r.URL.Query().Get(name), c.now())
	if err != nil {
		return t, fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}
