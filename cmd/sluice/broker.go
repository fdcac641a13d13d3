package main

import (
	"context"
	"fmt"
	"io"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/config"
)

const brokerUsage = `Usage: sluice broker [flags]

Runs the embedded Kafka broker alone, persisted to <data-dir>/broker. Any
Kafka client (kcat, franz-go, librdkafka) can use it; stages started with
--brokers point at it. Stop with Ctrl-C: its state is saved first.
`

func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := config.NewFlagSet("broker", brokerUsage, stderr)
	c := fs.Config()
	fs.String(&c.DataDir, "data-dir", "directory whose broker/ subdirectory holds the broker's log")
	fs.String(&c.Broker.Addr, "broker-addr", "address to listen on")
	fs.Bool(&c.Broker.Fsync, "broker-fsync", "fsync every produced batch before acknowledging it")
	fs.Int32(&c.Topics.Partitions, "topic-partitions", "partitions of automatically created topics")
	logFlags(fs)
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	b, err := bus.StartBroker(brokerConfig(cfg), logger)
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintf(stdout, "Kafka broker listening on %s (data in %s). Press Ctrl-C to stop.\n", b.Addr(), brokerConfig(cfg).Dir)
	<-ctx.Done()
	return nil
}
