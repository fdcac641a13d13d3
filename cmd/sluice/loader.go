package main

import (
	"context"
	"fmt"
	"io"

	"github.com/sluicehq/sluice/internal/pipeline"
)

const loaderUsage = `Usage: sluice loader lake --brokers host:port[,host:port] [--lake DIR|s3://bucket/prefix] [flags]
       sluice loader search --brokers host:port[,...] --search-urls http://host:9200[,...] [flags]
       sluice loader NAME --config FILE --brokers host:port[,host:port]

Runs a sink alone: the sinks of the config that are named NAME or are of
type NAME (without --config, one sink of type NAME with its defaults).
'sluice loader lake' consumes the loader topics with a consumer group and
writes each event type as an Apache Iceberg table, exactly once.
'sluice loader search' (the sinks of type opensearch and elasticsearch;
without --config, one of type opensearch) indexes each event into an index
per event type and day, with its root_id as document id, and sends the
documents the server refuses to the dead-letter topic (docs/search.md). The flags set the settings of the sinks it runs.
Loaders sharing --loader-group share the partitions.

--ops-addr serves /metrics, /healthz, /readyz and the status API.
`

func runLoader(ctx context.Context, args []string, _, stderr io.Writer) error {
	switch {
	case len(args) > 0 && (args[0] == "-h" || args[0] == "--help"):
		args = []string{"lake", "--help"}
	case len(args) == 0 || len(args[0]) == 0 || args[0][0] == '-':
		fmt.Fprint(stderr, loaderUsage)
		return errUsage
	}
	name := args[0]
	fs := pipeline.NewFlagSet("loader "+name, loaderUsage, stderr)
	typ := pipeline.SinkType(name)
	if _, ok := pipeline.SinkSpec(typ); ok {
		// Without a config file, the command's sink is one of its type.
		fs.SetDefaults(func(c *pipeline.Config) { c.SinkOf(typ) })
	}
	pipeline.ProcessFlags(fs, "data-dir", "instance-id")
	logFlags(fs)
	pipeline.KafkaFlags(fs)
	pipeline.TopicFlags(fs)
	if spec, ok := pipeline.SinkSpec(typ); !ok || spec.Lake {
		// A sink named in a config may be of any type: offer them.
		pipeline.LakeFlags(fs)
	}
	pipeline.SinkFlags(fs, name)
	pipeline.SearchFlags(fs, name)
	pipeline.SchemaFlags(fs)
	opsFlags(fs, "127.0.0.1:9464")
	cfg, logger, err := setup(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		fs.Usage()
		return errNoBrokers
	}
	return runProcess(ctx, cfg, pipeline.Shape{Sinks: []string{name}}, logger, nil)
}
