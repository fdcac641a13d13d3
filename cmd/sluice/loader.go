package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/schema"
)

const loaderUsage = `Usage: sluice loader lake --brokers host:port[,host:port] [--lake DIR|s3://bucket/prefix] [flags]

Runs the lake loader alone: it consumes the loader topics with a consumer
group and writes each event type as a Hive-partitioned Parquet table,
exactly once. Loaders sharing --loader-group share the partitions.
`

func runLoader(ctx context.Context, args []string, _, stderr io.Writer) error {
	switch {
	case len(args) > 0 && (args[0] == "-h" || args[0] == "--help"):
		args = []string{"lake", "--help"}
	case len(args) == 0 || args[0] != "lake":
		fmt.Fprint(stderr, loaderUsage)
		return errUsage
	}
	fs := config.NewFlagSet("loader lake", loaderUsage, stderr)
	c := fs.Config()
	fs.String(&c.DataDir, "data-dir", "data directory; the lake defaults to <data-dir>/lake")
	logFlags(fs)
	kafkaFlags(fs)
	topicFlags(fs)
	lakeFlags(fs)
	loaderFlags(fs)
	schemaFlags(fs)
	metricsAddr := "127.0.0.1:9464"
	fs.String(&metricsAddr, "metrics-addr", "address serving /metrics, /healthz and /debug/pprof (empty: off)")
	cfg, logger, err := setup(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		fs.Usage()
		return errNoBrokers
	}
	return runStage(ctx, cfg, logger, metricsAddr, func(ctx context.Context, cfg config.Config, schemas *schema.Registry, logger *slog.Logger, reg prometheus.Registerer) (interface{ Run(context.Context) error }, error) {
		return lakeStage(ctx, cfg, schemas, logger, reg)
	})
}
