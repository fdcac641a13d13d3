package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/collector"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/enricher"
	"github.com/sluicehq/sluice/internal/loader"
)

const upUsage = `Usage: sluice up [flags]

Runs the whole pipeline in one process: the embedded Kafka broker (unless
--brokers names a cluster), the HTTP collector, the enricher (schemas,
lookups, APIs; see 'sluice enricher --help') and the lake loader, which
writes Parquet tables to <data-dir>/lake. Data survives restarts, including
kill -9. Stop with Ctrl-C: in-flight requests finish first.
`

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := config.NewFlagSet("up", upUsage, stderr)
	c := fs.Config()
	fs.String(&c.DataDir, "data-dir", "directory for the broker's log and, later, the lake")
	fs.String(&c.Broker.Addr, "broker-addr", "address the embedded broker listens on (any Kafka client can connect)")
	fs.Bool(&c.Broker.Fsync, "broker-fsync", "fsync every produced batch before acknowledging it (survives power loss, slower)")
	logFlags(fs)
	kafkaFlags(fs)
	topicFlags(fs)
	collectorFlags(fs)
	lakeFlags(fs)
	loaderFlags(fs)
	enricherFlags(fs)
	schemaFlags(fs)
	fs.Bool(&fs.Config().Enricher.Disabled, "no-enricher", "run without the enricher: the loader then reads the raw topic")
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}

	p, err := startPipeline(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer p.close()
	p.printURLs(stdout)
	fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
	return p.run(ctx)
}

// pipeline is the whole of Sluice in one process, as `sluice up` and
// `sluice demo` run it.
type pipeline struct {
	cfg     config.Config // with the brokers it uses
	addr    net.Addr      // the collector's
	reg     *prometheus.Registry
	col     *collector.Collector
	enr     *enricher.Enricher // nil when disabled
	load    *loader.Loader
	aggs    *aggregations // nil when none are configured
	closers []func()
}

// startPipeline starts the embedded broker (unless cfg names brokers) and
// readies the collector, listening, and the lake loader; run runs them.
func startPipeline(ctx context.Context, cfg config.Config, logger *slog.Logger) (p *pipeline, err error) {
	p = &pipeline{reg: newRegistry()}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if len(cfg.Kafka.Brokers) == 0 {
		broker, err := bus.StartBroker(brokerConfig(cfg), logger.With("stage", "broker"))
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, func() { broker.Close() })
		cfg.Kafka.Brokers = []string{broker.Addr()}
		// One broker holds one copy of each partition.
		cfg.Topics.Replication = 1
	}
	p.cfg = cfg
	col, prod, err := collectorStage(ctx, cfg, logger, p.reg)
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, prod.Close)
	if p.addr, err = col.Listen(); err != nil {
		return nil, err
	}
	// One registry for the enricher and the loader: one load, one SIGHUP.
	schemas, err := loadSchemas(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	if cfg.Enricher.Disabled {
		// Without an enricher the loader reads what the collector wrote.
		if slices.Equal(cfg.Loader.Topics, config.Default().Loader.Topics) {
			cfg.Loader.Topics = []string{cfg.Topics.Raw, cfg.Topics.DLQ}
		}
	} else if p.enr, err = enricherStage(ctx, cfg, schemas, logger, p.reg); err != nil {
		return nil, err
	}
	if p.load, err = lakeStage(ctx, cfg, schemas, logger, p.reg); err != nil {
		return nil, err
	}
	if len(cfg.Aggregations) > 0 {
		if p.aggs, err = aggregationStages(ctx, cfg, logger, p.reg); err != nil {
			return nil, err
		}
	}
	p.col = col
	return p, nil
}

// run runs the collector and the loader until ctx is done.
func (p *pipeline) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.col.Run(gctx) })
	g.Go(func() error { return p.load.Run(gctx) })
	if p.enr != nil {
		g.Go(func() error { return p.enr.Run(gctx) })
	}
	if p.aggs != nil {
		g.Go(func() error { return p.aggs.Run(gctx) })
	}
	return g.Wait()
}

// close releases what startPipeline opened, last first.
func (p *pipeline) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	p.closers = nil
}

func (p *pipeline) printURLs(w io.Writer) {
	fmt.Fprintf(w, "Sluice is up.\n"+
		"  collector  http://%[1]s/api/v1/collect  (batch: /api/v1/collect/batch)\n"+
		"  API docs   http://%[1]s/api/v1/docs/\n"+
		"  metrics    http://%[1]s/metrics\n"+
		"  kafka      %[2]s  (try: sluice tail %[3]s --follow)\n"+
		"  lake       %[5]s  (try: sluice query --data-dir %[4]s --tables)\n"+
		"  data dir   %[4]s\n", p.addr, p.cfg.Kafka.Brokers[0], p.cfg.Topics.Raw, p.cfg.DataDir, lakeURL(p.cfg))
}
