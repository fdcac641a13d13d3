package main

import (
	"context"
	"io"

	"github.com/sluicehq/sluice/internal/pipeline"
)

const collectorUsage = `Usage: sluice collector --brokers host:port[,host:port] [flags]

Runs the HTTP collector alone against a Kafka cluster. It keeps no state, so
any number of replicas may run behind a load balancer. Its address also
serves /metrics, /healthz, /readyz and the status API, /api/v1/status.
`

func runCollector(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("collector", collectorUsage, stderr)
	logFlags(fs)
	pipeline.ProcessFlags(fs, "instance-id")
	pipeline.KafkaFlags(fs)
	pipeline.TopicFlags(fs)
	pipeline.CollectorFlags(fs)
	pipeline.ProducerFlags(fs)
	pipeline.OpsFlags(fs, "pprof")
	pipeline.ConsoleFlags(fs)
	fs.Alias("collector-id", "instance-id")
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		fs.Usage()
		return errNoBrokers
	}
	return runProcess(ctx, cfg, pipeline.Shape{Collector: true}, logger, nil)
}
