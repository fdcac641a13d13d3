package main

import (
	"bytes"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/aggregator"
	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/window"
)

// benchAggregator measures the seed's MTA aggregation (dedupe, 4-hour
// windows per turnstile, sums and deltas) over a full week of turnstile
// audits from the embedded broker, and DuckDB running the same query over
// the same rows as a CSV file, writing Parquet.
func benchAggregator(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("aggregator", flag.ContinueOnError)
	copies := fs.Int("copies", 50, "copies of the 5,000-row sample, each of other turnstiles (50: 250,000 rows, a full MTA week)")
	partitions := fs.Int("partitions", 4, "partitions of the input topic")
	runs := fs.Int("runs", 3, "runs of each; the median is reported")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the aggregator's first repartitioned run to this file, and of its first keyed run to FILE.keyed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := os.MkdirTemp("", "sluicebench-aggregator")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	header, rows, err := mtaWeek(*copies)
	if err != nil {
		return err
	}
	csvPath := filepath.Join(dir, "turnstile.csv")
	if err := os.WriteFile(csvPath, append(append(header, '\n'), bytes.Join(rows, []byte("\n"))...), 0o644); err != nil {
		return err
	}
	cc, prod, stop, err := benchBroker(ctx, dir, int32(*partitions), logger, "mta-turnstile")
	if err != nil {
		return err
	}
	defer stop()
	if err := produceTurnstiles(ctx, prod, "mta-turnstile", rows); err != nil {
		return err
	}

	query := fmt.Sprintf(`COPY (
		SELECT "C/A", UNIT, SCP, STATION, LINENAME, DIVISION, DATE, "DESC",
			time_bucket(INTERVAL 4 HOUR, t) AS window_start, time_bucket(INTERVAL 4 HOUR, t) + INTERVAL 4 HOUR AS window_end,
			count(*) AS readings, sum(ENTRIES) AS entries, sum(EXITS) AS exits,
			arg_max(ENTRIES, t) - arg_min(ENTRIES, t) AS entries_delta, arg_max(EXITS, t) - arg_min(EXITS, t) AS exits_delta
		FROM (SELECT DISTINCT ON ("C/A", UNIT, SCP, STATION, DATE, TIME) *, strptime(DATE || ' ' || TIME, '%%m/%%d/%%Y %%H:%%M:%%S') AS t
			FROM read_csv('%s', header = true, normalize_names = false,
				columns = {'C/A': 'VARCHAR', 'UNIT': 'VARCHAR', 'SCP': 'VARCHAR', 'STATION': 'VARCHAR', 'LINENAME': 'VARCHAR',
					'DIVISION': 'VARCHAR', 'DATE': 'VARCHAR', 'TIME': 'VARCHAR', 'DESC': 'VARCHAR', 'ENTRIES': 'BIGINT', 'EXITS': 'BIGINT'}))
		GROUP BY ALL
	) TO '%s' (FORMAT parquet, COMPRESSION zstd)`, csvPath, filepath.Join(dir, "duckdb.parquet"))
	var duckTimes []time.Duration
	// A DuckDB left open during Sluice's runs took a quarter of a core
	// (its threads' waits): it is opened for each of its runs and closed.
	duckRun := func() (time.Duration, error) {
		db, err := sql.Open("duckdb", "")
		if err != nil {
			return 0, err
		}
		defer db.Close()
		start := time.Now()
		if _, err := db.ExecContext(ctx, query); err != nil {
			return 0, fmt.Errorf("duckdb: %w", err)
		}
		took := time.Since(start)
		duckTimes = append(duckTimes, took)
		return took, nil
	}

	// Each run of Sluice is paired with a run of DuckDB right after it,
	// and the ratio taken pair by pair: this machine's speed drifts by a
	// fifth within a minute, and ratios of medians taken a minute apart
	// moved with it.
	type result struct {
		name    string
		times   []time.Duration
		cpu     []float64 // the process's CPU-s in each run
		ratios  []float64 // to DuckDB's run after it
		windows float64
	}
	results := []result{{name: "sluice aggregator, repartitioned by group (any input)"},
		{name: "sluice aggregator, input keyed by turnstile (keyed: true)"}}
	for run := range *runs {
		for i, keyed := range []bool{false, true} {
			res := &results[i]
			profile := ""
			if run == 0 && *cpuProfile != "" {
				profile = *cpuProfile
				if keyed {
					profile += ".keyed"
				}
			}
			cpu := cpuTimes([]int{os.Getpid()})[0]
			took, windows, err := aggregateOnce(ctx, cc, prod, filepath.Join(dir, fmt.Sprintf("lake-%v-%d", keyed, run)),
				fmt.Sprintf("bench_%v_%d", keyed, run), keyed, seedAggregates, int64(len(rows)), logger, profile)
			if err != nil {
				return err
			}
			res.times, res.windows = append(res.times, took), windows
			res.cpu = append(res.cpu, cpuTimes([]int{os.Getpid()})[0]-cpu)
			duck, err := duckRun()
			if err != nil {
				return err
			}
			res.ratios = append(res.ratios, duck.Seconds()/took.Seconds())
		}
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return err
	}
	defer db.Close()
	var duckRows int64
	if err := db.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM '%s'`, filepath.Join(dir, "duckdb.parquet"))).Scan(&duckRows); err != nil {
		return err
	}
	duck := median(duckTimes)

	fmt.Fprintf(out, "aggregator benchmark: %d MTA turnstile audits (%d turnstiles, one week) as CSV lines on %d partitions; dedupe, 4-hour windows per turnstile, sums and deltas; median of %d runs, each paired with a DuckDB run for its ratio\n\n",
		len(rows), *copies*turnstilesPerCopy(rows, *copies), *partitions, *runs)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "job\tevents/s\ttime\tCPU-s\twindows\t÷ DuckDB\t(least, most)\t")
	for _, r := range results {
		t := median(r.times)
		fmt.Fprintf(tw, "%s\t%.0f\t%v\t%.2f\t%.0f\t%.2f\t(%.2f, %.2f)\t\n", r.name, float64(len(rows))/t.Seconds(), t.Round(time.Millisecond),
			median(r.cpu), r.windows, median(r.ratios), slices.Min(r.ratios), slices.Max(r.ratios))
	}
	fmt.Fprintf(tw, "DuckDB: the same GROUP BY over the CSV file, to Parquet (%d rows)\t%.0f\t%v\t\t\t\t\t\n", duckRows, float64(len(rows))/duck.Seconds(), duck.Round(time.Millisecond))
	return tw.Flush()
}

// mtaWeek is the MTA sample in time order, copies times over, each copy's
// turnstiles renamed (C/A gets a suffix): a week of audits of that many
// times the turnstiles, in time order.
func mtaWeek(copies int) ([]byte, [][]byte, error) {
	b, err := sample.TurnstilesInTimeOrder()
	if err != nil {
		return nil, nil, err
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	header, sorted := bytes.TrimRight(lines[0], " \r"), lines[1:]
	rows := make([][]byte, 0, copies*len(sorted))
	// Readings of one time stay together across copies, so the week stays
	// in time order.
	for i := 0; i < len(sorted); {
		j := i
		at := timeOf(sorted[i])
		for j < len(sorted) && bytes.Equal(timeOf(sorted[j]), at) {
			j++
		}
		for c := range copies {
			for _, l := range sorted[i:j] {
				comma := bytes.IndexByte(l, ',')
				rows = append(rows, fmt.Appendf(nil, "%s-%02d%s", l[:comma], c, bytes.TrimRight(l[comma:], "\r")))
			}
		}
		i = j
	}
	return header, rows, nil
}

// timeOf is a line's DATE,TIME fields.
func timeOf(l []byte) []byte {
	f := bytes.SplitN(l, []byte(","), 9)
	return bytes.Join(f[6:8], []byte(","))
}

func turnstilesPerCopy(rows [][]byte, copies int) int {
	seen := map[string]bool{}
	for _, r := range rows {
		f := bytes.SplitN(r, []byte(","), 4)
		seen[string(bytes.Join(f[:3], []byte(",")))] = true
	}
	return len(seen) / copies
}

// produceTurnstiles writes the MTA rows to topic, keyed by turnstile as
// the seed's producer keyed them by unit, 10,000 at a time, and waits for
// every acknowledgement.
func produceTurnstiles(ctx context.Context, prod *kgo.Client, topic string, rows [][]byte) error {
	for i := 0; i < len(rows); i += 10_000 {
		var recs []*kgo.Record
		for _, r := range rows[i:min(i+10_000, len(rows))] {
			recs = append(recs, &kgo.Record{Topic: topic, Key: r[:bytes.IndexByte(r, ',')+17], Value: r})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("produce to %s: %w", topic, err)
		}
	}
	return nil
}

// seedAggregates are the seed's: readings, sums and deltas of the counters.
var seedAggregates = []window.Aggregate{{Op: window.Count, As: "readings"}, {Op: window.Sum, Field: "ENTRIES", As: "entries"},
	{Op: window.Sum, Field: "EXITS", As: "exits"}, {Op: window.Delta, Field: "ENTRIES", As: "entries_delta"},
	{Op: window.Delta, Field: "EXITS", As: "exits_delta"}}

// aggregateOnce runs the seed's aggregation, with aggs, over the topic
// mta-turnstile into a lake of its own until it has taken n records, and
// returns how long that took and how many windows it wrote. Its results
// go to the topic sluice.agg.NAME too.
func aggregateOnce(ctx context.Context, cc bus.ClientConfig, prod *kgo.Client, lakeDir, name string, keyed bool, aggs []window.Aggregate,
	n int64, logger *slog.Logger, profile string) (time.Duration, float64, error) {
	store, cat, err := localLake(ctx, lakeDir)
	if err != nil {
		return 0, 0, err
	}
	defer cat.Close()
	cols := []aggregator.Column{{Name: "C/A", Type: "string"}, {Name: "UNIT", Type: "string"}, {Name: "SCP", Type: "string"},
		{Name: "STATION", Type: "string"}, {Name: "LINENAME", Type: "string"}, {Name: "DIVISION", Type: "string"},
		{Name: "DATE", Type: "string"}, {Name: "TIME", Type: "string"}, {Name: "DESC", Type: "string"},
		{Name: "ENTRIES", Type: "int"}, {Name: "EXITS", Type: "int"}}
	cfg := aggregator.Config{Name: name, Topic: "mta-turnstile", Format: "csv", Columns: cols, Keyed: keyed,
		Time: aggregator.Time{Fields: []string{"DATE", "TIME"}, Layout: "MM/DD/YYYY HH:mm:ss"}, TransactionalID: name,
		Window:     aggregator.Window{Size: 4 * time.Hour, Delay: time.Hour},
		GroupBy:    []string{"C/A", "UNIT", "SCP", "STATION", "LINENAME", "DIVISION", "DATE", "DESC"},
		Dedupe:     []string{"C/A", "UNIT", "SCP", "STATION", "DATE", "TIME"},
		Aggregates: aggs}
	reg := prometheus.NewRegistry()
	a, err := aggregator.New(cfg, cc, prod, store, cat, logger, reg)
	if err != nil {
		return 0, 0, err
	}
	if profile != "" {
		stop, err := profileCPU(profile)
		if err != nil {
			return 0, 0, err
		}
		defer stop()
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- a.Run(rctx) }()
	for metricValue(reg, "sluice_aggregator_events_total") < float64(n) {
		select {
		case err := <-errc:
			return 0, 0, fmt.Errorf("aggregator stopped: %v", err)
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Stopping writes the completed windows still held and the
	// checkpoints: part of the job.
	cancel()
	if err := <-errc; err != nil {
		return 0, 0, err
	}
	took := time.Since(start)
	return took, metricValue(reg, "sluice_aggregator_windows_emitted_total"), nil
}
