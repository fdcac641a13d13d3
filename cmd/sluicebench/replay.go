package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/loadgen"
	"github.com/sluicehq/sluice/internal/replay"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/source"
)

// benchReplay measures `sluice replay` sending TLC trips in batches to the
// collector (on the embedded broker), and to a no-op handler in the same
// run: the ratio is how much of the replay's rate the collector keeps.
func benchReplay(ctx context.Context, args []string, out io.Writer) error {
	fset := flag.NewFlagSet("replay", flag.ContinueOnError)
	n := fset.Int("rows", 100_000, "TLC rows to replay (the bundled 10,000, repeated)")
	batch := fset.Int("batch", 500, "events per request")
	concurrency := fset.Int("concurrency", 4, "requests in flight")
	if err := fset.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := os.MkdirTemp("", "sluicebench-replay")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The rows as NDJSON, read from the bundled Parquet file.
	data, err := fs.ReadFile(sample.FS(), sample.TLCTrips)
	if err != nil {
		return err
	}
	var rows [][]byte
	if err := source.ParquetRows(bytes.NewReader(data), int64(len(data)), source.DefaultTimeLayout, func(row []byte) error {
		rows = append(rows, bytes.Clone(row))
		return nil
	}); err != nil {
		return err
	}
	var nd bytes.Buffer
	for i := range *n {
		nd.Write(rows[i%len(rows)])
		nd.WriteByte('\n')
	}
	file := filepath.Join(dir, "trips.ndjson")
	if err := os.WriteFile(file, nd.Bytes(), 0o644); err != nil {
		return err
	}

	colAddr, stopCollector, err := startCollector(ctx, dir, bus.BrokerConfig{}, bus.ProducerConfig{}, logger)
	if err != nil {
		return err
	}
	defer stopCollector()
	noopAddr, noopStop, err := serve(loadgen.Noop())
	if err != nil {
		return err
	}
	defer noopStop()

	run := func(addr string, unordered bool) (time.Duration, *replay.Stats, error) {
		src, err := source.New(file, "")
		if err != nil {
			return 0, nil, err
		}
		cfg := replay.DefaultConfig()
		cfg.Collector, cfg.EventType, cfg.Batch, cfg.Concurrency = "http://"+addr, "yellow_taxi_trip", *batch, *concurrency
		cfg.Unordered = unordered
		st := new(replay.Stats)
		start := time.Now()
		err = replay.Run(ctx, cfg, []*source.Source{src}, []*replay.Stats{st})
		if err == nil && st.Accepted.Load() != int64(*n) {
			err = fmt.Errorf("%d of %d rows accepted", st.Accepted.Load(), *n)
		}
		return time.Since(start), st, err
	}
	noopTime, _, err := run(noopAddr.String(), false)
	if err != nil {
		return fmt.Errorf("replay to the no-op handler: %w", err)
	}
	colTime, st, err := run(colAddr.String(), false)
	if err != nil {
		return fmt.Errorf("replay to the collector: %w", err)
	}
	// The cost of keeping the file's order (ordered pipelining) is the
	// difference from the same replay with requests independent.
	freeTime, _, err := run(colAddr.String(), true)
	if err != nil {
		return fmt.Errorf("unordered replay to the collector: %w", err)
	}
	p50, p99 := st.Latency()
	fmt.Fprintf(out, "replay benchmark: %d TLC rows (%d MB of NDJSON) in batches of %d, %d requests in flight\n\n",
		*n, nd.Len()>>20, *batch, *concurrency)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\trows/s\ttime\t")
	fmt.Fprintf(tw, "no-op HTTP handler\t%.0f\t%v\t\n", float64(*n)/noopTime.Seconds(), noopTime.Round(time.Millisecond))
	fmt.Fprintf(tw, "collector (embedded broker, acks=all)\t%.0f\t%v\t\n", float64(*n)/colTime.Seconds(), colTime.Round(time.Millisecond))
	fmt.Fprintf(tw, "collector, --unordered\t%.0f\t%v\t\n", float64(*n)/freeTime.Seconds(), freeTime.Round(time.Millisecond))
	fmt.Fprintf(tw, "collector / no-op\t%.2f\t\t\n", noopTime.Seconds()/colTime.Seconds())
	fmt.Fprintf(tw, "ordered / unordered\t%.2f\t\t\n", freeTime.Seconds()/colTime.Seconds())
	tw.Flush()
	fmt.Fprintf(out, "collector request latency p50 %v, p99 %v\n", p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond))
	return nil
}
