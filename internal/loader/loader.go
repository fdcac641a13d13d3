// Package loader is the lake loader stage: it consumes events from Kafka
// with a consumer group and lands them as Parquet tables in the lake,
// exactly once, across crashes and rebalances.
//
// How exactly-once is kept (see docs/lake.md): records are buffered per
// topic-partition; a flush writes every table's file for the partition's
// buffered offset range [first, last], all named by that range. Before the
// files the loader records the range as pending in the lake; after them it
// records last as committed, and only then commits the Kafka offset. On
// assignment it reads that record, not Kafka's offset: it resumes after the
// committed offset, and if a flush was pending it reloads exactly that range
// and flushes at exactly its last offset, so the same file names are
// rewritten with the same rows. No record is in two files; none is lost.
//
// Flushes run on a goroutine of their own, one at a time in the order they
// were handed over, while Run buffers the next records: a partition's
// flushes are thus in offset order, and a flush that fails stops every later
// one, so no range is committed after a range that is not in the lake.
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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/row"
	"github.com/sluicehq/sluice/internal/schema"
)

// Config configures a lake loader.
type Config struct {
	// Topics are consumed; DLQTopic's records land in the dead_letter table.
	Topics   []string
	DLQTopic string
	// Group is the Kafka consumer group; loaders sharing it share partitions.
	Group string
	// A partition's buffer is flushed when any of its tables reaches
	// FlushRows, when it holds FlushBytes, or FlushInterval after its first
	// record arrived.
	FlushRows     int
	FlushBytes    int
	FlushInterval time.Duration
	// MemoryLimit bounds the bytes buffered across partitions; past it the
	// largest buffers are flushed early.
	MemoryLimit int
	// Tables holds per-table settings; tables not named take the defaults.
	Tables map[string]Table
	// Schemas, when set, gives column types by event type and version;
	// a table's Columns override them.
	Schemas Schemas
}

// Schemas gives the lake column types of an event type's version, or nil
// when it has no schema.
type Schemas interface {
	Columns(schema.Key) map[string]row.Kind
}

// Table configures one lake table.
type Table struct {
	// Format is parquet (the default), csv.gz or avro.
	Format string
	// TimeField is the field whose UTC date is event_date; the default is
	// collector_tstamp (failed_at for dead_letter).
	TimeField string
	// Columns gives columns exact types; others are typed from their JSON
	// values. The enricher's schemas will supply these too.
	Columns map[string]row.Kind
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Topics:        []string{"sluice.enriched", "sluice.dlq"},
		DLQTopic:      "sluice.dlq",
		Group:         "sluice-loader-lake",
		FlushRows:     100_000,
		FlushBytes:    64 << 20,
		FlushInterval: 10 * time.Second,
		MemoryLimit:   512 << 20,
	}
}

// Validate reports a configuration the loader cannot start with.
func (c Config) Validate() error {
	var errs []error
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("no topics to load"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("consumer group is empty"))
	}
	if c.FlushRows < 1 || c.FlushBytes < 1 || c.FlushInterval <= 0 {
		errs = append(errs, errors.New("flush rows, bytes and interval must be positive"))
	}
	if c.MemoryLimit < c.FlushBytes {
		errs = append(errs, fmt.Errorf("memory limit %d must be at least the flush bytes %d", c.MemoryLimit, c.FlushBytes))
	}
	for name, t := range c.Tables {
		if t.Format != "" && !lake.ValidFormat(t.Format) {
			errs = append(errs, fmt.Errorf("table %s: format %q: want one of %s", name, t.Format, strings.Join(lake.Formats, ", ")))
		}
	}
	return errors.Join(errs...)
}

// Loader is a running lake loader.
type Loader struct {
	cfg     Config
	store   lake.Storage
	cl      *kgo.Client
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time
	// crash, when set, is called at each dangerous point of a flush; tests
	// use it to stop the loader there as a crash would.
	crash func(point string) error

	// rower and row are scratch space of the Run goroutine, reused for
	// every record.
	rower  row.Rower
	fields []row.Field
	names  names
	// schemaKey is the last row's schema, kept to spare its strings.
	schemaKey schema.Key

	mu    sync.Mutex // guards parts against the rebalance callbacks
	parts map[tp]*partition
	// buffered is the bytes of all buffers, being filled or flushed.
	buffered atomic.Int64

	// jobs hands ranges to the flusher, which Run starts and stops with
	// stopFlusher; flusherDone is closed when it has stopped.
	jobs        chan *flushJob
	running     atomic.Bool
	stopFlusher chan struct{}
	flusherDone chan struct{}
	// flushErr is the first flush's error; no flush runs after it.
	flushErr atomic.Pointer[error]
}

// A flushJob is a partition's range of buffered records handed to the
// flusher, or, with only barrier set, a mark the flusher closes when it
// reaches it.
type flushJob struct {
	topic     string
	partition int32
	committed int64 // the lake's committed offset before rng
	rng       lake.Range
	tables    map[tableDate]*lake.Buffer
	rows      int
	bytes     int
	barrier   chan struct{}
}

type tp struct {
	topic     string
	partition int32
}

// New builds a loader reading through a Kafka client made from cc.
func New(cfg Config, cc bus.ClientConfig, store lake.Storage, logger *slog.Logger, reg prometheus.Registerer) (*Loader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loader config: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	l := &Loader{cfg: cfg, store: store, logger: logger, metrics: m, now: time.Now, parts: make(map[tp]*partition),
		jobs: make(chan *flushJob, 1), stopFlusher: make(chan struct{}), flusherDone: make(chan struct{})}
	l.cl, err = bus.NewClient(cc, logger,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.DisableAutoCommit(),
		// The enricher writes in transactions: what it aborted must not
		// reach the lake.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Rebalances wait until a poll's records are handled, so a
		// partition is never revoked mid-flush.
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(l.resume),
		kgo.OnPartitionsRevoked(l.drop),
		kgo.OnPartitionsLost(l.drop),
		// Fetches are a slice of the memory budget. Their limits count
		// compressed bytes, so very compressible data can inflate more.
		kgo.FetchMaxBytes(fetchBytes(cfg.MemoryLimit)),
		kgo.FetchMaxPartitionBytes(fetchBytes(cfg.MemoryLimit)/2),
		kgo.MaxConcurrentFetches(1),
		// add copies what it keeps of a record, then recycles it.
		bus.RecyclePools(),
	)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// fetchBytes sizes fetches from the memory budget. They stay small enough
// that the next fetch, on the client's goroutines, takes about as long as
// handling this one: 16 MiB fetches left the loader idle waiting (the
// loader benchmark ran 15% slower than with 4 MiB).
func fetchBytes(memory int) int32 {
	return int32(min(max(memory/16, 256<<10), 4<<20))
}

// resume is called on assignment, before fetching: it starts each
// partition after the offset the lake says is committed.
func (l *Loader) resume(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	l.flushed() // the lake must show every range handed over
	l.mu.Lock()
	defer l.mu.Unlock()
	for topic, parts := range offsets {
		for p := range parts {
			prog, err := lake.ReadProgress(ctx, l.store, topic, p)
			if err != nil {
				return nil, err
			}
			st := newPartition(topic, p, prog)
			if l.parts[tp{topic, p}] == nil {
				l.metrics.assigned.Inc()
			}
			l.parts[tp{topic, p}] = st
			parts[p] = kgo.NewOffset().At(prog.Committed + 1)
			l.logger.Info("partition assigned", "topic", topic, "partition", p,
				"resume_at", prog.Committed+1, "pending", prog.Pending != nil)
		}
	}
	return offsets, nil
}

// drop forgets revoked partitions' buffers: their next owner reloads them
// from the lake's committed offsets.
func (l *Loader) drop(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	// Ranges handed over are finished before the next owner reads the
	// lake's progress.
	l.flushed()
	l.mu.Lock()
	defer l.mu.Unlock()
	for topic, parts := range revoked {
		for _, p := range parts {
			if st := l.parts[tp{topic, p}]; st != nil {
				l.release(st.tables, st.bytes)
				l.metrics.assigned.Dec()
			}
			delete(l.parts, tp{topic, p})
		}
	}
}

// Run loads until ctx is done. Buffered records that are not yet flushed
// are left for the next run to reload: nothing is committed that is not in
// the lake.
func (l *Loader) Run(ctx context.Context) error {
	if l.running.Swap(true) {
		return errors.New("loader: Run called twice")
	}
	go l.flusher(ctx)
	defer func() {
		// Closing the client leaves the group, whose callbacks wait for
		// the flusher: it stops after.
		l.cl.Close()
		close(l.stopFlusher)
		<-l.flusherDone
	}()
	for {
		pollCtx, cancel := context.WithTimeout(ctx, l.untilNextDeadline())
		fetches := l.cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			l.cl.AllowRebalance()
			return nil
		}
		if err := l.failed(); err != nil {
			l.cl.AllowRebalance()
			return err
		}
		var fatal error
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			l.logger.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				l.metrics.consumed.WithLabelValues(p.Topic).Add(float64(len(p.Records)))
			}
		})
		l.mu.Lock()
		fetches.EachRecord(func(r *kgo.Record) {
			if fatal == nil {
				fatal = l.add(ctx, r)
			}
			r.Recycle()
		})
		if fatal == nil {
			fatal = l.flushDue(ctx)
		}
		l.mu.Unlock()
		l.cl.AllowRebalance()
		if fatal != nil {
			return fatal
		}
	}
}

// untilNextDeadline is how long a poll may wait before a buffer's
// interval comes due.
func (l *Loader) untilNextDeadline() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	wait := time.Second
	for _, st := range l.parts {
		if st.rows > 0 {
			wait = min(wait, max(st.since.Add(l.cfg.FlushInterval).Sub(l.now()), time.Millisecond))
		}
	}
	return wait
}

// add buffers one record, flushing first or after when a pending range
// says so.
func (l *Loader) add(ctx context.Context, r *kgo.Record) error {
	st := l.parts[tp{r.Topic, r.Partition}]
	if st == nil || r.Offset <= st.committed {
		return nil // revoked, or already in the lake
	}
	if st.forced >= 0 && r.Offset > st.forced && st.rows > 0 {
		// The pending range ends before this record, which was not there.
		if err := l.flush(ctx, st); err != nil {
			return err
		}
	}
	table, date, fields := l.route(r)
	l.types(table, fields)
	buf := st.buffer(table, date)
	before := buf.Bytes()
	buf.Append(fields)
	grew := buf.Bytes() - before
	st.note(r.Offset, grew, l.now())
	l.buffered.Add(int64(grew))
	l.metrics.buffered.Add(float64(grew))
	if st.forced >= 0 && r.Offset >= st.forced {
		return l.flush(ctx, st)
	}
	if buf.Rows() >= l.cfg.FlushRows || st.bytes >= l.cfg.FlushBytes {
		if st.forced < 0 {
			return l.flush(ctx, st)
		}
	}
	return l.boundMemory(ctx)
}

// types gives the row's columns the types its schema and its table's
// settings say, the table's first.
func (l *Loader) types(table string, fields []row.Field) {
	var fromSchema map[string]row.Kind
	if l.cfg.Schemas != nil {
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
		fromSchema = l.cfg.Schemas.Columns(l.schemaKey)
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
		if ok {
			fields[i].Cell, _ = row.Coerce(f.Cell, k)
		}
	}
}

// flushDue flushes buffers whose interval has passed.
func (l *Loader) flushDue(ctx context.Context) error {
	now := l.now()
	for _, st := range l.parts {
		if st.rows > 0 && st.forced < 0 && now.Sub(st.since) >= l.cfg.FlushInterval {
			if err := l.flush(ctx, st); err != nil {
				return err
			}
		}
	}
	return nil
}

// boundMemory flushes the largest buffers while the buffered rows exceed
// the memory limit, and waits for flushes if that is not enough: memory
// stays bounded, and the files are simply smaller.
func (l *Loader) boundMemory(ctx context.Context) error {
	for l.buffered.Load() > int64(l.cfg.MemoryLimit) {
		var largest *partition
		for _, st := range l.parts {
			if st.forced < 0 && (largest == nil || st.bytes > largest.bytes) {
				largest = st
			}
		}
		if largest == nil || largest.rows == 0 {
			// The rest is being flushed, or is a range being reloaded,
			// which ends soon.
			l.flushed()
			return l.failed()
		}
		l.metrics.memoryFlushes.Inc()
		if err := l.flush(ctx, largest); err != nil {
			return err
		}
	}
	return nil
}

// route turns a record into its table, event date and row. A record that is
// not a JSON object cannot be a row of its table; it becomes a dead letter
// of the loader, in the same flush, so it is neither lost nor duplicated.
func (l *Loader) route(r *kgo.Record) (table, date string, fields []row.Field) {
	fields, err := l.rower.Row(r.Value, l.fields[:0])
	l.fields = fields
	if err != nil {
		l.metrics.badRecords.Inc()
		return l.deadLetter(r, err)
	}
	switch {
	case r.Topic == l.cfg.DLQTopic:
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

func (l *Loader) deadLetter(r *kgo.Record, cause error) (string, string, []row.Field) {
	now := l.now()
	f := event.NewFailed(event.StageLoader, event.ReasonInvalidJSON,
		[]event.FieldError{{Path: "", Message: cause.Error()}}, bus.Header(r, event.HeaderRootID), r.Value, now)
	return lake.DeadLetterTable, now.UTC().Format(time.DateOnly), []row.Field{
		{Name: "stage", Cell: row.Cell{Kind: row.KindString, B: []byte(f.Stage)}},
		{Name: "reason", Cell: row.Cell{Kind: row.KindString, B: []byte(f.Reason)}},
		{Name: "errors", Cell: row.Cell{Kind: row.KindJSON, B: fmt.Appendf(nil, `[{"path":"","message":%q}]`, cause.Error())}},
		{Name: "failed_at", Cell: row.Cell{Kind: row.KindTimestamp, I: now.UnixMicro()}},
		{Name: "root_id", Cell: row.Cell{Kind: row.KindString, B: []byte(f.RootID)}},
		{Name: "original", Cell: row.Cell{Kind: row.KindString, B: r.Value}},
		{Name: "source", Cell: row.Cell{Kind: row.KindString, B: fmt.Appendf(nil, "%s/%d/%d", r.Topic, r.Partition, r.Offset)}},
	}
}

// eventDate is the UTC date of the table's event-time field, or of the
// record's timestamp when the row has none.
func (l *Loader) eventDate(table string, fields []row.Field, fallback time.Time) string {
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

// Crash points, in flush order.
const (
	PointPending  = "after-pending"    // pending range recorded, no file written
	PointMidFiles = "after-first-file" // some tables' files written
	PointFiles    = "after-files"      // all files written, progress not committed
	PointProgress = "after-progress"   // lake progress committed, Kafka offset not
)

var errCrash = errors.New("injected crash")

func (l *Loader) inject(point string) error {
	if l.crash == nil {
		return nil
	}
	if err := l.crash(point); err != nil {
		return fmt.Errorf("%w at %s: %w", errCrash, point, err)
	}
	return nil
}

// flush hands a partition's buffered range to the flusher and starts new
// buffers. It blocks while the flusher is a range behind.
func (l *Loader) flush(ctx context.Context, st *partition) error {
	if st.rows == 0 {
		return nil
	}
	j := &flushJob{topic: st.topic, partition: st.partition, committed: st.committed,
		rng: lake.Range{First: st.first, Last: st.last}, tables: st.tables, rows: st.rows, bytes: st.bytes}
	st.reset(st.last)
	select {
	case l.jobs <- j:
	case <-l.flusherDone:
		l.release(j.tables, j.bytes)
	case <-ctx.Done():
		l.release(j.tables, j.bytes)
	}
	return l.failed()
}

// flusher writes the ranges handed over, in order, until stopped.
func (l *Loader) flusher(ctx context.Context) {
	defer close(l.flusherDone)
	for {
		var j *flushJob
		select {
		case j = <-l.jobs:
		case <-l.stopFlusher:
			// What is still queued was never written: nothing of it was
			// committed, and the next run reloads it.
			return
		}
		if j.barrier != nil {
			close(j.barrier)
			continue
		}
		if l.failed() == nil && ctx.Err() == nil {
			if err := l.write(ctx, j); err != nil {
				l.flushErr.CompareAndSwap(nil, &err)
			}
		}
		l.release(j.tables, j.bytes)
	}
}

// flushed waits until the ranges handed over so far are written, or have
// failed.
func (l *Loader) flushed() {
	if !l.running.Load() {
		return // nothing was handed over
	}
	j := &flushJob{barrier: make(chan struct{})}
	select {
	case l.jobs <- j:
	case <-l.flusherDone:
		return
	}
	select {
	case <-j.barrier:
	case <-l.flusherDone:
	}
}

// failed is the error that stopped the flusher, if any.
func (l *Loader) failed() error {
	if err := l.flushErr.Load(); err != nil {
		return *err
	}
	return nil
}

// release gives a range's buffers back once written or dropped.
func (l *Loader) release(tables map[tableDate]*lake.Buffer, bytes int) {
	for _, b := range tables {
		b.Reset()
	}
	l.buffered.Add(-int64(bytes))
	l.metrics.buffered.Sub(float64(bytes))
}

// write puts a range in the lake; see the package comment for why in this
// order.
func (l *Loader) write(ctx context.Context, j *flushJob) error {
	start := l.now()
	rng := j.rng
	if err := lake.WriteProgress(ctx, l.store, j.topic, j.partition, lake.Progress{Committed: j.committed, Pending: &rng}); err != nil {
		return err
	}
	if err := l.inject(PointPending); err != nil {
		return err
	}
	keys := slices.SortedFunc(maps.Keys(j.tables), func(a, b tableDate) int {
		return cmp.Or(strings.Compare(a.table, b.table), strings.Compare(a.date, b.date))
	})
	for i, k := range keys {
		buf := j.tables[k]
		f := lake.File{Table: k.table, Date: k.date, Topic: j.topic, Partition: j.partition, First: rng.First, Last: rng.Last,
			Ext: cmp.Or(l.cfg.Tables[k.table].Format, lake.Formats[0])}
		if err := l.writeFile(ctx, f, buf); err != nil {
			return err
		}
		l.metrics.rows.WithLabelValues(k.table).Add(float64(buf.Rows()))
		if i == 0 {
			if err := l.inject(PointMidFiles); err != nil {
				return err
			}
		}
	}
	if err := l.inject(PointFiles); err != nil {
		return err
	}
	if err := lake.WriteProgress(ctx, l.store, j.topic, j.partition, lake.Progress{Committed: rng.Last}); err != nil {
		return err
	}
	if err := l.inject(PointProgress); err != nil {
		return err
	}
	// Kafka's offset is a courtesy for tools that watch lag; the lake's
	// progress is what the loader resumes from, so a failed commit here is
	// only logged.
	l.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{
		j.topic: {j.partition: {Epoch: -1, Offset: rng.Last + 1}},
	}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil && ctx.Err() == nil {
			l.logger.Warn("commit kafka offset", "topic", j.topic, "partition", j.partition, "err", err)
		}
	})
	l.metrics.flushSeconds.Observe(l.now().Sub(start).Seconds())
	l.logger.Debug("flushed", "topic", j.topic, "partition", j.partition, "first", rng.First, "last", rng.Last,
		"rows", j.rows, "files", len(keys), "took", l.now().Sub(start))
	return nil
}

func (l *Loader) writeFile(ctx context.Context, f lake.File, buf *lake.Buffer) error {
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
