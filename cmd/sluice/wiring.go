package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/collector"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/enrich"
	"github.com/sluicehq/sluice/internal/enricher"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/loader"
	"github.com/sluicehq/sluice/internal/row"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/schema"
)

// errUsage marks a wrong command line, already explained to the user.
var errUsage = errors.New("usage")

var errNoBrokers = errors.New("no Kafka brokers: pass --brokers host:port, or run 'sluice up' to use the embedded broker")

// parse resolves a command's configuration, turning flag errors into
// errUsage (the flag package has printed them with the usage).
func parse(fs *config.FlagSet, args []string) (config.Config, error) {
	cfg, err := fs.Parse(args)
	if err != nil {
		if config.IsHelp(err) {
			return cfg, err
		}
		if strings.HasPrefix(err.Error(), "flag provided but not defined") || strings.Contains(err.Error(), "invalid value") {
			return cfg, errUsage
		}
		return cfg, err
	}
	return cfg, nil
}

// setup resolves a command's configuration and builds its logger.
func setup(fs *config.FlagSet, args []string, stderr io.Writer) (config.Config, *slog.Logger, error) {
	cfg, err := parse(fs, args)
	if err != nil {
		return cfg, nil, err
	}
	logger, err := newLogger(cfg, stderr)
	return cfg, logger, err
}

func logFlags(fs *config.FlagSet) {
	c := fs.Config()
	fs.String(&c.LogFormat, "log-format", "log format: auto (text on a terminal, JSON otherwise), text or json")
	fs.String(&c.LogLevel, "log-level", "log level: debug, info, warn or error")
}

func kafkaFlags(fs *config.FlagSet) {
	k := &fs.Config().Kafka
	fs.List(&k.Brokers, "brokers", "Kafka bootstrap brokers, host:port, comma-separated or repeated")
	fs.Bool(&k.TLS, "kafka-tls", "connect to Kafka over TLS")
	fs.String(&k.TLSCAFile, "kafka-tls-ca-file", "PEM file of CAs to trust for Kafka TLS, added to the system's")
	fs.String(&k.SASLMechanism, "kafka-sasl-mechanism", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.String(&k.SASLUser, "kafka-sasl-user", "SASL user name")
	fs.String(&k.SASLPassword, "kafka-sasl-password", "SASL password")
}

func topicFlags(fs *config.FlagSet) {
	t := &fs.Config().Topics
	fs.String(&t.Raw, "topic-raw", "topic of accepted raw events")
	fs.String(&t.DLQ, "topic-dlq", "topic of failed events (dead letters)")
	fs.Int32(&t.Partitions, "topic-partitions", "partitions of topics Sluice creates")
}

func lakeFlags(fs *config.FlagSet) {
	l := &fs.Config().Lake
	fs.String(&l.URL, "lake", "the lake: a directory or s3://bucket/prefix (default <data-dir>/lake)")
	fs.String(&l.S3Endpoint, "s3-endpoint", "S3 endpoint, host:port or URL (http:// for no TLS); default AWS_ENDPOINT_URL or AWS S3")
	fs.String(&l.S3Region, "s3-region", "S3 region (default AWS_REGION)")
	fs.Bool(&l.S3PathStyle, "s3-path-style", "address buckets by path (MinIO and most self-hosted stores)")
}

// openLake opens the configured lake; credentials come from AWS_*.
func openLake(ctx context.Context, cfg config.Config) (lake.Storage, error) {
	return lake.Open(ctx, lakeURL(cfg), lake.S3Config{
		Endpoint: cfg.Lake.S3Endpoint, Region: cfg.Lake.S3Region, PathStyle: cfg.Lake.S3PathStyle,
	})
}

func loaderFlags(fs *config.FlagSet) {
	l := &fs.Config().Loader
	fs.List(&l.Topics, "loader-topics", "topics the lake loader consumes")
	fs.String(&l.Group, "loader-group", "consumer group of the lake loader")
	fs.Int(&l.FlushRows, "flush-rows", "flush a partition's files when a table holds this many rows")
	fs.Bytes(&l.FlushBytes, "flush-bytes", "flush a partition's files when they hold this many bytes")
	fs.Duration(&l.FlushInterval, "flush-interval", "flush a partition's files this long after their first row")
	fs.Bytes(&l.MemoryLimit, "loader-memory", "rows buffered in memory across partitions; past it the largest are flushed early")
}

// loadSchemas loads the schema registry the config names, or the bundled
// schemas, and reloads it on SIGHUP until ctx is done.
func loadSchemas(ctx context.Context, cfg config.Config, logger *slog.Logger) (*schema.Registry, error) {
	fsys := sample.Schemas()
	if cfg.Schemas != "" {
		fsys = os.DirFS(cfg.Schemas)
	}
	reg, err := schema.Load(fsys)
	if err != nil {
		return nil, fmt.Errorf("%w (fix the schema, or pass --schemas another directory)", err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := reg.Reload(); err != nil {
					logger.Error("schemas not reloaded; the previous ones stay in use", "err", err)
					continue
				}
				logger.Info("schemas reloaded", "schemas", len(reg.Keys()))
			}
		}
	}()
	return reg, nil
}

func lakeURL(cfg config.Config) string {
	if cfg.Lake.URL != "" {
		return cfg.Lake.URL
	}
	return filepath.Join(cfg.DataDir, "lake")
}

// enricherStage builds the enricher with the bundled pipelines: taxi zones
// joined to yellow_taxi_trip, and form definitions from the forms API for
// form_event when one is configured.
func enricherStage(ctx context.Context, cfg config.Config, schemas *schema.Registry, logger *slog.Logger, reg prometheus.Registerer) (*enricher.Enricher, error) {
	logger = logger.With("stage", "enricher")
	ec := enricher.DefaultConfig()
	ec.RawTopic, ec.EnrichedTopic, ec.DLQTopic = cfg.Topics.Raw, cfg.Topics.Enriched, cfg.Topics.DLQ
	ec.Group, ec.UnknownSchema, ec.Concurrency = cfg.Enricher.Group, cfg.Enricher.UnknownSchema, cfg.Enricher.Concurrency
	ec.TransactionalID = cmp.Or(cfg.Enricher.TransactionalID, "sluice-enricher-"+cfg.Collector.ID)

	// A lookup loads from a path: the bundled zones go to a temporary file.
	tmp, err := os.MkdirTemp("", "sluice-zones")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	b, err := iofs.ReadFile(sample.FS(), sample.TaxiZones)
	if err != nil {
		return nil, err
	}
	zonesFile := filepath.Join(tmp, sample.TaxiZones)
	if err := os.WriteFile(zonesFile, b, 0o644); err != nil {
		return nil, err
	}
	zones, err := enrich.LoadLookup(ctx, zonesFile, "LocationID")
	if err != nil {
		return nil, err
	}
	ec.Pipelines = map[string]enricher.Pipeline{"yellow_taxi_trip": {Joins: []enricher.Join{
		{Join: enrich.Join{Lookup: zones, Field: "PULocationID", Columns: []enrich.Rename{{From: "Borough", To: "pickup_borough"}, {From: "Zone", To: "pickup_zone"}}}},
		{Join: enrich.Join{Lookup: zones, Field: "DOLocationID", Columns: []enrich.Rename{{From: "Borough", To: "dropoff_borough"}, {From: "Zone", To: "dropoff_zone"}}}},
	}}}
	if cfg.Enricher.FormsAPI != "" {
		ac := enrich.DefaultAPIConfig()
		ac.URL = cfg.Enricher.FormsAPI
		api, err := enrich.NewAPI(ac, nil)
		if err != nil {
			return nil, fmt.Errorf("--forms-api: %w", err)
		}
		ec.Pipelines["form_event"] = enricher.Pipeline{API: api, APIKey: "form", Model: &enrich.FormModel}
	}
	cl, err := bus.NewClient(clientConfig(cfg, "sluice-enricher-admin"), logger)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := bus.EnsureTopics(tctx, cl, cfg.Topics.Partitions, cfg.Topics.Replication, ec.RawTopic, ec.EnrichedTopic, ec.DLQTopic); err != nil {
		return nil, fmt.Errorf("%w (is Kafka running at %s?)", err, strings.Join(cfg.Kafka.Brokers, ","))
	}
	return enricher.New(ec, clientConfig(cfg, "sluice-enricher"), schemas, logger, reg)
}

func enricherFlags(fs *config.FlagSet) {
	e := &fs.Config().Enricher
	fs.String(&e.Group, "enricher-group", "consumer group of the enricher")
	fs.String(&e.TransactionalID, "transactional-id", "the enricher's Kafka transactional id, unique to each running enricher (default sluice-enricher-<collector id>)")
	fs.String(&e.UnknownSchema, "unknown-schema", "events with no schema: pass or reject (to the dead-letter topic)")
	fs.Int(&e.Concurrency, "enricher-concurrency", "events enriched at once")
	fs.String(&e.FormsAPI, "forms-api", "URL template of the forms API, such as http://127.0.0.1:8090/forms/{payload.form_id}; enables the form_event model")
}

// schemaFlags binds --schemas, which the enricher and the loader share.
func schemaFlags(fs *config.FlagSet) {
	fs.String(&fs.Config().Schemas, "schemas", "directory of JSON Schemas, <event_type>/<version>.json, that validate events and type the lake's columns (default: the bundled ones); SIGHUP reloads it")
}

// lakeStage builds the lake loader over the configured lake.
func lakeStage(ctx context.Context, cfg config.Config, schemas *schema.Registry, logger *slog.Logger, reg prometheus.Registerer) (*loader.Loader, error) {
	store, err := openLake(ctx, cfg)
	if err != nil {
		return nil, err
	}
	lc := loader.DefaultConfig()
	lc.Topics = cfg.Loader.Topics
	lc.DLQTopic = cfg.Topics.DLQ
	lc.Group = cfg.Loader.Group
	lc.FlushRows = cfg.Loader.FlushRows
	lc.FlushBytes = int(cfg.Loader.FlushBytes)
	lc.FlushInterval = cfg.Loader.FlushInterval
	lc.MemoryLimit = int(cfg.Loader.MemoryLimit)
	lc.Schemas = schemas
	lc.Tables = make(map[string]loader.Table, len(cfg.Loader.Tables))
	for name, t := range cfg.Loader.Tables {
		lt := loader.Table{Format: t.Format, TimeField: t.TimeField, Columns: make(map[string]row.Kind, len(t.Columns))}
		for col, typ := range t.Columns {
			k, err := row.ParseKind(typ)
			if err != nil {
				return nil, fmt.Errorf("loader.tables.%s.columns.%s: %w", name, col, err)
			}
			lt.Columns[col] = k
		}
		lc.Tables[name] = lt
	}
	cl, err := bus.NewClient(clientConfig(cfg, "sluice-loader"), logger)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := bus.EnsureTopics(tctx, cl, cfg.Topics.Partitions, cfg.Topics.Replication, lc.Topics...); err != nil {
		return nil, fmt.Errorf("%w (is Kafka reachable at %s?)", err, strings.Join(cfg.Kafka.Brokers, ","))
	}
	return loader.New(lc, clientConfig(cfg, "sluice-loader"), store, logger.With("stage", "loader", "lake", store.String()), reg)
}

func collectorFlags(fs *config.FlagSet) {
	c := &fs.Config().Collector
	fs.String(&c.HTTPAddr, "http-addr", "address the HTTP collector listens on")
	fs.String(&c.ID, "collector-id", "collector id stamped on every event (default: the host or pod name)")
	fs.List(&c.APIKeys, "api-key", "API key clients must send (repeatable); none means no authentication")
	fs.Bytes(&c.MaxBodyBytes, "max-body-bytes", "largest single-event body, after decompression")
	fs.Bytes(&c.MaxBatchBytes, "max-batch-bytes", "largest batch body, after decompression")
	fs.Int(&c.BatchMax, "batch-max", "most events in one batch request")
	fs.Bytes(&c.MaxInflightBytes, "max-inflight-bytes", "request bodies held in memory at once; more requests wait")
	fs.Duration(&c.ProduceTimeout, "produce-timeout", "how long a request waits for Kafka's acknowledgement before answering 503")
	p := &fs.Config().Producer
	fs.Duration(&p.Linger, "produce-linger", "how long the producer waits to fill a batch (0: send at once; batches still form while requests are in flight)")
	fs.String(&p.Compression, "produce-compression", "Kafka batch compression: none, lz4, zstd, snappy or gzip")
}

// newLogger builds the process logger: text on a terminal, JSON otherwise.
func newLogger(cfg config.Config, stderr io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.LogFormat
	if format == "auto" {
		format = "json"
		if isTerminal(stderr) {
			format = "text"
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want auto, text or json", cfg.LogFormat)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func clientConfig(cfg config.Config, clientID string) bus.ClientConfig {
	return bus.ClientConfig{
		Brokers:       cfg.Kafka.Brokers,
		ClientID:      clientID,
		TLS:           cfg.Kafka.TLS,
		TLSCAFile:     cfg.Kafka.TLSCAFile,
		SASLMechanism: cfg.Kafka.SASLMechanism,
		SASLUser:      cfg.Kafka.SASLUser,
		SASLPassword:  cfg.Kafka.SASLPassword,
	}
}

// brokersOrLocal points a debugging command at the embedded broker's
// address when no cluster is given, so `sluice tail` works beside
// `sluice up` with no flags.
func brokersOrLocal(cfg *config.Config) {
	if len(cfg.Kafka.Brokers) == 0 {
		cfg.Kafka.Brokers = []string{cfg.Broker.Addr}
	}
}

// serveOps serves /metrics, /healthz and /debug/pprof for a stage that has
// no HTTP API of its own, until ctx is done. An empty address turns it off.
// runStage runs a stage alone: it builds it with the schemas and a fresh
// metrics registry, then runs it beside the ops server until either stops.
func runStage(ctx context.Context, cfg config.Config, logger *slog.Logger, metricsAddr string,
	build func(context.Context, config.Config, *schema.Registry, *slog.Logger, prometheus.Registerer) (interface{ Run(context.Context) error }, error)) error {
	schemas, err := loadSchemas(ctx, cfg, logger)
	if err != nil {
		return err
	}
	reg := newRegistry()
	stage, err := build(ctx, cfg, schemas, logger, reg)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return stage.Run(gctx) })
	g.Go(func() error { return serveOps(gctx, metricsAddr, reg, logger) })
	return g.Wait()
}

func serveOps(ctx context.Context, addr string, reg *prometheus.Registry, logger *slog.Logger) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics server: listen on %s: %w (pass another --metrics-addr)", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	logger.Info("metrics listening", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func brokerConfig(cfg config.Config) bus.BrokerConfig {
	return bus.BrokerConfig{
		Addr:       cfg.Broker.Addr,
		Dir:        filepath.Join(cfg.DataDir, "broker"),
		Partitions: cfg.Topics.Partitions,
		Fsync:      cfg.Broker.Fsync,
	}
}

// collectorStage builds the producer and the collector over it, creating
// the topics the collector writes. The caller closes the producer after the
// collector's Run returns.
func collectorStage(ctx context.Context, cfg config.Config, logger *slog.Logger, reg *prometheus.Registry) (*collector.Collector, *kgo.Client, error) {
	cc := cfg.Collector
	prod, err := bus.NewProducer(clientConfig(cfg, "sluice-collector-"+cc.ID), bus.ProducerConfig{
		Linger:           cfg.Producer.Linger,
		MaxBufferedBytes: int(cfg.Producer.MaxBufferedBytes),
		// One event may be as large as a body, plus the collector's fields.
		MaxRecordBytes: int(max(cc.MaxBodyBytes, 64<<10)) + 64<<10,
		Compression:    cfg.Producer.Compression,
	}, logger)
	if err != nil {
		return nil, nil, err
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := bus.EnsureTopics(tctx, prod, cfg.Topics.Partitions, cfg.Topics.Replication, cfg.Topics.Raw, cfg.Topics.DLQ); err != nil {
		prod.Close()
		return nil, nil, fmt.Errorf("%w (is Kafka reachable at %s?)", err, strings.Join(cfg.Kafka.Brokers, ","))
	}
	colCfg := collector.DefaultConfig()
	colCfg.Addr = cc.HTTPAddr
	colCfg.ID = cc.ID
	colCfg.RawTopic, colCfg.DLQTopic = cfg.Topics.Raw, cfg.Topics.DLQ
	colCfg.APIKeys = cc.APIKeys
	colCfg.MaxBodyBytes = int64(cc.MaxBodyBytes)
	colCfg.MaxBatchBytes = int64(cc.MaxBatchBytes)
	colCfg.BatchMax = cc.BatchMax
	colCfg.MaxInflightBytes = int64(cc.MaxInflightBytes)
	colCfg.ProduceTimeout = cc.ProduceTimeout
	colCfg.ShutdownTimeout = cc.ShutdownTimeout
	col, err := collector.New(colCfg, prod, logger.With("stage", "collector"), reg, reg)
	if err != nil {
		prod.Close()
		return nil, nil, err
	}
	return col, prod, nil
}
