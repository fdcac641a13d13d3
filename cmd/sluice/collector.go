package main

import (
	"context"
	"io"

	"github.com/sluicehq/sluice/internal/config"
)

const collectorUsage = `Usage: sluice collector --brokers host:port[,host:port] [flags]

Runs the HTTP collector alone against a Kafka cluster. It keeps no state, so
any number of replicas may run behind a load balancer.
`

func runCollector(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := config.NewFlagSet("collector", collectorUsage, stderr)
	logFlags(fs)
	kafkaFlags(fs)
	topicFlags(fs)
	collectorFlags(fs)
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		fs.Usage()
		return errNoBrokers
	}
	col, prod, err := collectorStage(ctx, cfg, logger, newRegistry())
	if err != nil {
		return err
	}
	defer prod.Close()
	return col.Run(ctx)
}
