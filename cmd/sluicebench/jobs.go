package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apache/iceberg-go"

	"github.com/sluicehq/sluice/internal/jobs"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/query"
	"github.com/sluicehq/sluice/internal/row"
)

// jobsModel is the TLC daily model: trips, revenue and distance per pickup
// zone and day.
const jobsModel = `SELECT CAST(tpep_pickup_datetime AS DATE) AS event_date, "PULocationID" AS zone,
	count(*) AS trips, sum(total_amount) AS revenue, avg(trip_distance) AS avg_distance
FROM %s GROUP BY ALL`

// benchJobs measures the batch layer: the TLC daily model over N trips of
// a lake table, built as 'sluice jobs run' builds it (DuckDB's COPY with
// field ids, staging, the catalog commit, job_runs), against DuckDB
// running the same SQL over the same data files into one Parquet file, in
// the same process, alternately.
func benchJobs(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	n := fs.Int("rows", 1_000_000, "TLC trip events in the lake table the model reads (the 500-row sample, repeated)")
	runs := fs.Int("runs", 5, "runs of each; the median is reported")
	bin := fs.String("sluice", "", "a sluice binary to time 'sluice jobs run' as its own process too (built when empty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.DiscardHandler)
	dir, err := os.MkdirTemp("", "sluicebench-jobs")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lakeDir := filepath.Join(dir, "lake")
	store, cat, err := localLake(ctx, lakeDir)
	if err != nil {
		return err
	}
	defer cat.Close()
	files, err := tripsTable(ctx, store, cat, *n)
	if err != nil {
		return err
	}
	models := filepath.Join(dir, "models")
	if err := os.MkdirAll(models, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(models, "tlc_daily_zone.sql"), fmt.Appendf(nil, jobsModel, "{{ ref('yellow_taxi_trip') }}"), 0o644); err != nil {
		return err
	}
	if *bin == "" {
		*bin = filepath.Join(dir, "sluice")
		build := exec.Command("go", "build", "-o", *bin, "./cmd/sluice")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build sluice: %w", err)
		}
	}

	quoted := make([]string, len(files))
	for i, f := range files {
		quoted[i] = "'" + f + "'"
	}
	direct := fmt.Sprintf("COPY ("+jobsModel+") TO '%s' (FORMAT parquet, COMPRESSION zstd)",
		"read_parquet(["+strings.Join(quoted, ", ")+"])", filepath.Join(dir, "duckdb.parquet"))
	var jobTimes, duckTimes, binTimes []time.Duration
	var rows int64
	for run := range *runs {
		// The runner, as 'sluice jobs run' calls it: a new engine over
		// the catalog's current snapshots, the model built and published,
		// the run recorded.
		start := time.Now()
		loaded, err := jobs.Load(models)
		if err != nil {
			return err
		}
		eng, err := query.Open(ctx, store, cat, query.Options{})
		if err != nil {
			return err
		}
		res, err := jobs.NewRunner(eng, cat, store, store, filepath.Join(dir, "staging"), logger).Run(ctx, loaded, fmt.Sprintf("bench-%d", run), jobs.Options{})
		eng.Close()
		if err != nil {
			return err
		}
		if res[0].Status != jobs.StatusSuccess {
			return fmt.Errorf("model: %s", res[0].Error)
		}
		jobTimes, rows = append(jobTimes, time.Since(start)), res[0].Rows

		// DuckDB alone: a new database, the same SQL over the same files.
		start = time.Now()
		db, err := sql.Open("duckdb", "")
		if err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, direct); err != nil {
			db.Close()
			return fmt.Errorf("duckdb: %w", err)
		}
		db.Close()
		duckTimes = append(duckTimes, time.Since(start))

		// The command, as its own process: start-up and all.
		start = time.Now()
		cmd := exec.CommandContext(ctx, *bin, "jobs", "run", "--models", models, "--lake", lakeDir, "--data-dir", filepath.Join(dir, "data"), "--log-level", "error")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("sluice jobs run: %w\n%s", err, b)
		}
		binTimes = append(binTimes, time.Since(start))
	}
	jobTime, duckTime, binTime := median(jobTimes), median(duckTimes), median(binTimes)
	fmt.Fprintf(out, "jobs benchmark: the TLC daily model (%d result rows) over %d trips in %d data files, median of %d runs\n\n", rows, *n, len(files), *runs)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "how\ttime\trows/s\t")
	fmt.Fprintf(tw, "jobs runner (as sluice jobs run: DuckDB COPY with field ids, Iceberg commit, job_runs)\t%v\t%.0f\t\n", jobTime.Round(time.Millisecond), float64(*n)/jobTime.Seconds())
	fmt.Fprintf(tw, "DuckDB alone (the same SQL over the same files → one Parquet file)\t%v\t%.0f\t\n", duckTime.Round(time.Millisecond), float64(*n)/duckTime.Seconds())
	fmt.Fprintf(tw, "sluice jobs run, its own process (start-up included)\t%v\t%.0f\t\n", binTime.Round(time.Millisecond), float64(*n)/binTime.Seconds())
	fmt.Fprintf(tw, "runner ÷ DuckDB (overhead)\t%.2f\t\t\n", jobTime.Seconds()/duckTime.Seconds())
	fmt.Fprintf(tw, "process ÷ DuckDB\t%.2f\t\t\n", binTime.Seconds()/duckTime.Seconds())
	return tw.Flush()
}

// tripsTable writes n TLC trip events, as the loader lands them, as the
// yellow_taxi_trip table, in files of 100,000 rows, and returns the files'
// local paths.
func tripsTable(ctx context.Context, store *lake.Local, cat *lake.Catalog, n int) ([]string, error) {
	var rw row.Rower
	var paths []string
	values := stampedTLC(n)
	for start := 0; start < n; start += 100_000 {
		buf := lake.NewBuffer()
		var fields []row.Field
		var err error
		for _, v := range values[start:min(start+100_000, n)] {
			if fields, err = rw.Row(v, fields[:0]); err != nil {
				return nil, err
			}
			buf.Append(fields)
		}
		var cols []lake.Column
		for _, c := range buf.Columns() {
			cols = append(cols, lake.Column{Name: c.Name, Kind: c.Cell.Kind})
		}
		t, err := cat.Create(ctx, "yellow_taxi_trip", cols)
		if err != nil {
			return nil, err
		}
		if t, err = cat.AddColumns(ctx, t, cols); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("bench-%d.parquet", start)
		df, _, err := cat.WriteFile(ctx, store, t, "2025-01-01", name, buf)
		if err != nil {
			return nil, err
		}
		if _, _, err := cat.Append(ctx, t, []iceberg.DataFile{df}, lake.Offsets{lake.OffsetKey("bench", 0): int64(start)}); err != nil {
			return nil, err
		}
		paths = append(paths, filepath.Join(store.Root(), cat.Path(df.FilePath())))
		buf.Reset()
	}
	return paths, nil
}
