package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/jobs"
	"github.com/sluicehq/sluice/internal/pipeline"
	"github.com/sluicehq/sluice/internal/query"
)

const jobsUsage = `Usage: sluice jobs run [--models DIR] [--select MODEL[+],...] [--from DATE [--to DATE]] [--full-refresh]
                       [--data-dir DIR | --lake URL]
       sluice jobs --config FILE --brokers host:port,... [--models DIR] [--lake URL]

Builds the SQL models of a directory into tables of the lake. A model is a
DuckDB SELECT in DIR/<name>.sql; its table is <name>. It reads lake tables
and other models by name, plainly or as {{ ref('name') }}, and runs after
the models it reads. Each model's result replaces its table in one Iceberg
snapshot: readers see the old table or the new one, never part of it. A
model that fails keeps its table, and the models that read it are skipped.

  -- models/daily_zone.sql
  SELECT event_date, "PULocationID" AS zone, count(*) AS trips
  FROM {{ ref('yellow_taxi_trip') }} GROUP BY ALL

  sluice jobs run --models models
  sluice jobs run --models models --select daily_zone+

A column named event_date (a date) partitions the model's table by it.
{{ config(materialized='incremental', lookback='3d') }} rebuilds only the
event dates of the last 3 days (late events), or those of --from/--to (a
backfill); {{ config(materialized='merge', unique_key='id') }} replaces the
rows of the keys it returns. <name>.yml beside a model lists its checks
(not_null, unique, accepted_values, relationships, row_count, freshness,
expression), run on its output before it is published; a failing check of
severity error keeps the table. Failing rows go to the dq_failures table,
and every model's run to job_runs. docs/jobs.md says more.

--select takes model names; name+ adds the models downstream of name,
+name the models it reads. The exit status is 1 when a model failed.

'sluice jobs' without run is the scheduler: it runs the config's
jobs.schedules (cron or every, retries, lake upkeep; every model hourly
without any) while it is the active scheduler of jobs.group, which a Kafka
consumer group elects: run several, one works and another takes over when
it stops. 'sluice up' runs it too when jobs.models is set. --ops-addr
serves /metrics, /healthz, /readyz and the status API.
`

func runJobs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return runScheduler(ctx, args, stderr)
	}
	switch args[0] {
	case "help":
		fmt.Fprint(stdout, jobsUsage)
		return nil
	case "run":
	default:
		fmt.Fprintf(stderr, "sluice jobs: unknown command %q\n\n%s", args[0], jobsUsage)
		return errUsage
	}
	fs := pipeline.NewFlagSet("jobs run", jobsUsage, stderr)
	pipeline.ProcessFlags(fs, "data-dir")
	pipeline.LakeFlags(fs)
	pipeline.JobsFlags(fs)
	logFlags(fs)
	selection, format := "", "table"
	var from, to string
	var opts jobs.Options
	fs.String(&selection, "select", "the models to build: names, name+ (and downstream), +name (and upstream); default all")
	fs.String(&from, "from", "incremental models: rebuild the event dates from this date (YYYY-MM-DD) on, a backfill")
	fs.String(&to, "to", "incremental models: ... up to this date, excluded (default: the day after --from)")
	fs.Bool(&opts.FullRefresh, "full-refresh", "rebuild incremental and merge models whole")
	fs.String(&format, "format", "output format: table or json")
	cfg, logger, err := setup(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	if len(fs.Args()) > 0 {
		fs.Usage()
		return errUsage
	}
	if from == "" && to != "" {
		return fmt.Errorf("--to %s needs --from", to)
	}
	if from != "" {
		if opts.From, err = time.Parse(time.DateOnly, from); err != nil {
			return fmt.Errorf("--from %q: want a date such as 2025-01-31", from)
		}
		opts.To = opts.From.AddDate(0, 0, 1)
		if to != "" {
			if opts.To, err = time.Parse(time.DateOnly, to); err != nil || !opts.To.After(opts.From) {
				return fmt.Errorf("--to %q: want a date after --from, such as %s", to, opts.From.AddDate(0, 0, 1).Format(time.DateOnly))
			}
		}
	}
	modelsDir := cfg.Jobs.Models
	if modelsDir == "" {
		modelsDir = "models"
	}
	models, err := jobs.Load(modelsDir)
	if err != nil {
		return err
	}
	if len(models) == 0 {
		return fmt.Errorf("no models in %s: a model is a .sql file holding one SELECT", modelsDir)
	}
	if models, err = jobs.Select(models, selection); err != nil {
		return err
	}
	l, err := openLake(ctx, &cfg, stderr)
	if err != nil {
		return err
	}
	defer l.cat.Close()
	eng, err := query.Open(ctx, l.local, l.cat, query.Options{})
	if err != nil {
		return err
	}
	defer eng.Close()
	staging := filepath.Join(cfg.Process.DataDir, "cache", "jobs")
	runID := jobs.NewRunID(time.Now())
	results, err := jobs.NewRunner(eng, l.cat, l.store, l.local, staging, logger).Run(ctx, models, runID, opts)
	if err != nil {
		return err
	}
	if format == "json" {
		enc := json.NewEncoder(stdout)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	} else if err := writeJobResults(stdout, runID, results); err != nil {
		return err
	}
	if failed := jobs.Failed(results); len(failed) > 0 {
		return fmt.Errorf("%d of %d models failed (%s); their tables are as they were", len(failed), len(results), strings.Join(failed, ", "))
	}
	return nil
}

// runScheduler runs the config's schedules, as the active scheduler of
// its group.
func runScheduler(ctx context.Context, args []string, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("jobs", jobsUsage, stderr)
	pipeline.ProcessFlags(fs, "data-dir", "instance-id")
	logFlags(fs)
	pipeline.KafkaFlags(fs)
	pipeline.LakeFlags(fs)
	pipeline.JobsFlags(fs)
	opsFlags(fs, "127.0.0.1:9467")
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		fs.Usage()
		return errNoBrokers
	}
	if cfg.Jobs.Models == "" {
		return errors.New("no models: name their directory with --models DIR or jobs.models in the config (docs/jobs.md)")
	}
	return runProcess(ctx, cfg, pipeline.Shape{Jobs: true}, logger, nil)
}

// writeJobResults prints a run's results as a table.
func writeJobResults(w io.Writer, runID string, results []jobs.Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "run %s\n", runID)
	fmt.Fprintln(tw, "MODEL\tSTATUS\tROWS\tFILES\tSNAPSHOT\tTOOK\tCHECKS\tERROR")
	for _, r := range results {
		snap := "-"
		switch {
		case r.Snapshot != 0:
			snap = fmt.Sprint(r.Snapshot)
		case r.Version != 0:
			snap = fmt.Sprintf("view v%d", r.Version)
		}
		checks := "-"
		if len(r.Checks) > 0 {
			var failed []string
			for _, c := range r.Checks {
				if c.Failed > 0 {
					failed = append(failed, fmt.Sprintf("%s: %d rows (%s)", c.Check, c.Failed, c.Severity))
				}
			}
			checks = fmt.Sprintf("%d passed", len(r.Checks)-len(failed))
			if len(failed) > 0 {
				checks += "; failed " + strings.Join(failed, ", ")
			}
		}
		rows, files := fmt.Sprint(r.Rows), fmt.Sprint(r.Files)
		if r.Snapshot == 0 {
			rows, files = "-", "-" // nothing published: failed, skipped, or a source's checks
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%s\t%s\n", r.Model, r.Status, rows, files, snap, r.Took.Round(time.Millisecond), checks, strings.Join(strings.Fields(r.Error), " "))
	}
	return tw.Flush()
}
