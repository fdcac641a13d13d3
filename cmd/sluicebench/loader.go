package main

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/loader"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/schema"
	"github.com/sluicehq/sluice/internal/sink"
)

// assigned reports whether the loader whose metrics reg holds has
// partitions assigned.
// commitP99 is the upper bound of the histogram bucket that holds the
// 99th percentile of the loader's commit latency (data files written to
// snapshot committed), and how many commits it counts.
func commitP99(reg *prometheus.Registry) (bound float64, n uint64) {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "sluice_loader_commit_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		n = h.GetSampleCount()
		for _, b := range h.GetBucket() {
			if float64(b.GetCumulativeCount()) >= 0.99*float64(n) {
				return b.GetUpperBound(), n
			}
		}
		return math.Inf(1), n
	}
	return 0, 0
}

func assigned(reg *prometheus.Registry) bool {
	return metricValue(reg, "sluice_sink_assigned_partitions") > 0
}

// metricValue sums the counter or gauge series named name in reg.
func metricValue(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// benchLoader measures the lake loader turning N TLC trips in Kafka into
// Parquet, and DuckDB's COPY writing the same rows from memory to Parquet
// with zstd: the floor any Parquet writer here could reach.
func benchLoader(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("loader", flag.ContinueOnError)
	n := fs.Int("rows", 500_000, "TLC trip events to load (the 500-row sample, repeated)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the loader's first run to this file")
	runs := fs.Int("runs", 3, "runs of each writer; the median is reported")
	withSchemas := fs.Bool("schemas", false, "type columns from the bundled schemas, as sluice up does (timestamps parsed per row)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := os.MkdirTemp("", "sluicebench-loader")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The events as the collector stores them, and as NDJSON for DuckDB.
	ndjson, err := os.Create(filepath.Join(dir, "events.ndjson"))
	if err != nil {
		return err
	}
	values := stampedTLC(*n)
	for _, v := range values {
		ndjson.Write(append(v, '\n'))
	}
	ndjson.Close()

	cc, prod, stop, err := benchBroker(ctx, dir, 1, logger, "sluice.raw", "sluice.dlq")
	if err != nil {
		return err
	}
	defer stop()
	if err := produceAll(ctx, prod, "sluice.raw", "yellow_taxi_trip", values); err != nil {
		return err
	}
	ends, err := kadm.NewClient(prod).ListEndOffsets(ctx, "sluice.raw")
	if err != nil {
		return err
	}

	var loaderTimes, duckTimes []time.Duration
	var loaderBytes, loaderFiles int64
	var commitBound float64 // the largest p99 bucket bound of the runs
	var commitCount uint64
	for run := range *runs {
		// Each run loads the topic again into a lake of its own, under a
		// consumer group of its own.
		lakeDir := filepath.Join(dir, fmt.Sprintf("lake-%d", run))
		store, cat, err := localLake(ctx, lakeDir)
		if err != nil {
			return err
		}
		profile := ""
		if run == 0 {
			profile = *cpuProfile
		}
		var schemas loader.Schemas
		if *withSchemas {
			if schemas, err = schema.Load(sample.Schemas()); err != nil {
				return err
			}
		}
		took, p99, commits, err := loadOnce(ctx, cc, store, cat, fmt.Sprintf("bench-%d", run), ends, schemas, logger, profile)
		cat.Close()
		if err != nil {
			return err
		}
		loaderTimes = append(loaderTimes, took)
		commitBound, commitCount = max(commitBound, p99), commitCount+commits
		objs, err := store.List(ctx, "yellow_taxi_trip/data/")
		if err != nil {
			return err
		}
		loaderBytes, loaderFiles = 0, int64(len(objs))
		for _, o := range objs {
			loaderBytes += o.Size
		}
	}

	// DuckDB: the same rows, flattened the same way, in memory, then COPY.
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, fmt.Sprintf(`CREATE TABLE trips AS SELECT * EXCLUDE (payload), unnest(payload)
		FROM read_json('%s', format = 'newline_delimited')`, ndjson.Name())); err != nil {
		return fmt.Errorf("duckdb load: %w", err)
	}
	target := filepath.Join(dir, "duckdb.parquet")
	for range *runs {
		start := time.Now()
		if _, err := db.ExecContext(ctx, fmt.Sprintf(`COPY trips TO '%s' (FORMAT parquet, COMPRESSION zstd)`, target)); err != nil {
			return fmt.Errorf("duckdb copy: %w", err)
		}
		duckTimes = append(duckTimes, time.Since(start))
	}
	st, err := os.Stat(target)
	if err != nil {
		return err
	}
	// And the whole job a batch tool would do instead: read the NDJSON,
	// flatten the payload, write Parquet.
	var jsonTimes []time.Duration
	for range *runs {
		start := time.Now()
		if _, err := db.ExecContext(ctx, fmt.Sprintf(`COPY (SELECT * EXCLUDE (payload), unnest(payload)
			FROM read_json('%s', format = 'newline_delimited')) TO '%s' (FORMAT parquet, COMPRESSION zstd)`, ndjson.Name(), target)); err != nil {
			return fmt.Errorf("duckdb json copy: %w", err)
		}
		jsonTimes = append(jsonTimes, time.Since(start))
	}
	loaderTime, duckTime, jsonTime := median(loaderTimes), median(duckTimes), median(jsonTimes)

	fmt.Fprintf(out, "loader benchmark: %d TLC trip events (%d MB of JSON) from the embedded broker to Iceberg tables (Parquet, zstd), median of %d runs\n\n",
		*n, int64(len(values))*int64(len(values[0]))>>20, *runs)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "writer\trows/s\ttime\tfiles\tbytes\t")
	fmt.Fprintf(tw, "sluice loader (Kafka → JSON → Iceberg, exactly once)\t%.0f\t%v\t%d\t%d\t\n",
		float64(*n)/loaderTime.Seconds(), loaderTime.Round(time.Millisecond), loaderFiles, loaderBytes)
	fmt.Fprintf(tw, "DuckDB COPY (table in memory → Parquet)\t%.0f\t%v\t1\t%d\t\n",
		float64(*n)/duckTime.Seconds(), duckTime.Round(time.Millisecond), st.Size())
	fmt.Fprintf(tw, "DuckDB read_json + COPY (NDJSON file → Parquet)\t%.0f\t%v\t1\t\t\n",
		float64(*n)/jsonTime.Seconds(), jsonTime.Round(time.Millisecond))
	fmt.Fprintf(tw, "loader / DuckDB COPY\t%.2f\t\t\t%.2f\t\n", duckTime.Seconds()/loaderTime.Seconds(), float64(loaderBytes)/float64(st.Size()))
	fmt.Fprintf(tw, "loader / DuckDB read_json + COPY\t%.2f\t\t\t\t\n", jsonTime.Seconds()/loaderTime.Seconds())
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\ncommit latency (data files written → snapshot committed to the catalog), %d commits: p99 ≤ %gs\n", commitCount, commitBound)
	return nil
}

// stampedTLC is n TLC trip events (the 500-row sample, repeated) as the
// collector stores them, each with a root_id of its own (r0, r1, ...).
func stampedTLC(n int) [][]byte {
	samples := bytes.Split(bytes.TrimSpace(tlcEvents), []byte("\n"))
	stamp := []byte(`,"collector_tstamp":"2025-01-01T00:00:00.000000Z","collector_id":"bench","root_id":"`)
	values := make([][]byte, n)
	for i := range values {
		s := samples[i%len(samples)]
		values[i] = append(append(append(append(bytes.Clone(s[:len(s)-1]), stamp...), fmt.Sprintf("r%d", i)...), '"'), '}')
	}
	return values
}

// loadOnce runs a loader on store until it has loaded the topic up to ends,
// and returns how long that took from its partitions' assignment.
func loadOnce(ctx context.Context, cc bus.ClientConfig, store lake.Storage, cat *lake.Catalog, group string, ends kadm.ListedOffsets,
	schemas loader.Schemas, logger *slog.Logger, cpuProfile string) (took time.Duration, p99 float64, commits uint64, err error) {
	cfg := loader.DefaultConfig()
	cfg.Group = group
	cfg.Topics = []string{"sluice.raw"} // the events as the collector wrote them
	reg := prometheus.NewRegistry()
	lakeSink, err := loader.New(cfg, store, cat, "sluice.dlq", schemas, logger, reg)
	if err != nil {
		return 0, 0, 0, err
	}
	l, err := sink.New("lake", cfg.Config, lakeSink, sink.Env{Logger: logger, Metrics: reg, Kafka: cc, DLQTopic: "sluice.dlq"})
	if err != nil {
		return 0, 0, 0, err
	}
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- l.Run(lctx) }()
	defer func() {
		stop()
		<-done
	}()
	// The clock starts once the loader has joined its group and has its
	// partitions, as DuckDB's starts with its table loaded: joining is
	// the broker's start-up, not throughput.
	for !assigned(reg) {
		select {
		case err := <-done:
			done <- err
			return 0, 0, 0, fmt.Errorf("loader stopped: %w", err)
		case <-time.After(time.Millisecond):
		}
	}
	if cpuProfile != "" {
		stop, err := profileCPU(cpuProfile)
		if err != nil {
			return 0, 0, 0, err
		}
		defer stop()
	}
	start := time.Now()
	for {
		caughtUp := true
		ends.Each(func(o kadm.ListedOffset) {
			p, err := lake.ReadProgress(ctx, store, o.Topic, o.Partition)
			caughtUp = caughtUp && err == nil && p.Committed >= o.Offset-1
		})
		if caughtUp {
			p99, commits := commitP99(reg)
			return time.Since(start), p99, commits, nil
		}
		select {
		case err := <-done:
			done <- err
			return 0, 0, 0, fmt.Errorf("loader stopped: %w", err)
		case <-ctx.Done():
			return 0, 0, 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// median is the middle of xs (the upper one of an even count).
func median[T cmp.Ordered](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// medianBy is the element of xs whose by is the median.
func medianBy[T any](xs []T, by func(T) float64) T {
	s := slices.Clone(xs)
	slices.SortFunc(s, func(a, b T) int { return cmp.Compare(by(a), by(b)) })
	return s[len(s)/2]
}
