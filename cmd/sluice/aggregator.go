package main

import (
	"context"
	"errors"
	"io"

	"github.com/sluicehq/sluice/internal/pipeline"
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

--ops-addr serves /metrics, /healthz, /readyz and the status API.
`

func runAggregator(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("aggregator", aggregatorUsage, stderr)
	pipeline.ProcessFlags(fs, "data-dir", "instance-id")
	logFlags(fs)
	pipeline.KafkaFlags(fs)
	pipeline.TopicFlags(fs)
	pipeline.LakeFlags(fs)
	opsFlags(fs, "127.0.0.1:9466")
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
	return runProcess(ctx, cfg, pipeline.Shape{Aggregations: true}, logger, nil)
}
