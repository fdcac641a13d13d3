package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/pipeline"
	"github.com/sluicehq/sluice/internal/query"
)

const queryUsage = `Usage: sluice query [--data-dir DIR | --lake URL] [--format table|csv|json] [--as-of SNAPSHOT|TIME] "SQL"
       sluice query --tables

Runs SQL over the lake with embedded DuckDB. Every table of the lake's
Iceberg catalog is a view of the same name over its current snapshot, with
event_date as a column, for example:

  sluice query "SELECT event_type, count(*) FROM yellow_taxi_trip GROUP BY 1"

A snapshot is a table whole, so it works while 'sluice up' is running, and
--as-of reads every table as it was at a time (2025-01-01T12:00:00Z) or at
a snapshot id (see --tables and 'sluice lake history').
`

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("query", queryUsage, stderr)
	pipeline.ProcessFlags(fs, "data-dir")
	pipeline.LakeFlags(fs)
	format := "table"
	var tables bool
	var asOf string
	fs.String(&format, "format", "output format: table, csv or json (JSON lines)")
	fs.Bool(&tables, "tables", "list the tables with their snapshots, files, bytes and rows")
	fs.String(&asOf, "as-of", "read the tables as of a snapshot id or a time (RFC 3339 or a date)")
	logFlags(fs)
	cfg, _, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	if !tables && len(fs.Args()) != 1 {
		fs.Usage()
		return errUsage
	}
	l, err := openLake(ctx, &cfg, stderr)
	if err != nil {
		return err
	}
	defer l.cat.Close()
	eng, err := query.Open(ctx, l.local, l.cat, query.Options{AsOf: asOf})
	if err != nil {
		return err
	}
	defer eng.Close()
	if tables {
		ts, err := eng.Tables(ctx)
		if err != nil {
			return err
		}
		if format == "json" {
			return json.NewEncoder(stdout).Encode(ts)
		}
		res := query.Result{Columns: []string{"table", "format", "rows", "files", "bytes", "snapshot", "committed", "snapshots"}}
		for _, t := range ts {
			var rows, snap, at, snaps any = t.Rows, nil, nil, nil
			if t.Rows < 0 {
				rows = nil
			}
			if t.Snapshot != 0 {
				snap, at = t.Snapshot, t.SnapshotTime.Format(time.RFC3339)
			}
			if t.Format == "iceberg" {
				snaps = t.Snapshots
			}
			res.Rows = append(res.Rows, []any{t.Name, t.Format, rows, t.Files, t.Bytes, snap, at, snaps})
		}
		if len(ts) == 0 {
			fmt.Fprintf(stderr, "the lake at %s has no tables yet\n", cfg.LakeURL())
		}
		return query.Write(stdout, res, format)
	}
	res, err := eng.Query(ctx, fs.Args()[0])
	if err != nil {
		if m := missingTable.FindStringSubmatch(err.Error()); m != nil {
			return noTable(ctx, eng, m[1], cfg.LakeURL())
		}
		return err
	}
	return query.Write(stdout, res, format)
}

// queryLake is the lake as DuckDB reads it.
type queryLake struct {
	store lake.Storage
	// local is store, or its local mirror when it is remote.
	local *lake.Local
	cat   *lake.Catalog
}

// openLake opens the configured lake (or the one of the sluice up running
// in the data directory) with its catalog, mirrored when remote.
func openLake(ctx context.Context, cfg *pipeline.Config, stderr io.Writer) (queryLake, error) {
	if r, ok := pipeline.ReadRunning(cfg.Process.DataDir); ok && cfg.Lake.URL == "" {
		cfg.Lake.URL = r.Lake // the lake of the sluice up running there
	}
	store, err := lake.Open(ctx, cfg.LakeURL(), cfg.Lake.S3)
	if err != nil {
		return queryLake{}, err
	}
	local, ok := store.(*lake.Local)
	if !ok {
		// DuckDB here has no httpfs extension (nothing is downloaded at run
		// time), so a remote lake is read through a local mirror.
		cache := lake.MirrorDir(filepath.Join(cfg.Process.DataDir, "cache"), store)
		fmt.Fprintf(stderr, "mirroring %s into %s\n", store, cache)
		if local, err = lake.Mirror(ctx, store, cache); err != nil {
			return queryLake{}, err
		}
	}
	cat, err := lake.OpenCatalog(ctx, cfg.LakeURL(), cfg.Catalog(), cfg.Lake.S3)
	if err != nil {
		return queryLake{}, err
	}
	return queryLake{store: store, local: local, cat: cat}, nil
}

// missingTable is DuckDB's error for a name that is no view: a table of
// the lake that has no files yet, or a typo.
var missingTable = regexp.MustCompile(`Table with name ([^ ]+) does not exist`)

// noTable says what the lake has instead of DuckDB's guess from its own
// catalog.
func noTable(ctx context.Context, eng *query.Engine, name, lakeURL string) error {
	ts, err := eng.Tables(ctx)
	if err != nil {
		return fmt.Errorf("no table %s in the lake at %s", name, lakeURL)
	}
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	has := "no tables yet"
	if len(names) > 0 {
		has = "tables " + strings.Join(names, ", ")
	}
	return fmt.Errorf("no table %s in the lake at %s, which has %s; a table appears with the loader's first flush of its rows (sinks' flush_interval, 10s by default)", name, lakeURL, has)
}
