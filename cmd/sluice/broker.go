package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/sluicehq/sluice/internal/pipeline"
)

const brokerUsage = `Usage: sluice broker [flags]

Runs the embedded Kafka broker alone, persisted to <data-dir>/broker. Any
Kafka client (kcat, franz-go, librdkafka) can use it; stages started with
--brokers point at it. Stop with Ctrl-C: its state is saved first.
`

func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("broker", brokerUsage, stderr)
	pipeline.ProcessFlags(fs, "data-dir")
	pipeline.BrokerFlags(fs)
	pipeline.TopicFlags(fs, "topic-partitions")
	logFlags(fs)
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	cfg.Kafka.Brokers = nil
	return runProcess(ctx, cfg, pipeline.Shape{Broker: true}, logger, func(p *pipeline.Process) {
		fmt.Fprintf(stdout, "Kafka broker listening on %s (data in %s). Press Ctrl-C to stop.\n",
			p.Config.Kafka.Brokers[0], filepath.Join(cfg.Process.DataDir, "broker"))
	})
}
