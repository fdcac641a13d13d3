package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/aggregator"
	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/collector"
	"github.com/sluicehq/sluice/internal/console"
	"github.com/sluicehq/sluice/internal/dlq"
	"github.com/sluicehq/sluice/internal/enrich"
	"github.com/sluicehq/sluice/internal/enricher"
	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/jobs"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/query"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/schema"
	"github.com/sluicehq/sluice/internal/sink"
)

// Shape says which components a process runs.
type Shape struct {
	// Broker runs the embedded broker when the config names no brokers.
	Broker    bool
	Collector bool
	// Enricher runs the enricher unless the config disables it.
	Enricher bool
	// Sinks names the sinks to run, by name or type; "*" is every sink.
	Sinks        []string
	Aggregations bool
	// Jobs runs the batch layer's scheduler when the config names a
	// models directory.
	Jobs bool
}

// Process is a built process: its components, ready to run, and what a
// command tells its user about them.
type Process struct {
	*app.Process
	// Config is the configuration the process runs, its brokers resolved.
	Config   Config
	Registry *prometheus.Registry
	Ops      *app.Ops
	// CollectorAddr and OpsAddr are the bound addresses, when the process
	// serves them.
	CollectorAddr net.Addr
	OpsAddr       net.Addr
}

// Build builds the components of shape from cfg, in order: the embedded
// broker, the topics they need, the collector, the enricher, the sinks,
// the aggregations and the ops endpoints. A failure releases, last first,
// whatever was built, and is one error that says what to do.
func Build(ctx context.Context, cfg Config, shape Shape, logger *slog.Logger) (_ *Process, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Process{Process: app.NewProcess(logger), Registry: newRegistry()}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if shape.Broker && len(cfg.Kafka.Brokers) == 0 {
		bc := cfg.Broker
		bc.Dir, bc.Partitions = filepath.Join(cfg.Process.DataDir, "broker"), cfg.Topics.Partitions
		b, err := bus.StartBroker(bc, logger.With("component", "broker"))
		if err != nil {
			return nil, err
		}
		p.Defer(b.Close)
		p.Add(b)
		cfg.Kafka.Brokers = []string{b.Addr()}
		cfg.Topics.Replication = 1 // one broker holds one copy of each partition
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return nil, bus.ErrNoBrokers
	}
	if shape.Enricher && cfg.Enricher.Disabled {
		shape.Enricher = false
		// Without an enricher the lake reads what the collector wrote.
		def := loaderTopics()
		for _, s := range cfg.Sinks {
			if rc, ok := s.Config.(sink.Settings); ok && slices.Equal(rc.Runner().Topics, def) {
				rc.Runner().Topics = []string{cfg.Topics.Raw, cfg.Topics.DLQ}
			}
		}
	}
	var sinks []Sink
	for _, s := range cfg.Sinks {
		if s.selected(shape.Sinks) {
			sinks = append(sinks, s)
		}
	}
	if len(shape.Sinks) > 0 && !slices.Contains(shape.Sinks, "*") && len(sinks) == 0 {
		return nil, fmt.Errorf("no sink named %v in the config (its sinks: %v)", shape.Sinks, sinkNames(cfg.Sinks))
	}
	if shape.Aggregations && len(cfg.Aggregations) == 0 {
		shape.Aggregations = false
	}
	if shape.Jobs && cfg.Jobs.Models == "" {
		shape.Jobs = false
	}
	p.Config = cfg

	if err := ensureTopics(ctx, cfg, shape, sinks, logger); err != nil {
		return nil, err
	}
	p.Ops = app.NewOps(cfg.Ops, p.Process, p.Registry, cfg.Process.InstanceID, lagOf(p.Process, cfg.Kafka))
	p.Registry.MustRegister(p.Ops.LagCollector())

	var schemas *schema.Registry
	edge := shape.Collector && cfg.Collector.Validation == collector.ValidateSchema
	if shape.Enricher || len(sinks) > 0 || edge {
		if schemas, err = LoadSchemas(cfg); err != nil {
			return nil, err
		}
		from := "the bundled schemas"
		if cfg.Schemas != "" {
			from = cfg.Schemas
		}
		logger.Info("schemas loaded", "schemas", len(schemas.Keys()), "from", from)
		p.Add(&schemaWatcher{Reporter: health.New("schemas", logger), schemas: schemas, logger: logger})
	}
	if shape.Collector {
		if err := p.addCollector(cfg, schemas, logger); err != nil {
			return nil, err
		}
	}
	if shape.Enricher {
		e, err := newEnricher(ctx, cfg, schemas, logger, p.Registry)
		if err != nil {
			return nil, err
		}
		p.Add(e)
	}
	var store lake.Storage
	var cat *lake.Catalog
	if shape.Aggregations || shape.Jobs || slices.ContainsFunc(sinks, func(s Sink) bool { spec, _ := SinkSpec(s.Type); return spec.Lake }) {
		if store, err = lake.Open(ctx, cfg.LakeURL(), cfg.Lake.S3); err != nil {
			return nil, err
		}
		if err := lake.CheckLayout(ctx, store); err != nil {
			return nil, err
		}
		if cat, err = lake.OpenCatalog(ctx, cfg.LakeURL(), cfg.Catalog(), cfg.Lake.S3); err != nil {
			return nil, err
		}
		p.Defer(func() { cat.Close() })
	}
	for _, s := range sinks {
		spec, _ := SinkSpec(s.Type)
		env := sink.Env{Logger: logger, Metrics: p.Registry, Kafka: clientConfig(cfg, "sluice-sink-"+s.Name),
			DLQTopic: cfg.Topics.DLQ, Lake: store, Catalog: cat, Schemas: schemas, InstanceID: cfg.Process.InstanceID}
		r, err := sink.Build(s.Name, spec, s.Config, env)
		if err != nil {
			return nil, err
		}
		p.Add(r)
	}
	if shape.Aggregations {
		prod, err := bus.NewProducer(clientConfig(cfg, "sluice-aggregator"), bus.ProducerConfig{}, logger)
		if err != nil {
			return nil, err
		}
		p.Defer(prod.Close)
		for i := range cfg.Aggregations {
			ac := cfg.aggregationConfig(i)
			a, err := aggregator.New(ac, clientConfig(cfg, "sluice-aggregator-"+ac.Name), prod, store, cat, logger.With("component", "aggregator"), p.Registry)
			if err != nil {
				return nil, fmt.Errorf("aggregations[%d]: %w", i, err)
			}
			p.Add(a)
		}
	}
	if shape.Jobs {
		if _, err := jobs.Load(cfg.Jobs.Models); err != nil {
			return nil, fmt.Errorf("jobs.models: %w", err)
		}
		lease := bus.NewLease(clientConfig(cfg, "sluice-jobs"), cfg.Jobs.Group, cfg.Topics.Replication, logger.With("component", "jobs"))
		run := jobs.Executor(cfg.Jobs.Models, store, cat, filepath.Join(cfg.Process.DataDir, "cache"), logger.With("component", "jobs"))
		sched, err := jobs.NewScheduler(cfg.Jobs.Schedules, lease, run, logger.With("component", "jobs"), p.Registry)
		if err != nil {
			return nil, err
		}
		p.Add(sched)
	}
	if err := p.mountConsole(cfg, store, cat, logger); err != nil {
		return nil, err
	}
	if !shape.Collector && cfg.Ops.Addr != "" {
		srv, err := app.Listen(cfg.Ops.Addr, p.Ops, logger)
		if err != nil {
			return nil, err
		}
		p.Defer(srv.Close)
		p.Add(srv)
		p.OpsAddr = srv.Addr()
	}
	return p, nil
}

// mountConsole serves the console beside the ops endpoints: the lake's
// screens when the process has the lake (store and cat).
func (p *Process) mountConsole(cfg Config, store lake.Storage, cat *lake.Catalog, logger *slog.Logger) error {
	cc := clientConfig(cfg, "sluice-console")
	deps := console.Deps{
		Status: p.Ops.Status,
		Kafka:  cc,
		Raw:    cfg.Topics.Raw,
		DLQ:    cfg.Topics.DLQ,
		Replayer: dlq.New(cc, dlq.Topics{DLQ: cfg.Topics.DLQ, Raw: cfg.Topics.Raw, Log: cfg.Topics.Replays,
			Replication: cfg.Topics.Replication}, logger.With("component", "console")),
		Logger: logger.With("component", "console"),
	}
	if store != nil && cat != nil {
		cache := filepath.Join(cfg.Process.DataDir, "cache")
		// Screens ask several things at once: they share an engine a few
		// seconds old at most.
		deps.Lake = console.ShareLake(func(ctx context.Context) (*query.Engine, *lake.Catalog, func(), error) {
			local, err := lake.LocalOf(ctx, store, cache)
			if err != nil {
				return nil, nil, nil, err
			}
			eng, err := query.Open(ctx, local, cat, query.Options{})
			if err != nil {
				return nil, nil, nil, err
			}
			return eng, cat, func() { eng.Close() }, nil
		}, 3*time.Second)
	}
	if cfg.Process.DataDir != "" {
		qs, err := console.NewQueries(filepath.Join(cfg.Process.DataDir, "console"))
		if err != nil {
			return err
		}
		deps.Queries = qs
	}
	p.Ops.Mount(console.New(cfg.Console, deps))
	return nil
}

func sinkNames(ss []Sink) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

// loaderTopics are the lake sink's default topics.
func loaderTopics() []string { return sink.DefaultConfig().Topics }

// ensureTopics creates the topics the components read and write, waiting
// for Kafka at most kafka.start_timeout.
func ensureTopics(ctx context.Context, cfg Config, shape Shape, sinks []Sink, logger *slog.Logger) error {
	var topics []string
	add := func(ts ...string) {
		for _, t := range ts {
			if !slices.Contains(topics, t) {
				topics = append(topics, t)
			}
		}
	}
	if shape.Collector {
		add(cfg.Topics.Raw, cfg.Topics.DLQ)
	}
	if shape.Enricher {
		add(cfg.Topics.Raw, cfg.Topics.Enriched, cfg.Topics.DLQ)
	}
	for _, s := range sinks {
		if rc, ok := s.Config.(sink.Settings); ok {
			add(rc.Runner().Topics...)
		}
		add(cfg.Topics.DLQ)
	}
	if len(topics) == 0 {
		return nil
	}
	cl, err := bus.NewClient(clientConfig(cfg, "sluice-admin"), logger)
	if err != nil {
		return err
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, startTimeout(cfg))
	defer cancel()
	if err := bus.EnsureTopics(tctx, cl, cfg.Topics.Partitions, cfg.Topics.Replication, topics...); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w (is Kafka reachable at %s? kafka.start_timeout is %v)", err, strings.Join(cfg.Kafka.Brokers, ","), startTimeout(cfg))
	}
	return nil
}

func startTimeout(cfg Config) time.Duration {
	return cmp.Or(cfg.Kafka.StartTimeout, bus.DefaultClientConfig().StartTimeout)
}

// addCollector builds the collector, on a producer of its own, listening.
func (p *Process) addCollector(cfg Config, schemas *schema.Registry, logger *slog.Logger) error {
	cc := cfg.collectorConfig()
	pc := cfg.Producer
	// One event may be as large as a body, plus the collector's fields.
	pc.MaxRecordBytes = int(max(cc.MaxBodyBytes, 64<<10)) + 64<<10
	prod, err := bus.NewProducer(clientConfig(cfg, "sluice-collector-"+cc.ID), pc, logger)
	if err != nil {
		return err
	}
	p.Defer(prod.Close)
	var edge *collector.Edge
	if schemas != nil {
		edge = &collector.Edge{Schemas: schemas, RejectUnknown: cfg.Enricher.UnknownSchema == "reject"}
	}
	col, err := collector.New(cc, prod, logger.With("component", "collector"), p.Registry, p.Ops, edge)
	if err != nil {
		return err
	}
	if p.CollectorAddr, err = col.Listen(); err != nil {
		return err
	}
	p.Defer(col.Close)
	p.Add(col)
	return nil
}

// newEnricher builds the enricher with the bundled pipelines: taxi zones
// joined to yellow_taxi_trip, and, with enricher.forms_api, form
// definitions fetched for form_event.
func newEnricher(ctx context.Context, cfg Config, schemas *schema.Registry, logger *slog.Logger, reg prometheus.Registerer) (*enricher.Enricher, error) {
	ec := cfg.enricherConfig()
	zones, err := TaxiZones(ctx)
	if err != nil {
		return nil, err
	}
	ec.Pipelines = map[string]enricher.Pipeline{"yellow_taxi_trip": enricher.TaxiZones(zones)}
	for _, m := range cfg.models() {
		if ec.Pipelines[m.EventType], err = m.Pipeline(ec.Pipelines[m.EventType]); err != nil {
			return nil, err
		}
	}
	return enricher.New(ec, clientConfig(cfg, "sluice-enricher"), schemas, logger.With("component", "enricher"), reg)
}

// TaxiZones loads the bundled TLC taxi zone lookup, keyed by LocationID.
func TaxiZones(ctx context.Context) (*enrich.Lookup, error) {
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
	path := filepath.Join(tmp, sample.TaxiZones)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, err
	}
	return enrich.LoadLookup(ctx, path, "LocationID")
}

// LoadSchemas loads the schema registry the config names, or the bundled
// schemas.
func LoadSchemas(cfg Config) (*schema.Registry, error) {
	fsys := sample.Schemas()
	if cfg.Schemas != "" {
		fsys = os.DirFS(cfg.Schemas)
	}
	reg, err := schema.Load(fsys)
	if err != nil {
		return nil, fmt.Errorf("%w (fix the schema, or pass --schemas another directory)", err)
	}
	return reg, nil
}

// schemaWatcher reloads the schemas on SIGHUP: one load and one watcher a
// process, for the enricher and the sinks alike.
type schemaWatcher struct {
	*health.Reporter
	schemas *schema.Registry
	logger  *slog.Logger
}

func (w *schemaWatcher) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			if err := w.schemas.Reload(); err != nil {
				w.Err(err)
				w.logger.Error("schemas not reloaded; the previous ones stay in use", "err", err)
				continue
			}
			w.logger.Info("schemas reloaded", "schemas", len(w.schemas.Keys()))
		}
	}
}

// lagOf reports consumer groups' lag through a client made when first
// asked, closed with the process.
func lagOf(p *app.Process, cc bus.ClientConfig) app.LagFunc {
	var mu sync.Mutex
	var cl *kgo.Client
	p.Defer(func() {
		mu.Lock()
		defer mu.Unlock()
		if cl != nil {
			cl.Close()
		}
	})
	cc.ClientID = "sluice-status"
	return func(ctx context.Context, groups []string) ([]bus.GroupLag, error) {
		mu.Lock()
		if cl == nil {
			c, err := bus.NewClient(cc, slog.New(slog.DiscardHandler))
			if err != nil {
				mu.Unlock()
				return nil, err
			}
			cl = c
		}
		mu.Unlock()
		return bus.Lags(ctx, cl, cc, groups...)
	}
}

// clientConfig is the Kafka client settings of the config, named id.
func clientConfig(cfg Config, id string) bus.ClientConfig { return cfg.Client(id) }

// Client is the Kafka client settings of the config, for a client named
// id.
func (c Config) Client(id string) bus.ClientConfig {
	cc := c.Kafka
	cc.ClientID = id
	return cc
}

// BrokersOrLocal points a debugging command at the embedded broker when
// no cluster is given: the one a `sluice up` running on the data directory
// says it listens on, else broker.addr. So `sluice tail` works beside
// `sluice up` with no flags, or with its --data-dir alone.
func (c *Config) BrokersOrLocal() {
	if len(c.Kafka.Brokers) > 0 {
		return
	}
	if r, ok := ReadRunning(c.Process.DataDir); ok && r.Broker != "" {
		c.Kafka.Brokers = []string{r.Broker}
		return
	}
	c.Kafka.Brokers = []string{c.Broker.Addr}
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// NewLogger builds the process logger: text on a terminal, JSON otherwise,
// unless log_format says.
func NewLogger(cfg Config, stderr io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Process.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", cfg.Process.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.Process.LogFormat
	if format == "auto" {
		format = "json"
		if IsTerminal(stderr) {
			format = "text"
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want auto, text or json", cfg.Process.LogFormat)
}

// IsTerminal reports whether w is a terminal, for logs and progress bars.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
