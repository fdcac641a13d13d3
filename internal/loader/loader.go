// Package loader is the lake sink: on the sink runner (package sink), it
// lands events as Parquet (or CSV.gz, Avro) tables in the lake, exactly
// once, across crashes and rebalances.
//
// Its part of exactly-once (see docs/lake.md): a range of a partition's
// records is written as one file per table and date it touches, all named
// by the range. Before the files, Write records the range as pending in the
// lake; Commit then records its last offset as committed. Resume reads that
// record, so a restart after a cut-short write reloads exactly the pending
// range and rewrites the same file names with the same rows: no record is
// in two files, none is lost.
package loader

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/row"
	"github.com/sluicehq/sluice/internal/schema"
	"github.com/sluicehq/sluice/internal/sink"
)

// Spec registers the lake sink.
var Spec = sink.Spec{
	Type: "lake",
	Doc: "Lands each event type as a table of the lake (Hive-partitioned Parquet by default, or CSV.gz or Avro), " +
		"and dead letters as the dead_letter table, exactly once (docs/lake.md).",
	Config: func() any {
		c := DefaultConfig()
		return &c
	},
	New: func(env sink.Env, cfg any) (sink.Sink, error) {
		c := cfg.(*Config)
		var schemas Schemas
		if env.Schemas != nil {
			schemas = env.Schemas
		}
		return New(*c, env.Lake, env.DLQTopic, schemas, env.Logger, env.Metrics)
	},
}

// Config configures the lake sink.
type Config struct {
	sink.Config `yaml:",inline"`
	// Tables holds per-table settings; tables not named take the defaults.
	Tables map[string]Table `yaml:"tables" doc:"Per-table settings, by table name; other tables take the defaults."`
}

// Table configures one lake table.
type Table struct {
	Format    string `yaml:"format" doc:"File format: parquet (the default), csv.gz or avro."`
	TimeField string `yaml:"time_field" doc:"The field whose UTC date partitions the table (event_date); default collector_tstamp, failed_at for dead_letter."`
	// Columns gives columns exact types; others are typed from their
	// schema, or their JSON values.
	Columns map[string]row.Kind `yaml:"columns" doc:"Exact column types, by column: boolean, bigint, double, string, timestamp or json. They win over the schema's."`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	c := Config{Config: sink.DefaultConfig()}
	c.Group = "sluice-loader-lake"
	return c
}

// SetDefaults gives a new sinks entry of type lake the defaults.
func (c *Config) SetDefaults() { *c = DefaultConfig() }

// Validate reports a configuration the lake sink cannot start with.
func (c Config) Validate() error {
	errs := []error{c.Config.Validate()}
	for name, t := range c.Tables {
		if t.Format != "" && !lake.ValidFormat(t.Format) {
			errs = append(errs, config.Field("tables."+name+".format", "%q: want one of %s", t.Format, strings.Join(lake.Formats, ", ")))
		}
	}
	return errors.Join(errs...)
}

// Schemas gives the lake column types of an event type's version, or nil
// when it has no schema.
type Schemas interface {
	Columns(schema.Key) map[string]row.Kind
}

// Lake is the lake sink.
type Lake struct {
	cfg      Config
	store    lake.Storage
	dlqTopic string
	schemas  Schemas
	logger   *slog.Logger
	metrics  *metrics
	now      func() time.Time

	// rower, fields and names are scratch space of the runner's goroutine,
	// which alone calls Add, reused for every record.
	rower  row.Rower
	fields []row.Field
	names  names
	// schemaKey is the last row's schema, kept to spare its strings.
	schemaKey schema.Key

	mu   sync.Mutex
	rows map[string]int64 // written, by table, for the status API
}

var _ sink.Sink = (*Lake)(nil)

// New builds the lake sink over store; records of dlqTopic land in
// dead_letter.
func New(cfg Config, store lake.Storage, dlqTopic string, schemas Schemas, logger *slog.Logger, reg prometheus.Registerer) (*Lake, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lake sink config: %w", err)
	}
	if store == nil {
		return nil, errors.New("lake sink: no lake")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Lake{cfg: cfg, store: store, dlqTopic: dlqTopic, schemas: schemas, logger: logger, metrics: m,
		now: time.Now, rows: map[string]int64{}}, nil
}

// Details is what the status API shows of the lake sink: the rows written
// to each table by this process.
func (l *Lake) Details() any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return map[string]any{"lake": l.store.String(), "rows": maps.Clone(l.rows)}
}

// Resume reads a partition's progress from the lake.
func (l *Lake) Resume(ctx context.Context, topic string, partition int32) (sink.Position, error) {
	prog, err := lake.ReadProgress(ctx, l.store, topic, partition)
	if err != nil {
		return sink.Position{}, err
	}
	pos := sink.Position{Committed: prog.Committed, Pending: -1}
	if prog.Pending != nil {
		pos.Pending = prog.Pending.Last
	}
	return pos, nil
}

type tableDate struct{ table, date string }

// buffer is one partition's rows, by table and date.
type buffer struct {
	l      *Lake
	tables map[tableDate]*lake.Buffer
	// rows is the rows of the largest table.
	rows int
}

// NewBuffer starts a partition's buffer.
func (l *Lake) NewBuffer(string, int32) sink.Buffer {
	return &buffer{l: l, tables: map[tableDate]*lake.Buffer{}}
}

func (b *buffer) Rows() int { return b.rows }

func (b *buffer) Release() {
	for _, t := range b.tables {
		t.Reset()
	}
}

// Add turns a record into a row of its table. A record that is not a JSON
// object cannot be one; it becomes a row of dead_letter, in the same
// write, so that it is neither lost nor duplicated.
func (b *buffer) Add(r *kgo.Record) (int, error) {
	l := b.l
	table, date, fields := l.route(r)
	l.types(table, fields)
	k := tableDate{table, date}
	buf := b.tables[k]
	if buf == nil {
		buf = lake.NewBuffer()
		b.tables[k] = buf
	}
	before := buf.Bytes()
	buf.Append(fields)
	b.rows = max(b.rows, buf.Rows())
	return buf.Bytes() - before, nil
}

// types gives the row's columns the types its schema and its table's
// settings say, the table's first.
func (l *Lake) types(table string, fields []row.Field) {
	var fromSchema map[string]row.Kind
	if l.schemas != nil {
		var et, ver []byte
		for _, f := range fields {
			switch {
			case f.Name == event.FieldEventType && f.Cell.Kind == row.KindString:
				et = f.Cell.B
			case f.Name == event.FieldSchemaVersion && f.Cell.Kind == row.KindString:
				ver = f.Cell.B
			}
		}
		// Comparing spares making the key's strings for every row; the
		// lookup itself stays per row, so a reload takes effect at once.
		if string(et) != l.schemaKey.EventType || string(ver) != l.schemaKey.Version {
			l.schemaKey = schema.Key{EventType: string(et), Version: string(ver)}
		}
		fromSchema = l.schemas.Columns(l.schemaKey)
	}
	fromTable := l.cfg.Tables[table].Columns
	if len(fromSchema) == 0 && len(fromTable) == 0 {
		return
	}
	for i, f := range fields {
		k, ok := fromTable[f.Name]
		if !ok {
			k, ok = fromSchema[f.Name]
		}
		if !ok {
			continue
		}
		if fields[i].Cell, ok = row.Coerce(f.Cell, k); !ok {
			l.metrics.unconverted.WithLabelValues(table, f.Name).Inc()
		}
	}
}

// route turns a record into its table, event date and row.
func (l *Lake) route(r *kgo.Record) (table, date string, fields []row.Field) {
	fields, err := l.rower.Row(r.Value, l.fields[:0])
	l.fields = fields
	if err != nil {
		l.metrics.badRecords.Inc()
		return l.deadLetter(r, err)
	}
	switch {
	case r.Topic == l.dlqTopic:
		table = lake.DeadLetterTable
	default:
		name := header(r, "table")
		if len(name) == 0 {
			name = header(r, event.HeaderEventType)
		}
		if len(name) == 0 {
			name = []byte(text(fields, event.FieldEventType))
		}
		table = l.names.table(name)
	}
	return table, l.eventDate(table, fields, r.Timestamp), fields
}

// header is a record header's value, or nil when it is absent; unlike
// bus.Header, it does not copy.
func header(r *kgo.Record, key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// names remembers the last table name and event date made, since
// consecutive records mostly share them.
type names struct {
	eventType, tableName string
	day                  int64
	date                 string
}

func (n *names) table(eventType []byte) string {
	if n.tableName == "" || string(eventType) != n.eventType {
		n.eventType, n.tableName = string(eventType), lake.TableName(string(eventType))
	}
	return n.tableName
}

func (n *names) dateOf(t time.Time) string {
	day := t.Unix() / 86400
	if t.Unix() < 0 && t.Unix()%86400 != 0 {
		day--
	}
	if n.date == "" || day != n.day {
		n.day, n.date = day, t.UTC().Format(time.DateOnly)
	}
	return n.date
}

// deadLetter is the dead_letter row of a record that is not a JSON object:
// the failed-event record every stage writes, flattened as the dead-letter
// topic's records are, with where the record was.
func (l *Lake) deadLetter(r *kgo.Record, cause error) (string, string, []row.Field) {
	now := l.now()
	f := event.NewFailed(event.StageLoader, event.ReasonInvalidJSON,
		[]event.FieldError{{Path: "", Message: cause.Error()}}, bus.Header(r, event.HeaderRootID), r.Value, now)
	var fields []row.Field
	if value, err := f.Marshal(); err == nil {
		var rower row.Rower
		fields, _ = rower.Row(value, nil) // a failed-event record is always an object
	}
	fields = append(fields, row.Field{Name: "source", Cell: row.Cell{Kind: row.KindString,
		B: fmt.Appendf(nil, "%s/%d/%d", r.Topic, r.Partition, r.Offset)}})
	l.fields = fields
	return lake.DeadLetterTable, l.names.dateOf(now), fields
}

// eventDate is the UTC date of the table's event-time field, or of the
// record's timestamp when the row has none.
func (l *Lake) eventDate(table string, fields []row.Field, fallback time.Time) string {
	field := l.cfg.Tables[table].TimeField
	if field == "" {
		field = event.FieldCollectorTstamp
		if table == lake.DeadLetterTable {
			field = "failed_at"
		}
	}
	for i := len(fields) - 1; i >= 0; i-- {
		if fields[i].Name != field {
			continue
		}
		switch c := fields[i].Cell; c.Kind {
		case row.KindTimestamp:
			return l.names.dateOf(time.UnixMicro(c.I))
		case row.KindString:
			if t, ok := row.ParseTime(string(c.B)); ok {
				return l.names.dateOf(t)
			}
		}
	}
	return l.names.dateOf(fallback)
}

func text(fields []row.Field, name string) string {
	for _, f := range fields {
		if f.Name == name && f.Cell.Kind == row.KindString {
			return string(f.Cell.B)
		}
	}
	return ""
}

// The lake sink's crash points, before the runner's own.
const (
	PointPending  = "after-pending"    // pending range recorded, no file written
	PointMidFiles = "after-first-file" // some tables' files written
)

// Points are every crash point of a lake flush, in order.
var Points = []string{PointPending, PointMidFiles, sink.PointWritten, sink.PointCommitted}

// Write records the range as pending, then writes its files; see the
// package comment for why in this order.
func (l *Lake) Write(ctx context.Context, r *sink.Range) error {
	b := r.Buffer.(*buffer)
	rng := lake.Range{First: r.First, Last: r.Last}
	if err := lake.WriteProgress(ctx, l.store, r.Topic, r.Partition, lake.Progress{Committed: r.Committed, Pending: &rng}); err != nil {
		return err
	}
	if err := r.Point(PointPending); err != nil {
		return err
	}
	keys := slices.SortedFunc(maps.Keys(b.tables), func(a, b tableDate) int {
		return cmp.Or(strings.Compare(a.table, b.table), strings.Compare(a.date, b.date))
	})
	for i, k := range keys {
		buf := b.tables[k]
		f := lake.File{Table: k.table, Date: k.date, Topic: r.Topic, Partition: r.Partition, First: r.First, Last: r.Last,
			Ext: cmp.Or(l.cfg.Tables[k.table].Format, lake.Formats[0])}
		if err := l.writeFile(ctx, f, buf); err != nil {
			return err
		}
		if i == 0 {
			if err := r.Point(PointMidFiles); err != nil {
				return err
			}
		}
	}
	return nil
}

// Commit records the range's last offset as the partition's committed
// progress, and counts its rows.
func (l *Lake) Commit(ctx context.Context, r *sink.Range) error {
	if err := lake.WriteProgress(ctx, l.store, r.Topic, r.Partition, lake.Progress{Committed: r.Last}); err != nil {
		return err
	}
	b := r.Buffer.(*buffer)
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, buf := range b.tables {
		l.rows[k.table] += int64(buf.Rows())
		l.metrics.rows.WithLabelValues(k.table).Add(float64(buf.Rows()))
	}
	return nil
}

func (l *Lake) writeFile(ctx context.Context, f lake.File, buf *lake.Buffer) error {
	var conflicts int
	if err := lake.Put(ctx, l.store, f.Path(), func(w io.Writer) (err error) {
		conflicts, err = buf.Write(w, f.Ext)
		return err
	}); err != nil {
		return err
	}
	l.metrics.files.Inc()
	if conflicts > 0 {
		l.metrics.conflicts.WithLabelValues(f.Table).Add(float64(conflicts))
		l.logger.Warn("type conflict: values kept as strings", "table", f.Table, "file", f.Path(), "values", conflicts)
	}
	return nil
}
