// Package aggregator is the stage that aggregates events in event-time
// windows: it reads one topic (Sluice envelopes, or CSV lines with a
// declared schema), counts each event in its windows (package window),
// and writes each window once the watermark passes it, to the lake table
// agg_<name> and to the topic sluice.agg.<name>. Late events become dead
// letters with reason late_event, never silently dropped.
//
// Exactly once: the operator's state and the input offsets it covers are
// checkpointed together, in one object of the lake's storage, after every
// emission and at an interval. Output files are named by their window, so
// a restart from the checkpoint rewrites the same files with the same
// rows.
package aggregator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/window"
)

// Reasons the aggregator gives dead letters, besides event's own.
const (
	ReasonLateEvent = "late_event"
	ReasonBadRecord = "invalid_record"
	ReasonBadTime   = "invalid_event_time"
)

// Config configures one aggregation.
type Config struct {
	// Name names the outputs: the table agg_<name> and, by default, the
	// topic sluice.agg.<name>.
	Name string
	// Topic is the input; EventType, for envelope input, keeps only
	// events of that type.
	Topic     string
	EventType string
	// Format is json (Sluice envelopes: payload fields, then envelope
	// fields, by name) or csv (one line a record, Columns in order; a
	// header line is skipped).
	Format  string
	Columns []Column
	// TimeFields are joined by a space and read with TimeLayout (Go's, or
	// the seed's MM/DD/YYYY HH:mm:ss style; rfc3339 by default).
	TimeFields []string
	TimeLayout string
	// Window sets the windows, watermark, grouping, aggregates and dedupe.
	Window window.Config
	// OutputFormat is the table's file format: parquet or csv.gz.
	OutputFormat string
	// OutputTopic and DLQTopic receive window results and dead letters.
	OutputTopic, DLQTopic string
	// CheckpointInterval bounds the input replayed after a crash when no
	// window was emitted for a while.
	CheckpointInterval time.Duration
}

// Validate reports the first thing wrong with c.
func (c *Config) Validate() error {
	if c.Name == "" || lake.TableName(c.Name) != c.Name {
		return fmt.Errorf("aggregation name %q: want snake_case letters, digits and underscores, such as turnstile_4h", c.Name)
	}
	if c.Topic == "" {
		return fmt.Errorf("aggregation %s: no input topic", c.Name)
	}
	switch c.Format {
	case "json", "":
	case "csv":
		if len(c.Columns) == 0 {
			return fmt.Errorf("aggregation %s: csv input needs columns (name and type of each field, in order)", c.Name)
		}
		for _, col := range c.Columns {
			if !slices.Contains(columnTypes, col.Type) {
				return fmt.Errorf("aggregation %s: column %s: type %q: want one of %v", c.Name, col.Name, col.Type, columnTypes)
			}
		}
	default:
		return fmt.Errorf("aggregation %s: format %q: want json or csv", c.Name, c.Format)
	}
	if len(c.TimeFields) == 0 {
		return fmt.Errorf("aggregation %s: no time field: name the field (or fields, such as DATE and TIME) that hold the event time", c.Name)
	}
	switch c.OutputFormat {
	case "", "parquet", "csv.gz":
	default:
		return fmt.Errorf("aggregation %s: output format %q: want parquet or csv.gz", c.Name, c.OutputFormat)
	}
	if c.Format == "csv" {
		known := map[string]bool{}
		for _, col := range c.Columns {
			known[col.Name] = true
		}
		var names []string
		names = append(append(append(names, c.TimeFields...), c.Window.GroupBy...), c.Window.Dedupe...)
		for _, a := range c.Window.Aggregates {
			if a.Field != "" {
				names = append(names, a.Field)
			}
		}
		for _, n := range names {
			if !known[n] {
				return fmt.Errorf("aggregation %s: field %s is not one of the csv columns", c.Name, n)
			}
		}
	}
	if err := c.Window.Validate(); err != nil {
		return fmt.Errorf("aggregation %s: %w", c.Name, err)
	}
	return nil
}

// Table is the lake table of the aggregation's results.
func (c *Config) Table() string { return "agg_" + c.Name }

// Aggregator runs one aggregation.
type Aggregator struct {
	cfg     Config
	cc      bus.ClientConfig
	store   lake.Storage
	prod    *kgo.Client
	parse   parser
	layout  string
	ints    []bool // per aggregate: written as BIGINT
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time
}

// New builds an aggregator; prod writes results and dead letters.
func New(cfg Config, cc bus.ClientConfig, prod *kgo.Client, store lake.Storage, logger *slog.Logger, reg prometheus.Registerer) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.OutputFormat = cmp.Or(cfg.OutputFormat, "parquet")
	cfg.OutputTopic = cmp.Or(cfg.OutputTopic, "sluice.agg."+cfg.Name)
	cfg.DLQTopic = cmp.Or(cfg.DLQTopic, "sluice.dlq")
	cfg.CheckpointInterval = cmp.Or(cfg.CheckpointInterval, 10*time.Second)
	a := &Aggregator{cfg: cfg, cc: cc, store: store, prod: prod, layout: TimeLayout(cfg.TimeLayout),
		logger: logger.With("aggregation", cfg.Name), now: time.Now}
	if cfg.Format == "csv" {
		a.parse = csvParser{cols: cfg.Columns}
	} else {
		a.parse = jsonParser{eventType: cfg.EventType}
	}
	types := map[string]string{}
	for _, c := range cfg.Columns {
		types[c.Name] = c.Type
	}
	for _, ag := range cfg.Window.Aggregates {
		a.ints = append(a.ints, ag.Op == window.Count || (ag.Op != window.Avg && types[ag.Field] == "int"))
	}
	m, err := newMetrics(reg, cfg.Name)
	if err != nil {
		return nil, err
	}
	a.metrics = m
	return a, nil
}

// checkpoint is what the aggregator keeps in the lake: the operator's
// state and, per input partition, the next offset to read.
type checkpoint struct {
	Aggregation string          `json:"aggregation"`
	Topic       string          `json:"topic"`
	Offsets     map[int32]int64 `json:"offsets"`
	State       window.State    `json:"state"`
	WrittenAt   string          `json:"written_at"`
}

func (a *Aggregator) checkpointPath() string {
	return "_sluice/aggregator/" + a.cfg.Name + "/checkpoint.json"
}

// Run aggregates until ctx is done. It reads every partition of the input
// topic from the checkpoint on, and writes a checkpoint on its way out.
func (a *Aggregator) Run(ctx context.Context) error {
	op, err := window.New(a.cfg.Window, a.now)
	if err != nil {
		return err
	}
	cp := checkpoint{Offsets: map[int32]int64{}}
	switch b, err := a.store.ReadObject(ctx, a.checkpointPath()); {
	case errors.Is(err, lake.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read checkpoint: %w", err)
	default:
		if err := json.Unmarshal(b, &cp); err != nil {
			return fmt.Errorf("checkpoint %s is damaged (%w): move it away to start the aggregation over", a.checkpointPath(), err)
		}
		if cp.Topic != a.cfg.Topic {
			return fmt.Errorf("checkpoint %s is of topic %s, not %s: give the aggregation a new name to read another topic",
				a.checkpointPath(), cp.Topic, a.cfg.Topic)
		}
		if err := op.Restore(cp.State); err != nil {
			return err
		}
		if cp.Offsets == nil {
			cp.Offsets = map[int32]int64{}
		}
		a.logger.Info("resuming from checkpoint", "watermark", op.Watermark(), "open_windows", op.Open(), "offsets", cp.Offsets)
	}
	parts, err := a.partitions(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the topic: a clean stop, as every other
		}
		return err
	}
	if err := bus.EnsureTopics(ctx, a.prod, int32(len(parts)), -1, a.cfg.OutputTopic, a.cfg.DLQTopic); err != nil {
		return err
	}
	start := map[string]map[int32]kgo.Offset{a.cfg.Topic: {}}
	for _, p := range parts {
		o := kgo.NewOffset().AtStart()
		if next, ok := cp.Offsets[p]; ok {
			o = kgo.NewOffset().At(next)
		}
		start[a.cfg.Topic][p] = o
	}
	cl, err := bus.NewClient(a.cc, a.logger, kgo.ConsumePartitions(start), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()

	r := &run{Aggregator: a, op: op, offsets: cp.Offsets, lastCheckpoint: a.now()}
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			// Out of the loop: keep what is done, so a restart replays little.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return r.checkpoint(cctx)
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				a.logger.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		fetches.EachRecord(r.add)
		if err := r.advance(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (a *Aggregator) partitions(ctx context.Context) ([]int32, error) {
	cl, err := bus.NewClient(a.cc, a.logger)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for attempt := 0; ; attempt++ {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, a.cfg.Topic)
		if err == nil && ends.Error() == nil && len(ends[a.cfg.Topic]) > 0 {
			var ps []int32
			for p := range ends[a.cfg.Topic] {
				ps = append(ps, p)
			}
			slices.Sort(ps)
			return ps, nil
		}
		if attempt%30 == 0 { // every half minute, not every try
			a.logger.Warn("waiting for the input topic to exist", "topic", a.cfg.Topic, "err", cmp.Or(err, ends.Error()))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// run is the state of one Run.
type run struct {
	*Aggregator
	op             *window.Operator
	offsets        map[int32]int64
	dirty          bool
	dead           []*kgo.Record
	done           []window.Result // emitted by the watermark, not yet written
	lastCheckpoint time.Time
}

// add counts one record, or makes it a dead letter.
func (r *run) add(rec *kgo.Record) {
	r.offsets[rec.Partition] = rec.Offset + 1
	r.dirty = true
	f, err := r.parse.parse(rec.Value)
	if errors.Is(err, errSkip) {
		r.metrics.events.WithLabelValues("skipped").Inc()
		return
	}
	if err != nil {
		r.deadLetter(rec, ReasonBadRecord, "", err.Error())
		return
	}
	t, err := eventTime(f, r.cfg.TimeFields, r.layout)
	if err != nil {
		r.deadLetter(rec, ReasonBadTime, r.cfg.TimeFields[0], err.Error())
		return
	}
	e := window.Event{Partition: rec.Partition, Time: t, Group: make([]string, len(r.cfg.Window.GroupBy)),
		Values: make([]float64, len(r.cfg.Window.Aggregates))}
	for i, g := range r.cfg.Window.GroupBy {
		e.Group[i] = f[g]
	}
	for i, ag := range r.cfg.Window.Aggregates {
		if ag.Field != "" {
			e.Values[i] = number(f, ag.Field)
		}
	}
	if len(r.cfg.Window.Dedupe) > 0 {
		key := make([]string, len(r.cfg.Window.Dedupe))
		for i, d := range r.cfg.Window.Dedupe {
			key[i] = f[d]
		}
		e.DedupeKey = strings.Join(key, "\x00")
	}
	switch out, missed := r.op.Add(e); out {
	case window.Counted:
		r.metrics.events.WithLabelValues("counted").Inc()
	case window.Duplicate:
		r.metrics.events.WithLabelValues("duplicate").Inc()
	case window.Late:
		r.metrics.events.WithLabelValues("late").Inc()
		r.deadLetter(rec, ReasonLateEvent, r.cfg.TimeFields[0], fmt.Sprintf(
			"event time %s is behind the watermark %s (delay %v): window [%s, %s) was already emitted",
			t.Format(time.RFC3339), r.op.Watermark().Format(time.RFC3339), r.cfg.Window.Delay,
			missed.Start.Format(time.RFC3339), missed.End.Format(time.RFC3339)))
	}
	r.done = append(r.done, r.op.Advance()...)
}

func (r *run) deadLetter(rec *kgo.Record, reason, field, msg string) {
	if reason != ReasonLateEvent {
		r.metrics.events.WithLabelValues("invalid").Inc()
	}
	path := ""
	if field != "" {
		path = "/" + field
	}
	f := event.NewFailed(event.StageAggregator, reason, []event.FieldError{{Path: path, Message: msg}},
		bus.Header(rec, event.HeaderRootID), rec.Value, r.now())
	b, err := f.Marshal()
	if err != nil {
		b = rec.Value
	}
	r.dead = append(r.dead, &kgo.Record{Topic: r.cfg.DLQTopic, Key: rec.Key, Value: b, Headers: []kgo.RecordHeader{
		{Key: event.HeaderStage, Value: []byte(event.StageAggregator)},
		{Key: event.HeaderReason, Value: []byte(reason)},
		{Key: "aggregation", Value: []byte(r.cfg.Name)},
	}})
}

// advance moves the watermark; windows it completes are written, then
// the checkpoint. Without any, the checkpoint waits for its interval.
func (r *run) advance(ctx context.Context) error {
	results := append(r.done, r.op.Advance()...)
	r.done = nil
	r.metrics.openWindows.Set(float64(r.op.Open()))
	if wm := r.op.Watermark(); !wm.IsZero() {
		r.metrics.watermark.Set(float64(wm.UnixNano()) / 1e9)
	}
	if len(results) > 0 {
		if err := r.emit(ctx, results); err != nil {
			return err
		}
		return r.checkpoint(ctx)
	}
	if r.dirty && r.now().Sub(r.lastCheckpoint) >= r.cfg.CheckpointInterval {
		return r.checkpoint(ctx)
	}
	return nil
}

// checkpoint makes the dead letters durable, then records the state with
// the offsets it covers.
func (r *run) checkpoint(ctx context.Context) error {
	if !r.dirty && len(r.dead) == 0 {
		return nil
	}
	if err := r.produce(ctx, r.dead); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	r.dead = r.dead[:0]
	b, err := json.Marshal(checkpoint{Aggregation: r.cfg.Name, Topic: r.cfg.Topic, Offsets: r.offsets,
		State: r.op.Snapshot(), WrittenAt: r.now().UTC().Format(time.RFC3339Nano)})
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	w, err := r.store.Create(ctx, r.checkpointPath())
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		w.Abort()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	r.metrics.checkpoints.Inc()
	r.dirty, r.lastCheckpoint = false, r.now()
	return nil
}

// emit writes each completed window as one file of the table, named by the
// window, then the results to the output topic.
func (r *run) emit(ctx context.Context, results []window.Result) error {
	var recs []*kgo.Record
	for i := 0; i < len(results); {
		j := i
		for j < len(results) && results[j].Start.Equal(results[i].Start) {
			j++
		}
		if err := r.writeWindow(ctx, results[i:j]); err != nil {
			return err
		}
		for _, res := range results[i:j] {
			recs = append(recs, r.resultRecord(res))
		}
		r.metrics.windows.Inc()
		i = j
	}
	return r.produce(ctx, recs)
}

// File is the lake file of the window starting at start: a window's
// results are one file, named by the window's bounds in Unix seconds.
func (c *Config) File(start, end time.Time) lake.File {
	return lake.File{Table: c.Table(), Date: start.UTC().Format(time.DateOnly), Topic: "window", Partition: 0,
		First: start.Unix(), Last: end.Unix(), Ext: cmp.Or(c.OutputFormat, "parquet")}
}

func (r *run) writeWindow(ctx context.Context, results []window.Result) error {
	buf := lake.NewBuffer()
	var row []lake.Field
	for _, res := range results {
		row = row[:0]
		for i, g := range r.cfg.Window.GroupBy {
			row = append(row, lake.Field{Name: g, Cell: lake.Cell{Kind: lake.KindString, B: []byte(res.Group[i])}})
		}
		row = append(row,
			lake.Field{Name: "window_start", Cell: lake.Cell{Kind: lake.KindTimestamp, I: res.Start.UnixMicro()}},
			lake.Field{Name: "window_end", Cell: lake.Cell{Kind: lake.KindTimestamp, I: res.End.UnixMicro()}})
		for i, ag := range r.cfg.Window.Aggregates {
			row = append(row, lake.Field{Name: ag.As, Cell: r.cell(i, res.Values[i])})
		}
		buf.Append(row)
	}
	f := r.cfg.File(results[0].Start, results[0].End)
	w, err := r.store.Create(ctx, f.Path())
	if err != nil {
		return fmt.Errorf("write %s: %w", f.Path(), err)
	}
	if _, err := buf.Write(w, r.cfg.OutputFormat); err != nil {
		w.Abort()
		return fmt.Errorf("write %s: %w", f.Path(), err)
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("write %s: %w", f.Path(), err)
	}
	return nil
}

func (r *run) cell(i int, v float64) lake.Cell {
	switch {
	case math.IsNaN(v):
		return lake.Cell{Kind: lake.KindNull}
	case r.ints[i] && v == math.Trunc(v) && math.Abs(v) < 1<<63:
		return lake.Cell{Kind: lake.KindInt, I: int64(v)}
	}
	return lake.Cell{Kind: lake.KindFloat, F: v}
}

// resultRecord is a window result for the output topic, keyed by window
// and group so that a compacted topic keeps one of each.
func (r *run) resultRecord(res window.Result) *kgo.Record {
	b := []byte{'{'}
	for i, g := range r.cfg.Window.GroupBy {
		b = append(event.AppendString(b, g), ':')
		b = append(event.AppendString(b, res.Group[i]), ',')
	}
	b = fmt.Appendf(b, `"window_start":%q,"window_end":%q`, res.Start.Format(time.RFC3339), res.End.Format(time.RFC3339))
	for i, ag := range r.cfg.Window.Aggregates {
		b = append(event.AppendString(append(b, ','), ag.As), ':')
		c := r.cell(i, res.Values[i])
		switch c.Kind {
		case lake.KindNull:
			b = append(b, "null"...)
		case lake.KindInt:
			b = fmt.Appendf(b, "%d", c.I)
		default:
			b = fmt.Appendf(b, "%v", c.F)
		}
	}
	b = append(b, '}')
	key := res.Start.Format(time.RFC3339) + "|" + strings.Join(res.Group, "|")
	return &kgo.Record{Topic: r.cfg.OutputTopic, Key: []byte(key), Value: b, Headers: []kgo.RecordHeader{
		{Key: "aggregation", Value: []byte(r.cfg.Name)},
		{Key: "table", Value: []byte(r.cfg.Table())},
	}}
}

// produce writes recs and waits for every acknowledgement.
func (r *run) produce(ctx context.Context, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := r.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce to %s: %w", recs[0].Topic, err)
	}
	return nil
}
