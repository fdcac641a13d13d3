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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/semaphore"

	"github.com/sluicehq/sluice/internal/apidocs"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/httpapi"
	"github.com/sluicehq/sluice/internal/schema"
)

// Config configures a collector.
type Config struct {
	// Addr is where the HTTP server listens.
	Addr string `yaml:"http_addr" flag:"http-addr" doc:"Address the HTTP collector listens on. The process's ops endpoints (/metrics, /healthz, /readyz, /api/v1/status) are served there too."`
	// ID names this collector in every event it stamps: the process's
	// instance id.
	ID string `yaml:"-"`
	// RawTopic receives accepted events; DLQTopic receives failed events.
	RawTopic string `yaml:"-"`
	DLQTopic string `yaml:"-"`
	// APIKeys, when any are set, are required on the collect endpoints.
	APIKeys []string `yaml:"api_keys" flag:"api-key" secret:"true" doc:"API keys clients must send, as 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (repeat the flag for several). None: no authentication."`
	// MaxBodyBytes and MaxBatchBytes bound a request body after
	// decompression, for one event and for a batch.
	MaxBodyBytes  config.ByteSize `yaml:"max_body_bytes" flag:"max-body-bytes" doc:"Largest single-event body, after decompression; larger ones are answered 413."`
	MaxBatchBytes config.ByteSize `yaml:"max_batch_bytes" flag:"max-batch-bytes" doc:"Largest batch body, after decompression; larger ones are answered 413."`
	// BatchMax is the most events one batch may hold.
	BatchMax int `yaml:"batch_max" flag:"batch-max" doc:"Most events in one batch request."`
	// MaxInflightBytes bounds the request bodies held in memory at once.
	// A request waits for room, which slows clients rather than growing.
	MaxInflightBytes config.ByteSize `yaml:"max_inflight_bytes" flag:"max-inflight-bytes" doc:"Request bodies held in memory at once; more requests wait, which slows clients rather than growing."`
	// Validation is envelope (the default) or schema: whether the collector
	// also checks each payload against its schema before it answers.
	Validation string `yaml:"validation" flag:"validation" doc:"What a 200 means. envelope (the default): the envelope is valid and the event is durable in Kafka; its payload is checked against its schema later, by the enricher, whose violations become dead letters. schema: the payload is also valid against its schema, checked before the answer, and an event that breaks it is answered 400 schema_violation with every violation (and dead-lettered)."`
	// NonFinite says what to do with NaN and ±Infinity, which Python's
	// json and pandas write for missing floats but JSON cannot hold.
	NonFinite string `yaml:"non_finite_numbers" flag:"non-finite-numbers" doc:"NaN, Infinity and -Infinity in an event, as Python's json.dumps and pandas write missing floats (not JSON). null (the default): accept the event and store null in their place, counted in sluice_collector_non_finite_numbers_total and in the batch answer's non_finite. reject: answer 400 non_finite_number with the value's path, and dead-letter the event."`
	// ProduceTimeout is how long a request waits for Kafka to acknowledge
	// its events before it is answered 503.
	ProduceTimeout time.Duration `yaml:"produce_timeout" flag:"produce-timeout" doc:"How long a request waits for Kafka's acknowledgement before it is answered 503 with Retry-After."`
	// Server timeouts against slow clients.
	ReadHeaderTimeout time.Duration `yaml:"-"`
	ReadTimeout       time.Duration `yaml:"-"`
	WriteTimeout      time.Duration `yaml:"-"`
	IdleTimeout       time.Duration `yaml:"-"`
	// ShutdownTimeout is how long in-flight requests may take to finish on
	// shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" doc:"How long in-flight requests may take to finish when the collector stops."`
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
		Validation:        ValidateEnvelope,
		NonFinite:         NonFiniteNull,
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
		errs = append(errs, config.Field("http_addr", "%q: want host:port: %v", c.Addr, err))
	}
	if c.ID == "" {
		errs = append(errs, errors.New("collector id is empty"))
	}
	if c.RawTopic == "" || c.DLQTopic == "" {
		errs = append(errs, errors.New("raw and dead-letter topic names must be set"))
	}
	if c.MaxBodyBytes < 1 {
		errs = append(errs, config.Field("max_body_bytes", "must be positive"))
	}
	if c.MaxBatchBytes < 1 {
		errs = append(errs, config.Field("max_batch_bytes", "must be positive"))
	}
	if c.BatchMax < 1 {
		errs = append(errs, config.Field("batch_max", "batch max %d: want at least 1", c.BatchMax))
	}
	if c.MaxInflightBytes < c.MaxBatchBytes || c.MaxInflightBytes < c.MaxBodyBytes {
		errs = append(errs, config.Field("max_inflight_bytes", "max in-flight bytes %d must be at least the largest body limit", c.MaxInflightBytes))
	}
	if c.Validation != ValidateEnvelope && c.Validation != ValidateSchema {
		errs = append(errs, config.Field("validation", "%q: want %s or %s", c.Validation, ValidateEnvelope, ValidateSchema))
	}
	if c.NonFinite != NonFiniteNull && c.NonFinite != NonFiniteReject {
		errs = append(errs, config.Field("non_finite_numbers", "%q: want %s or %s", c.NonFinite, NonFiniteNull, NonFiniteReject))
	}
	if c.ProduceTimeout <= 0 {
		errs = append(errs, config.Field("produce_timeout", "produce timeout must be positive"))
	}
	for _, k := range c.APIKeys {
		if k == "" {
			errs = append(errs, config.Field("api_keys", "an API key is empty"))
		}
	}
	return errors.Join(errs...)
}

// What the collector does with NaN and ±Infinity.
const (
	NonFiniteNull   = "null"
	NonFiniteReject = "reject"
)

// Validation modes.
const (
	ValidateEnvelope = "envelope"
	ValidateSchema   = "schema"
)

// Schemas validates payloads against their schemas: the registry, for a
// collector that validates at the edge.
type Schemas interface {
	Validate(k schema.Key, payload []byte) ([]event.FieldError, error)
}

// Edge is what a collector validating at the edge needs: the schemas, and
// whether an event with no schema is refused (as the enricher would) or
// passes.
type Edge struct {
	Schemas       Schemas
	RejectUnknown bool
}

// Producer is the part of a Kafka client the collector writes through;
// *kgo.Client is one.
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	Ping(ctx context.Context) error
	Flush(ctx context.Context) error
}

var _ Producer = (*kgo.Client)(nil)

// Collector is the HTTP collector, a component of its process.
type Collector struct {
	*health.Reporter
	cfg      Config
	edge     *Edge // set when cfg.Validation is schema
	prod     Producer
	logger   *slog.Logger
	metrics  *metrics
	handler  http.Handler
	inflight *semaphore.Weighted
	seq      sequencer
	now      func() time.Time

	mu sync.Mutex
	ln net.Listener
}

// New builds a collector that writes through prod. Metrics are registered
// with reg. ops serves the process's ops endpoints (/metrics, /healthz,
// /readyz, /api/v1/status, /debug/pprof/) beside the API; nil leaves them
// out. Validating at the edge (cfg.Validation schema) takes edge.
func New(cfg Config, prod Producer, logger *slog.Logger, reg prometheus.Registerer, ops http.Handler, edge *Edge) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	if cfg.Validation == ValidateSchema && (edge == nil || edge.Schemas == nil) {
		return nil, errors.New("collector config: validation schema needs the schema registry")
	}
	if cfg.Validation != ValidateSchema {
		edge = nil
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	c := &Collector{
		Reporter: health.New("collector", logger),
		cfg:      cfg,
		edge:     edge,
		prod:     prod,
		logger:   logger,
		metrics:  m,
		inflight: semaphore.NewWeighted(int64(cfg.MaxInflightBytes)),
		now:      time.Now,
	}
	mux := http.NewServeMux()
	collect := c.authorize(http.HandlerFunc(c.collect))
	batch := c.authorize(http.HandlerFunc(c.collectBatch))
	get := func(h http.Handler) http.Handler { return httpapi.Methods(h, http.MethodGet, http.MethodHead) }
	mux.Handle("/api/v1/collect", httpapi.Methods(collect, http.MethodPost))
	mux.Handle("/api/v1/collect/batch", httpapi.Methods(batch, http.MethodPost))
	mux.Handle("/api/v1", get(http.HandlerFunc(c.welcome)))
	mux.Handle("/api/v1/openapi.json", get(http.HandlerFunc(serveOpenAPI)))
	mux.Handle("/api/v1/docs/", get(apidocs.Handler("/api/v1/docs/", "/api/v1/openapi.json", "Sluice API")))
	mux.Handle("/api/v1/docs", http.RedirectHandler("/api/v1/docs/", http.StatusMovedPermanently))
	if ops != nil {
		// The ops endpoints, and whatever the ops handler serves besides
		// them (the console and its API).
		mux.Handle("/", ops)
	} else {
		mux.Handle("/", http.HandlerFunc(httpapi.NotFound))
	}
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

// Close releases the listener of a collector that never ran.
func (c *Collector) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		c.ln.Close()
	}
}

// pingEvery is how often a running collector checks that Kafka answers,
// for its readiness.
const pingEvery = time.Second

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
	pingCtx, stopPing := context.WithCancel(ctx)
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		c.ping(pingCtx)
	}()
	defer func() {
		stopPing()
		<-pinged
	}()

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

// ping checks that Kafka answers, once a pingEvery, until ctx is done: a
// collector that cannot reach it is not ready, and says why.
func (c *Collector) ping(ctx context.Context) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.prod.Ping(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			c.Fault("kafka", fmt.Errorf("not reachable: %w", err))
		default:
			c.Clear("kafka")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
