// Command sluice is the whole Sluice pipeline in one binary: `sluice up`
// runs every stage in one process on an embedded Kafka broker, and each
// stage also runs alone against a real cluster. It only parses flags and
// calls package pipeline, which builds the process, and package app, which
// runs it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/pipeline"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"demo", "run everything on bundled real data and show it in the lake (start here)", runDemo},
		{"up", "run the embedded broker and every stage in one process", runUp},
		{"collector", "run the HTTP collector against a Kafka cluster", runCollector},
		{"enricher", "run the enricher against a Kafka cluster: schemas, lookups, APIs, models", runEnricher},
		{"aggregator", "run the config file's windowed aggregations against a Kafka cluster", runAggregator},
		{"loader", "run a sink against a Kafka cluster ('sluice loader lake', 'sluice loader search')", runLoader},
		{"broker", "run the embedded Kafka broker alone", runBroker},
		{"query", "run SQL over the lake with embedded DuckDB", runQuery},
		{"lake", "look after the lake's Iceberg tables: history, schema, compact, expire, orphans, migrate", runLake},
		{"jobs", "build SQL models into lake tables, in the order they read each other ('sluice jobs run')", runJobs},
		{"topics", "list topics with their partitions and offsets", runTopics},
		{"tail", "print records from a topic as JSON lines", runTail},
		{"dlq", "list dead letters and send them back to the raw topic, fixed or as they were, once each", runDLQ},
		{"replay", "send the rows of Parquet, CSV or NDJSON files to the collector as events", runReplay},
		{"forms-api", "serve form definitions at GET /forms/{id}, with injectable latency and failures", runFormsAPI},
		{"config", "check a config file, print the effective config, or its reference", runConfig},
		{"schemas", "list the JSON Schemas events are validated against", runSchemas},
		{"version", "print the version", func(_ context.Context, _ []string, stdout, _ io.Writer) error {
			_, err := fmt.Fprintln(stdout, "sluice", version)
			return err
		}},
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Sluice collects JSON events over HTTP, keeps them durably in Kafka, and lands
them as tables in a data lake.

Usage:
  sluice <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'sluice <command> --help' for a command's flags.
Start here: 'sluice demo' shows real data flowing; then 'sluice up' runs the pipeline
for your own events, POSTed to http://127.0.0.1:8080/api/v1/collect.
`)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	case "-v", "--version":
		args[0] = "version"
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case config.IsHelp(err):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			// One line an error: several only when a config has several.
			for _, e := range config.Errors(err) {
				fmt.Fprintf(stderr, "sluice %s: %v\n", c.name, strings.ReplaceAll(e.Error(), "\n", "; "))
			}
			return 1
		}
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// errUsage marks a wrong command line, already explained to the user.
var errUsage = errors.New("usage")

// parse resolves a command's configuration, turning flag errors into
// errUsage (the flag package has printed them with the usage).
func parse(fs *pipeline.FlagSet, args []string) (pipeline.Config, error) {
	cfg, err := fs.Parse(args)
	if err != nil {
		if config.IsHelp(err) {
			return cfg, err
		}
		if strings.HasPrefix(err.Error(), "flag provided but not defined") || strings.Contains(err.Error(), "invalid value") {
			return cfg, errUsage
		}
		return cfg, err
	}
	return cfg, nil
}

// setup resolves a command's configuration and builds its logger.
func setup(fs *pipeline.FlagSet, args []string, stderr io.Writer) (pipeline.Config, *slog.Logger, error) {
	cfg, err := parse(fs, args)
	if err != nil {
		return cfg, nil, err
	}
	logger, err := pipeline.NewLogger(cfg, stderr)
	return cfg, logger, err
}

func logFlags(fs *pipeline.FlagSet) { pipeline.ProcessFlags(fs, "log-format", "log-level") }

// opsFlags offers --ops-addr, with this command's default, and the old
// name --metrics-addr.
func opsFlags(fs *pipeline.FlagSet, addr string) {
	fs.SetDefaults(func(c *pipeline.Config) { c.Ops.Addr = addr })
	pipeline.OpsFlags(fs)
	pipeline.ConsoleFlags(fs)
	fs.Alias("metrics-addr", "ops-addr")
}

// runProcess builds shape's components from cfg and runs them until ctx
// is done or one fails: the one way every long-running command runs.
// started, when set, is told of the built process before it runs.
func runProcess(ctx context.Context, cfg pipeline.Config, shape pipeline.Shape, logger *slog.Logger, started func(*pipeline.Process)) error {
	p, err := pipeline.Build(ctx, cfg, shape, logger)
	if err != nil {
		return err
	}
	if started != nil {
		started(p)
	}
	return p.Run(ctx)
}

var errNoBrokers = bus.ErrNoBrokers
