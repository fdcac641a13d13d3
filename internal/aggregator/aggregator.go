// Package aggregator is the stage that aggregates events in event-time
// windows: it reads one topic (Sluice envelopes, or CSV lines with a
// declared schema), counts each event in its windows (package window),
// and writes each window once the watermark passes it, to the lake table
// agg_<name> and to the topic sluice.agg.<name>. Late events become dead
// letters with reason late_event, never silently dropped.
//
// Scale-out is Kafka Streams': a repartitioner reads the input in a
// consumer group and writes each event, in a transaction with its input
// offsets, to the topic sluice.agg.<name>.repartition keyed by its group,
// so that every group lives in one partition of it. Each partition of
// that topic is a task with a window operator of its own, and the tasks
// are shared by a second consumer group. Input already keyed by the group
// skips the repartition topic: its own partitions are the tasks.
//
// Exactly once: a task's state and the offset it covers are checkpointed
// together, in one object of the lake's storage, after every emission and
// at an interval. Output files are named by task and window, so a restart
// from the checkpoint rewrites the same files with the same rows.
package aggregator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/row"
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
	// Group is the tasks' consumer group (default
	// sluice-aggregator-<name>); the repartitioner's is <Group>-repartition.
	Group string
	// TransactionalID is the repartitioner's, unique to each running
	// instance (default sluice-aggregator-<name>).
	TransactionalID string
	// InstanceID, when set, makes this instance a static member of both
	// groups (KIP-345): restarted, it gets its partitions back at once,
	// with no rebalance; stopped for good, its partitions move after the
	// session timeout. Unique to each running instance, such as a pod's.
	InstanceID string
	// Keyed says the input is partitioned by the group key already (or the
	// keys that dedupe needs): its partitions are the tasks, and there is
	// no repartition topic.
	Keyed bool
	// Partitions is the repartition topic's, when it is made: the most
	// instances that can share the work (default: the input's).
	Partitions int32
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
	if c.Partitions < 0 {
		return fmt.Errorf("aggregation %s: partitions %d: want 1 or more, or 0 for the input topic's", c.Name, c.Partitions)
	}
	return nil
}

// RepartitionTopic carries the input keyed by group, unless Keyed.
func (c *Config) RepartitionTopic() string { return "sluice.agg." + c.Name + ".repartition" }

// partitionKey names the fields whose values place an event in a task:
// the group fields that also identify it for dedupe, so that duplicates
// meet in one task too, or else all the group fields.
func (c *Config) partitionKey() []string {
	var both []string
	for _, g := range c.Window.GroupBy {
		if slices.Contains(c.Window.Dedupe, g) {
			both = append(both, g)
		}
	}
	if len(both) > 0 {
		return both
	}
	return c.Window.GroupBy
}

// Table is the lake table of the aggregation's results.
func (c *Config) Table() string { return "agg_" + c.Name }

// Aggregator runs one aggregation.
type Aggregator struct {
	cfg    Config
	cc     bus.ClientConfig
	store  lake.Storage
	prod   *kgo.Client
	parse  parser
	layout string
	slots  slots
	// The slots of the time, group, dedupe and partition-key fields, and
	// of each aggregate's field (-1: none).
	timeAt, groupAt, dedupeAt, keyAt, aggAt []int
	ints                                    []bool // per aggregate: written as BIGINT
	logger                                  *slog.Logger
	metrics                                 *metrics
	now                                     func() time.Time
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
	cfg.Group = cmp.Or(cfg.Group, "sluice-aggregator-"+cfg.Name)
	cfg.TransactionalID = cmp.Or(cfg.TransactionalID, "sluice-aggregator-"+cfg.Name)
	a := &Aggregator{cfg: cfg, cc: cc, store: store, prod: prod, layout: TimeLayout(cfg.TimeLayout),
		slots: slots{}, logger: logger.With("aggregation", cfg.Name), now: time.Now}
	at := func(names []string) []int {
		out := make([]int, len(names))
		for i, n := range names {
			out[i] = a.slots.add(n)
		}
		return out
	}
	a.timeAt, a.groupAt, a.dedupeAt, a.keyAt = at(cfg.TimeFields), at(cfg.Window.GroupBy), at(cfg.Window.Dedupe), at(cfg.partitionKey())
	for _, ag := range cfg.Window.Aggregates {
		i := -1
		if ag.Field != "" {
			i = a.slots.add(ag.Field)
		}
		a.aggAt = append(a.aggAt, i)
	}
	if cfg.Format == "csv" {
		a.parse = newCSVParser(cfg.Columns, a.slots)
	} else {
		a.parse = jsonParser{eventType: cfg.EventType, slots: a.slots}
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

// Run aggregates until ctx is done: the repartitioner, unless the input is
// keyed, and the tasks this instance is given.
func (a *Aggregator) Run(ctx context.Context) error {
	inputs, err := a.inputPartitions(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the topic: a clean stop, as every other
		}
		return err
	}
	source, n := a.cfg.Topic, inputs
	topics := []string{a.cfg.OutputTopic, a.cfg.DLQTopic}
	if !a.cfg.Keyed {
		source = a.cfg.RepartitionTopic()
		n = cmp.Or(a.cfg.Partitions, n)
		topics = append(topics, source)
	}
	if err := bus.EnsureTopics(ctx, a.prod, n, -1, topics...); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	if !a.cfg.Keyed {
		g.Go(func() error { return a.repartition(gctx) })
	}
	g.Go(func() error { return a.aggregate(gctx, source, inputs) })
	return g.Wait()
}

// groupOpts are the options of both groups' clients.
func (a *Aggregator) groupOpts(group string) []kgo.Opt {
	opts := []kgo.Opt{kgo.ConsumerGroup(group), kgo.FetchIsolationLevel(kgo.ReadCommitted())}
	if a.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(a.cfg.InstanceID))
	}
	return opts
}

// inputPartitions waits for the input topic to exist and counts its
// partitions.
func (a *Aggregator) inputPartitions(ctx context.Context) (int32, error) {
	cl, err := bus.NewClient(a.cc, a.logger)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	for attempt := 0; ; attempt++ {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, a.cfg.Topic)
		if err == nil && ends.Error() == nil && len(ends[a.cfg.Topic]) > 0 {
			return int32(len(ends[a.cfg.Topic])), nil
		}
		if attempt%30 == 0 { // every half minute, not every try
			a.logger.Warn("waiting for the input topic to exist", "topic", a.cfg.Topic, "err", cmp.Or(err, ends.Error()))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// read parses a record into its fields and event time. A record that is
// not an event of this aggregation gives neither; one that cannot be read
// gives its dead letter.
func (a *Aggregator) read(rec *kgo.Record) (fields, time.Time, *kgo.Record) {
	f := make(fields, len(a.slots))
	err := a.parse.parse(rec.Value, f)
	if errors.Is(err, errSkip) {
		a.metrics.events.WithLabelValues("skipped").Inc()
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, a.deadLetter(rec, ReasonBadRecord, "", err.Error())
	}
	t, err := eventTime(f, a.cfg.TimeFields, a.timeAt, a.layout)
	if err != nil {
		return nil, time.Time{}, a.deadLetter(rec, ReasonBadTime, a.cfg.TimeFields[0], err.Error())
	}
	return f, t, nil
}

// event is the operator's view of a record read from partition p.
func (a *Aggregator) event(f fields, t time.Time, p int32) window.Event {
	e := window.Event{Partition: p, Time: t, Group: make([]string, len(a.cfg.Window.GroupBy)),
		Values: make([]float64, len(a.cfg.Window.Aggregates))}
	for i, at := range a.groupAt {
		e.Group[i] = f[at].s
	}
	for i, at := range a.aggAt {
		if at >= 0 {
			e.Values[i] = number(f[at])
		}
	}
	if len(a.dedupeAt) > 0 {
		e.DedupeKey = string(a.join(nil, f, a.dedupeAt))
	}
	return e
}

// join appends the fields at the slots, separated by NULs, to b.
func (a *Aggregator) join(b []byte, f fields, at []int) []byte {
	for i, n := range at {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, f[n].s...)
	}
	return b
}

func (a *Aggregator) deadLetter(rec *kgo.Record, reason, field, msg string) *kgo.Record {
	if reason != ReasonLateEvent {
		a.metrics.events.WithLabelValues("invalid").Inc()
	}
	path := ""
	if field != "" {
		path = "/" + field
	}
	f := event.NewFailed(event.StageAggregator, reason, []event.FieldError{{Path: path, Message: msg}},
		bus.Header(rec, event.HeaderRootID), rec.Value, a.now())
	return bus.DeadLetter(a.cfg.DLQTopic, f, rec, kgo.RecordHeader{Key: "aggregation", Value: []byte(a.cfg.Name)})
}

// File is the lake file of one task's results for the window [start,
// end): named by both, so a rerun writes the same names.
func (c *Config) File(task int32, start, end time.Time) lake.File {
	return lake.File{Table: c.Table(), Date: start.UTC().Format(time.DateOnly), Topic: "window", Partition: task,
		First: start.Unix(), Last: end.Unix(), Ext: cmp.Or(c.OutputFormat, "parquet")}
}

// writeWindow writes one window's results, all of one task, as one file.
func (a *Aggregator) writeWindow(ctx context.Context, task int32, results []window.Result) error {
	buf := lake.NewBuffer()
	var fields []row.Field
	for _, res := range results {
		fields = fields[:0]
		for i, g := range a.cfg.Window.GroupBy {
			fields = append(fields, row.Field{Name: g, Cell: row.Cell{Kind: row.KindString, B: []byte(res.Group[i])}})
		}
		fields = append(fields,
			row.Field{Name: "window_start", Cell: row.Cell{Kind: row.KindTimestamp, I: res.Start.UnixMicro()}},
			row.Field{Name: "window_end", Cell: row.Cell{Kind: row.KindTimestamp, I: res.End.UnixMicro()}})
		for i, ag := range a.cfg.Window.Aggregates {
			fields = append(fields, row.Field{Name: ag.As, Cell: a.cell(i, res.Values[i])})
		}
		buf.Append(fields)
	}
	f := a.cfg.File(task, results[0].Start, results[0].End)
	return lake.Put(ctx, a.store, f.Path(), func(w io.Writer) error {
		_, err := buf.Write(w, a.cfg.OutputFormat)
		return err
	})
}

func (a *Aggregator) cell(i int, v float64) row.Cell {
	switch {
	case math.IsNaN(v):
		return row.Cell{Kind: row.KindNull}
	case a.ints[i] && v == math.Trunc(v) && math.Abs(v) < 1<<63:
		return row.Cell{Kind: row.KindInt, I: int64(v)}
	}
	return row.Cell{Kind: row.KindFloat, F: v}
}

// resultRecord is a window result for the output topic, keyed by window
// and group so that a compacted topic keeps one of each.
func (a *Aggregator) resultRecord(res window.Result) *kgo.Record {
	b := []byte{'{'}
	for i, g := range a.cfg.Window.GroupBy {
		b = append(event.AppendString(b, g), ':')
		b = append(event.AppendString(b, res.Group[i]), ',')
	}
	b = append(res.Start.AppendFormat(append(b, `"window_start":"`...), time.RFC3339), '"')
	b = append(res.End.AppendFormat(append(b, `,"window_end":"`...), time.RFC3339), '"')
	for i, ag := range a.cfg.Window.Aggregates {
		b = append(event.AppendString(append(b, ','), ag.As), ':')
		c := a.cell(i, res.Values[i])
		switch c.Kind {
		case row.KindNull:
			b = append(b, "null"...)
		case row.KindInt:
			b = strconv.AppendInt(b, c.I, 10)
		case row.KindFloat:
			if math.IsInf(c.F, 0) {
				b = append(b, "null"...) // JSON has no infinity
			} else {
				b = strconv.AppendFloat(b, c.F, 'g', -1, 64)
			}
		}
	}
	b = append(b, '}')
	key := res.Start.Format(time.RFC3339) + "|" + strings.Join(res.Group, "|")
	return &kgo.Record{Topic: a.cfg.OutputTopic, Key: []byte(key), Value: b, Headers: []kgo.RecordHeader{
		{Key: "aggregation", Value: []byte(a.cfg.Name)},
		{Key: "table", Value: []byte(a.cfg.Table())},
	}}
}

// produce writes recs and waits for every acknowledgement.
func (a *Aggregator) produce(ctx context.Context, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := a.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce to %s: %w", recs[0].Topic, err)
	}
	return nil
}
