// Package collector is Sluice's HTTP front door. It validates each event's
// envelope at the edge, stamps it with the collector's fields and writes it to
// the raw topic; invalid events go to the dead-letter topic with the reason.
//
// Its one promise: a 2xx means every accepted event is acknowledged by Kafka
// (acks=all). When the broker cannot take a write within the produce timeout
// the answer is 503 with Retry-After, never a 2xx.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/semaphore"

	"github.com/sluicehq/sluice/internal/apidocs"
)

// Config configures a collector.
type Config struct {
	// Addr is where the HTTP server listens.
	Addr string
	// ID names this collector in every event it stamps.
	ID string
	// RawTopic receives accepted events; DLQTopic receives failed events.
	RawTopic string
	DLQTopic string
	// APIKeys, when any are set, are required on the collect endpoints.
	APIKeys []string
	// MaxBodyBytes and MaxBatchBytes bound a request body after
	// decompression, for one event and for a batch.
	MaxBodyBytes  int64
	MaxBatchBytes int64
	// BatchMax is the most events one batch may hold.
	BatchMax int
	// MaxInflightBytes bounds the request bodies held in memory at once.
	// A request waits for room, which slows clients rather than growing.
	MaxInflightBytes int64
	// ProduceTimeout is how long a request waits for Kafka to acknowledge
	// its events before it is answered 503.
	ProduceTimeout time.Duration
	// Server timeouts against slow clients.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout is how long in-flight requests may take to finish on
	// shutdown.
	ShutdownTimeout time.Duration
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		RawTopic:          "sluice.raw",
		DLQTopic:          "sluice.dlq",
		MaxBodyBytes:      1 << 20,
		MaxBatchBytes:     16 << 20,
		BatchMax:          10_000,
		MaxInflightBytes:  256 << 20,
		ProduceTimeout:    5 * time.Second,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ShutdownTimeout:   30 * time.Second,
	}
}

// Validate reports a configuration the collector cannot start with.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("http address %q: want host:port: %w", c.Addr, err))
	}
	if c.ID == "" {
		errs = append(errs, errors.New("collector id is empty"))
	}
	if c.RawTopic == "" || c.DLQTopic == "" {
		errs = append(errs, errors.New("raw and dead-letter topic names must be set"))
	}
	if c.MaxBodyBytes < 1 || c.MaxBatchBytes < 1 {
		errs = append(errs, errors.New("body limits must be positive"))
	}
	if c.BatchMax < 1 {
		errs = append(errs, fmt.Errorf("batch max %d: want at least 1", c.BatchMax))
	}
	if c.MaxInflightBytes < c.MaxBatchBytes || c.MaxInflightBytes < c.MaxBodyBytes {
		errs = append(errs, fmt.Errorf("max in-flight bytes %d must be at least the largest body limit", c.MaxInflightBytes))
	}
	if c.ProduceTimeout <= 0 {
		errs = append(errs, errors.New("produce timeout must be positive"))
	}
	for _, k := range c.APIKeys {
		if k == "" {
			errs = append(errs, errors.New("an API key is empty"))
		}
	}
	return errors.Join(errs...)
}

// Producer is the part of a Kafka client the collector writes through;
// *kgo.Client is one.
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	Ping(ctx context.Context) error
	Flush(ctx context.Context) error
}

var _ Producer = (*kgo.Client)(nil)

// Collector is the HTTP collector.
type Collector struct {
	cfg      Config
	prod     Producer
	logger   *slog.Logger
	metrics  *metrics
	handler  http.Handler
	inflight *semaphore.Weighted
	now      func() time.Time
	lastWarn atomic.Int64 // unix nanoseconds of the last produce warning

	mu sync.Mutex
	ln net.Listener
	// readiness is cached briefly so that probes do not hammer the broker.
	readyAt  time.Time
	readyErr error
}

// New builds a collector that writes through prod. Metrics are registered
// with reg; gatherer serves them at /metrics (nil leaves the route out).
func New(cfg Config, prod Producer, logger *slog.Logger, reg prometheus.Registerer, gatherer prometheus.Gatherer) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	c := &Collector{
		cfg:      cfg,
		prod:     prod,
		logger:   logger,
		metrics:  m,
		inflight: semaphore.NewWeighted(cfg.MaxInflightBytes),
		now:      time.Now,
	}
	mux := http.NewServeMux()
	collect := c.authorize(http.HandlerFunc(c.collect))
	batch := c.authorize(http.HandlerFunc(c.collectBatch))
	mux.Handle("/api/v1/collect", methods(collect, http.MethodPost))
	mux.Handle("/api/v1/collect/batch", methods(batch, http.MethodPost))
	mux.Handle("/api/v1", methods(http.HandlerFunc(c.welcome), http.MethodGet, http.MethodHead))
	mux.Handle("/api/v1/openapi.json", methods(http.HandlerFunc(serveOpenAPI), http.MethodGet, http.MethodHead))
	mux.Handle("/api/v1/docs/", methods(apidocs.Handler("/api/v1/docs/", "/api/v1/openapi.json", "Sluice collector API"), http.MethodGet, http.MethodHead))
	mux.Handle("/api/v1/docs", http.RedirectHandler("/api/v1/docs/", http.StatusMovedPermanently))
	mux.Handle("/healthz", methods(http.HandlerFunc(healthz), http.MethodGet, http.MethodHead))
	mux.Handle("/readyz", methods(http.HandlerFunc(c.readyz), http.MethodGet, http.MethodHead))
	if gatherer != nil {
		mux.Handle("/metrics", methods(promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}), http.MethodGet, http.MethodHead))
	}
	mux.Handle("/", http.HandlerFunc(notFound))
	c.handler = c.instrument(mux)
	return c, nil
}

// Handler is the collector's whole HTTP API.
func (c *Collector) Handler() http.Handler { return c.handler }

// Listen binds the HTTP address, so that a busy port is reported at start
// and the bound address is known before Run.
func (c *Collector) Listen() (net.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		return c.ln.Addr(), nil
	}
	ln, err := net.Listen("tcp", c.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (pass another --http-addr)", c.cfg.Addr, err)
	}
	c.ln = ln
	return ln.Addr(), nil
}

// Run serves until ctx is done, then stops accepting, lets in-flight
// requests finish and flushes the producer.
func (c *Collector) Run(ctx context.Context) error {
	addr, err := c.Listen()
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           c.handler,
		ReadHeaderTimeout: c.cfg.ReadHeaderTimeout,
		ReadTimeout:       c.cfg.ReadTimeout,
		WriteTimeout:      c.cfg.WriteTimeout,
		IdleTimeout:       c.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(c.logger.Handler(), slog.LevelWarn),
	}
	c.logger.Info("collector listening", "addr", addr.String(), "collector_id", c.cfg.ID,
		"docs", "http://"+addr.String()+"/api/v1/docs")

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(c.ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("collector server: %w", err)
	case <-ctx.Done():
	}
	c.logger.Info("collector shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), c.cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("collector server: %w", err)
	}
	if err := c.prod.Flush(sctx); err != nil {
		return fmt.Errorf("flush producer on shutdown: %w", err)
	}
	if shutdownErr != nil {
		return fmt.Errorf("collector shutdown: %w", shutdownErr)
	}
	c.logger.Info("collector stopped")
	return nil
}
