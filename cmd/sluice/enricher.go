package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/schema"
)

const enricherUsage = `Usage: sluice enricher --brokers host:port[,host:port] [flags]

Runs the enricher alone: it consumes the raw topic with a consumer group,
validates each payload against its schema (--schemas), enriches it, and
writes the enriched topic and the dead-letter topic exactly once, in Kafka
transactions. Enrichers sharing --enricher-group share the partitions; each
needs its own --transactional-id.

Pipelines: yellow_taxi_trip gets pickup and dropoff borough and zone from
the TLC zone lookup; with --forms-api, form_event gets its form's definition
and becomes rows of the form and form_field tables.
`

func runEnricher(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := config.NewFlagSet("enricher", enricherUsage, stderr)
	logFlags(fs)
	kafkaFlags(fs)
	topicFlags(fs)
	enricherFlags(fs)
	schemaFlags(fs)
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
	return runStage(ctx, cfg, logger, metricsAddr, func(ctx context.Context, cfg config.Config, schemas *schema.Registry, logger *slog.Logger, reg prometheus.Registerer) (interface{ Run(context.Context) error }, error) {
		return enricherStage(ctx, cfg, schemas, logger, reg)
	})
}
