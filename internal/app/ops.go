package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/httpapi"
)

// OpsConfig configures the ops endpoints of a process.
type OpsConfig struct {
	Addr  string `yaml:"addr" flag:"ops-addr" doc:"Address of the ops endpoints (/metrics, /healthz, /readyz, /api/v1/status) of a process that runs no collector; a process with a collector serves them on the collector's address. Empty turns them off. Each command has its own default, so that stages run side by side on one machine do not clash."`
	Pprof bool   `yaml:"pprof" flag:"pprof" doc:"Also serve Go's profiler at /debug/pprof/."`
}

// Validate reports settings the ops server cannot start with.
func (c OpsConfig) Validate() error {
	if c.Addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("addr: %q: want host:port: %w", c.Addr, err)
	}
	return nil
}

// LagFunc reports the lag of consumer groups.
type LagFunc func(ctx context.Context, groups []string) ([]bus.GroupLag, error)

// Ops is a process's ops HTTP handler: /metrics, /healthz, /readyz (ready
// only when every component is) and GET /api/v1/status.
type Ops struct {
	process    *Process
	handler    http.Handler
	instanceID string
	started    time.Time
	lag        LagFunc
	// rest serves the routes the ops endpoints do not have, once mounted.
	rest atomic.Pointer[http.Handler]

	mu       sync.Mutex
	cachedAt time.Time
	cached   []byte
}

// NewOps serves p's ops endpoints; lag, when set, gives its consumer
// groups' lag.
func NewOps(cfg OpsConfig, p *Process, gatherer prometheus.Gatherer, instanceID string, lag LagFunc) *Ops {
	o := &Ops{process: p, instanceID: instanceID, started: time.Now(), lag: lag}
	mux := http.NewServeMux()
	get := func(h http.Handler) http.Handler { return httpapi.Methods(h, http.MethodGet, http.MethodHead) }
	mux.Handle("/metrics", get(promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})))
	mux.Handle("/healthz", get(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})))
	mux.Handle("/readyz", get(http.HandlerFunc(o.readyz)))
	mux.Handle("/api/v1/status", get(http.HandlerFunc(o.status)))
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := o.rest.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		httpapi.NotFound(w, r)
	}))
	o.handler = mux
	return o
}

// Mount serves h (the console) for every route the ops endpoints do not
// have.
func (o *Ops) Mount(h http.Handler) { o.rest.Store(&h) }

func (o *Ops) ServeHTTP(w http.ResponseWriter, r *http.Request) { o.handler.ServeHTTP(w, r) }

// Ready is nil when every component is ready, else why not.
func (o *Ops) Ready() error {
	var errs []error
	for _, c := range o.process.components {
		if err := c.Health().Ready(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type notReady struct {
	httpapi.Error
	Reasons []string `json:"reasons"`
}

func (o *Ops) readyz(w http.ResponseWriter, _ *http.Request) {
	err := o.Ready()
	if err == nil {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	var reasons []string
	for _, e := range unjoin(err) {
		reasons = append(reasons, e.Error())
	}
	w.Header().Set("Retry-After", "1")
	httpapi.WriteJSON(w, http.StatusServiceUnavailable, notReady{
		Error:   httpapi.Error{Error: "not_ready", Message: reasons[0]},
		Reasons: reasons,
	})
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Status is what GET /api/v1/status answers.
type Status struct {
	InstanceID string            `json:"instance_id"`
	StartedAt  time.Time         `json:"started_at"`
	Ready      bool              `json:"ready"`
	Components []ComponentStatus `json:"components"`
	// ConsumerGroups is the lag of every group the components consume
	// with, per partition, in offsets and in time.
	ConsumerGroups []bus.GroupLag `json:"consumer_groups"`
	// LagError says why the lag is missing, such as Kafka being down.
	LagError string `json:"lag_error,omitempty"`
}

// ComponentStatus is one component's health and the consumer groups it
// reads with.
type ComponentStatus struct {
	health.Status
	Groups []string `json:"consumer_groups,omitempty"`
}

// statusTTL spares Kafka from a status request per poll of a busy console.
const statusTTL = 500 * time.Millisecond

// Status gathers the process's status now.
func (o *Ops) Status(ctx context.Context) Status {
	st := Status{InstanceID: o.instanceID, StartedAt: o.started, Ready: true, Components: []ComponentStatus{},
		ConsumerGroups: []bus.GroupLag{}}
	var groups []string
	for _, c := range o.process.components {
		cs := ComponentStatus{Status: c.Health().Status()}
		if g, ok := c.(Grouped); ok {
			cs.Groups = g.Groups()
			groups = append(groups, cs.Groups...)
		}
		st.Ready = st.Ready && cs.Ready
		st.Components = append(st.Components, cs)
	}
	if o.lag != nil && len(groups) > 0 {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		lags, err := o.lag(lctx, groups)
		if err != nil {
			st.LagError = err.Error()
		} else {
			st.ConsumerGroups = lags
		}
	}
	return st
}

func (o *Ops) status(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if time.Since(o.cachedAt) > statusTTL {
		o.cached = nil
	}
	if o.cached == nil {
		st := o.Status(r.Context())
		rec := &bodyRecorder{header: http.Header{}}
		httpapi.WriteJSON(rec, http.StatusOK, st)
		o.cached, o.cachedAt = rec.body, time.Now()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(o.cached)
}

// bodyRecorder keeps what a handler writes.
type bodyRecorder struct {
	header http.Header
	body   []byte
}

func (b *bodyRecorder) Header() http.Header { return b.header }
func (b *bodyRecorder) WriteHeader(int)     {}
func (b *bodyRecorder) Write(p []byte) (int, error) {
	b.body = append(b.body, p...)
	return len(p), nil
}

// Server serves a handler (the ops endpoints of a process without a
// collector) as a component of its own.
type Server struct {
	*health.Reporter
	ln      net.Listener
	handler http.Handler
}

// Listen binds addr now, so that a port in use is a start-up error; the
// listener is closed when Run returns.
func Listen(addr string, handler http.Handler, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ops server: listen on %s: %w (pass another --ops-addr, or an empty one to turn it off)", addr, err)
	}
	logger.Info("ops endpoints listening", "addr", ln.Addr().String())
	return &Server{Reporter: health.New("ops", logger), ln: ln, handler: handler}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close releases the listener of a server that never ran.
func (s *Server) Close() { s.ln.Close() }

// Run serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ops server: %w", err)
	}
	return nil
}

// LagCollector exports the lag of the process's consumer groups as
// Prometheus gauges, read from Kafka at each scrape:
// sluice_consumer_group_lag (offsets) and sluice_consumer_group_lag_seconds
// (the age of the first unread record), by group, topic and partition.
func (o *Ops) LagCollector() prometheus.Collector { return lagCollector{o} }

type lagCollector struct{ o *Ops }

var (
	lagDesc = prometheus.NewDesc("sluice_consumer_group_lag",
		"Offsets a consumer group of this process has yet to read, to the last stable offset (a partition with only transaction markers left is 0).",
		[]string{"group", "topic", "partition"}, nil)
	lagSecondsDesc = prometheus.NewDesc("sluice_consumer_group_lag_seconds",
		"Age of the first record a consumer group of this process has yet to read (0 when caught up).",
		[]string{"group", "topic", "partition"}, nil)
)

func (l lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- lagSecondsDesc
}

func (l lagCollector) Collect(ch chan<- prometheus.Metric) {
	if l.o.lag == nil {
		return
	}
	var groups []string
	for _, c := range l.o.process.components {
		if g, ok := c.(Grouped); ok {
			groups = append(groups, g.Groups()...)
		}
	}
	if len(groups) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lags, err := l.o.lag(ctx, groups)
	if err != nil {
		return // Kafka down: the components' health says so
	}
	for _, g := range lags {
		for _, p := range g.Partitions {
			part := strconv.Itoa(int(p.Partition))
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(p.Lag), g.Group, p.Topic, part)
			ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, p.LagSeconds, g.Group, p.Topic, part)
		}
	}
}
