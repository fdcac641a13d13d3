package main

import (
	"context"
	"fmt"
	"io"

	"github.com/sluicehq/sluice/internal/pipeline"
)

const upUsage = `Usage: sluice up [flags]

Runs the whole pipeline in one process: the embedded Kafka broker (unless
--brokers names a cluster), the HTTP collector, the enricher (schemas,
lookups, APIs; see 'sluice enricher --help'), the config's sinks (by default
the lake, Parquet tables in <data-dir>/lake) and its aggregations. Data
survives restarts, including kill -9. Stop with Ctrl-C: in-flight requests
finish first. The collector's address also serves /metrics, /healthz,
/readyz and the status API, /api/v1/status.
`

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("up", upUsage, stderr)
	pipeline.ProcessFlags(fs)
	pipeline.BrokerFlags(fs)
	pipeline.KafkaFlags(fs)
	pipeline.TopicFlags(fs)
	pipeline.CollectorFlags(fs)
	pipeline.ProducerFlags(fs)
	pipeline.OpsFlags(fs, "pprof")
	pipeline.ConsoleFlags(fs)
	pipeline.LakeFlags(fs)
	pipeline.JobsFlags(fs)
	// --loader-group and --loader-topics would make every sink alike: they
	// belong to 'sluice loader NAME' and to the file.
	pipeline.SinkFlags(fs, "*", "flush-rows", "flush-bytes", "flush-interval", "loader-memory")
	pipeline.EnricherFlags(fs)
	pipeline.SchemaFlags(fs)
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	p, err := pipeline.Build(ctx, cfg, upShape, logger)
	if err != nil {
		return err
	}
	remove, err := pipeline.WriteRunning(p)
	if err != nil {
		p.Close()
		return err
	}
	defer remove()
	printURLs(stdout, p)
	fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
	return p.Run(ctx)
}

// upShape is the whole pipeline in one process.
var upShape = pipeline.Shape{Broker: true, Collector: true, Enricher: true, Sinks: []string{"*"}, Aggregations: true, Jobs: true}

// printURLs says where everything is, with commands to try that find this
// process: through its data directory, which holds its addresses while it
// runs (pipeline.WriteRunning).
func printURLs(w io.Writer, p *pipeline.Process) {
	cfg := p.Config
	find := ""
	if cfg.Process.DataDir != pipeline.Default().Process.DataDir {
		find = " --data-dir " + cfg.Process.DataDir
	}
	fmt.Fprintf(w, "Sluice is up.\n"+
		"  console    http://%[1]s/\n"+
		"  collector  http://%[1]s/api/v1/collect  (batch: /api/v1/collect/batch)\n"+
		"  API docs   http://%[1]s/api/v1/docs/\n"+
		"  status     http://%[1]s/api/v1/status  (metrics: /metrics)\n"+
		"  kafka      %[2]s  (try: sluice tail %[3]s --follow%[6]s)\n"+
		"  lake       %[5]s  (try: sluice query%[6]s --tables)\n"+
		"  data dir   %[4]s\n", p.CollectorAddr, cfg.Kafka.Brokers[0], cfg.Topics.Raw, cfg.Process.DataDir, cfg.LakeURL(), find)
}
