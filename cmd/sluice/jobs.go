package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/jobs"
	"github.com/sluicehq/sluice/internal/pipeline"
	"github.com/sluicehq/sluice/internal/query"
)

const jobsUsage = `Usage: sluice jobs run [--models DIR] [--select MODEL[+],...] [--data-dir DIR | --lake URL]

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
--select takes model names; name+ adds the models downstream of name,
+name the models it reads. The exit status is 1 when a model failed.
`

func runJobs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, jobsUsage)
		return errUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
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
	logFlags(fs)
	modelsDir, selection, format := "models", "", "table"
	fs.String(&modelsDir, "models", "the directory of the models' .sql files")
	fs.String(&selection, "select", "the models to build: names, name+ (and downstream), +name (and upstream); default all")
	fs.String(&format, "format", "output format: table or json")
	cfg, logger, err := setup(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	if len(fs.Args()) > 0 {
		fs.Usage()
		return errUsage
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
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return fmt.Errorf("staging directory: %w", err)
	}
	runID := jobs.NewRunID(time.Now())
	results, err := jobs.NewRunner(eng, l.cat, l.store, l.local, staging, logger).Run(ctx, models, runID)
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
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "run %s\n", runID)
		fmt.Fprintln(tw, "MODEL\tSTATUS\tROWS\tFILES\tSNAPSHOT\tTOOK\tERROR")
		for _, r := range results {
			snap := "-"
			if r.Snapshot != 0 {
				snap = fmt.Sprint(r.Snapshot)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%v\t%s\n", r.Model, r.Status, r.Rows, r.Files, snap, r.Took.Round(time.Millisecond), strings.Join(strings.Fields(r.Error), " "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	var failed []string
	for _, r := range results {
		if r.Status == jobs.StatusError {
			failed = append(failed, r.Model)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d models failed (%s); their tables are as they were", len(failed), len(results), strings.Join(failed, ", "))
	}
	return nil
}
