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
package loader

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/lake"
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
}

// Table configures one lake table.
type Table struct {
	// Format is parquet (the default), csv.gz or avro.
	Format string
	// TimeField is the field whose UTC date is event_date; the default is
	// collector_tstamp (failed_at for dead_letter).
	TimeField string
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Topics:        []string{"sluice.raw", "sluice.dlq"},
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

	mu    sync.Mutex // guards parts and buffered against the rebalance callbacks
	parts map[tp]*partition
	// buffered is the sum of the partitions' bytes.
	buffered int
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
	l := &Loader{cfg: cfg, store: store, logger: logger, metrics: m, now: time.Now, parts: make(map[tp]*partition)}
	l.cl, err = bus.NewClient(cc, logger,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.DisableAutoCommit(),
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
	)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func fetchBytes(memory int) int32 {
	return int32(min(max(memory/16, 256<<10), 16<<20))
}

// resume is called on assignment, before fetching: it starts each
// partition after the offset the lake says is committed.
func (l *Loader) resume(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for topic, parts := range offsets {
		for p := range parts {
			prog, err := lake.ReadProgress(ctx, l.store, topic, p)
			if err != nil {
				return nil, err
			}
			st := newPartition(topic, p, prog)
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
	l.mu.Lock()
	defer l.mu.Unlock()
	for topic, parts := range revoked {
		for _, p := range parts {
			if st := l.parts[tp{topic, p}]; st != nil {
				l.buffered -= st.bytes
				l.metrics.buffered.Sub(float64(st.bytes))
			}
			delete(l.parts, tp{topic, p})
		}
	}
}

// Run loads until ctx is done. Buffered records that are not yet flushed
// are left for the next run to reload: nothing is committed that is not in
// the lake.
func (l *Loader) Run(ctx context.Context) error {
	defer l.cl.Close()
	for {
		pollCtx, cancel := context.WithTimeout(ctx, l.untilNextDeadline())
		fetches := l.cl.PollRecords(pollCtx, 10_000)
		cancel()
		if ctx.Err() != nil {
			l.cl.AllowRebalance()
			return nil
		}
		var fatal error
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			l.logger.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
		})
		l.mu.Lock()
		fetches.EachRecord(func(r *kgo.Record) {
			if fatal == nil {
				fatal = l.add(ctx, r)
			}
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
	table, date, row := l.route(r)
	buf := st.buffer(table, date)
	before := buf.Bytes()
	buf.Append(row)
	grew := buf.Bytes() - before
	st.note(r.Offset, grew, l.now())
	l.buffered += grew
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

// boundMemory flushes the largest buffers while the rows buffered across
// partitions exceed the memory limit: memory stays bounded, and the files
// are simply smaller.
func (l *Loader) boundMemory(ctx context.Context) error {
	for l.buffered > l.cfg.MemoryLimit {
		var largest *partition
		for _, st := range l.parts {
			if st.forced < 0 && (largest == nil || st.bytes > largest.bytes) {
				largest = st
			}
		}
		if largest == nil || largest.rows == 0 {
			return nil // only ranges being reloaded remain; they end soon
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
func (l *Loader) route(r *kgo.Record) (table, date string, row []lake.Field) {
	var rower lake.Rower
	row, err := rower.Row(r.Value, nil)
	if err != nil {
		l.metrics.badRecords.Inc()
		return l.deadLetter(r, err)
	}
	switch {
	case r.Topic == l.cfg.DLQTopic:
		table = lake.DeadLetterTable
	case bus.Header(r, "table") != "":
		table = lake.TableName(bus.Header(r, "table"))
	case bus.Header(r, event.HeaderEventType) != "":
		table = lake.TableName(bus.Header(r, event.HeaderEventType))
	default:
		table = lake.TableName(text(row, event.FieldEventType))
	}
	return table, l.eventDate(table, row, r.Timestamp), row
}

func (l *Loader) deadLetter(r *kgo.Record, cause error) (string, string, []lake.Field) {
	now := l.now()
	f := event.NewFailed(event.StageLoader, event.ReasonInvalidJSON,
		[]event.FieldError{{Path: "", Message: cause.Error()}}, bus.Header(r, event.HeaderRootID), r.Value, now)
	return lake.DeadLetterTable, now.UTC().Format(time.DateOnly), []lake.Field{
		{Name: "stage", Cell: lake.Cell{Kind: lake.KindString, S: f.Stage}},
		{Name: "reason", Cell: lake.Cell{Kind: lake.KindString, S: f.Reason}},
		{Name: "errors", Cell: lake.Cell{Kind: lake.KindJSON, S: fmt.Sprintf(`[{"path":"","message":%q}]`, cause.Error())}},
		{Name: "failed_at", Cell: lake.Cell{Kind: lake.KindTimestamp, I: now.UnixMicro()}},
		{Name: "root_id", Cell: lake.Cell{Kind: lake.KindString, S: f.RootID}},
		{Name: "original", Cell: lake.Cell{Kind: lake.KindString, S: string(r.Value)}},
		{Name: "source", Cell: lake.Cell{Kind: lake.KindString, S: fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)}},
	}
}

// eventDate is the UTC date of the table's event-time field, or of the
// record's timestamp when the row has none.
func (l *Loader) eventDate(table string, row []lake.Field, fallback time.Time) string {
	field := l.cfg.Tables[table].TimeField
	if field == "" {
		field = event.FieldCollectorTstamp
		if table == lake.DeadLetterTable {
			field = "failed_at"
		}
	}
	for i := len(row) - 1; i >= 0; i-- {
		if row[i].Name != field {
			continue
		}
		switch c := row[i].Cell; c.Kind {
		case lake.KindTimestamp:
			return time.UnixMicro(c.I).UTC().Format(time.DateOnly)
		case lake.KindString:
			if t, ok := parseTime(c.S); ok {
				return t.UTC().Format(time.DateOnly)
			}
		}
	}
	return fallback.UTC().Format(time.DateOnly)
}

// parseTime reads the event times seen in real data: RFC 3339, and ISO 8601
// or SQL-style without a zone (taken as UTC), such as 2025-01-01T00:18:38
// and 2025-01-01 00:18:38.000000000.
func parseTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func text(row []lake.Field, name string) string {
	for _, f := range row {
		if f.Name == name && f.Cell.Kind == lake.KindString {
			return f.Cell.S
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

// flush writes a partition's buffered range to the lake; see the package
// comment for why in this order.
func (l *Loader) flush(ctx context.Context, st *partition) error {
	if st.rows == 0 {
		return nil
	}
	start := l.now()
	rng := lake.Range{First: st.first, Last: st.last}
	if err := lake.WriteProgress(ctx, l.store, st.topic, st.partition, lake.Progress{Committed: st.committed, Pending: &rng}); err != nil {
		return err
	}
	if err := l.inject(PointPending); err != nil {
		return err
	}
	keys := slices.SortedFunc(maps.Keys(st.tables), func(a, b tableDate) int {
		return cmp.Or(strings.Compare(a.table, b.table), strings.Compare(a.date, b.date))
	})
	for i, k := range keys {
		buf := st.tables[k]
		f := lake.File{Table: k.table, Date: k.date, Topic: st.topic, Partition: st.partition, First: rng.First, Last: rng.Last,
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
	if err := lake.WriteProgress(ctx, l.store, st.topic, st.partition, lake.Progress{Committed: rng.Last}); err != nil {
		return err
	}
	if err := l.inject(PointProgress); err != nil {
		return err
	}
	// Kafka's offset is a courtesy for tools that watch lag; the lake's
	// progress is what the loader resumes from, so a failed commit here is
	// only logged.
	l.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{
		st.topic: {st.partition: {Epoch: -1, Offset: rng.Last + 1}},
	}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			l.logger.Warn("commit kafka offset", "topic", st.topic, "partition", st.partition, "err", err)
		}
	})
	l.buffered -= st.bytes
	l.metrics.buffered.Sub(float64(st.bytes))
	l.metrics.flushSeconds.Observe(l.now().Sub(start).Seconds())
	l.logger.Debug("flushed", "topic", st.topic, "partition", st.partition, "first", rng.First, "last", rng.Last,
		"rows", st.rows, "files", len(keys), "took", l.now().Sub(start))
	st.reset(rng.Last)
	return nil
}

func (l *Loader) writeFile(ctx context.Context, f lake.File, buf *lake.Buffer) error {
	w, err := l.store.Create(ctx, f.Path())
	if err != nil {
		return err
	}
	conflicts, err := buf.Write(w, f.Ext)
	if err != nil {
		w.Abort()
		return fmt.Errorf("write %s: %w", f.Path(), err)
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("commit %s: %w", f.Path(), err)
	}
	l.metrics.files.Inc()
	if conflicts > 0 {
		l.metrics.conflicts.WithLabelValues(f.Table).Add(float64(conflicts))
		l.logger.Warn("type conflict: values kept as strings", "table", f.Table, "file", f.Path(), "values", conflicts)
	}
	return nil
}
