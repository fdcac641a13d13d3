package main

import (
	"context"
	"io"

	"github.com/sluicehq/sluice/internal/pipeline"
)

const enricherUsage = `Usage: sluice enricher --brokers host:port[,host:port] [flags]

Runs the enricher alone: it consumes the raw topic with a consumer group,
validates each payload against its schema (--schemas), enriches it, and
writes the enriched topic and the dead-letter topic exactly once, in Kafka
transactions. Enrichers sharing --enricher-group share the partitions; each
needs its own --instance-id (or --transactional-id).

Pipelines: yellow_taxi_trip gets pickup and dropoff borough and zone from
the TLC zone lookup; with --forms-api, form_event gets its form's definition
and becomes rows of the form and form_field tables.

--ops-addr serves /metrics, /healthz, /readyz and the status API.
`

func runEnricher(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("enricher", enricherUsage, stderr)
	logFlags(fs)
	pipeline.ProcessFlags(fs, "instance-id")
	pipeline.KafkaFlags(fs)
	pipeline.TopicFlags(fs)
	pipeline.EnricherFlags(fs, "enricher-group", "transactional-id", "unknown-schema", "enricher-concurrency", "forms-api")
	pipeline.SchemaFlags(fs)
	opsFlags(fs, "127.0.0.1:9465")
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		fs.Usage()
		return errNoBrokers
	}
	cfg.Enricher.Disabled = false
	return runProcess(ctx, cfg, pipeline.Shape{Enricher: true}, logger, nil)
}
