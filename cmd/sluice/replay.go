package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/pipeline"
	"github.com/sluicehq/sluice/internal/replay"
	"github.com/sluicehq/sluice/internal/source"
)

const replayUsage = `Usage: sluice replay [flags] FILE|URL ...

Sends each row of Parquet, CSV or NDJSON files (plain or gzipped; local paths or
http(s) URLs, streamed) as an event to the collector, one producer per file,
in parallel. Each event has event_id <file name>:<row number>. Parquet
timestamps become ISO 8601 strings (--time-format), integers stay integers,
nulls stay null; CSV columns are strings unless --schema or a preset types
them.

Failed requests are retried with backoff on connection errors, 429 and 5xx;
4xx answers are counted by reason. Events that never succeed are written to
--failed-out, and the exit status is then 1.

With --to kafka the rows go straight to --topic on --brokers (the embedded
broker at 127.0.0.1:9092 by default) as JSON, or CSV lines with --format csv,
keyed by --key-field, with the same pacing and summary.

Examples:
  sluice replay --preset tlc-yellow testdata/tlc/yellow_tripdata_2025-01_first10000.parquet
  sluice replay --preset mta-turnstile --rate 500 turnstile.csv.gz
  sluice replay --event-type reading --schema temp:float,at:timestamp readings.csv
  sluice replay --preset tlc-yellow --time-warp 60 trips.parquet     # an hour of trips in a minute
  sluice replay --to kafka --topic turnstiles --preset mta-turnstile --format csv turnstile.csv
`

// errFailedEvents makes the exit status 1 after the summary said why.
var errFailedEvents = errors.New("some events were not accepted")

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("replay", replayUsage, stderr)
	rc := replay.DefaultConfig()
	collector := "http://127.0.0.1:8080"
	var files []string
	var preset, schema, format, failedOut, valueFormat string
	to := "collector"
	timeLayout := source.DefaultTimeLayout
	var max int
	fs.String(&collector, "collector", "the collector's base URL")
	fs.String(&rc.APIKey, "api-key", "API key sent as a Bearer token, when the collector asks for one")
	fs.List(&files, "file", "a file or URL to replay; repeat for parallel producers (or give them as arguments)")
	fs.String(&preset, "preset", "set event type and column types for a dataset: "+replay.PresetNames())
	fs.String(&rc.EventType, "event-type", "every event's event_type (a preset sets it)")
	fs.String(&rc.SchemaVersion, "schema-version", "every event's schema_version")
	fs.String(&schema, "schema", "CSV column types as name:type,... (string, int, float, bool, timestamp)")
	fs.String(&format, "input-format", "the files' format when their names do not tell: parquet, csv, csv.gz, ndjson or ndjson.gz")
	fs.String(&to, "to", "where rows go: collector (as events) or kafka (as records, straight to --topic)")
	fs.String(&rc.Topic, "topic", "with --to kafka, the topic to publish to")
	fs.String(&rc.KeyField, "key-field", "with --to kafka, the row field that keys records (a preset sets one)")
	fs.String(&valueFormat, "format", "with --to kafka, record values as json or csv")
	fs.Float(&rc.TimeWarp, "time-warp", "replay at the pace of the rows' event time, sped up this many times")
	fs.String(&rc.TimeField, "time-field", "the row field --time-warp paces by (a preset sets one)")
	fs.String(&timeLayout, "time-format", "Go time layout for timestamps (default ISO 8601 without a zone)")
	fs.Float(&rc.Rate, "rate", "events per second per producer (0: as fast as possible)")
	fs.Duration(&rc.Sleep, "sleep", "pause after each row, as the seeds' producers do (instead of --rate)")
	fs.Int(&max, "max", "stop each producer after this many rows (0: all)")
	fs.Int(&rc.Batch, "batch", "events per request: 1 uses the single-event endpoint, more the batch endpoint")
	fs.Int(&rc.Concurrency, "concurrency", "requests in flight per producer")
	fs.Bool(&rc.Unordered, "unordered", "let the collector write concurrent requests in any order (by default it keeps each producer's order)")
	fs.Int(&rc.Retries, "retries", "retries of a failed request before its events count as failed")
	fs.String(&failedOut, "failed-out", "write events that were not accepted to this NDJSON file, with the reason")
	pipeline.BrokerFlags(fs, "broker-addr")
	pipeline.ProcessFlags(fs, "data-dir")
	logFlags(fs)
	pipeline.KafkaFlags(fs)
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	files = append(files, fs.Args()...)
	if len(files) == 0 {
		fmt.Fprintln(stderr, "sluice replay: no files; give a FILE or URL (see 'sluice replay --help')")
		return errUsage
	}
	var cols map[string]string
	if preset != "" {
		p, ok := replay.Presets[preset]
		if !ok {
			fmt.Fprintf(stderr, "sluice replay: unknown preset %q; want one of %s\n", preset, replay.PresetNames())
			return errUsage
		}
		cols = p.Columns
		if rc.EventType == "" {
			rc.EventType = p.EventType
		}
		if rc.KeyField == "" && to == "kafka" {
			rc.KeyField = p.KeyField
		}
		if rc.TimeField == "" {
			rc.TimeField = p.TimeField
		}
	}
	if rc.TimeWarp > 0 && rc.TimeField == "" {
		fmt.Fprintln(stderr, "sluice replay: --time-warp needs --time-field, the column to pace by")
		return errUsage
	}
	switch to {
	case "collector":
	case "kafka":
		if rc.Topic == "" {
			fmt.Fprintln(stderr, "sluice replay: --to kafka needs --topic")
			return errUsage
		}
		if valueFormat != "" && valueFormat != "json" && valueFormat != "csv" {
			fmt.Fprintf(stderr, "sluice replay: --format %q: want json or csv\n", valueFormat)
			return errUsage
		}
		rc.KafkaFormat = valueFormat
		cfg.BrokersOrLocal()
		cl, err := bus.NewProducer(cfg.Client("sluice-replay"), cfg.Producer, logger)
		if err != nil {
			return err
		}
		defer cl.Close()
		// As the collector does for its topics: a new topic is created,
		// an existing one is used as it is.
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := bus.EnsureTopics(tctx, cl, cfg.Topics.Partitions, cfg.Topics.Replication, rc.Topic); err != nil {
			return fmt.Errorf("%w (is Kafka running at %s?)", err, strings.Join(cfg.Kafka.Brokers, ","))
		}
		rc.Kafka = cl
	default:
		fmt.Fprintf(stderr, "sluice replay: --to %q: want collector or kafka\n", to)
		return errUsage
	}
	strict := false
	if schema != "" {
		if cols, err = replay.ParseSchema(schema); err != nil {
			return fmt.Errorf("--schema: %w", err)
		}
		strict = true
	}
	if rc.EventType == "" && rc.Kafka == nil {
		fmt.Fprintln(stderr, "sluice replay: pass --event-type, or a --preset that sets it")
		return errUsage
	}
	rc.Max, rc.Collector, rc.Logger = int64(max), collector, logger
	sources := make([]*source.Source, len(files))
	stats := make([]*replay.Stats, len(files))
	for i, f := range files {
		if sources[i], err = source.New(f, format); err != nil {
			return err
		}
		sources[i].TimeLayout, sources[i].Columns, sources[i].Strict = timeLayout, cols, strict
		stats[i] = new(replay.Stats)
	}
	if failedOut != "" {
		f, err := os.Create(failedOut)
		if err != nil {
			return fmt.Errorf("--failed-out: %w", err)
		}
		defer f.Close()
		rc.FailedOut = f
	}

	start := time.Now()
	err = withProgress(stderr, sources, stats, func() error { return replay.Run(ctx, rc, sources, stats) })
	if rc.FailedOut != nil {
		if cerr := rc.FailedOut.(*os.File).Close(); cerr != nil && err == nil {
			err = fmt.Errorf("--failed-out: %w", cerr)
		}
	}
	failed := summarize(stdout, sources, stats, time.Since(start), failedOut)
	if err != nil {
		return err
	}
	if failed > 0 {
		return errFailedEvents
	}
	return nil
}

// summarize prints what each producer did and returns the events not
// accepted.
func summarize(w io.Writer, sources []*source.Source, stats []*replay.Stats, took time.Duration, failedOut string) int64 {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "producer\trows\tsent\taccepted\trejected\tretried\tfailed\tevents/s\tp50\tp99\t")
	var bad int64
	reasons := map[string]int64{}
	for i, s := range stats {
		p50, p99 := s.Latency()
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%v\t%v\t\n", sources[i].Name, s.Rows.Load(), s.Sent.Load(),
			s.Accepted.Load(), s.Rejected.Load(), s.Retried.Load(), s.Failed.Load(),
			float64(s.Accepted.Load())/took.Seconds(), p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond))
		bad += s.Rejected.Load() + s.Failed.Load()
		for r, n := range s.Reasons() {
			reasons[r] += n
		}
	}
	tw.Flush()
	if len(reasons) > 0 {
		var rs []string
		for r, n := range reasons {
			rs = append(rs, fmt.Sprintf("%s %d", r, n))
		}
		sort.Strings(rs)
		fmt.Fprintf(w, "rejected by reason: %s\n", strings.Join(rs, ", "))
	}
	if bad > 0 {
		where := "pass --failed-out FILE to keep them"
		if failedOut != "" {
			where = "they are in " + failedOut
		}
		fmt.Fprintf(w, "%d events were not accepted; %s\n", bad, where)
	}
	return bad
}

// withProgress runs replay, drawing progress bars on stderr when it is a
// terminal.
func withProgress(stderr io.Writer, sources []*source.Source, stats []*replay.Stats, replay func() error) error {
	if !pipeline.IsTerminal(stderr) {
		return replay()
	}
	bars := &progressBars{w: stderr, sources: sources, stats: stats, start: time.Now()}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		bars.run(done)
	}()
	err := replay()
	close(done)
	<-stopped
	bars.draw(true)
	return err
}

// progressBars draws a line per producer on a terminal: rows, rate, and
// how far through the file, with an ETA, when its size is known.
type progressBars struct {
	w       io.Writer
	sources []*source.Source
	stats   []*replay.Stats
	start   time.Time
	drawn   bool
}

func (b *progressBars) run(done <-chan struct{}) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			b.draw(false)
		}
	}
}

func (b *progressBars) draw(final bool) {
	var out strings.Builder
	if b.drawn {
		fmt.Fprintf(&out, "\x1b[%dA", len(b.stats))
	}
	b.drawn = true
	elapsed := time.Since(b.start).Seconds()
	for i, s := range b.stats {
		rows := s.Rows.Load()
		frac := -1.0
		if p := s.Progress.Load(); p != nil && p.Total > 0 {
			frac = float64(p.Done) / float64(p.Total)
		}
		if final {
			frac = 1
		}
		const width = 24
		bar, eta := strings.Repeat("·", width), ""
		if frac >= 0 {
			n := int(frac * width)
			bar = strings.Repeat("█", n) + strings.Repeat("·", width-n)
			if frac > 0 && !final {
				eta = fmt.Sprintf("  ETA %v", time.Duration(elapsed/frac*(1-frac)*float64(time.Second)).Round(time.Second))
			}
		}
		fmt.Fprintf(&out, "\x1b[2K%-28s %s %9d rows %8.0f/s%s\n", b.sources[i].Name, bar, rows, float64(rows)/elapsed, eta)
	}
	io.WriteString(b.w, out.String())
}
