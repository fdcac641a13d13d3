package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/javatest"
	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/internal/window"
)

// benchPeers runs the seed's MTA aggregation (dedupe, 4-hour windows per
// turnstile, readings and the sums of both counters) in Sluice's
// aggregator, in the seed's Spark Structured Streaming job (pyspark,
// local[2]) and in a Kafka Streams application (two stream threads), one
// after the other, each reading the same topic of a real 3-node Apache
// Kafka cluster on this machine, and checks that the three give the same
// windows. Each is timed from its job's start to its last window written:
// the JVM's and the Spark session's start are reported apart.
func benchPeers(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	copies := fs.Int("copies", 50, "copies of the 5,000-row sample, each of other turnstiles (50: 250,000 rows, a full MTA week)")
	partitions := fs.Int("partitions", 4, "partitions of the input topic")
	runs := fs.Int("runs", 3, "runs of each; the median is reported")
	defaultPython := os.Getenv("SLUICE_PYTHON")
	if defaultPython == "" {
		home, _ := os.UserHomeDir()
		defaultPython = filepath.Join(home, ".cache", "sluice", "python", "bin", "python")
	}
	python := fs.String("python", defaultPython, "Python with pyspark (make test-deps installs it there)")
	only := fs.String("only", "", "run only the jobs whose name has this (sluice, streams or spark)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of Sluice's first run to this file")
	streamsGrace := fs.Duration("streams-grace", 8*24*time.Hour, "Kafka Streams' grace: how late, behind its stream time, a reading is still counted (longer than the week: none is late)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, name := range []string{"kafka", "spark-kafka", "kafka-streams"} {
		if err := javatest.Check(name); err != nil {
			return fmt.Errorf("%w (make bench-deps fetches every peer)", err)
		}
	}
	if _, err := os.Stat(*python); err != nil {
		return fmt.Errorf("no Python with pyspark at %s: make bench-deps installs it, or pass -python", *python)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := os.MkdirTemp("", "sluicebench-peers")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	_, rows, err := mtaWeek(*copies)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "starting a 3-node Apache Kafka cluster (testenv/kafka)")
	cluster, err := kafkatest.Run(filepath.Join(dir, "kafka"))
	if err != nil {
		return fmt.Errorf("start kafka: %w", err)
	}
	defer cluster.Stop()
	brokers := cluster.Brokers()
	cc := bus.ClientConfig{Brokers: brokers}
	prod, err := bus.NewProducer(cc, bus.ProducerConfig{MaxBufferedBytes: 256 << 20}, logger)
	if err != nil {
		return err
	}
	defer prod.Close()
	const topic = "mta-turnstile"
	if err := bus.EnsureTopics(ctx, prod, int32(*partitions), 3, topic); err != nil {
		return err
	}
	if err := produceTurnstiles(ctx, prod, topic, rows); err != nil {
		return err
	}
	if err := warmUp(ctx, cc); err != nil {
		return err
	}
	n := int64(len(rows))
	aggs := []window.Aggregate{{Op: window.Count, As: "readings"}, {Op: window.Sum, Field: "ENTRIES", As: "entries"},
		{Op: window.Sum, Field: "EXITS", As: "exits"}}

	// Each job runs once a round, and returns its time, its process's
	// whole time (with the JVM's or the Spark session's start) and its
	// windows.
	type job struct {
		name        string
		run         func(run int) (job, total time.Duration, windows map[string]windowSums, err error)
		jobs, total []time.Duration
		windows     map[string]windowSums
	}
	sluice := &job{name: "Sluice aggregator, repartitioned by group", run: func(run int) (time.Duration, time.Duration, map[string]windowSums, error) {
		name := fmt.Sprintf("peers_%d", run)
		profile := ""
		if run == 0 {
			profile = *cpuProfile
		}
		took, _, err := aggregateOnce(ctx, cc, prod, filepath.Join(dir, "lake-"+name), name, false, aggs, n, logger, profile)
		if err != nil {
			return 0, 0, nil, err
		}
		windows, err := sluiceWindows(ctx, cc, "sluice.agg."+name)
		return took, took, windows, err
	}}
	streams := &job{name: "Kafka Streams 4.1.1, 2 stream threads, exactly_once_v2", run: func(run int) (time.Duration, time.Duration, map[string]windowSums, error) {
		outTopic := fmt.Sprintf("kstreams.windows.%d", run)
		if err := bus.EnsureTopics(ctx, prod, int32(*partitions), 3, outTopic); err != nil {
			return 0, 0, nil, err
		}
		app := fmt.Sprintf("sluicebench-kstreams-%d", run)
		job, total, late, err := timedPeer(ctx, javatest.Command("kafka-streams", "TurnstileWindows.java", strings.Join(brokers, ","), topic, outTopic,
			strconv.FormatInt(n, 10), filepath.Join(dir, app), app, strconv.Itoa(int(streamsGrace.Hours()))))
		if err != nil {
			return 0, 0, nil, err
		}
		if late > 0 {
			fmt.Fprintf(os.Stderr, "kafka streams dropped %d readings as late, with a grace of %v\n", late, *streamsGrace)
		}
		windows, err := streamsWindows(ctx, cc, outTopic)
		return job, total, windows, err
	}}
	spark := &job{name: "Spark Structured Streaming 4.1.1, local[2]", run: func(run int) (time.Duration, time.Duration, map[string]windowSums, error) {
		out := filepath.Join(dir, fmt.Sprintf("spark-%d.jsonl", run))
		job, total, _, err := timedPeer(ctx, exec.Command(*python, filepath.Join(javatest.Dir("spark-kafka"), "turnstile.py"),
			strings.Join(brokers, ","), topic, javatest.Lib("spark-kafka"), out))
		if err != nil {
			return 0, 0, nil, err
		}
		windows, err := sparkWindows(out)
		return job, total, windows, err
	}}
	var jobs []*job
	for _, j := range []*job{sluice, streams, spark} {
		if *only == "" || strings.Contains(strings.ToLower(j.name), *only) {
			jobs = append(jobs, j)
		}
	}
	for run := range *runs {
		fmt.Fprintf(os.Stderr, "round %d of %d\n", run+1, *runs)
		for _, j := range jobs {
			took, total, windows, err := j.run(run)
			if err != nil {
				return fmt.Errorf("%s: %w", j.name, err)
			}
			j.jobs, j.total, j.windows = append(j.jobs, took), append(j.total, total), windows
			fmt.Fprintf(os.Stderr, "  %s: %v (%v in all)\n", j.name, took.Round(time.Millisecond), total.Round(time.Millisecond))
		}
		// Spark, in complete mode, and Kafka Streams, which writes every
		// update, have every window; Sluice writes those its watermark
		// has closed.
		if spark.windows == nil {
			continue
		}
		for _, j := range []*job{streams, sluice} {
			if j.windows == nil {
				continue
			}
			if diffs := compareWindows(spark.windows, j.windows, j != sluice); len(diffs) > 0 {
				return fmt.Errorf("%s and Spark differ in %d windows:\n%s", j.name, len(diffs), strings.Join(diffs[:min(10, len(diffs))], "\n"))
			}
		}
		if sluice.windows != nil && len(sluice.windows) < len(spark.windows)*9/10 {
			return fmt.Errorf("sluice wrote %d windows of spark's %d", len(sluice.windows), len(spark.windows))
		}
	}

	fmt.Fprintf(out, "peers benchmark: %d MTA turnstile audits (one week) as CSV lines on %d partitions of a 3-node Apache Kafka cluster on this machine; dedupe, 4-hour windows per turnstile, readings and two sums; median of %d runs\n\n",
		n, *partitions, *runs)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "job\tevents/s\tjob time\tprocess time\twindows\t÷ the first\t")
	first := median(jobs[0].jobs)
	for _, j := range jobs {
		took := median(j.jobs)
		fmt.Fprintf(tw, "%s\t%.0f\t%v\t%v\t%d\t%.2f\t\n", j.name, float64(n)/took.Seconds(), took.Round(time.Millisecond),
			median(j.total).Round(time.Millisecond), len(j.windows), first.Seconds()/took.Seconds())
	}
	if spark.windows != nil && len(jobs) > 1 {
		fmt.Fprintln(tw, "(the windows are equal in all; Sluice writes those its watermark has closed, the peers every window)\t\t\t\t\t\t")
	}
	return tw.Flush()
}

// warmUp commits one transaction and one group offset, and waits until
// every partition of the internal topics Kafka creates for them
// (__transaction_state and __consumer_offsets, 50 each) has its three
// replicas in sync. A production cluster has them; here the first timed
// job would otherwise wait out their creation, slowed by the elections
// still under way (measured: Sluice's first transactions took 5 s each).
func warmUp(ctx context.Context, cc bus.ClientConfig) error {
	const topic, group = "sluicebench.warmup", "sluicebench-warmup"
	cl, err := bus.NewClient(cc, slog.New(slog.DiscardHandler), kgo.TransactionalID(group))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := bus.EnsureTopics(ctx, cl, 1, 3, topic); err != nil {
		return err
	}
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("warm")}).FirstErr(); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	var offsets kadm.Offsets
	offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: 1})
	if _, err := adm.CommitOffsets(ctx, group, offsets); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		md, err := adm.Metadata(ctx, "__transaction_state", "__consumer_offsets")
		if err != nil {
			return err
		}
		settled := len(md.Topics) == 2
		for _, t := range md.Topics {
			settled = settled && len(t.Partitions) > 0
			for _, p := range t.Partitions {
				settled = settled && p.Leader >= 0 && len(p.ISR) == 3
			}
		}
		if settled {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("warm up: kafka's internal topics did not settle in 2 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// timedPeer runs cmd, a peer's job that prints {"seconds": ..., "late":
// ...} (its own time from the job's start, and the readings it dropped as
// late) last, and returns that time, the process's whole time and the
// late readings.
func timedPeer(ctx context.Context, cmd *exec.Cmd) (job, total time.Duration, late int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	err = cmd.Wait()
	stop()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%v\n%s", err, tail(stderr.String(), 40))
	}
	total = time.Since(start)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var r struct {
		Seconds float64
		Late    int64
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil || r.Seconds <= 0 {
		return 0, 0, 0, fmt.Errorf("no job time in its output %q\n%s", stdout.String(), tail(stderr.String(), 40))
	}
	return time.Duration(r.Seconds * float64(time.Second)), total, r.Late, nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// windowSums are a window's aggregates in the three jobs.
type windowSums struct{ Readings, Entries, Exits int64 }

// windowKey is a window as the three jobs name it: its start and group as
// a JSON array.
func windowKey(start string, group ...string) string {
	b, _ := json.Marshal(append([]string{start}, group...))
	return string(b)
}

// turnstileGroup is the aggregation's group, in its order.
var turnstileGroup = []string{"C/A", "UNIT", "SCP", "STATION", "LINENAME", "DIVISION", "DATE", "DESC"}

// readTopic calls fn with every committed record of topic.
func readTopic(ctx context.Context, cc bus.ClientConfig, topic string, fn func(*kgo.Record) error) error {
	cl, err := bus.NewClient(cc, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	cl.Close()
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	spans := map[string]map[int32]bus.Span{topic: {}}
	ends.Each(func(o kadm.ListedOffset) { spans[topic][o.Partition] = bus.Span{End: o.Offset} })
	return bus.ReadSpans(ctx, cc, spans, fn)
}

// sluiceWindows reads the aggregator's result records.
func sluiceWindows(ctx context.Context, cc bus.ClientConfig, topic string) (map[string]windowSums, error) {
	got := map[string]windowSums{}
	err := readTopic(ctx, cc, topic, func(r *kgo.Record) error {
		var fields map[string]json.RawMessage
		var sums windowSums
		if err := json.Unmarshal(r.Value, &fields); err != nil {
			return fmt.Errorf("sluice result %s: %w", r.Value, err)
		}
		if err := json.Unmarshal(r.Value, &sums); err != nil {
			return fmt.Errorf("sluice result %s: %w", r.Value, err)
		}
		var start string
		json.Unmarshal(fields["window_start"], &start)
		t, err := time.Parse(time.RFC3339, start)
		if err != nil {
			return fmt.Errorf("sluice result %s: %w", r.Value, err)
		}
		group := make([]string, len(turnstileGroup))
		for i, g := range turnstileGroup {
			json.Unmarshal(fields[g], &group[i])
		}
		got[windowKey(t.UTC().Format("2006-01-02T15:04:05"), group...)] = sums
		return nil
	})
	return got, err
}

// peerWindow is a window as the Kafka Streams application and the Spark
// job write it.
type peerWindow struct {
	Key []string
	windowSums
}

// streamsWindows reads the Kafka Streams application's updates: the last
// of each window is its result.
func streamsWindows(ctx context.Context, cc bus.ClientConfig, topic string) (map[string]windowSums, error) {
	got := map[string]windowSums{}
	err := readTopic(ctx, cc, topic, func(r *kgo.Record) error {
		var w peerWindow
		if err := json.Unmarshal(r.Value, &w); err != nil || len(w.Key) == 0 {
			return fmt.Errorf("kafka streams result %s: %v", r.Value, err)
		}
		got[windowKey(w.Key[0], w.Key[1:]...)] = w.windowSums
		return nil
	})
	return got, err
}

// sparkWindows reads the Spark job's windows, one JSON line each.
func sparkWindows(path string) (map[string]windowSums, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	got := map[string]windowSums{}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var w peerWindow
		if err := json.Unmarshal(line, &w); err != nil || len(w.Key) == 0 {
			return nil, fmt.Errorf("spark window %s: %v", line, err)
		}
		got[windowKey(w.Key[0], w.Key[1:]...)] = w.windowSums
	}
	return got, nil
}

// compareWindows lists how got differs from want: a window that differs,
// one that want lacks, and one that got lacks, of all of want's, or (all
// false) of those that start no later than got's last.
func compareWindows(want, got map[string]windowSums, all bool) []string {
	var diffs []string
	lastStart := ""
	for k, g := range got {
		w, ok := want[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: %+v, want none", k, g))
		case w != g:
			diffs = append(diffs, fmt.Sprintf("%s: %+v, want %+v", k, g, w))
		}
		lastStart = max(lastStart, k[:len(`["2006-01-02T15:04:05"`)])
	}
	for k, w := range want {
		if _, ok := got[k]; !ok && (all || k[:len(lastStart)] <= lastStart) {
			diffs = append(diffs, fmt.Sprintf("%s: none, want %+v", k, w))
		}
	}
	slices.Sort(diffs)
	return diffs
}
