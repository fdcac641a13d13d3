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
// together, in one object of the lake's storage, after emissions (at most
// once a second) and at an interval. Output files are named by task and
// window, so a restart from the checkpoint rewrites the same files with
// the same rows.
package aggregator

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/retry"
	"github.com/sluicehq/sluice/internal/row"
	"github.com/sluicehq/sluice/internal/window"
)

// Reasons the aggregator gives dead letters, besides event's own.
const (
	ReasonLateEvent = "late_event"
	ReasonBadRecord = "invalid_record"
	ReasonBadTime   = "invalid_event_time"
)

// Config configures one aggregation: an entry of aggregations: in the
// config file.
type Config struct {
	// Name names the outputs: the table agg_<name> and, by default, the
	// topic sluice.agg.<name>.
	Name string `yaml:"name" doc:"Names the outputs: the lake table agg_<name> and the topic sluice.agg.<name>. Snake case."`
	// Topic is the input; EventType, for envelope input, keeps only
	// events of that type.
	Topic     string `yaml:"topic" doc:"The input topic."`
	EventType string `yaml:"event_type" doc:"For envelope input: only events of this event_type count."`
	// Format is json (Sluice envelopes: payload fields, then envelope
	// fields, by name) or csv (one line a record, Columns in order; a
	// header line is skipped).
	Format  string   `yaml:"format" doc:"json (Sluice envelopes: payload fields, then envelope fields, by name) or csv (one line a record, columns in order; a header line is skipped)."`
	Columns []Column `yaml:"columns" doc:"The CSV fields, in order, each {name, type}: string, int, float or timestamp."`
	Time    Time     `yaml:"time"`
	Window  Window   `yaml:"window"`
	GroupBy []string `yaml:"group_by" doc:"The grouping fields, in output order."`
	// Dedupe names the fields that identify an event (none: no dedupe).
	Dedupe     []string           `yaml:"dedupe" doc:"Fields that identify an event: a second event with the same values is dropped (counted as duplicate). None: no deduplication."`
	Aggregates []window.Aggregate `yaml:"aggregates" doc:"The output columns after the group fields and the window bounds, each {op, field, as}: op count, sum, min, max, avg, first, last or delta."`
	Output     Output             `yaml:"output"`
	// CheckpointInterval bounds the input replayed after a crash when no
	// window was emitted for a while.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval" doc:"Checkpoint state and offsets at least this often, besides after emissions (at most once a second): bounds what a restart reads again."`
	// MaxOpenWindows bounds the state in window-groups (0: no bound).
	MaxOpenWindows int `yaml:"max_open_windows" doc:"The state limit, in window-groups held (0: none): past it the earliest window is written early, and its later events are late_event dead letters."`
	// Keyed says the input is partitioned by the group key already (or the
	// keys that dedupe needs): its partitions are the tasks, and there is
	// no repartition topic.
	Keyed bool `yaml:"keyed" doc:"The input is partitioned by the group already: its partitions are the tasks, with no repartition topic."`
	// Partitions is the repartition topic's, when it is made: the most
	// instances that can share the work (default: the input's).
	Partitions int32 `yaml:"partitions" doc:"Partitions of the repartition topic when it is made, the most instances that can share the work; 0: the input's."`
	// Group is the tasks' consumer group (default
	// sluice-aggregator-<name>); the repartitioner's is <Group>-repartition.
	Group string `yaml:"group" doc:"Consumer group of the tasks; the repartitioner's is <group>-repartition. Default: sluice-aggregator-<name>."`
	// TransactionalID is the repartitioner's, unique to each running
	// instance (default sluice-aggregator-<name>-<instance id>).
	TransactionalID string `yaml:"transactional_id" doc:"The repartitioner's Kafka transactional id, unique to each running instance. Default: sluice-aggregator-<name>-<instance_id>."`
	// DLQTopic receives dead letters: the process's dead-letter topic.
	DLQTopic string `yaml:"-"`
	// InstanceID, when set, makes this instance a static member of both
	// groups (KIP-345): restarted, it gets its partitions back at once,
	// with no rebalance; stopped for good, its partitions move after the
	// session timeout. Unique to each running instance, such as a pod's:
	// the process's instance id.
	InstanceID string `yaml:"-"`
}

// Time says where an event's time is.
type Time struct {
	// Fields are joined by a space and read with Layout (Go's, or the
	// seed's MM/DD/YYYY HH:mm:ss style; rfc3339 by default).
	Fields []string `yaml:"fields" doc:"The field, or fields joined by a space (such as DATE and TIME), that hold the event time."`
	Layout string   `yaml:"layout" doc:"How the time is written: MM/DD/YYYY HH:mm:ss style, a Go layout, or rfc3339 (the default)."`
}

// Window sets the windows and the watermark.
type Window struct {
	Size        time.Duration `yaml:"size" doc:"Window length."`
	Slide       time.Duration `yaml:"slide" doc:"How far apart windows start; 0 (or the size) for tumbling windows. The size must be a multiple of it."`
	Delay       time.Duration `yaml:"delay" doc:"How far behind the latest event time the watermark stays: events up to this much out of order still count."`
	IdleTimeout time.Duration `yaml:"idle_timeout" doc:"How long an input partition may go without events (by the wall clock) before it stops holding the watermark back; 0: never."`
}

// Output sets where the results go besides the table.
type Output struct {
	Format string `yaml:"format" doc:"The table's file format: parquet or csv.gz."`
	Topic  string `yaml:"topic" doc:"The results topic. Default: sluice.agg.<name>."`
}

// SetDefaults gives a new aggregations entry the defaults.
func (c *Config) SetDefaults() {
	*c = Config{Format: "json", Output: Output{Format: "parquet"}, CheckpointInterval: 10 * time.Second}
}

// windowConfig is the operator's configuration.
func (c *Config) windowConfig() window.Config {
	return window.Config{Size: c.Window.Size, Slide: c.Window.Slide, Delay: c.Window.Delay, IdleTimeout: c.Window.IdleTimeout,
		GroupBy: c.GroupBy, Aggregates: c.Aggregates, Dedupe: c.Dedupe, MaxOpen: c.MaxOpenWindows}
}

// Validate reports everything wrong with c, each under its key.
func (c *Config) Validate() error {
	var errs []error
	if c.Name == "" || lake.TableName(c.Name) != c.Name {
		errs = append(errs, config.Field("name", "aggregation name %q: want snake_case letters, digits and underscores, such as turnstile_4h", c.Name))
	}
	if c.Topic == "" {
		errs = append(errs, config.Field("topic", "aggregation %s: no input topic", c.Name))
	}
	switch c.Format {
	case "json", "":
	case "csv":
		if len(c.Columns) == 0 {
			errs = append(errs, config.Field("columns", "aggregation %s: csv input needs columns (name and type of each field, in order)", c.Name))
		}
		for i, col := range c.Columns {
			if !slices.Contains(columnTypes, col.Type) {
				errs = append(errs, config.Field(fmt.Sprintf("columns[%d].type", i), "aggregation %s: column %s: type %q: want one of %v", c.Name, col.Name, col.Type, columnTypes))
			}
		}
	default:
		errs = append(errs, config.Field("format", "aggregation %s: format %q: want json or csv", c.Name, c.Format))
	}
	if len(c.Time.Fields) == 0 {
		errs = append(errs, config.Field("time.fields", "aggregation %s: no time field: name the field (or fields, such as DATE and TIME) that hold the event time", c.Name))
	}
	switch c.Output.Format {
	case "", "parquet", "csv.gz":
	default:
		errs = append(errs, config.Field("output.format", "aggregation %s: output format %q: want parquet or csv.gz", c.Name, c.Output.Format))
	}
	if c.Format == "csv" {
		known := map[string]bool{}
		for _, col := range c.Columns {
			known[col.Name] = true
		}
		var names []string
		names = append(append(append(names, c.Time.Fields...), c.GroupBy...), c.Dedupe...)
		for _, a := range c.Aggregates {
			if a.Field != "" {
				names = append(names, a.Field)
			}
		}
		for _, n := range names {
			if !known[n] {
				errs = append(errs, fmt.Errorf("aggregation %s: field %s is not one of the csv columns", c.Name, n))
			}
		}
	}
	if err := c.windowConfig().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("aggregation %s: %w", c.Name, err))
	}
	if c.Partitions < 0 {
		errs = append(errs, config.Field("partitions", "aggregation %s: partitions %d: want 1 or more, or 0 for the input topic's", c.Name, c.Partitions))
	}
	return errors.Join(errs...)
}

// RepartitionTopic carries the input keyed by group, unless Keyed.
func (c *Config) RepartitionTopic() string { return "sluice.agg." + c.Name + ".repartition" }

// partitionKey names the fields whose values place an event in a task:
// the group fields that also identify it for dedupe, so that duplicates
// meet in one task too, or else all the group fields.
func (c *Config) partitionKey() []string {
	var both []string
	for _, g := range c.GroupBy {
		if slices.Contains(c.Dedupe, g) {
			both = append(both, g)
		}
	}
	if len(both) > 0 {
		return both
	}
	return c.GroupBy
}

// Table is the lake table of the aggregation's results.
func (c *Config) Table() string { return "agg_" + c.Name }

// Aggregator runs one aggregation, a component of its process.
type Aggregator struct {
	*health.Reporter
	cfg   Config
	cc    bus.ClientConfig
	store lake.Storage
	cat   *lake.Catalog
	prod  *kgo.Client
	parse parser
	times timeReader
	slots slots
	// The slots of the time, group, dedupe and partition-key fields, and
	// of each aggregate's field (-1: none).
	timeAt, groupAt, dedupeAt, keyAt, aggAt []int
	ints                                    []bool // per aggregate: written as BIGINT
	// Every result record's headers, and the JSON of its value's names:
	// `"group":` for each group field, `,"as":` for each aggregate.
	resultHeaders  []kgo.RecordHeader
	groupNames     [][]byte
	aggregateNames [][]byte
	// tasks is how many partitions the repartition topic has: a watermark
	// is broadcast to each.
	tasks   int32
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time
	// beforeCommit, if set, runs when a write's files are written and
	// not yet committed: tests return errCrash from it to crash there.
	beforeCommit func() error
}

// New builds an aggregator; prod writes results and dead letters, and
// results are committed to the table agg_<name> of the lake's catalog (or
// written as CSV.gz files beside it).
func New(cfg Config, cc bus.ClientConfig, prod *kgo.Client, store lake.Storage, cat *lake.Catalog, logger *slog.Logger, reg prometheus.Registerer) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Output.Format = cmp.Or(cfg.Output.Format, "parquet")
	cfg.Output.Topic = cmp.Or(cfg.Output.Topic, "sluice.agg."+cfg.Name)
	cfg.DLQTopic = cmp.Or(cfg.DLQTopic, "sluice.dlq")
	cfg.CheckpointInterval = cmp.Or(cfg.CheckpointInterval, 10*time.Second)
	cfg.Group = cmp.Or(cfg.Group, "sluice-aggregator-"+cfg.Name)
	cfg.TransactionalID = cmp.Or(cfg.TransactionalID, "sluice-aggregator-"+cfg.Name)
	logger = logger.With("aggregation", cfg.Name)
	a := &Aggregator{Reporter: health.New("aggregator."+cfg.Name, logger), cfg: cfg, cc: cc, store: store, cat: cat, prod: prod,
		times: newTimeReader(TimeLayout(cfg.Time.Layout)), slots: slots{}, logger: logger, now: time.Now}
	at := func(names []string) []int {
		out := make([]int, len(names))
		for i, n := range names {
			out[i] = a.slots.add(n)
		}
		return out
	}
	a.timeAt, a.groupAt, a.dedupeAt, a.keyAt = at(cfg.Time.Fields), at(cfg.GroupBy), at(cfg.Dedupe), at(cfg.partitionKey())
	for _, ag := range cfg.Aggregates {
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
	for _, ag := range cfg.Aggregates {
		a.ints = append(a.ints, ag.Op == window.Count || (ag.Op != window.Avg && types[ag.Field] == "int"))
		a.aggregateNames = append(a.aggregateNames, append(event.AppendString([]byte(","), ag.As), ':'))
	}
	for _, g := range cfg.GroupBy {
		a.groupNames = append(a.groupNames, append(event.AppendString(nil, g), ':'))
	}
	a.resultHeaders = []kgo.RecordHeader{{Key: "aggregation", Value: []byte(cfg.Name)}, {Key: "table", Value: []byte(cfg.Table())}}
	a.resultHeaders = a.resultHeaders[:2:2] // shared: an append copies
	m, err := newMetrics(reg, cfg.Name)
	if err != nil {
		return nil, err
	}
	a.metrics = m
	a.SetDetails(a.details)
	return a, nil
}

// Groups are the aggregation's consumer groups, for the status API's lag.
func (a *Aggregator) Groups() []string {
	if a.cfg.Keyed {
		return []string{a.cfg.Group}
	}
	return []string{a.cfg.Group + "-repartition", a.cfg.Group}
}

// Details is what the status API shows of an aggregation.
type Details struct {
	// Events are the input records by outcome: counted, duplicate, late,
	// invalid, skipped.
	Events  map[string]int64 `json:"events"`
	Windows int64            `json:"windows_emitted"`
	Tasks   int              `json:"tasks"`
}

func (a *Aggregator) details() any {
	d := Details{Events: map[string]int64{}}
	for _, o := range []string{"counted", "duplicate", "late", "invalid", "skipped"} {
		d.Events[o] = int64(counterValue(a.metrics.events.WithLabelValues(o)))
	}
	d.Windows = int64(counterValue(a.metrics.windows))
	d.Tasks = int(gaugeValue(a.metrics.tasks))
	return d
}

// Run aggregates until ctx is done: the repartitioner, unless the input is
// keyed, and the tasks this instance is given.
func (a *Aggregator) Run(ctx context.Context) error {
	inputs, err := a.partitions(ctx, a.cfg.Topic)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the topic: a clean stop, as every other
		}
		return err
	}
	source, n := a.cfg.Topic, inputs
	topics := []string{a.cfg.Output.Topic, a.cfg.DLQTopic}
	if !a.cfg.Keyed {
		source = a.cfg.RepartitionTopic()
		n = cmp.Or(a.cfg.Partitions, n)
		topics = append(topics, source)
	}
	for backoff := (retry.Backoff{}); ; {
		err := bus.EnsureTopics(ctx, a.prod, n, -1, topics...)
		if err == nil {
			a.Clear("kafka")
			break
		}
		a.Fault("kafka", err)
		if backoff.Wait(ctx, 0) != nil {
			return nil
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	if !a.cfg.Keyed {
		// The watermark goes to every task: as many as the topic has,
		// which may be other than partitions: says, if it was made before.
		if a.tasks, err = a.partitions(ctx, source); err != nil {
			return nil // stopped
		}
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

// partitions waits for a topic to exist and counts its
// partitions.
func (a *Aggregator) partitions(ctx context.Context, topic string) (int32, error) {
	cl, err := bus.NewClient(a.cc, a.logger)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	for {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		if err == nil && ends.Error() == nil && len(ends[topic]) > 0 {
			a.Clear("input")
			return int32(len(ends[topic])), nil
		}
		if ctx.Err() == nil {
			a.Fault("input", fmt.Errorf("waiting for the topic %s to exist: %w", topic, cmp.Or(err, ends.Error())))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// read parses a record into f, which has a field per slot, and returns f
// and the event time. A record that is not an event of this aggregation
// gives neither; one that cannot be read gives its dead letter.
func (a *Aggregator) read(rec *kgo.Record, f fields) (fields, time.Time, *kgo.Record) {
	err := a.parse.parse(rec.Value, f)
	if errors.Is(err, errSkip) {
		a.metrics.events.WithLabelValues("skipped").Inc()
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, a.deadLetter(rec, ReasonBadRecord, "", err.Error())
	}
	t, err := a.times.read(f, a.cfg.Time.Fields, a.timeAt)
	if err != nil {
		return nil, time.Time{}, a.deadLetter(rec, ReasonBadTime, a.cfg.Time.Fields[0], err.Error())
	}
	return f, t, nil
}

// event is the operator's view of a record read from partition p, in e's
// slices: the operator keeps none of them.
func (a *Aggregator) event(e *window.Event, f fields, t time.Time, p int32) {
	e.Partition, e.Time = p, t
	e.Group = slices.Grow(e.Group[:0], len(a.groupAt))[:len(a.groupAt)]
	e.Values = slices.Grow(e.Values[:0], len(a.aggAt))[:len(a.aggAt)]
	e.DedupeKey = ""
	for i, at := range a.groupAt {
		e.Group[i] = f[at].s
	}
	for i, at := range a.aggAt {
		e.Values[i] = 0 // a count of events ignores it
		if at >= 0 {
			e.Values[i] = number(f[at])
		}
	}
	if len(a.dedupeAt) > 0 {
		e.DedupeKey = a.dedupeKey(f)
	}
}

// dedupeKey is the event's dedupe fields joined as join joins them, in a
// string of its own, made in one allocation: the operator keeps it.
// Joined into a growing slice and then copied, the MTA's took five. The
// repartitioner joins the same key with join (appendParsed);
// FuzzReadParsed checks that the two agree.
func (a *Aggregator) dedupeKey(f fields) string {
	var b strings.Builder
	b.Grow(a.dedupeLen(f))
	for i, at := range a.dedupeAt {
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(f[at].s)
	}
	return b.String()
}

// dedupeLen is the length of the event's dedupe key.
func (a *Aggregator) dedupeLen(f fields) int {
	n := len(a.dedupeAt) - 1 // the separators
	for _, at := range a.dedupeAt {
		n += len(f[at].s)
	}
	return max(n, 0)
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

// File is the lake file of one task's results for the windows from start
// to end: the first's start and the last's end. A CSV.gz file holds one
// window, so that a rerun writes the same names; a Parquet file holds the
// windows of a write and a day (see writeWindows).
func (c *Config) File(task int32, start, end time.Time) lake.File {
	return lake.File{Table: c.Table(), Date: start.UTC().Format(time.DateOnly), Topic: "window", Partition: task,
		First: start.Unix(), Last: end.Unix(), Ext: cmp.Or(c.Output.Format, "parquet")}
}

// windowBuffer is results, all of one task, as rows. The rows' fields are
// named once, and only their cells set for each result: building each
// row's fields anew took a sixth longer (BenchmarkWriteResults).
func (a *Aggregator) windowBuffer(results []window.Result) *lake.Buffer {
	buf := lake.NewBuffer()
	groups, aggs := len(a.cfg.GroupBy), len(a.cfg.Aggregates)
	fields := make([]row.Field, 0, groups+2+aggs)
	for _, g := range a.cfg.GroupBy {
		fields = append(fields, row.Field{Name: g})
	}
	fields = append(fields, row.Field{Name: "window_start"}, row.Field{Name: "window_end"})
	for _, ag := range a.cfg.Aggregates {
		fields = append(fields, row.Field{Name: ag.As})
	}
	var text []byte // the group values' bytes, which Append copies
	for _, res := range results {
		text = text[:0]
		for i, g := range res.Group {
			off := len(text)
			text = append(text, g...)
			fields[i].Cell = row.Cell{Kind: row.KindString, B: text[off:len(text):len(text)]}
		}
		fields[groups].Cell = row.Cell{Kind: row.KindTimestamp, I: res.Start.UnixMicro()}
		fields[groups+1].Cell = row.Cell{Kind: row.KindTimestamp, I: res.End.UnixMicro()}
		for i, v := range res.Values {
			fields[groups+2+i].Cell = a.cell(i, v)
		}
		buf.Append(fields)
	}
	return buf
}

// columns are the result table's columns, typed whatever a window holds.
func (a *Aggregator) columns() []lake.Column {
	var cols []lake.Column
	for _, g := range a.cfg.GroupBy {
		cols = append(cols, lake.Column{Name: g, Kind: row.KindString})
	}
	cols = append(cols, lake.Column{Name: "window_start", Kind: row.KindTimestamp}, lake.Column{Name: "window_end", Kind: row.KindTimestamp})
	for i, ag := range a.cfg.Aggregates {
		k := row.KindFloat
		if a.ints[i] {
			k = row.KindInt
		}
		cols = append(cols, lake.Column{Name: ag.As, Kind: k})
	}
	return cols
}

// taskResults are one task's completed windows, in the order of their
// starts.
type taskResults struct {
	task    int32
	results []window.Result
}

// writeWindows writes the tasks' completed windows and commits them to
// the table as one snapshot; it returns their records for the output
// topic. The snapshot records each task's last window start: a task
// restored from an older checkpoint emits its windows again, and those the
// table holds are not written twice. Each task's windows of a day go in
// one file (up to fileRows), since a file's set-up and close, and its
// entry in the table's manifests, cost more than its rows where windows
// are small; a restart may batch them otherwise, so a file cut short by a
// crash is left for orphan removal, as the loader's are. CSV.gz files,
// with no commit to skip what was written, hold one window each. The
// files are written on every core.
func (a *Aggregator) writeWindows(ctx context.Context, batches []taskResults) ([]*kgo.Record, error) {
	var t *table.Table
	offsets := lake.Offsets{}
	if a.cfg.Output.Format == "parquet" {
		name := a.cfg.Table()
		var err error
		t, err = a.cat.Load(ctx, name)
		if errors.Is(err, lake.ErrNoTable) {
			t, err = a.cat.Create(ctx, name, a.columns())
		}
		if err != nil {
			return nil, err
		}
		if offsets, err = lake.TableOffsets(t); err != nil {
			return nil, err
		}
	}
	type written struct {
		files []iceberg.DataFile
		last  int64 // the last window start written
		recs  []*kgo.Record
	}
	out := make([]written, len(batches))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for bi, b := range batches {
		key := lake.OffsetKey("window", b.task)
		done, ok := offsets[key]
		if !ok {
			done = math.MinInt64
		}
		w := &out[bi]
		w.last = done
		g.Go(func() error {
			w.recs = a.resultRecords(b.results)
			for _, run := range fileRuns(b.results, done, t == nil, fileRows) {
				res := b.results[run[0]:run[1]]
				df, err := a.writeFile(gctx, t, b.task, res)
				if err != nil {
					return err
				}
				if t != nil {
					w.files = append(w.files, df)
				}
				w.last = max(w.last, res[len(res)-1].Start.Unix())
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var files []iceberg.DataFile
	var recs []*kgo.Record
	set := lake.Offsets{}
	for bi, w := range out {
		files = append(files, w.files...)
		recs = append(recs, w.recs...)
		if len(w.files) > 0 {
			set[lake.OffsetKey("window", batches[bi].task)] = w.last
		}
	}
	if len(files) > 0 {
		if a.beforeCommit != nil {
			if err := a.beforeCommit(); err != nil {
				return nil, err
			}
		}
		if _, _, err := a.cat.Append(ctx, t, files, set); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// fileRows bounds a Parquet file's rows, but for a window of more, which
// has a file of its own: the size of the loader's files.
const fileRows = 100_000

// fileRuns splits a task's completed windows, in the order of their
// starts, into the files they go in, as ranges of results: none for the
// windows up to done (the task's last in the table), then a file for each
// window if oneWindow (CSV.gz), else for each day's windows, up to
// maxRows. Sorted by start, the windows the table holds come first.
func fileRuns(results []window.Result, done int64, oneWindow bool, maxRows int) [][2]int {
	var runs [][2]int
	for i := 0; i < len(results); {
		j := windowEnd(results, i)
		n := len(runs)
		switch {
		case results[i].Start.Unix() <= done: // in the table already
		case n > 0 && !oneWindow && sameDay(results[runs[n-1][0]].Start, results[i].Start) && j-runs[n-1][0] <= maxRows:
			runs[n-1][1] = j
		default:
			runs = append(runs, [2]int{i, j})
		}
		i = j
	}
	return runs
}

// sameDay reports whether two windows' starts are of one date, the
// table's partition.
func sameDay(a, b time.Time) bool {
	ay, am, ad := a.UTC().Date()
	by, bm, bd := b.UTC().Date()
	return ay == by && am == bm && ad == bd
}

// writeFile writes one task's results, of whole windows in the order of
// their starts, to a file of the table t (nil: a CSV.gz file outside the
// catalog).
func (a *Aggregator) writeFile(ctx context.Context, t *table.Table, task int32, res []window.Result) (iceberg.DataFile, error) {
	f := a.cfg.File(task, res[0].Start, res[len(res)-1].End)
	buf := a.windowBuffer(res)
	defer buf.Reset() // its memory back to the pools, for the next file
	if t == nil {
		return nil, lake.Put(ctx, a.store, f.Path(), func(file io.Writer) error {
			_, err := buf.Write(file, a.cfg.Output.Format)
			return err
		})
	}
	df, _, err := a.cat.WriteFile(ctx, a.store, t, f.Date, path.Base(f.Path()), buf)
	return df, err
}

// windowEnd is where the results of the window starting results[i] end.
func windowEnd(results []window.Result, i int) int {
	j := i
	for j < len(results) && results[j].Start.Equal(results[i].Start) {
		j++
	}
	return j
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

// windowBounds is what the result records of the window [start, end)
// share: `start` for their keys, and the bounds' JSON for their values.
type windowBounds struct {
	start, json []byte
}

func (a *Aggregator) windowBounds(start, end time.Time) windowBounds {
	b := start.AppendFormat(nil, time.RFC3339)
	key := len(b)
	b = append(start.AppendFormat(append(b, `"window_start":"`...), time.RFC3339), '"')
	b = append(end.AppendFormat(append(b, `,"window_end":"`...), time.RFC3339), '"')
	return windowBounds{start: b[:key:key], json: b[key:]}
}

// resultRecords are a task's results, in the order of their starts, for
// the output topic.
func (a *Aggregator) resultRecords(results []window.Result) []*kgo.Record {
	recs := make([]*kgo.Record, 0, len(results))
	var scratch []byte
	for i := 0; i < len(results); {
		j := windowEnd(results, i)
		bounds := a.windowBounds(results[i].Start, results[i].End)
		for _, r := range results[i:j] {
			var rec *kgo.Record
			rec, scratch = a.resultRecord(scratch, r, bounds)
			recs = append(recs, rec)
		}
		i = j
	}
	return recs
}

// resultRecord is a window result for the output topic, keyed by window
// and group so that a compacted topic keeps one of each. Key and value
// share one allocation, and every record the same headers. The record is
// made in scratch, which it returns, and copied to an allocation of its
// size: sized before by the longest its numbers could be, the MTA's, 371
// bytes on average, took 576 bytes each instead of 384.
func (a *Aggregator) resultRecord(scratch []byte, res window.Result, bounds windowBounds) (*kgo.Record, []byte) {
	b := append(scratch[:0], bounds.start...)
	for _, g := range res.Group {
		b = append(append(b, '|'), g...)
	}
	key := len(b)
	b = append(b, '{')
	for i, name := range a.groupNames {
		b = append(event.AppendString(append(b, name...), res.Group[i]), ',')
	}
	b = append(b, bounds.json...)
	for i, name := range a.aggregateNames {
		b = append(b, name...)
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
	kv := bytes.Clone(b)
	return &kgo.Record{Topic: a.cfg.Output.Topic, Key: kv[:key:key], Value: kv[key:], Headers: a.resultHeaders}, b
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
