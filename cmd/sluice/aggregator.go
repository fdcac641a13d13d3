package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/aggregator"
	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/schema"
	"github.com/sluicehq/sluice/internal/window"
)

const aggregatorUsage = `Usage: sluice aggregator --config FILE --brokers host:port[,host:port] [--lake DIR|s3://bucket/prefix] [flags]

Runs the windowed aggregations of the config file's aggregations: list, each
reading one topic (Sluice envelopes or CSV lines), counting events in
event-time windows, and writing each window once the watermark passes it to
the lake table agg_<name> and the topic sluice.agg.<name>. Late events go to
the dead-letter topic with reason late_event. State and offsets are
checkpointed together in the lake (_sluice/aggregator/<name>/), so a restart
resumes exactly where the last checkpoint was.

Run as many instances as the work needs: they share the partitions through
Kafka consumer groups, each group of the aggregation living in one instance
(the input is repartitioned by group through sluice.agg.<name>.repartition,
unless the aggregation says keyed: true). Each instance needs its own
--instance-id (the host name by default, as a pod's): a restarted instance
with the same id gets its partitions back at once. See docs/aggregations.md.
`

func runAggregator(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := config.NewFlagSet("aggregator", aggregatorUsage, stderr)
	c := fs.Config()
	fs.String(&c.DataDir, "data-dir", "data directory; the lake defaults to <data-dir>/lake")
	fs.String(&c.Collector.ID, "instance-id", "this instance's name among those sharing the aggregations, kept across restarts, such as the pod's")
	logFlags(fs)
	kafkaFlags(fs)
	topicFlags(fs)
	lakeFlags(fs)
	metricsAddr := "127.0.0.1:9465"
	fs.String(&metricsAddr, "metrics-addr", "address serving /metrics, /healthz and /debug/pprof (empty: off)")
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		fs.Usage()
		return errNoBrokers
	}
	if len(cfg.Aggregations) == 0 {
		return errors.New("no aggregations: list them under aggregations: in the file given with --config (docs/aggregations.md shows the MTA one)")
	}
	return runStage(ctx, cfg, logger, metricsAddr, func(ctx context.Context, cfg config.Config, _ *schema.Registry, logger *slog.Logger, reg prometheus.Registerer) (interface{ Run(context.Context) error }, error) {
		return aggregationStages(ctx, cfg, logger, reg)
	})
}

// aggregations runs several aggregators, and their producer, as one stage.
type aggregations struct {
	aggs []*aggregator.Aggregator
	prod *kgo.Client
}

func (a *aggregations) Run(ctx context.Context) error {
	defer a.prod.Close()
	g, gctx := errgroup.WithContext(ctx)
	for _, agg := range a.aggs {
		g.Go(func() error { return agg.Run(gctx) })
	}
	return g.Wait()
}

// aggregationStages builds every configured aggregation on one producer.
func aggregationStages(ctx context.Context, cfg config.Config, logger *slog.Logger, reg prometheus.Registerer) (*aggregations, error) {
	store, err := openLake(ctx, cfg)
	if err != nil {
		return nil, err
	}
	prod, err := bus.NewProducer(clientConfig(cfg, "sluice-aggregator"), bus.ProducerConfig{}, logger)
	if err != nil {
		return nil, err
	}
	out := &aggregations{prod: prod}
	for _, ac := range cfg.Aggregations {
		a, err := aggregator.New(aggregatorConfig(ac, cfg.Topics.DLQ, cfg.Collector.ID), clientConfig(cfg, "sluice-aggregator-"+ac.Name),
			prod, store, logger.With("stage", "aggregator"), reg)
		if err != nil {
			prod.Close()
			return nil, fmt.Errorf("aggregations: %w", err)
		}
		out.aggs = append(out.aggs, a)
	}
	return out, nil
}

// aggregatorConfig turns an aggregation of the config file into the
// stage's configuration; instance names this process among those sharing
// the aggregation.
func aggregatorConfig(ac config.Aggregation, dlq, instance string) aggregator.Config {
	c := aggregator.Config{Name: ac.Name, Topic: ac.Topic, EventType: ac.EventType, Format: ac.Format,
		TimeFields: ac.Time.Fields, TimeLayout: ac.Time.Layout, OutputFormat: ac.Output.Format,
		OutputTopic: ac.Output.Topic, DLQTopic: dlq, CheckpointInterval: ac.CheckpointInterval,
		Keyed: ac.Keyed, Partitions: ac.Partitions, Group: ac.Group,
		TransactionalID: cmp.Or(ac.TransactionalID, "sluice-aggregator-"+ac.Name+"-"+instance), InstanceID: instance,
		Window: window.Config{Size: ac.Window.Size, Slide: ac.Window.Slide, Delay: ac.Window.Delay,
			IdleTimeout: ac.Window.IdleTimeout, GroupBy: ac.GroupBy, Dedupe: ac.Dedupe, MaxOpen: ac.MaxOpenWindows}}
	for _, col := range ac.Columns {
		c.Columns = append(c.Columns, aggregator.Column{Name: col.Name, Type: col.Type})
	}
	for _, ag := range ac.Aggregates {
		c.Window.Aggregates = append(c.Window.Aggregates, window.Aggregate{Op: window.Op(ag.Op), Field: ag.Field, As: ag.As})
	}
	return c
}
