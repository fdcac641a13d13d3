// Package loader is the lake sink: on the sink runner (package sink), it
// lands events as Apache Iceberg tables of the lake's catalog (or as
// plain CSV.gz and Avro export files), exactly once, across crashes and
// rebalances.
//
// Its part of exactly-once (see docs/lake.md): a range of a partition's
// records is written as one data file per table and date it touches, all
// named by the range. Before the files, Write records the range as pending
// in the lake; then each table's files are committed to the catalog as one
// snapshot whose summary carries the Kafka offsets the table holds, and a
// table that already holds the range (a commit that went through before a
// crash) is left alone. Commit then records the range's last offset as
// committed. Resume reads that record (or, without one, the offsets of the
// tables' current snapshots), so a restart after a cut-short write reloads
// exactly the pending range and commits it only where it is missing: no
// record is in a table twice, none is lost.
//
// Types are stable: a column's type is the table schema's, set by the
// JSON Schema or the first non-null value, and never changed by a load. A
// value that does not fit its column's type sends its event to the
// dead-letter topic with reason type_mismatch, never into a string.
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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/iceberg-go"
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
	Lake: true,
	Doc: "Lands each event type as an Apache Iceberg table of the lake's catalog (or as plain CSV.gz or Avro export files), " +
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
		return New(*c, env.Lake, env.Catalog, env.DLQTopic, schemas, env.Logger, env.Metrics)
	},
}

// Config configures the lake sink.
type Config struct {
	sink.Config `yaml:",inline"`
	// Tables holds per-table settings; tables not named take the defaults.
	Tables map[string]Table `yaml:"tables" doc:"Per-table settings, by table name; other tables take the defaults."`
	// Every flush is a snapshot of each table it touches: kept for ever,
	// they would make every commit slower (the metadata lists them all).
	SnapshotMaxAge   time.Duration `yaml:"snapshot_max_age" doc:"Snapshots of the catalog tables older than this are expired by the loader (time travel reaches this far back), keeping at least snapshot_min_count; 0 keeps them all (then run sluice lake expire)."`
	SnapshotMinCount int           `yaml:"snapshot_min_count" doc:"Snapshots of each catalog table the loader's expiry always keeps."`
}

// Table configures one lake table.
type Table struct {
	Format    string `yaml:"format" doc:"parquet (the default): an Iceberg table of the catalog; csv.gz or avro: plain export files, outside the catalog."`
	TimeField string `yaml:"time_field" doc:"The field whose UTC date partitions the table (event_date); default collector_tstamp, failed_at for dead_letter."`
	// Columns gives columns exact types; others are typed from their
	// schema, or their JSON values.
	Columns map[string]row.Kind `yaml:"columns" doc:"Exact column types, by column: boolean, bigint, double, string, timestamp or json. They win over the schema's."`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	c := Config{Config: sink.DefaultConfig(), SnapshotMaxAge: 24 * time.Hour, SnapshotMinCount: 100}
	c.Group = "sluice-loader-lake"
	return c
}

// SetDefaults gives a new sinks entry of type lake the defaults.
func (c *Config) SetDefaults() { *c = DefaultConfig() }

// Validate reports a configuration the lake sink cannot start with.
func (c Config) Validate() error {
	errs := []error{c.Config.Validate()}
	if c.SnapshotMaxAge < 0 {
		errs = append(errs, config.Field("snapshot_max_age", "%v: want 0 (keep every snapshot) or a positive duration", c.SnapshotMaxAge))
	}
	if c.SnapshotMinCount < 1 {
		errs = append(errs, config.Field("snapshot_min_count", "%d: want at least 1", c.SnapshotMinCount))
	}
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

// ReasonTypeMismatch is the dead letter of an event with a value that does
// not fit its column's type in the table.
const ReasonTypeMismatch = "type_mismatch"

// Lake is the lake sink.
type Lake struct {
	cfg      Config
	store    lake.Storage
	cat      *lake.Catalog
	dlqTopic string
	schemas  Schemas
	logger   *slog.Logger
	metrics  *metrics
	now      func() time.Time

	// parser, fields and shape are scratch space of the runner's
	// goroutine, which alone calls Add, reused for every record.
	parser parser
	fields []row.Field
	shape  shape

	mu   sync.Mutex
	rows map[string]int64 // written, by table, for the status API
	// epochs are the assigned partitions' epochs (lake.Progress.Epoch),
	// read by Resume and Rebase.
	epochs map[partitionKey]int

	// typesMu guards types, which Add updates and reads, the decodings
	// read, and Write and Resume update.
	typesMu sync.RWMutex
	types   map[string]*columnTypes // by catalog table
}

// columnTypes is a table's column types: those of its schema in the
// catalog, and those set since by the first non-null value of a new
// column, to be added to the schema by the next write.
type columnTypes struct {
	kinds map[string]row.Kind
	// added are the columns not yet in the catalog's schema.
	added map[string]bool
	// version counts changes of kinds, for shapes made of them.
	version int
}

// shape is the last row's column types by field position: rows of a table
// mostly repeat their fields in order, so most fields find their type here
// without a map lookup. The runner's goroutine, in Add, has one, and each
// decoding its own.
type shape struct {
	table   string
	version int
	names   []string
	kinds   []row.Kind
}

// of makes the shape one of table's, whose types are ct, when it is not.
func (sh *shape) of(table string, ct *columnTypes) {
	if sh.table != table || sh.version != ct.version {
		sh.table, sh.version, sh.names, sh.kinds = table, ct.version, sh.names[:0], sh.kinds[:0]
	}
}

// kind is the type of a row's i-th field, name: where the last row had
// it, or from ct, then remembered there.
func (sh *shape) kind(ct *columnTypes, i int, name string) (row.Kind, bool) {
	if i < len(sh.names) && sh.names[i] == name {
		return sh.kinds[i], true
	}
	k, ok := ct.kinds[name]
	if ok && i == len(sh.names) {
		sh.names, sh.kinds = append(sh.names, name), append(sh.kinds, k)
	}
	return k, ok
}

var (
	_ sink.Sink    = (*Lake)(nil)
	_ sink.Decoder = (*Lake)(nil)
	_ sink.Rebaser = (*Lake)(nil)
	_ sink.Splicer = (*decoding)(nil)
)

// New builds the lake sink over store and its catalog; records of
// dlqTopic land in dead_letter.
func New(cfg Config, store lake.Storage, cat *lake.Catalog, dlqTopic string, schemas Schemas, logger *slog.Logger, reg prometheus.Registerer) (*Lake, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lake sink config: %w", err)
	}
	if store == nil || cat == nil {
		return nil, errors.New("lake sink: no lake")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	l := &Lake{cfg: cfg, store: store, cat: cat, dlqTopic: dlqTopic, schemas: schemas, logger: logger, metrics: m,
		now: time.Now, rows: map[string]int64{}, types: map[string]*columnTypes{}, epochs: map[partitionKey]int{}}
	l.parser.l = l
	return l, nil
}

// Details is what the status API shows of the lake sink: the rows written
// to each table by this process.
func (l *Lake) Details() any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return map[string]any{"lake": l.store.String(), "rows": maps.Clone(l.rows)}
}

// Resume reads a partition's progress from the lake: its record of the
// last range, or, when there is none (a lake whose bookkeeping was lost,
// or loaded by another tool), the offsets of the catalog tables' current
// snapshots, of the topic's latest epoch. It also reads the tables' column
// types, which another instance may have changed.
func (l *Lake) Resume(ctx context.Context, topic string, partition int32) (sink.Position, error) {
	prog, err := lake.ReadProgress(ctx, l.store, topic, partition)
	if err != nil {
		return sink.Position{}, err
	}
	epoch, fromTables, err := l.tableProgress(ctx, topic, partition)
	if err != nil {
		return sink.Position{}, err
	}
	pos := sink.Position{Committed: prog.Committed, Pending: -1}
	if prog.Pending != nil {
		pos.Pending = prog.Pending.Last
	}
	if prog.Committed < 0 && prog.Pending == nil && prog.Epoch == 0 && fromTables >= 0 {
		l.logger.Warn("no progress record: resuming from the tables' snapshots", "topic", topic, "partition", partition,
			"offset", fromTables, "epoch", epoch)
		pos.Committed, prog.Epoch = fromTables, epoch
	}
	l.mu.Lock()
	l.epochs[partitionKey{topic, partition}] = prog.Epoch
	l.mu.Unlock()
	return pos, nil
}

// tableProgress reads the catalog tables' schemas, and the latest epoch
// of a partition in their offsets with the last offset they hold of it;
// -1 when they hold none.
func (l *Lake) tableProgress(ctx context.Context, topic string, partition int32) (epoch int, last int64, err error) {
	names, err := l.cat.Names(ctx)
	if err != nil {
		return 0, -1, err
	}
	last = -1
	suffix := "/" + strconv.Itoa(int(partition))
	for _, name := range names {
		t, err := l.cat.Load(ctx, name)
		if err != nil {
			return 0, -1, err
		}
		l.learn(name, t.Schema())
		offsets, err := lake.TableOffsets(t)
		if err != nil {
			return 0, -1, err
		}
		for key, o := range offsets {
			source, found := strings.CutSuffix(key, suffix)
			e, ok := lake.ParseIncarnation(source, topic)
			switch {
			case !found || !ok || e < epoch:
			case e > epoch:
				epoch, last = e, o
			default:
				last = max(last, o)
			}
		}
	}
	return epoch, last, nil
}

// Rebase starts a new epoch of a partition whose topic was deleted and
// made again (sink.Rebaser): the lake keeps what it loaded of the old
// topic, and loads the new one from its start under the next epoch's name.
func (l *Lake) Rebase(ctx context.Context, topic string, partition int32) (sink.Position, error) {
	prog, err := lake.ReadProgress(ctx, l.store, topic, partition)
	if err != nil {
		return sink.Position{}, err
	}
	epoch, _, err := l.tableProgress(ctx, topic, partition)
	if err != nil {
		return sink.Position{}, err
	}
	next := max(prog.Epoch, epoch) + 1
	if err := lake.WriteProgress(ctx, l.store, topic, partition, lake.Progress{Committed: -1, Epoch: next}); err != nil {
		return sink.Position{}, err
	}
	l.mu.Lock()
	l.epochs[partitionKey{topic, partition}] = next
	l.mu.Unlock()
	l.logger.Warn("the topic was made again: loading it from its start as a new epoch", "topic", topic, "partition", partition,
		"epoch", next, "named", lake.Incarnation(topic, next))
	return sink.Position{Committed: -1, Pending: -1}, nil
}

// partitionKey is a topic-partition.
type partitionKey struct {
	topic     string
	partition int32
}

// source is how the lake names a range's topic: its epoch's incarnation.
func (l *Lake) source(r *sink.Range) (name string, epoch int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	epoch = l.epochs[partitionKey{r.Topic, r.Partition}]
	return lake.Incarnation(r.Topic, epoch), epoch
}

// tableTypes is a table's column types, made empty the first time; the
// caller holds typesMu.
func (l *Lake) tableTypes(table string) *columnTypes {
	ct := l.types[table]
	if ct == nil {
		ct = &columnTypes{kinds: map[string]row.Kind{}, added: map[string]bool{}}
		l.types[table] = ct
	}
	return ct
}

// learn takes a table's column types from its schema in the catalog.
func (l *Lake) learn(table string, sc *iceberg.Schema) {
	l.typesMu.Lock()
	defer l.typesMu.Unlock()
	ct := l.tableTypes(table)
	for _, f := range sc.Fields() {
		if k, ok := lake.Kind(f); ok {
			ct.kinds[f.Name] = k
			delete(ct.added, f.Name)
		}
	}
	ct.version++
}

// check gives a row of a catalog table its columns' types: each value is
// converted to its column's type, and a new column takes the type of its
// first non-null value (a null never sets one). It returns the values that
// do not fit, except in dead_letter, whose rows must land: there such a
// value is kept as text.
func (l *Lake) check(table string, fields []row.Field) (errs []event.FieldError) {
	l.typesMu.Lock()
	defer l.typesMu.Unlock()
	ct := l.tableTypes(table)
	sh := &l.shape
	sh.of(table, ct)
	for i, f := range fields {
		if f.Cell.Kind == row.KindNull || f.Name == lake.EventDate {
			continue
		}
		k, ok := sh.kind(ct, i, f.Name)
		switch {
		case !ok:
			ct.kinds[f.Name], ct.added[f.Name] = f.Cell.Kind, true
			ct.version++
			sh.version = ct.version
			continue
		case f.Cell.Kind == k:
			continue
		case ct.added[f.Name] && k == row.KindInt && f.Cell.Kind == row.KindFloat:
			// Not in the schema yet: integers then fractions are doubles.
			ct.kinds[f.Name] = row.KindFloat
			ct.version++
			sh.table = "" // made again by the next row
			continue
		}
		if c, ok := row.Coerce(f.Cell, k); ok {
			fields[i].Cell = c
			continue
		}
		if table == lake.DeadLetterTable {
			fields[i].Cell, _ = row.Coerce(row.Cell{Kind: row.KindString, B: f.Cell.AppendText(nil)}, k)
			continue
		}
		errs = append(errs, mismatch(table, f, k))
	}
	return errs
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
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
	d, fields := l.parser.parse(r, l.fields[:0])
	l.fields = fields
	return b.add(d)
}

// add buffers a parsed record: its values are checked against, and set,
// the column types of its table, which only the runner's goroutine does.
func (b *buffer) add(d parsed) (int, error) {
	l := b.l
	table, date, fields, errs := d.table, d.date, d.fields, d.errs
	if l.inCatalog(table) {
		// A row rejected for its declared types sets no column's type.
		if len(errs) == 0 || table == lake.DeadLetterTable {
			errs = append(errs, l.check(table, fields)...)
		}
		if len(errs) > 0 && table != lake.DeadLetterTable {
			l.metrics.mismatches.WithLabelValues(table).Inc()
			return 0, &sink.Reject{Reason: ReasonTypeMismatch, Errors: errs}
		}
	}
	buf := b.table(tableDate{table, date})
	before := buf.Bytes()
	buf.Append(fields)
	b.rows = max(b.rows, buf.Rows())
	return buf.Bytes() - before, nil
}

// table is the buffer of a table and date, made the first time.
func (b *buffer) table(k tableDate) *lake.Buffer {
	buf := b.tables[k]
	if buf == nil {
		buf = lake.NewBuffer()
		b.tables[k] = buf
	}
	return buf
}

// inCatalog reports whether a table is one of the catalog's, rather than
// plain export files.
func (l *Lake) inCatalog(table string) bool {
	f := l.cfg.Tables[table].Format
	return f == "" || f == "parquet"
}

// parser turns records into typed rows of their tables. It holds scratch
// space reused for every record, so each goroutine that parses has its
// own: the runner's, which parses in Add, and those of the decodings.
type parser struct {
	l     *Lake
	rower row.Rower
	names names
	// schemaKey is the last row's schema, kept to spare its strings.
	schemaKey schema.Key
}

// parsed is a record parsed into a row of its table: fields, which alias
// the record, typed by its schema and table settings, and the values that
// did not fit those types.
type parsed struct {
	table, date string
	fields      []row.Field
	errs        []event.FieldError
}

// parse parses a record, appending its fields to dst, and returns it and
// dst with the fields.
func (p *parser) parse(r *kgo.Record, dst []row.Field) (parsed, []row.Field) {
	table, date, all := p.route(r, dst)
	fields := all[len(dst):]
	return parsed{table: table, date: date, fields: fields, errs: p.typeFields(table, fields)}, all
}

// decoding is the parsing of a share of a poll's records on a goroutine
// of the runner's (sink.Decoder): the Kafka-to-row half of the loader's
// work, spread over the cores. Where a partition's records all fit the
// columns their tables have, it fills their tables' buffers too, which
// the runner then takes whole (sink.Splicer); the others are added one
// by one, in order, as their types may change the tables' columns.
type decoding struct {
	parser parser
	recs   []parsed
	// fields holds every record's fields, reused from share to share.
	fields []row.Field
	runs   []partitionRun
	shape  shape
	// spare are emptied buffers, for the next runs.
	spare []*lake.Buffer
}

// partitionRun is a share's records of one partition, [from, to), and,
// when each fits its table's columns, their rows by table and date.
type partitionRun struct {
	from, to int
	tables   map[tableDate]*lake.Buffer
}

// NewDecoding starts a decoding, for the runner.
func (l *Lake) NewDecoding() sink.Decoding { return &decoding{parser: parser{l: l}} }

func (d *decoding) Decode(recs []*kgo.Record) {
	d.recs, d.fields = d.recs[:0], d.fields[:0]
	for _, r := range recs {
		var p parsed
		// A record's fields stay where they were put: appending past
		// them, or into a larger array, never moves or overwrites them.
		p, d.fields = d.parser.parse(r, d.fields)
		d.recs = append(d.recs, p)
	}
	for _, rn := range d.runs {
		d.release(rn.tables)
	}
	d.runs = d.runs[:0]
	for from := 0; from < len(recs); {
		to := from + 1
		for to < len(recs) && recs[to].Partition == recs[from].Partition && recs[to].Topic == recs[from].Topic {
			to++
		}
		d.runs = append(d.runs, partitionRun{from: from, to: to, tables: d.fill(from, to)})
		from = to
	}
}

// fill buffers the rows of records [from, to) by table and date, or
// returns nil when one of them does not fit its table's columns as they
// are.
func (d *decoding) fill(from, to int) map[tableDate]*lake.Buffer {
	tables := map[tableDate]*lake.Buffer{}
	for _, p := range d.recs[from:to] {
		if !d.parser.l.fits(&d.shape, p) {
			d.release(tables)
			return nil
		}
		k := tableDate{p.table, p.date}
		buf := tables[k]
		if buf == nil {
			if n := len(d.spare); n > 0 {
				buf, d.spare = d.spare[n-1], d.spare[:n-1]
			} else {
				buf = lake.NewBuffer()
			}
			tables[k] = buf
		}
		buf.Append(p.fields)
	}
	return tables
}

// release empties buffers for later runs.
func (d *decoding) release(tables map[tableDate]*lake.Buffer) {
	for _, buf := range tables {
		buf.Reset()
		d.spare = append(d.spare, buf)
	}
}

func (d *decoding) Add(buf sink.Buffer, i int) (int, error) { return buf.(*buffer).add(d.recs[i]) }

// Runs counts the share's runs of one partition's records.
func (d *decoding) Runs() int { return len(d.runs) }

// Run is the records of run k, and whether Splice can add them.
func (d *decoding) Run(k int) (from, to int, ready bool) {
	rn := d.runs[k]
	return rn.from, rn.to, rn.tables != nil
}

// Splice moves run k's rows into buf's tables.
func (d *decoding) Splice(buf sink.Buffer, k int) int {
	b := buf.(*buffer)
	grew := 0
	for key, rows := range d.runs[k].tables {
		t := b.table(key)
		grew += t.Take(rows)
		b.rows = max(b.rows, t.Rows())
	}
	return grew
}

// fits reports whether a parsed record's values fit the columns its
// catalog table has, converting those of another type that convert, as
// check would, but changing no column: a record that would (a new
// column, a wider type) or does not fit is left to check, in order.
func (l *Lake) fits(sh *shape, p parsed) bool {
	if len(p.errs) > 0 || p.table == lake.DeadLetterTable || !l.inCatalog(p.table) {
		return false
	}
	l.typesMu.RLock()
	defer l.typesMu.RUnlock()
	ct := l.types[p.table]
	if ct == nil {
		return false
	}
	sh.of(p.table, ct)
	for i, f := range p.fields {
		if f.Cell.Kind == row.KindNull || f.Name == lake.EventDate {
			continue
		}
		k, ok := sh.kind(ct, i, f.Name)
		switch {
		case !ok:
			return false // a new column
		case f.Cell.Kind == k:
			continue
		case ct.added[f.Name] && k == row.KindInt && f.Cell.Kind == row.KindFloat:
			return false // a wider type
		}
		c, ok := row.Coerce(f.Cell, k)
		if !ok {
			return false // a type mismatch, which check dead-letters
		}
		p.fields[i].Cell = c
	}
	return true
}

// typeFields gives the row's columns the types its schema and its table's
// settings say, the table's first, and returns the values that do not fit.
func (p *parser) typeFields(table string, fields []row.Field) (errs []event.FieldError) {
	l := p.l
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
		if string(et) != p.schemaKey.EventType || string(ver) != p.schemaKey.Version {
			p.schemaKey = schema.Key{EventType: string(et), Version: string(ver)}
		}
		fromSchema = l.schemas.Columns(p.schemaKey)
	}
	fromTable := l.cfg.Tables[table].Columns
	if len(fromSchema) == 0 && len(fromTable) == 0 {
		return nil
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
			errs = append(errs, mismatch(table, f, k))
		}
	}
	return errs
}

func mismatch(table string, f row.Field, k row.Kind) event.FieldError {
	return event.FieldError{Path: "/" + f.Name,
		Message: fmt.Sprintf("%s %s does not fit the column's type, %s, in table %s", f.Cell.Kind, truncate(f.Cell.Text(), 64), k, table)}
}

// route turns a record into its table, event date and row, whose fields
// it appends to dst.
func (p *parser) route(r *kgo.Record, dst []row.Field) (table, date string, fields []row.Field) {
	l := p.l
	fields, err := p.rower.Row(r.Value, dst)
	if err != nil {
		l.metrics.badRecords.Inc()
		return p.deadLetter(r, err, dst)
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
			name = []byte(text(fields[len(dst):], event.FieldEventType))
		}
		table = p.names.table(name)
	}
	return table, p.eventDate(table, fields[len(dst):], r.Timestamp), fields
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
func (p *parser) deadLetter(r *kgo.Record, cause error, dst []row.Field) (string, string, []row.Field) {
	now := p.l.now()
	f := event.NewFailed(event.StageLoader, event.ReasonInvalidJSON,
		[]event.FieldError{{Path: "", Message: cause.Error()}}, bus.Header(r, event.HeaderRootID), r.Value, now)
	fields := dst
	if value, err := f.Marshal(); err == nil {
		var rower row.Rower
		fields, _ = rower.Row(value, dst) // a failed-event record is always an object
	}
	fields = append(fields, row.Field{Name: "source", Cell: row.Cell{Kind: row.KindString,
		B: fmt.Appendf(nil, "%s/%d/%d", r.Topic, r.Partition, r.Offset)}})
	return lake.DeadLetterTable, p.names.dateOf(now), fields
}

// eventDate is the UTC date of the table's event-time field, or of the
// record's timestamp when the row has none.
func (p *parser) eventDate(table string, fields []row.Field, fallback time.Time) string {
	field := p.l.cfg.Tables[table].TimeField
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
			return p.names.dateOf(time.UnixMicro(c.I))
		case row.KindString:
			if t, ok := row.ParseTime(string(c.B)); ok {
				return p.names.dateOf(t)
			}
		}
	}
	return p.names.dateOf(fallback)
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

// Write records the range as pending, then writes its files and commits
// each catalog table's; see the package comment for why in this order.
func (l *Lake) Write(ctx context.Context, r *sink.Range) error {
	b := r.Buffer.(*buffer)
	rng := lake.Range{First: r.First, Last: r.Last}
	source, epoch := l.source(r)
	if err := lake.WriteProgress(ctx, l.store, r.Topic, r.Partition, lake.Progress{Committed: r.Committed, Pending: &rng, Epoch: epoch}); err != nil {
		return err
	}
	if err := r.Point(PointPending); err != nil {
		return err
	}
	keys := slices.SortedFunc(maps.Keys(b.tables), func(a, b tableDate) int {
		return cmp.Or(strings.Compare(a.table, b.table), strings.Compare(a.date, b.date))
	})
	for i := 0; i < len(keys); {
		table := keys[i].table
		j := i
		for j < len(keys) && keys[j].table == table {
			j++
		}
		var err error
		if l.inCatalog(table) {
			err = l.writeTable(ctx, r, table, keys[i:j], b)
		} else {
			for _, k := range keys[i:j] {
				f := lake.File{Table: k.table, Date: k.date, Topic: source, Partition: r.Partition, First: r.First, Last: r.Last,
					Ext: l.cfg.Tables[k.table].Format}
				if err = l.writeFile(ctx, f, b.tables[k]); err != nil {
					break
				}
			}
		}
		if err != nil {
			return err
		}
		if i == 0 {
			if err := r.Point(PointMidFiles); err != nil {
				return err
			}
		}
		i = j
	}
	return nil
}

// writeTable writes a range's data files of one catalog table, a file per
// event date, and commits them as one snapshot. A table that already holds
// the range is left alone: this is a rewrite after a crash, and its files
// were committed.
func (l *Lake) writeTable(ctx context.Context, r *sink.Range, table string, keys []tableDate, b *buffer) error {
	cols := l.newColumns(table, keys, b)
	t, err := l.cat.Load(ctx, table)
	if errors.Is(err, lake.ErrNoTable) {
		t, err = l.cat.Create(ctx, table, cols)
	}
	if err != nil {
		return err
	}
	offsets, err := lake.TableOffsets(t)
	if err != nil {
		return err
	}
	source, _ := l.source(r)
	key := lake.OffsetKey(source, r.Partition)
	if o, ok := offsets[key]; ok && o >= r.Last {
		return nil
	}
	// AddColumns commits nothing for columns the table has, such as
	// those it was just created with.
	if t, err = l.cat.AddColumns(ctx, t, cols); err != nil {
		return err
	}
	l.learn(table, t.Schema())
	name := fmt.Sprintf("%s-%d-%d-%d.parquet", source, r.Partition, r.First, r.Last)
	var files []iceberg.DataFile
	for _, k := range keys {
		df, stats, err := l.cat.WriteFile(ctx, l.store, t, k.date, name, b.tables[k])
		if err != nil {
			return err
		}
		l.metrics.files.Inc()
		if stats.Unconverted > 0 {
			l.metrics.conflicts.WithLabelValues(table).Add(float64(stats.Unconverted))
			l.logger.Warn("values did not fit their column's type, written as null", "table", table,
				"file", df.FilePath(), "values", stats.Unconverted)
		}
		files = append(files, df)
	}
	start := time.Now()
	if t, _, err = l.cat.Append(ctx, t, files, lake.Offsets{key: r.Last}); err != nil {
		return err
	}
	l.metrics.commitSeconds.Observe(time.Since(start).Seconds())
	// Expiry runs once the table holds twice the snapshots it keeps, so
	// that its cost is spread over as many flushes.
	if age, keep := l.cfg.SnapshotMaxAge, l.cfg.SnapshotMinCount; age > 0 && len(t.Metadata().Snapshots()) > 2*keep {
		n, err := l.cat.Expire(ctx, table, age, keep)
		if err != nil {
			// The data is committed: expiry is upkeep, tried again later.
			l.logger.Warn("snapshot expiry failed; the next flushes try again", "table", table, "err", err)
		} else if n > 0 {
			l.logger.Info("snapshots expired", "table", table, "snapshots", n, "older_than", age)
		}
	}
	return nil
}

// newColumns are the columns of a range's rows of a table that its schema
// lacks, with the types their first values set, in the order they appear.
func (l *Lake) newColumns(table string, keys []tableDate, b *buffer) []lake.Column {
	l.typesMu.Lock()
	defer l.typesMu.Unlock()
	ct := l.types[table]
	if ct == nil {
		return nil
	}
	var cols []lake.Column
	seen := map[string]bool{}
	for _, k := range keys {
		for _, c := range b.tables[k].Columns() {
			if ct.added[c.Name] && !seen[c.Name] {
				seen[c.Name] = true
				cols = append(cols, lake.Column{Name: c.Name, Kind: ct.kinds[c.Name]})
			}
		}
	}
	return cols
}

// Commit records the range's last offset as the partition's committed
// progress, and counts its rows.
func (l *Lake) Commit(ctx context.Context, r *sink.Range) error {
	_, epoch := l.source(r)
	if err := lake.WriteProgress(ctx, l.store, r.Topic, r.Partition, lake.Progress{Committed: r.Last, Epoch: epoch}); err != nil {
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
