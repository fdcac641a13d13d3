package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/pipeline"
)

const lakeUsage = `Usage: sluice lake COMMAND [--data-dir DIR | --lake URL] [flags] [TABLE...]

Looks after the lake's Apache Iceberg tables. Every command is safe while
'sluice up' or a loader writes: changes are commits to the catalog, made
again over a table another writer changed meanwhile.

Commands:
  history TABLE     the table's snapshots: when, what, rows and files added
  schema TABLE      the table's columns with their field ids and types
  compact [TABLE]   rewrite small data files of each event date into files of
                    about --target-size, in one snapshot (default: every table)
  expire [TABLE]    remove snapshots older than --older-than, keeping the last
                    --retain-last, and the files only they referenced
  orphans [TABLE]   remove files no snapshot references (writes cut short by a
                    crash, compactions that lost a race), older than --older-than
  migrate           turn a lake written by Sluice before Iceberg (files named
                    <table>/event_date=.../*.parquet) into catalog tables

Examples:
  sluice lake history yellow_taxi_trip
  sluice lake compact --target-size 256MiB
  sluice lake expire --older-than 168h --retain-last 20
  sluice lake orphans --dry-run
`

func runLake(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, lakeUsage)
		return errUsage
	}
	sub := args[0]
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, lakeUsage)
		return nil
	case "history", "schema", "compact", "expire", "orphans", "migrate":
	default:
		fmt.Fprintf(stderr, "sluice lake: unknown command %q\n\n%s", sub, lakeUsage)
		return errUsage
	}
	fs := pipeline.NewFlagSet("lake "+sub, lakeUsage, stderr)
	pipeline.ProcessFlags(fs, "data-dir")
	pipeline.LakeFlags(fs)
	logFlags(fs)
	var asJSON, dryRun bool
	targetSize := "128MiB"
	olderThan, retain := 7*24*time.Hour, 10
	switch sub {
	case "history", "schema":
		fs.Bool(&asJSON, "json", "print JSON instead of a table")
	case "compact":
		fs.String(&targetSize, "target-size", "the size of the files compaction writes (files of at least half of it are left alone)")
	case "expire":
		fs.Duration(&olderThan, "older-than", "remove snapshots older than this")
		fs.Int(&retain, "retain-last", "keep at least this many snapshots of each table")
	case "orphans":
		olderThan = 24 * time.Hour
		fs.Duration(&olderThan, "older-than", "remove only files older than this, so that writes in flight keep theirs")
		fs.Bool(&dryRun, "dry-run", "list the files without removing them")
	}
	cfg, _, err := setup(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	target, err := config.ParseByteSize(targetSize)
	if err != nil || target < 1<<20 {
		return fmt.Errorf("--target-size %q: want a size of at least 1MiB, such as 256MiB", targetSize)
	}
	if r, ok := pipeline.ReadRunning(cfg.Process.DataDir); ok && cfg.Lake.URL == "" {
		cfg.Lake.URL = r.Lake // the lake of the sluice up running there
	}
	store, err := lake.Open(ctx, cfg.LakeURL(), cfg.Lake.S3)
	if err != nil {
		return err
	}
	cat, err := lake.OpenCatalog(ctx, cfg.LakeURL(), cfg.Catalog(), cfg.Lake.S3)
	if err != nil {
		return err
	}
	defer cat.Close()
	names := fs.Args()
	switch sub {
	case "history", "schema":
		if len(names) != 1 {
			fmt.Fprintf(stderr, "sluice lake %s: name one table\n\n%s", sub, lakeUsage)
			return errUsage
		}
	case "migrate":
		n, err := lake.Migrate(ctx, store, cat)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "migrated %d files into the catalog's tables\n", n)
		return nil
	default:
		if len(names) == 0 {
			if names, err = cat.Names(ctx); err != nil {
				return err
			}
		}
	}
	switch sub {
	case "history":
		return lakeHistory(ctx, cat, names[0], asJSON, stdout)
	case "schema":
		return lakeSchema(ctx, cat, names[0], asJSON, stdout)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	switch sub {
	case "compact":
		fmt.Fprintln(tw, "TABLE\tPARTITIONS\tFILES BEFORE\tFILES AFTER\tROWS\tBYTES BEFORE\tBYTES AFTER")
		for _, name := range names {
			res, err := cat.Compact(ctx, store, name, int64(target))
			if err != nil {
				return err
			}
			if res.Skipped != "" {
				fmt.Fprintf(stderr, "%s: left alone: %s\n", name, res.Skipped)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", name, res.Partitions, res.FilesBefore, res.FilesAfter, res.Rows, res.BytesBefore, res.BytesAfter)
		}
	case "expire":
		fmt.Fprintln(tw, "TABLE\tSNAPSHOTS REMOVED")
		for _, name := range names {
			n, err := cat.Expire(ctx, name, olderThan, retain)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%d\n", name, n)
		}
	case "orphans":
		verb := "removed"
		if dryRun {
			verb = "would remove"
		}
		for _, name := range names {
			files, err := cat.Orphans(ctx, name, olderThan, dryRun)
			if err != nil {
				return err
			}
			for _, f := range files {
				fmt.Fprintf(tw, "%s\t%s\n", verb, f)
			}
			fmt.Fprintf(stderr, "%s: %s %d files\n", name, verb, len(files))
		}
	}
	return tw.Flush()
}

func lakeHistory(ctx context.Context, cat *lake.Catalog, name string, asJSON bool, stdout io.Writer) error {
	t, err := cat.Load(ctx, name)
	if err != nil {
		return err
	}
	out := lake.Snapshots(t)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SNAPSHOT\tCOMMITTED\tOPERATION\tADDED ROWS\tADDED FILES\tDELETED FILES\tTOTAL ROWS\t")
	for _, s := range out {
		mark := ""
		if s.Current {
			mark = "current"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Committed.Format(time.RFC3339), s.Operation,
			orDash(s.Summary["added-records"]), orDash(s.Summary["added-data-files"]), orDash(s.Summary["deleted-data-files"]),
			orDash(s.Summary["total-records"]), mark)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func lakeSchema(ctx context.Context, cat *lake.Catalog, name string, asJSON bool, stdout io.Writer) error {
	t, err := cat.Load(ctx, name)
	if err != nil {
		return err
	}
	cols, parts := lake.Columns(t), lake.PartitionedBy(t)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"table": name, "schema_id": t.Schema().ID, "columns": cols, "partitioned_by": parts,
			"location": t.Location()})
	}
	fmt.Fprintf(stdout, "table %s, schema %d, partitioned by %s, at %s\n\n", name, t.Schema().ID, strings.Join(parts, ", "), t.Location())
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCOLUMN\tTYPE\tNOTE")
	for _, c := range cols {
		note := c.Doc
		if note == "JSON" {
			note = "JSON text"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", c.ID, c.Name, c.Type, note)
	}
	return tw.Flush()
}
