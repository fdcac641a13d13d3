// Command sluice is the whole Sluice pipeline in one binary: `sluice up` runs
// every stage in one process on an embedded Kafka broker, and each stage also
// runs alone against a real cluster.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicehq/sluice/internal/config"
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
		{"loader", "run the lake loader against a Kafka cluster ('sluice loader lake')", runLoader},
		{"broker", "run the embedded Kafka broker alone", runBroker},
		{"query", "run SQL over the lake with embedded DuckDB", runQuery},
		{"topics", "list topics with their partitions and offsets", runTopics},
		{"tail", "print records from a topic as JSON lines", runTail},
		{"replay", "send the rows of Parquet, CSV or NDJSON files to the collector as events", runReplay},
		{"forms-api", "serve form definitions at GET /forms/{id}, with injectable latency and failures", runFormsAPI},
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
			fmt.Fprintf(stderr, "sluice %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}
