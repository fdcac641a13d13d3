package main

import (
	"context"
	"fmt"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/config"
)

const upUsage = `Usage: sluice up [flags]

Runs the whole pipeline in one process: the embedded Kafka broker (unless
--brokers names a cluster), the HTTP collector and the lake loader, which
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
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}

	var broker *bus.Broker
	if len(cfg.Kafka.Brokers) == 0 {
		if broker, err = bus.StartBroker(brokerConfig(cfg), logger.With("stage", "broker")); err != nil {
			return err
		}
		defer broker.Close()
		cfg.Kafka.Brokers = []string{broker.Addr()}
		// One broker holds one copy of each partition.
		cfg.Topics.Replication = 1
	}
	reg := newRegistry()
	col, prod, err := collectorStage(ctx, cfg, logger, reg)
	if err != nil {
		return err
	}
	defer prod.Close()
	addr, err := col.Listen()
	if err != nil {
		return err
	}
	load, err := lakeStage(ctx, cfg, logger, reg)
	if err != nil {
		return err
	}

	fmt.Fprintf(stdout, "Sluice is up.\n"+
		"  collector  http://%[1]s/api/v1/collect  (batch: /api/v1/collect/batch)\n"+
		"  API docs   http://%[1]s/api/v1/docs/\n"+
		"  metrics    http://%[1]s/metrics\n"+
		"  kafka      %[2]s  (try: sluice tail %[3]s --follow)\n"+
		"  lake       %[5]s  (try: sluice query --tables)\n"+
		"  data dir   %[4]s\n"+
		"Press Ctrl-C to stop.\n", addr, cfg.Kafka.Brokers[0], cfg.Topics.Raw, cfg.DataDir, lakeURL(cfg))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return col.Run(gctx) })
	g.Go(func() error { return load.Run(gctx) })
	return g.Wait()
}
