package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/retry"
	"github.com/sluicehq/sluice/internal/stop"
)

// Runner runs one sink: a component of its process.
type Runner struct {
	*health.Reporter
	cfg      Config
	sink     Sink
	dlqTopic string
	logger   *slog.Logger
	metrics  *metrics
	now      func() time.Time
	cl       *kgo.Client
	admin    *kadm.Client
	// started is closed once cl and admin are set. The group's callbacks,
	// on the client's goroutines, may run before that: they wait on it.
	started chan struct{}

	// Crash, when set, is called at each crash point of a flush (the
	// runner's and the sink's); an error stops the runner there, as a
	// crash would. For tests.
	Crash func(point string) error

	mu    sync.Mutex // guards parts against the group's callbacks
	parts map[tp]*partition
	// buffered is the bytes of every buffer, being filled or written;
	// queued, of those handed to the flusher.
	buffered, queued atomic.Int64

	queue *queue
	// decodings are the sink's when it is a Decoder: two sets, one per
	// core each, for a window being added and the next being decoded
	// (addDecoded). polled is the records of a poll, in order.
	decodings [2][]Decoding
	polled    []*kgo.Record
	running   atomic.Bool
	// fatal is an injected crash; nothing is written after it.
	fatal atomic.Pointer[error]
}

type tp struct {
	topic     string
	partition int32
}

// New builds the runner of sink, called name (sink.<name> in the status
// API), reading through a Kafka client made from cc.
func New(name string, cfg Config, s Sink, env Env) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sink %s: %w", name, err)
	}
	m, err := newMetrics(env.Metrics, name)
	if err != nil {
		return nil, err
	}
	logger := env.Logger.With("component", "sink."+name)
	r := &Runner{Reporter: health.New("sink."+name, logger), cfg: cfg, sink: s, dlqTopic: env.DLQTopic, logger: logger,
		metrics: m, now: time.Now, parts: map[tp]*partition{}, queue: newQueue(), started: make(chan struct{})}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.DisableAutoCommit(),
		// Stages that write in transactions (the enricher) may abort:
		// what they aborted must not reach a sink.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Rebalances wait until a poll's records are handled, so a
		// partition is never revoked mid-add.
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(r.resume),
		kgo.OnPartitionsRevoked(r.drop),
		kgo.OnPartitionsLost(r.drop),
		// Fetches are a slice of the memory budget. Their limits count
		// compressed bytes, so very compressible data can inflate more.
		kgo.FetchMaxBytes(fetchBytes(int(cfg.MemoryLimit))),
		kgo.FetchMaxPartitionBytes(fetchBytes(int(cfg.MemoryLimit)) / 2),
		kgo.MaxConcurrentFetches(1),
		// Buffers copy what they keep of a record, then it is recycled.
		bus.RecyclePools(),
	}
	opts = append(opts, bus.FullerFetches()...)
	if env.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(env.InstanceID))
	}
	r.cl, err = bus.NewClient(env.Kafka, logger, opts...)
	if err != nil {
		return nil, err
	}
	r.admin = kadm.NewClient(r.cl)
	close(r.started)
	if d, ok := s.(Decoder); ok {
		for set := range r.decodings {
			for range runtime.GOMAXPROCS(0) {
				r.decodings[set] = append(r.decodings[set], d.NewDecoding())
			}
		}
	}
	r.SetDetails(r.details)
	return r, nil
}

// stopGrace bounds how long a stop waits for the write in flight.
const stopGrace = 30 * time.Second

// faultExpiry clears a fault not reported again for this long: longer than
// the longest backoff between retries.
const faultExpiry = time.Minute

// Groups is the sink's consumer group, for the status API's lag.
func (r *Runner) Groups() []string { return []string{r.cfg.Group} }

// fetchBytes sizes fetches from the memory budget. They stay small enough
// that the next fetch, on the client's goroutines, takes about as long as
// handling this one: 16 MiB fetches left the lake loader idle waiting (its
// benchmark ran 15% slower than with 4 MiB).
func fetchBytes(memory int) int32 {
	return int32(min(max(memory/16, 256<<10), 4<<20))
}

// Details is what the status API shows of the runner, and of the sink
// when it has details of its own.
type Details struct {
	Partitions    int   `json:"assigned_partitions"`
	BufferedBytes int64 `json:"buffered_bytes"`
	QueuedFlushes int   `json:"queued_flushes"`
	Sink          any   `json:"sink,omitempty"`
}

func (r *Runner) details() any {
	r.mu.Lock()
	n := len(r.parts)
	r.mu.Unlock()
	d := Details{Partitions: n, BufferedBytes: r.buffered.Load(), QueuedFlushes: r.queue.len()}
	if s, ok := r.sink.(interface{ Details() any }); ok {
		d.Sink = s.Details()
	}
	return d
}

// Run consumes until ctx is done. Buffered records that are not yet
// written are left for the next run to read again: nothing is committed
// that is not in the destination.
func (r *Runner) Run(ctx context.Context) error {
	if r.running.Swap(true) {
		return errors.New("sink: Run called twice")
	}
	flusherDone := make(chan struct{})
	go func() {
		defer close(flusherDone)
		r.flusher(ctx)
	}()
	defer func() {
		// Closing the client leaves the group, whose callbacks wait for
		// the flusher: it stops after.
		r.cl.Close()
		r.queue.close()
		<-flusherDone
	}()
	for {
		if err := r.failed(); err != nil {
			return err
		}
		if err := r.waitRoom(ctx); err != nil {
			return nil // stopped
		}
		pollCtx, cancel := context.WithTimeout(ctx, r.untilNextDeadline())
		fetches := r.cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			r.cl.AllowRebalance()
			return nil
		}
		var fetchErr error
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				fetchErr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
			}
		})
		if fetchErr != nil {
			// Polls go on while the broker is down, reporting it again; once
			// they stop reporting it, it is over, records or not.
			r.FaultFor("kafka", fetchErr, faultExpiry)
		} else if fetches.NumRecords() > 0 {
			r.Clear("kafka")
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				r.metrics.consumed.WithLabelValues(p.Topic).Add(float64(len(p.Records)))
			}
		})
		r.mu.Lock()
		if r.decodings[0] != nil {
			fetches.EachRecord(func(rec *kgo.Record) { r.polled = append(r.polled, rec) })
			r.addDecoded(r.polled)
			clear(r.polled)
			r.polled = r.polled[:0]
		} else {
			fetches.EachRecord(func(rec *kgo.Record) {
				r.add(rec, nil, 0)
				rec.Recycle()
			})
		}
		r.flushDue()
		r.mu.Unlock()
		r.cl.AllowRebalance()
	}
}

// untilNextDeadline is how long a poll may wait before a buffer's
// interval comes due.
func (r *Runner) untilNextDeadline() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	wait := time.Second
	for _, st := range r.parts {
		if st.rows > 0 {
			wait = min(wait, max(st.since.Add(r.cfg.FlushInterval).Sub(r.now()), time.Millisecond))
		}
	}
	return wait
}

// resume is called on assignment, before fetching: it starts each
// partition after the offset the destination says it holds.
func (r *Runner) resume(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	ends, err := r.endOffsets(ctx, offsets)
	if err != nil {
		r.FaultFor("kafka", err, faultExpiry)
		return nil, err
	}
	// The brokers answered for every partition: a fault of an earlier
	// join is over, though no record may come for a long while.
	r.Clear("kafka")
	for topic, parts := range offsets {
		for p := range parts {
			// The destination must show every range handed over for this
			// partition before its position is read.
			r.queue.wait(tp{topic, p})
			pos, err := r.sink.Resume(ctx, topic, p)
			if err != nil {
				// The group joins again, and this is called again.
				r.FaultFor("destination", fmt.Errorf("resume %s/%d: %w", topic, p, err), faultExpiry)
				return nil, err
			}
			if end, _ := ends.Lookup(topic, p); pos.Committed >= end.Offset {
				if pos, err = r.rebase(ctx, topic, p, pos, end.Offset); err != nil {
					return nil, err
				}
			}
			r.mu.Lock()
			if r.parts[tp{topic, p}] == nil {
				r.metrics.assigned.Inc()
			} else {
				r.release(r.parts[tp{topic, p}])
			}
			r.parts[tp{topic, p}] = r.newPartition(topic, p, pos)
			r.mu.Unlock()
			parts[p] = kgo.NewOffset().At(pos.Committed + 1)
			r.logger.Info("partition assigned", "topic", topic, "partition", p,
				"resume_at", pos.Committed+1, "pending", pos.Pending > pos.Committed)
		}
	}
	return offsets, nil
}

// endOffsets lists the end offsets of the partitions being assigned. A
// topic just made again may not answer at once (no leader yet): it asks
// again for a while, then fails, and the group joins again. Going on
// unchecked would skip the new topic's records.
func (r *Runner) endOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (kadm.ListedOffsets, error) {
	select {
	case <-r.started:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	adm := r.admin
	topics := slices.Collect(maps.Keys(offsets))
	backoff := retry.Backoff{Min: 50 * time.Millisecond, Max: time.Second}
	var err error
	for range 15 {
		var ends kadm.ListedOffsets
		if ends, err = adm.ListEndOffsets(ctx, topics...); err == nil {
			err = ends.Error()
		}
		for topic, parts := range offsets {
			for p := range parts {
				if _, ok := ends.Lookup(topic, p); !ok && err == nil {
					err = fmt.Errorf("%s/%d: no end offset in the answer", topic, p)
				}
			}
		}
		if err == nil {
			return ends, nil
		}
		if backoff.Wait(ctx, 0) != nil {
			break
		}
	}
	return nil, fmt.Errorf("list end offsets of %s: %w", strings.Join(topics, ", "), err)
}

// rebase handles a partition the destination holds past the topic's end:
// the topic was deleted and made again, and its new records reuse offsets
// the destination holds. A Rebaser takes them as a new epoch; any other
// sink faults, saying what happened, rather than skip them as held.
func (r *Runner) rebase(ctx context.Context, topic string, p int32, pos Position, end int64) (Position, error) {
	held := pos.Committed
	rb, ok := r.sink.(Rebaser)
	if !ok {
		err := fmt.Errorf("%s/%d ends at offset %d, but the destination holds it up to offset %d: the topic was deleted and made again, and this sink cannot tell its new records from those it holds; they are not loaded until the sink's record of the partition is removed (the search sink's: its document in the offsets index, see docs/search.md)",
			topic, p, end, held)
		r.FaultFor("source", err, 24*time.Hour)
		r.logger.Error("topic made again", "topic", topic, "partition", p, "err", err)
		return pos, nil
	}
	r.logger.Warn("the topic ends before the offsets the destination holds: it was deleted and made again; its records are taken from its start",
		"topic", topic, "partition", p, "end", end, "held", held)
	pos, err := rb.Rebase(ctx, topic, p)
	if err != nil {
		r.FaultFor("destination", fmt.Errorf("rebase %s/%d: %w", topic, p, err), faultExpiry)
		return pos, err
	}
	r.metrics.rebased.Inc()
	return pos, nil
}

// drop forgets revoked or lost partitions' buffers: their next owner reads
// them again from the destination's committed offsets. Ranges already
// handed over are written first, unless the destination fails them.
func (r *Runner) drop(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	var gone []tp
	r.mu.Lock()
	for topic, parts := range revoked {
		for _, p := range parts {
			k := tp{topic, p}
			gone = append(gone, k)
			if st := r.parts[k]; st != nil {
				r.release(st)
				r.metrics.assigned.Dec()
			}
			delete(r.parts, k)
		}
	}
	r.mu.Unlock()
	r.queue.revoke(gone)
	for _, k := range gone {
		r.queue.wait(k)
	}
}

// decodeWindow is how many records are decoded before they are added: it
// bounds the memory decoded records take (a poll holds tens of thousands
// when they compress well), and is large enough that starting the shares'
// goroutines costs nothing measurable.
const decodeWindow = 4096

// minShare is the fewest records worth a goroutine of their own.
const minShare = 256

// addDecoded buffers a poll's records, window by window: each window is
// decoded in shares, each on a goroutine of its own, while the window
// before it is added, so that adding, which is serial, overlaps decoding.
// Every goroutine it starts has ended when it returns.
func (r *Runner) addDecoded(recs []*kgo.Record) {
	if len(recs) == 0 {
		return // no window: nothing to start, nor to wait for
	}
	var decoded [2]sync.WaitGroup
	next := recs[:min(len(recs), decodeWindow)]
	size := r.decode(&decoded[0], r.decodings[0], next)
	for k := 0; len(next) > 0; k++ {
		window, share := next, size
		decoded[k%2].Wait()
		recs = recs[len(window):]
		next = recs[:min(len(recs), decodeWindow)]
		if len(next) > 0 {
			size = r.decode(&decoded[(k+1)%2], r.decodings[(k+1)%2], next)
		}
		set := r.decodings[k%2]
		for s := 0; s*share < len(window); s++ {
			r.addShare(window[s*share:min((s+1)*share, len(window))], set[s])
		}
		for _, rec := range window {
			rec.Recycle()
		}
	}
}

// addShare buffers a decoded share: a run of one partition's records
// that d buffered itself, whole, and the others one by one.
func (r *Runner) addShare(share []*kgo.Record, d Decoding) {
	sp, ok := d.(Splicer)
	if !ok {
		for i, rec := range share {
			r.add(rec, d, i)
		}
		return
	}
	for k := range sp.Runs() {
		from, to, ready := sp.Run(k)
		recs := share[from:to]
		st := r.parts[tp{recs[0].Topic, recs[0].Partition}]
		// A pending range must end exactly at its offset, records the
		// destination holds are skipped, and a range ends at exactly
		// FlushRows rows: runs that meet one of those go one by one.
		if !ready || st == nil || recs[0].Offset <= st.committed || st.forced >= 0 || st.buf.Rows()+len(recs) >= r.cfg.FlushRows {
			for i := from; i < to; i++ {
				r.add(share[i], d, i)
			}
			continue
		}
		grew := sp.Splice(st.buf, k)
		now := r.now()
		for _, rec := range recs {
			st.note(rec.Offset, 0, now)
		}
		st.bytes += grew
		r.buffered.Add(int64(grew))
		r.metrics.buffered.Add(float64(grew))
		if st.bytes >= int(r.cfg.FlushBytes) {
			r.flush(st)
		}
		r.shed()
	}
}

// decode starts decoding window in shares, one per decoding of set, each
// on a goroutine that wg waits for, and returns the size of a share.
func (r *Runner) decode(wg *sync.WaitGroup, set []Decoding, window []*kgo.Record) (share int) {
	shares := max(1, min(len(set), len(window)/minShare))
	share = (len(window) + shares - 1) / shares
	for s := range shares {
		part := window[min(s*share, len(window)):min((s+1)*share, len(window))]
		wg.Go(func() { set[s].Decode(part) })
	}
	return share
}

// add buffers one record, decoded by d as its i-th when d is set, flushing
// first or after when a pending range says so.
func (r *Runner) add(rec *kgo.Record, d Decoding, i int) {
	st := r.parts[tp{rec.Topic, rec.Partition}]
	if st == nil || rec.Offset <= st.committed {
		return // revoked, or already in the destination
	}
	if st.forced >= 0 && rec.Offset > st.forced && st.rows > 0 {
		// The pending range ends before this record, which was not in it.
		r.flush(st)
	}
	var grew int
	var err error
	if d != nil {
		grew, err = d.Add(st.buf, i)
	} else {
		grew, err = st.buf.Add(rec)
	}
	if err != nil {
		var rej *Reject
		if !errors.As(err, &rej) {
			rej = &Reject{Reason: event.ReasonInvalidJSON, Errors: []event.FieldError{{Message: err.Error()}}}
		}
		f := event.NewFailed(event.StageLoader, rej.Reason, rej.Errors, bus.Header(rec, event.HeaderRootID), rec.Value, r.now())
		dead := bus.DeadLetter(r.dlqTopic, f, rec, kgo.RecordHeader{Key: "sink", Value: []byte(r.Name())})
		st.rejected = append(st.rejected, dead)
		r.metrics.rejected.Inc()
		grew = len(dead.Value) + len(dead.Key)
	}
	st.note(rec.Offset, grew, r.now())
	r.buffered.Add(int64(grew))
	r.metrics.buffered.Add(float64(grew))
	switch {
	case st.forced >= 0 && rec.Offset >= st.forced:
		r.flush(st)
	case st.forced < 0 && (st.buf.Rows() >= r.cfg.FlushRows || st.bytes >= int(r.cfg.FlushBytes)):
		r.flush(st)
	}
	r.shed()
}

// flushDue flushes buffers whose interval has passed.
func (r *Runner) flushDue() {
	now := r.now()
	for _, st := range r.parts {
		if st.rows > 0 && st.forced < 0 && now.Sub(st.since) >= r.cfg.FlushInterval {
			r.flush(st)
		}
	}
}

// shed flushes the largest buffers while the bytes buffered exceed the
// memory limit and the buffers being filled hold half of it or more: the
// files are simply smaller. When it is the writes that hold the memory,
// flushing small buffers would not help; the runner waits for the writes
// instead (waitRoom).
func (r *Runner) shed() {
	limit := int64(r.cfg.MemoryLimit)
	for r.buffered.Load() > limit && r.buffered.Load()-r.queued.Load() > limit/2 {
		var largest *partition
		for _, st := range r.parts {
			if st.forced < 0 && st.rows > 0 && (largest == nil || st.bytes > largest.bytes) {
				largest = st
			}
		}
		if largest == nil {
			return // the rest is being written, or is a pending range
		}
		r.metrics.memoryFlushes.Inc()
		r.flush(largest)
	}
}

// waitRoom waits, without holding a poll, while the bytes buffered exceed
// the memory limit: the writes catch up (or the destination comes back)
// before more is read. It returns ctx's error when stopped.
func (r *Runner) waitRoom(ctx context.Context) error {
	for r.buffered.Load() > int64(r.cfg.MemoryLimit) {
		r.mu.Lock()
		r.shed()
		r.mu.Unlock()
		if r.queue.len() == 0 {
			// What is left are ranges being reloaded exactly, which end
			// only by reading on.
			return ctx.Err()
		}
		if err := r.queue.waitChange(ctx); err != nil {
			return err
		}
		if r.failed() != nil {
			return nil
		}
	}
	return ctx.Err()
}

// flush hands a partition's buffered range to the flusher and starts a new
// buffer.
func (r *Runner) flush(st *partition) {
	if st.rows == 0 {
		return
	}
	rng := &Range{Topic: st.topic, Partition: st.partition, First: st.first, Last: st.last, Committed: st.committed,
		Buffer: st.buf, Rows: st.rows, Bytes: st.bytes, Rejected: st.rejected, point: r.inject}
	st.reset(st.last, r.sink.NewBuffer(st.topic, st.partition))
	r.queued.Add(int64(rng.Bytes))
	r.queue.push(rng)
}

// release gives a partition's unflushed buffer back.
func (r *Runner) release(st *partition) {
	st.buf.Release()
	r.buffered.Add(-int64(st.bytes))
	r.metrics.buffered.Sub(float64(st.bytes))
	st.reset(st.committed, r.sink.NewBuffer(st.topic, st.partition))
}

// failed is the injected crash that stopped the flusher, if any.
func (r *Runner) failed() error {
	if err := r.fatal.Load(); err != nil {
		return *err
	}
	return nil
}

func (r *Runner) inject(point string) error {
	if r.Crash == nil {
		return nil
	}
	if err := r.Crash(point); err != nil {
		return fmt.Errorf("%w at %s: %w", ErrCrash, point, err)
	}
	return nil
}

// flusher writes the ranges handed over, in order, until the queue
// closes.
func (r *Runner) flusher(ctx context.Context) {
	for {
		j := r.queue.next()
		if j == nil {
			return // what is still queued was never written, nor committed
		}
		r.retry(ctx, j)
		j.rng.Buffer.Release()
		r.queued.Add(-int64(j.rng.Bytes))
		r.buffered.Add(-int64(j.rng.Bytes))
		r.metrics.buffered.Sub(float64(j.rng.Bytes))
		r.queue.done(j)
	}
}

// retry writes a range until it is written, the runner stops, or its
// partition is revoked after a failed attempt: a destination that fails is
// a fault to wait out.
func (r *Runner) retry(ctx context.Context, j *job) {
	var backoff retry.Backoff
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil || r.failed() != nil || attempt > 0 && j.revoked.Load() {
			return
		}
		// An attempt begun runs to its end through a stop: cut between
		// its dead letters and its commit, the range's next owner would
		// send them again.
		wctx, cancel := stop.Grace(ctx, stopGrace)
		err := r.write(wctx, j.rng)
		cancel()
		switch {
		case err == nil:
			if attempt > 0 {
				r.Clear("destination")
			}
			return
		case errors.Is(err, ErrCrash):
			r.fatal.CompareAndSwap(nil, &err)
			return
		case ctx.Err() != nil:
			return
		}
		r.metrics.writeFailures.Inc()
		// Retries report it again at least every backoff's bound; a fault
		// not reported for longer is over (its range moved to another
		// instance, say) even if no write came after.
		r.FaultFor("destination", err, faultExpiry)
		wait := backoff.Next()
		if attempt == 0 {
			wait = min(wait, 100*time.Millisecond)
		}
		if r.queue.sleep(ctx, j, wait) != nil {
			return
		}
	}
}

// write puts a range in the destination; see the package comment for why
// in this order.
func (r *Runner) write(ctx context.Context, rng *Range) error {
	start := r.now()
	if err := r.sink.Write(ctx, rng); err != nil {
		return err
	}
	if err := r.inject(PointWritten); err != nil {
		return err
	}
	if len(rng.Rejected) > 0 && !rng.deadLettered {
		// Before the commit, so that none is lost; once per range, so
		// that a retried commit does not send them again. A crash between
		// the two does: the runner's dead letters are at least once.
		if err := r.cl.ProduceSync(ctx, rng.Rejected...).FirstErr(); err != nil {
			return fmt.Errorf("dead letters of %s/%d: %w", rng.Topic, rng.Partition, err)
		}
		rng.deadLettered = true
	}
	if err := r.sink.Commit(ctx, rng); err != nil {
		return err
	}
	if err := r.inject(PointCommitted); err != nil {
		return err
	}
	// Kafka's offset is a courtesy for tools that watch lag; the
	// destination's commit is what the runner resumes from, so a failed
	// commit here is only logged.
	r.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{
		rng.Topic: {rng.Partition: {Epoch: -1, Offset: rng.Last + 1}},
	}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil && ctx.Err() == nil {
			r.logger.Debug("commit kafka offset", "topic", rng.Topic, "partition", rng.Partition, "err", err)
		}
	})
	r.Add(rng.Rows)
	r.metrics.flushSeconds.Observe(r.now().Sub(start).Seconds())
	r.logger.Debug("flushed", "topic", rng.Topic, "partition", rng.Partition, "first", rng.First, "last", rng.Last,
		"rows", rng.Rows, "took", r.now().Sub(start))
	return nil
}

// partition is the buffered, unflushed state of one topic-partition.
type partition struct {
	topic     string
	partition int32
	// committed is the last offset in the destination, or handed over.
	committed int64
	// forced is the last offset of a write that was pending when the
	// partition was assigned, or -1: the next flush must end exactly there.
	forced   int64
	buf      Buffer
	rejected []*kgo.Record
	first    int64
	last     int64
	rows     int
	bytes    int
	since    time.Time // when the first buffered record arrived
}

func (r *Runner) newPartition(topic string, p int32, pos Position) *partition {
	st := &partition{topic: topic, partition: p, committed: pos.Committed, forced: -1}
	if pos.Pending > pos.Committed {
		st.forced = pos.Pending
	}
	st.reset(pos.Committed, r.sink.NewBuffer(topic, p))
	return st
}

func (p *partition) note(offset int64, grew int, now time.Time) {
	if p.rows == 0 {
		p.first = offset
		p.since = now
	}
	p.last = offset
	p.rows++
	p.bytes += grew
}

// reset starts a new buffer after the range up to committed is handed over.
func (p *partition) reset(committed int64, buf Buffer) {
	if committed >= p.forced {
		p.forced = -1
	}
	p.committed = committed
	p.buf = buf
	p.rejected = nil
	p.rows, p.bytes = 0, 0
	p.first, p.last = -1, -1
}

// queue is the ranges handed to the flusher, in order.
type queue struct {
	mu     sync.Mutex
	change chan struct{} // closed and replaced on every change
	jobs   []*job        // queued, the first being written
	closed bool
}

type job struct {
	rng     *Range
	key     tp
	revoked atomic.Bool
	kick    chan struct{} // closed on revoke, to end a backoff early
}

func newQueue() *queue { return &queue{change: make(chan struct{})} }

func (q *queue) changed() {
	close(q.change)
	q.change = make(chan struct{})
}

func (q *queue) push(rng *Range) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.jobs = append(q.jobs, &job{rng: rng, key: tp{rng.Topic, rng.Partition}, kick: make(chan struct{})})
	q.changed()
}

// next waits for the first job, or returns nil once the queue is closed.
func (q *queue) next() *job {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil
		}
		if len(q.jobs) > 0 {
			j := q.jobs[0]
			q.mu.Unlock()
			return j
		}
		ch := q.change
		q.mu.Unlock()
		<-ch
	}
}

// done removes the first job, once written or given up.
func (q *queue) done(j *job) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.jobs) > 0 && q.jobs[0] == j {
		q.jobs = q.jobs[1:]
	}
	q.changed()
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.jobs)
}

func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.changed()
}

// revoke marks the jobs of partitions that moved away: one that fails is
// not tried again.
func (q *queue) revoke(parts []tp) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, j := range q.jobs {
		for _, k := range parts {
			if j.key == k && !j.revoked.Swap(true) {
				close(j.kick)
			}
		}
	}
}

// wait returns once no job of partition k is queued or being written.
func (q *queue) wait(k tp) {
	for {
		q.mu.Lock()
		busy := false
		for _, j := range q.jobs {
			busy = busy || j.key == k
		}
		ch := q.change
		closed := q.closed
		q.mu.Unlock()
		if !busy || closed {
			return
		}
		<-ch
	}
}

// waitChange waits for the queue to change, or ctx.
func (q *queue) waitChange(ctx context.Context) error {
	q.mu.Lock()
	ch := q.change
	q.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sleep waits d before j's next attempt, or less if j is revoked.
func (q *queue) sleep(ctx context.Context, j *job, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-j.kick:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type metrics struct {
	consumed      *prometheus.CounterVec
	assigned      prometheus.Gauge
	buffered      prometheus.Gauge
	memoryFlushes prometheus.Counter
	flushSeconds  prometheus.Histogram
	writeFailures prometheus.Counter
	rejected      prometheus.Counter
	rebased       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, name string) (*metrics, error) {
	labels := prometheus.Labels{"sink": name}
	m := &metrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_sink_records_consumed_total", Help: "Records read from Kafka, by topic.", ConstLabels: labels,
		}, []string{"topic"}),
		assigned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_sink_assigned_partitions", Help: "Partitions this sink consumes.", ConstLabels: labels,
		}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_sink_buffered_bytes", Help: "Approximate bytes of records buffered and not yet written.", ConstLabels: labels,
		}),
		memoryFlushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_memory_flushes_total", Help: "Flushes forced early by the memory limit.", ConstLabels: labels,
		}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_sink_flush_seconds", Help: "Time to write and commit a range.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		writeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_write_failures_total", Help: "Writes that failed and were retried (a full disk, a server down).", ConstLabels: labels,
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_rejected_total", Help: "Records the sink could not take, sent to the dead-letter topic.", ConstLabels: labels,
		}),
		rebased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_rebased_partitions_total", Help: "Partitions found deleted and made again, taken from their start as a new epoch.", ConstLabels: labels,
		}),
	}
	for _, c := range []prometheus.Collector{m.consumed, m.assigned, m.buffered, m.memoryFlushes, m.flushSeconds, m.writeFailures, m.rejected, m.rebased} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register sink metrics: %w", err)
		}
	}
	return m, nil
}
