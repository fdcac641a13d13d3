// Command sluicebench measures Sluice's stages on this machine against a
// baseline run in the same process, and prints the ratio. `make bench` runs
// it; see the README's benchmark section.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/collector"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/loadgen"
)

//go:embed testdata/tlc_yellow_2025-01_first500.ndjson
var tlcEvents []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	benches := map[string]func(context.Context, []string, io.Writer) error{
		"aggregator": benchAggregator,
		"balance":    benchBalance,
		"collector":  benchCollector,
		"enricher":   benchEnricher,
		"jobs":       benchJobs,
		"loader":     benchLoader,
		"peers":      benchPeers,
		"replay":     benchReplay,
		"search":     benchSearch,
		"up":         benchUp,
		// Servers of the benchmarks above, run as processes of their own.
		"noop-server":      noopServer,
		"forms-api-server": formsAPIServer,
	}
	if len(os.Args) < 2 || benches[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: sluicebench aggregator|balance|collector|enricher|jobs|loader|peers|replay|search|up [flags]   (see -h)")
		os.Exit(2)
	}
	if err := benches[os.Args[1]](ctx, os.Args[2:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "sluicebench:", err)
		os.Exit(1)
	}
}

// profileCPU starts a CPU profile written to path; stop ends it.
func profileCPU(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func benchCollector(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	conns := fs.Int("conns", 64, "concurrent keep-alive connections")
	duration := fs.Duration("duration", 10*time.Second, "measured time of each run")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time before each run")
	batch := fs.Int("batch", 500, "events per batch request")
	batchConns := fs.Int("batch-conns", 8, "connections for batch runs")
	linger := fs.Duration("linger", bus.DefaultProducerConfig().Linger, "producer linger")
	fsync := fs.Bool("fsync", false, "fsync every batch in the embedded broker")
	compression := fs.String("compression", bus.DefaultProducerConfig().Compression, "producer compression: none, lz4, zstd, snappy or gzip")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	only := fs.String("only", "", "run only this mode: single or batch")
	collectorOnly := fs.Bool("collector-only", false, "skip the no-op baseline (for profiling the collector)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		stop, err := profileCPU(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	dir, err := os.MkdirTemp("", "sluicebench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	colAddr, stopCollector, err := startCollector(ctx, dir, bus.BrokerConfig{Fsync: *fsync}, bus.ProducerConfig{
		Linger: *linger, MaxRecordBytes: 2 << 20, Compression: *compression}, logger)
	if err != nil {
		return err
	}
	defer stopCollector()

	noopLn, noopStop, err := serve(loadgen.Noop())
	if err != nil {
		return err
	}
	defer noopStop()
	validateLn, validateStop, err := serve(loadgen.Validate())
	if err != nil {
		return err
	}
	defer validateStop()

	modes, err := loadModes(*conns, *batch, *batchConns)
	if err != nil {
		return err
	}
	singles := modes[0].bodies

	fmt.Fprintf(out, "collector benchmark: %d TLC trip events (avg %d bytes), embedded broker (fsync=%v), producer linger %v, compression %s\n",
		len(singles), len(tlcEvents)/len(singles), *fsync, *linger, *compression)
	fmt.Fprintf(out, "each run: %v after %v warm-up; baselines in the same process: a no-op handler that only reads\n"+
		"the body, and one that also checks it with encoding/json.Valid (the least a collector can do)\n\n", *duration, *warmup)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\ttarget\tconns\tevents/s\tp50\tp99\tfailed\t")
	for _, m := range modes {
		if *only != "" && !strings.HasPrefix(m.name, *only) {
			continue
		}
		var rates [3]float64
		for i, target := range []struct{ name, addr string }{
			{"no-op", noopLn.String()},
			{"collector", colAddr.String()},
			{"json.Valid only", validateLn.String()},
		} {
			if *collectorOnly && target.name != "collector" {
				rates[i] = 1
				continue
			}
			res, err := loadgen.Run(ctx, loadgen.Config{
				URL: "http://" + target.addr + m.path, ContentType: "application/json",
				Bodies: m.bodies, EventsPerBody: m.per, Connections: m.conns,
				Duration: *duration, Warmup: *warmup,
			})
			if err != nil {
				return err
			}
			rates[i] = res.EventsPerSec()
			failed := 0
			for _, n := range res.Failures {
				failed += n
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%v\t%v\t%d\t\n", m.name, target.name, m.conns, res.EventsPerSec(),
				res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), failed)
		}
		fmt.Fprintf(tw, "%s\tcollector / no-op\t\t%.2f\t\t\t\t\n", m.name, rates[1]/rates[0])
		fmt.Fprintf(tw, "%s\tcollector / json.Valid only\t\t%.2f\t\t\t\t\n", m.name, rates[1]/rates[2])
	}
	return tw.Flush()
}

// loadMode is a way to load a collector: an endpoint, its bodies and the
// events each holds, and the connections that send them.
type loadMode struct {
	name   string
	path   string
	bodies [][]byte
	per    int
	conns  int
}

// loadModes are the bundled TLC events as single events over conns
// connections, and as batches of batch over batchConns.
func loadModes(conns, batch, batchConns int) ([]loadMode, error) {
	singles := bytes.Split(bytes.TrimSpace(tlcEvents), []byte("\n"))
	var batches [][]byte
	for i := 0; i+batch <= len(singles); i += batch {
		batches = append(batches, append(append([]byte("["), bytes.Join(singles[i:i+batch], []byte(","))...), ']'))
	}
	if len(batches) == 0 {
		return nil, fmt.Errorf("batch %d is larger than the %d sample events", batch, len(singles))
	}
	return []loadMode{
		{"single", "/api/v1/collect", singles, 1, conns},
		{fmt.Sprintf("batch %d", batch), "/api/v1/collect/batch", batches, batch, batchConns},
	}, nil
}

// startCollector starts the collector on an embedded broker in dir, with
// the benchmark's broker and producer settings, and returns its address.
func startCollector(ctx context.Context, dir string, bc bus.BrokerConfig, pc bus.ProducerConfig, logger *slog.Logger) (net.Addr, func(), error) {
	bc.Addr, bc.Dir, bc.Partitions = "127.0.0.1:0", filepath.Join(dir, "broker"), 3
	broker, err := bus.StartBroker(bc, logger)
	if err != nil {
		return nil, nil, err
	}
	pc.MaxBufferedBytes = 256 << 20
	prod, err := bus.NewProducer(bus.ClientConfig{Brokers: []string{broker.Addr()}}, pc, logger)
	if err != nil {
		broker.Close()
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	stop := func() {
		cancel()
		prod.Close()
		broker.Close()
	}
	if err := bus.EnsureTopics(ctx, prod, 3, 1, "sluice.raw", "sluice.dlq"); err != nil {
		stop()
		return nil, nil, err
	}
	ccfg := collector.DefaultConfig()
	ccfg.ID, ccfg.Addr = "bench", "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	proc := app.NewProcess(logger)
	col, err := collector.New(ccfg, prod, logger, reg, app.NewOps(app.OpsConfig{}, proc, reg, ccfg.ID, nil), nil)
	if err != nil {
		stop()
		return nil, nil, err
	}
	addr, err := col.Listen()
	if err != nil {
		stop()
		return nil, nil, err
	}
	go col.Run(runCtx)
	return addr, stop, nil
}

// serve serves h on a loopback port until stopped.
func serve(h http.Handler) (net.Addr, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return ln.Addr(), func() { srv.Close() }, nil
}

// benchBroker starts an embedded broker in dir/broker with a producer on
// it, and creates the topics with the given partitions.
func benchBroker(ctx context.Context, dir string, partitions int32, logger *slog.Logger, topics ...string) (bus.ClientConfig, *kgo.Client, func(), error) {
	broker, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: filepath.Join(dir, "broker"), Partitions: partitions}, logger)
	if err != nil {
		return bus.ClientConfig{}, nil, nil, err
	}
	cc := bus.ClientConfig{Brokers: []string{broker.Addr()}}
	prod, err := bus.NewProducer(cc, bus.ProducerConfig{MaxBufferedBytes: 256 << 20}, logger)
	if err != nil {
		broker.Close()
		return bus.ClientConfig{}, nil, nil, err
	}
	stop := func() {
		prod.Close()
		broker.Close()
	}
	if err := bus.EnsureTopics(ctx, prod, partitions, 1, topics...); err != nil {
		stop()
		return bus.ClientConfig{}, nil, nil, err
	}
	return cc, prod, stop, nil
}

// localLake opens a lake on local disk in dir, with its embedded catalog,
// which the caller closes.
func localLake(ctx context.Context, dir string) (*lake.Local, *lake.Catalog, error) {
	store, err := lake.NewLocal(dir)
	if err != nil {
		return nil, nil, err
	}
	cat, err := lake.OpenCatalog(ctx, dir, lake.CatalogConfig{}, lake.S3Config{})
	if err != nil {
		return nil, nil, err
	}
	return store, cat, nil
}

// produceAll writes values to topic, 10,000 at a time, each with its
// event_type header, and waits for every acknowledgement.
func produceAll(ctx context.Context, prod *kgo.Client, topic, eventType string, values [][]byte) error {
	for i := 0; i < len(values); i += 10_000 {
		var recs []*kgo.Record
		for _, v := range values[i:min(i+10_000, len(values))] {
			recs = append(recs, &kgo.Record{Topic: topic, Value: v,
				Headers: []kgo.RecordHeader{{Key: "event_type", Value: []byte(eventType)}}})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("produce to %s: %w", topic, err)
		}
	}
	return nil
}
