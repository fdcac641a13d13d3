package aggregator

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/retry"
	"github.com/sluicehq/sluice/internal/stop"
	"github.com/sluicehq/sluice/internal/window"
)

// checkpoint is what a task keeps in the lake: its operator's state and
// the next offset of its partition to read. A task's checkpoints form a
// chain: a base, which holds the whole state, then links, each of which
// holds what changed since the one before (window.Operator.Changes). So a
// checkpoint costs what changed, not every open window and dedupe key.
type checkpoint struct {
	checkpointHead
	State window.State `json:"state"`
}

type checkpointHead struct {
	Aggregation string `json:"aggregation"`
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	Offset      int64  `json:"offset"`
	WrittenAt   string `json:"written_at"`
	// ID names the checkpoint. A link names its chain's Base, its place
	// in the chain (Link, from 1), and the checkpoint it follows (After):
	// a link that another instance wrote after the same one, as a zombie
	// that has lost the partition would, ends the chain where it is.
	ID    string `json:"id,omitempty"`
	Base  string `json:"base,omitempty"`
	Link  int    `json:"link,omitempty"`
	After string `json:"after,omitempty"`
}

// CheckpointPath is where the task of partition p keeps its checkpoint:
// its chain's base, with the links after it (linkPath).
func (c *Config) CheckpointPath(p int32) string {
	return fmt.Sprintf("_sluice/aggregator/%s/partition-%d.ckpt", c.Name, p)
}

// linkPath is where the nth link after base of partition p's chain goes:
// listed in order after the base's path and its id.
func (c *Config) linkPath(p int32, base string, n int) string {
	return fmt.Sprintf("%s.%s.%06d", c.CheckpointPath(p), base, n)
}

// chain is where a task's next checkpoint goes. Sizes are in windows and
// dedupe keys.
type chain struct {
	base      string // the base's id; none: the next checkpoint is a base
	links     int    // written after the base
	last      string // the id of the last link, or of the base
	baseSize  int
	linksSize int // of the links together
}

// maxLinks bounds the links after a base, and so the objects a restart
// reads before it resumes.
const maxLinks = 32

// whole reports whether the next checkpoint is to be a base, with changed
// windows and dedupe keys since the last: when the chain has none, is as
// long as it may be, or its links would hold more than its base, which a
// restart would read besides.
func (c *chain) whole(changed int) bool {
	return c.base == "" || c.links >= maxLinks || c.linksSize+changed > c.baseSize
}

// newCheckpointID names a checkpoint: apart from any another instance
// names.
func newCheckpointID() string {
	return strconv.FormatUint(rand.Uint64(), 36)
}

// jsonCheckpointPath is where versions before the binary form kept it: a
// task without a checkpoint in the binary form resumes from it.
func (c *Config) jsonCheckpointPath(p int32) string {
	return fmt.Sprintf("_sluice/aggregator/%s/partition-%d.json", c.Name, p)
}

// checkpointMagic begins a checkpoint: the head follows as JSON, its
// length a uvarint before it, then the state's binary form
// (window.State.AppendBinary).
const checkpointMagic = "SLUICE-AGGREGATOR-CHECKPOINT-1\n"

// encode writes cp in the binary form.
func encode(cp checkpoint) ([]byte, error) {
	head, err := json.Marshal(cp.checkpointHead)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 4096)
	b = binary.AppendUvarint(append(b, checkpointMagic...), uint64(len(head)))
	return cp.State.AppendBinary(append(b, head...))
}

// decode reads a checkpoint in the binary form, or the JSON of versions
// before it.
func decode(b []byte) (checkpoint, error) {
	var cp checkpoint
	rest, binaryForm := bytes.CutPrefix(b, []byte(checkpointMagic))
	if !binaryForm {
		err := json.Unmarshal(b, &cp)
		return cp, err
	}
	n, size := binary.Uvarint(rest)
	if size <= 0 || n > uint64(len(rest)-size) {
		return cp, errors.New("its head is cut short")
	}
	if err := json.Unmarshal(rest[size:size+int(n)], &cp.checkpointHead); err != nil {
		return cp, fmt.Errorf("head: %w", err)
	}
	return cp, cp.State.UnmarshalBinary(rest[size+int(n):])
}

// task aggregates one partition of the tasks' topic.
type task struct {
	partition      int32
	op             *window.Operator
	next           int64 // the next offset to read
	dirty          bool  // records taken since the last checkpoint
	dead           []*kgo.Record
	done           []window.Result // emitted by the watermark, not yet written
	took           int             // results the last write took (room)
	owed           bool            // windows written with no checkpoint after them
	lastCheckpoint time.Time
	chain          chain
	forced         int64
	// legacy is the JSON checkpoint the task resumed from, removed once
	// its successor is written, so that moving that away starts over.
	legacy string
	// Scratch for each record, and the outcomes of a poll's records:
	// the tasks count their records at once, each on a core.
	fields                     fields
	event                      window.Event
	counted, duplicates, lates int
}

// tasks are the tasks this instance has been given. The group's callbacks
// add and drop them from its own goroutine, hence the lock; the poll loop
// holds it while it works.
type tasks struct {
	*Aggregator
	topic  string
	inputs int32 // partitions of the input topic
	mu     sync.Mutex
	m      map[int32]*task
	// fatal is a checkpoint that cannot be used: retrying will not help,
	// so the poll loop stops with it.
	fatal error
	// writing is the write in flight, or one that failed, to be done
	// again before any other.
	writing *write
}

// aggregate runs the tasks of topic that the group gives this instance;
// the input has inputs partitions.
func (a *Aggregator) aggregate(ctx context.Context, topic string, inputs int32) error {
	ts := &tasks{Aggregator: a, topic: topic, inputs: inputs, m: map[int32]*task{}}
	// The callbacks run outside of ctx's reach (the client's own
	// goroutine, or Close); their writes get a bounded context of their own.
	bg := context.WithoutCancel(ctx)
	cl, err := bus.NewClient(a.cc, a.logger, append(a.groupOpts(a.cfg.Group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(ts.assigned),
		kgo.FetchMaxPartitionBytes(fetchPartitionBytes),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			cctx, cancel := context.WithTimeout(bg, stopGrace)
			defer cancel()
			ts.drop(cctx, lost[topic], true)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			ts.drop(bg, lost[topic], false)
		}),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	defer cl.AllowRebalance()
	defer ts.awaitWrite() // on every return: the write in flight is this loop's
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollRecords(pctx, pollRecords)
		cancel()
		if ctx.Err() != nil {
			// Keep what is done, so that a restart replays little.
			wctx, cancel := stop.Grace(ctx, stopGrace)
			defer cancel()
			ts.mu.Lock()
			defer ts.mu.Unlock()
			return ts.flush(wctx, slices.Collect(maps.Values(ts.m))...)
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				a.logger.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		// Records taken are seen through to their files and checkpoint,
		// even when a stop comes meanwhile.
		wctx, wcancel := stop.Grace(ctx, stopGrace)
		ts.mu.Lock()
		err := ts.fatal
		if err == nil {
			ts.addAll(fetches)
			err = ts.advance(wctx, ctx, cl, true)
		}
		ts.mu.Unlock()
		wcancel()
		cl.AllowRebalance()
		if ts.fatal != nil {
			return ts.fatal
		}
		if errors.Is(err, errCrash) {
			return err
		}
		// Writing windows and checkpoints failed (a full disk, a lake or
		// broker that is down): nothing more is read until they are
		// written. The windows wait in the tasks' state.
		for backoff := (retry.Backoff{}); err != nil; {
			a.Fault("output", err)
			if backoff.Wait(ctx, 0) != nil {
				return nil // the next run resumes from the last checkpoint
			}
			wctx, wcancel := stop.Grace(ctx, stopGrace)
			ts.mu.Lock()
			err = ts.advance(wctx, ctx, cl, false)
			ts.mu.Unlock()
			wcancel()
		}
		a.Clear("output")
	}
}

// pollRecords bounds the records taken at once.
const pollRecords = 10_000

// Completed windows are written as soon as the write before them is done:
// those that complete while a write is in flight wait for it, and go
// together in the next (as a database commits a group). Live, a window is
// written when it completes; on a backlog, one snapshot, one batch of
// results and one checkpoint cover many windows, written while the tasks
// count on. A task holds at most holdRows of them, the bound on its memory:
// past it the poll loop waits for the write. Every window still has its
// own file, so what a restart writes does not depend on how the windows
// were batched.
const holdRows = 200_000

// errCrash, in an error from the lake or Kafka, stops the aggregator as a
// crash would, rather than being waited out as a fault: tests inject it.
var errCrash = errors.New("injected crash")

// stopGrace bounds the work a stop waits for: the windows and checkpoints
// of records already taken.
const stopGrace = 30 * time.Second

// assigned makes a task of each partition given to this instance, from
// its checkpoint, and starts each partition where the checkpoint ends.
func (ts *tasks) assigned(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for p := range offsets[ts.topic] {
		t, err := ts.load(ctx, p)
		if errors.Is(err, errUnusable) {
			ts.fatal = err
			continue
		}
		if err != nil {
			return nil, err // the group retries the assignment
		}
		ts.m[p] = t
		offsets[ts.topic][p] = kgo.NewOffset().At(t.next)
	}
	ts.metrics.tasks.Set(float64(len(ts.m)))
	return offsets, nil
}

var errUnusable = errors.New("unusable checkpoint")

func (ts *tasks) load(ctx context.Context, p int32) (*task, error) {
	op, err := window.New(ts.cfg.windowConfig(), ts.now)
	if err != nil {
		return nil, err
	}
	t := &task{partition: p, op: op, lastCheckpoint: ts.now()}
	defer ts.expect(t)
	path := ts.cfg.CheckpointPath(p)
	b, err := ts.store.ReadObject(ctx, path)
	if errors.Is(err, lake.ErrNotExist) {
		path = ts.cfg.jsonCheckpointPath(p)
		b, err = ts.store.ReadObject(ctx, path)
	}
	switch {
	case errors.Is(err, lake.ErrNotExist):
		ts.logger.Info("task started", "partition", p)
		return t, nil
	case err != nil:
		return nil, fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	cp, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("%w %s (%v): move it away to start this partition over", errUnusable, path, err)
	}
	if cp.Topic != ts.topic {
		return nil, fmt.Errorf("%w %s: it is of topic %s, not %s; give the aggregation a new name to read another topic",
			errUnusable, path, cp.Topic, ts.topic)
	}
	if err := op.Restore(cp.State); err != nil {
		return nil, fmt.Errorf("%w %s: %v", errUnusable, path, err)
	}
	t.next = cp.Offset
	if path == ts.cfg.jsonCheckpointPath(p) {
		t.legacy = path
	}
	links := 0
	if cp.ID != "" {
		if t.next, links, err = ts.follow(ctx, p, op, cp); err != nil {
			return nil, err
		}
	}
	ts.logger.Info("task resumed from its checkpoint", "partition", p, "offset", t.next, "links", links,
		"watermark", op.Watermark(), "open_windows", op.Open())
	return t, nil
}

// follow applies to op, restored from the base, the links of its chain
// in order, and returns the offset and number of the last. A missing,
// unreadable or foreign link ends the chain: resuming from the link
// before it reads more input again, and the table skips the windows it
// holds. The task's next checkpoint is a base in any case, and starts a
// chain of its own.
func (ts *tasks) follow(ctx context.Context, p int32, op *window.Operator, base checkpoint) (int64, int, error) {
	objs, err := ts.store.List(ctx, ts.cfg.CheckpointPath(p)+"."+base.ID+".")
	if err != nil {
		return 0, 0, fmt.Errorf("list the checkpoints after %s: %w", ts.cfg.CheckpointPath(p), err)
	}
	offset, last := base.Offset, base.ID
	for i, o := range objs {
		n := i + 1
		if o.Path != ts.cfg.linkPath(p, base.ID, n) {
			ts.logger.Warn("checkpoint chain has a gap: resuming from the link before", "partition", p, "missing", ts.cfg.linkPath(p, base.ID, n))
			return offset, i, nil
		}
		b, err := ts.store.ReadObject(ctx, o.Path)
		if err != nil {
			return 0, 0, fmt.Errorf("read checkpoint %s: %w", o.Path, err)
		}
		cp, err := decode(b)
		if err == nil && (cp.Topic != ts.topic || cp.Partition != p || cp.Base != base.ID || cp.Link != n || cp.After != last) {
			err = fmt.Errorf("it is not link %d of the chain, after %s: another instance may have written it", n, last)
		}
		if err == nil {
			err = op.Apply(cp.State)
		}
		if err != nil {
			ts.logger.Warn("checkpoint chain ends at an unusable link: resuming from the link before", "partition", p, "link", o.Path, "err", err)
			return offset, i, nil
		}
		offset, last = cp.Offset, cp.ID
	}
	return offset, len(objs), nil
}

// expect names the partitions whose events reach t: every input
// partition, through the repartition topic, or its own.
func (ts *tasks) expect(t *task) {
	if ts.cfg.Keyed {
		t.op.Expect(t.partition)
		return
	}
	for p := range ts.inputs {
		t.op.Expect(p)
	}
}

// drop gives up tasks the group has moved elsewhere: revoked ones
// checkpoint first, so that their next owner starts where they stopped;
// lost ones may already have a new owner, and only stop.
func (ts *tasks) drop(ctx context.Context, parts []int32, revoked bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, p := range parts {
		t := ts.m[p]
		if t == nil {
			continue
		}
		if revoked {
			if err := ts.flush(ctx, t); err != nil {
				ts.logger.Warn("checkpoint of a revoked task failed; its next owner replays from the one before", "partition", p, "err", err)
			}
		} else if w := ts.writing; w != nil {
			<-w.done
		}
		if w := ts.writing; w != nil && w.err != nil {
			// Written again later, it could replace the next owner's
			// checkpoint with an older one.
			w.forget(p)
		}
		delete(ts.m, p)
	}
	ts.metrics.tasks.Set(float64(len(ts.m)))
}

// addAll counts a poll's records in their tasks. The tasks share nothing
// but the metrics, so each counts its records on a core of its own: on one,
// counting took as long as writing the windows on all of them.
func (ts *tasks) addAll(fetches kgo.Fetches) {
	byTask := map[*task][]*kgo.Record{}
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if t := ts.m[p.Partition]; t != nil && p.Topic == ts.topic {
			byTask[t] = append(byTask[t], p.Records...)
		}
	})
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for t, recs := range byTask {
		g.Go(func() error {
			for _, rec := range recs {
				ts.add(t, rec)
			}
			return nil
		})
	}
	_ = g.Wait() // no error: a record that cannot be read is a dead letter
	counted, duplicates, lates := 0, 0, 0
	for t := range byTask {
		counted, duplicates, lates = counted+t.counted, duplicates+t.duplicates, lates+t.lates
		t.counted, t.duplicates, t.lates = 0, 0, 0
	}
	ts.metrics.events.WithLabelValues("counted").Add(float64(counted))
	ts.metrics.events.WithLabelValues("duplicate").Add(float64(duplicates))
	ts.metrics.events.WithLabelValues("late").Add(float64(lates))
	ts.Add(counted)
}

// add counts one record in its task t, or makes it a dead letter.
func (ts *tasks) add(t *task, rec *kgo.Record) {
	if rec.Offset < t.next {
		return // taken before a rebalance
	}
	t.next, t.dirty = rec.Offset+1, true
	if len(rec.Headers) > 0 && rec.Headers[0].Key == headerWatermark {
		ts.observe(t, rec)
		return
	}
	src := rec.Partition
	if h := bus.Header(rec, headerSource); h != "" {
		if p, err := strconv.ParseInt(h, 10, 32); err == nil {
			src = int32(p)
		}
	}
	original, parsed := ts.readParsed(rec, &t.event)
	if parsed {
		t.event.Partition = src
	} else {
		if t.fields == nil {
			t.fields = make(fields, len(ts.slots))
		}
		f, at, dead := ts.read(rec, t.fields)
		if dead != nil {
			t.dead = append(t.dead, dead)
			return
		}
		if f == nil {
			return
		}
		ts.Aggregator.event(&t.event, f, at, src)
	}
	at := t.event.Time
	switch out, missed := t.op.Add(t.event); out {
	case window.Counted:
		t.counted++
	case window.Duplicate:
		t.duplicates++
	case window.Late:
		t.lates++
		input := rec // as the input had it
		if parsed {
			input = &kgo.Record{Key: rec.Key, Value: original, Headers: slices.DeleteFunc(slices.Clone(rec.Headers),
				func(h kgo.RecordHeader) bool { return h.Key == headerParsed })}
		}
		t.dead = append(t.dead, ts.deadLetter(input, ReasonLateEvent, ts.cfg.Time.Fields[0], fmt.Sprintf(
			"event time %s is behind the watermark %s (delay %v): window [%s, %s) was already emitted",
			at.Format(time.RFC3339), t.op.Watermark().Format(time.RFC3339), ts.cfg.Window.Delay,
			missed.Start.Format(time.RFC3339), missed.End.Format(time.RFC3339))))
	}
	t.done = t.op.AdvanceTo(t.room())
}

// room is t.done, made room in for as many results as the last write
// took while it is empty: on a backlog, where a write takes many
// emissions', growing it an emission at a time copied it over and over.
func (t *task) room() []window.Result {
	if t.done == nil && t.took > 0 {
		t.done = make([]window.Result, 0, t.took)
	}
	return t.done
}

// observe takes an input partition's broadcast watermark.
func (ts *tasks) observe(t *task, rec *kgo.Record) {
	ns, err := strconv.ParseInt(string(rec.Headers[0].Value), 10, 64)
	src, err2 := strconv.ParseInt(bus.Header(rec, headerSource), 10, 32)
	if err != nil || err2 != nil {
		return // not ours to read: skipped, as an unknown record would be
	}
	t.op.Observe(int32(src), time.Unix(0, ns))
	t.done = t.op.AdvanceTo(t.room())
}

// due reports whether t is to write its completed windows and checkpoint
// now: its checkpoint is due (checkpointDue) or it holds completed
// windows, and neither need wait for a write in flight (writing false),
// or can wait no longer (holdRows of them). A due checkpoint waits too:
// waiting for the write there stopped the count for as long as the write
// took, and the checkpoint goes with the next write, a moment later.
func (t *task) due(now time.Time, writing bool, interval time.Duration) bool {
	if writing && len(t.done) < holdRows {
		return false
	}
	return t.checkpointDue(now, interval) || len(t.done) > 0
}

// checkpointDue reports whether t's checkpoint is due now: its interval
// has passed with records taken, or checkpointGap has since windows were
// written (or are to be) with none after them.
func (t *task) checkpointDue(now time.Time, interval time.Duration) bool {
	since := now.Sub(t.lastCheckpoint)
	return t.dirty && (since >= interval || ((t.owed || len(t.done) > 0) && since >= checkpointGap))
}

// advance moves every task's watermark; windows it completes are written,
// then the task's checkpoint, unless hold lets them wait for the write in
// flight. Without any, the checkpoint waits for its interval. What is due
// is written in the background while the poll loop reads on (see write),
// to end stopGrace after run does; a write that failed is done again
// first, before anything else is.
func (ts *tasks) advance(ctx, run context.Context, cl *kgo.Client, hold bool) error {
	open, wm := 0, int64(math.MaxInt64)
	var due []*task
	now := ts.now()
	writing := hold && ts.writing != nil && !ts.writing.finished()
	for _, t := range ts.m {
		t.done = t.op.AdvanceTo(t.room())
		open += t.op.Open()
		if w := t.op.Watermark(); !w.IsZero() {
			wm = min(wm, w.UnixNano())
			ts.metrics.taskWatermark.WithLabelValues(strconv.Itoa(int(t.partition))).Set(float64(w.UnixNano()) / 1e9)
		}
		if f := t.op.Forced(); f > t.forced {
			ts.metrics.forced.Add(float64(f - t.forced))
			ts.logger.Warn("state limit reached: windows written before the watermark passed them; their late events go to the dead-letter topic",
				"partition", t.partition, "window_groups", f-t.forced, "limit", ts.cfg.MaxOpenWindows)
			t.forced = f
		}
		if t.due(now, writing, ts.cfg.CheckpointInterval) {
			due = append(due, t)
		}
	}
	ts.metrics.openWindows.Set(float64(open))
	if wm != math.MaxInt64 {
		ts.metrics.watermark.Set(float64(wm) / 1e9)
	}
	if len(due) == 0 && (ts.writing == nil || !ts.writing.finished()) {
		return nil
	}
	if err := ts.settle(ctx, cl); err != nil {
		return err
	}
	if len(due) > 0 {
		ts.writing = ts.take(due, false)
		ts.writing.start(run, ts)
	}
	return nil
}

// write is what a flush writes, taken from its tasks at once: their
// completed windows, their dead letters, and checkpoints of their state as
// it was then. The poll loop counts the next records meanwhile, on
// another core: counting and writing took about as long as each other,
// one after the other. One write is in flight at a time, and the next
// waits for it, so that files and checkpoints go in the order taken.
type write struct {
	batches     []taskResults
	dead        []*kgo.Record
	checkpoints []taskCheckpoint
	commit      map[int32]kgo.EpochOffset // the group's offsets, for lag monitors
	done        chan struct{}             // closed when run returns
	err         error                     // run's, once done is closed
}

// taskCheckpoint is a task's checkpoint as taken, the checkpoint of an
// earlier version that it replaces, and whether links may be left before
// it (a base's: to remove once it is written).
type taskCheckpoint struct {
	cp     checkpoint
	legacy string
	prune  bool
}

// take moves what the tasks have to write into a write. Its checkpoints
// are of the tasks' state now, which no longer holds the windows it
// writes: of every task with records taken when final (a stop, a
// rebalance), else of those whose checkpoint is due (checkpointDue).
func (ts *tasks) take(tasks []*task, final bool) *write {
	w := &write{commit: map[int32]kgo.EpochOffset{}}
	now := ts.now()
	for _, t := range tasks {
		due := t.dirty && (final || t.checkpointDue(now, ts.cfg.CheckpointInterval))
		if len(t.done) > 0 {
			w.batches = append(w.batches, taskResults{t.partition, t.done})
			t.owed = !due
			t.took = len(t.done)
		}
		w.dead = append(w.dead, t.dead...)
		t.done, t.dead = nil, nil
		if !due {
			continue
		}
		cp := checkpoint{checkpointHead: checkpointHead{Aggregation: ts.cfg.Name, Topic: ts.topic,
			Partition: t.partition, Offset: t.next, WrittenAt: now.UTC().Format(time.RFC3339Nano), ID: newCheckpointID()}}
		prune := false
		if c := &t.chain; c.whole(t.op.Changed()) {
			// Links before it are the last chain's, or a run's before
			// the task was loaded.
			prune = c.base == "" || c.links > 0
			cp.State = t.op.Snapshot()
			*c = chain{base: cp.ID, last: cp.ID, baseSize: len(cp.State.Windows) + len(cp.State.Seen)}
		} else {
			cp.State = t.op.Changes()
			c.links++
			cp.Base, cp.Link, cp.After = c.base, c.links, c.last
			c.last = cp.ID
			c.linksSize += len(cp.State.Windows) + len(cp.State.Seen)
		}
		w.checkpoints = append(w.checkpoints, taskCheckpoint{cp, t.legacy, prune})
		w.commit[t.partition] = kgo.EpochOffset{Epoch: -1, Offset: t.next}
		t.legacy, t.dirty, t.owed, t.lastCheckpoint = "", false, false, now
	}
	return w
}

// checkpointGap is the least time between checkpoints of a task that
// writes windows: its whole state is copied and encoded each time, which
// on a backlog, with a write every few hundred milliseconds, cost more
// than the windows. A window written without one is correct: a restart
// from the checkpoint before emits it again, and the table skips it.
const checkpointGap = time.Second

// start runs w in the background, under a context of its own that a stop
// of ctx leaves stopGrace to finish.
func (w *write) start(ctx context.Context, ts *tasks) {
	w.done = make(chan struct{})
	wctx, cancel := stop.Grace(ctx, stopGrace)
	go func() {
		defer close(w.done)
		defer cancel()
		w.err = w.run(wctx, ts)
	}()
}

// forget removes task p's windows and checkpoint from a write that
// failed, once the task has moved to another owner: that owner replays
// them from the task's last checkpoint. Its dead letters are sent anyway,
// at least once as ever.
func (w *write) forget(p int32) {
	w.batches = slices.DeleteFunc(w.batches, func(b taskResults) bool { return b.task == p })
	w.checkpoints = slices.DeleteFunc(w.checkpoints, func(c taskCheckpoint) bool { return c.cp.Partition == p })
	delete(w.commit, p)
}

// awaitWrite waits for the write in flight, if any, to end.
func (ts *tasks) awaitWrite() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if w := ts.writing; w != nil {
		<-w.done
	}
}

func (w *write) finished() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// run writes the windows to the table and the results topic, then the
// dead letters, then the checkpoints: a checkpoint never covers records
// whose windows or dead letters are not written. Run again after a
// failure, it writes what is missing: the table skips windows it holds.
func (w *write) run(ctx context.Context, ts *tasks) error {
	if len(w.batches) > 0 {
		if err := ts.emit(ctx, w.batches); err != nil {
			return err
		}
		w.batches = nil
	}
	if err := ts.produce(ctx, w.dead); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	w.dead = nil
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range w.checkpoints {
		c := &w.checkpoints[i]
		g.Go(func() error { return ts.checkpoint(gctx, c) })
	}
	return g.Wait()
}

// settle waits for the write in flight, if any, and runs it again if it
// failed; once it is done, the group's offsets follow its checkpoints
// (when cl is not nil).
func (ts *tasks) settle(ctx context.Context, cl *kgo.Client) error {
	w := ts.writing
	if w == nil {
		return nil
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if w.err != nil {
		if w.err = w.run(ctx, ts); w.err != nil {
			return w.err
		}
	}
	ts.writing = nil
	if cl != nil && len(w.commit) > 0 {
		// Synchronously, while the rebalance waits: never for a partition
		// that has moved on.
		cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{ts.topic: w.commit}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
			if err != nil && ctx.Err() == nil {
				ts.logger.Debug("commit of the group's offsets failed; the checkpoints hold the truth", "err", err)
			}
		})
	}
	return nil
}

// flush writes the tasks' completed windows, dead letters and checkpoints,
// after the write in flight, and returns when they are written.
func (ts *tasks) flush(ctx context.Context, tasks ...*task) error {
	if err := ts.settle(ctx, nil); err != nil {
		return err
	}
	ts.writing = ts.take(tasks, true)
	ts.writing.done = make(chan struct{})
	close(ts.writing.done)
	ts.writing.err = ts.writing.run(ctx, ts)
	if err := ts.writing.err; err != nil {
		return err // kept, to be written again
	}
	ts.writing = nil
	return nil
}

// checkpoint writes a task's checkpoint, once its windows are written and
// its dead letters durable.
func (ts *tasks) checkpoint(ctx context.Context, c *taskCheckpoint) error {
	b, err := encode(c.cp)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	p := c.cp.Partition
	if c.cp.Base != "" {
		if err := lake.PutBytes(ctx, ts.store, ts.cfg.linkPath(p, c.cp.Base, c.cp.Link), b); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		ts.metrics.checkpoints.WithLabelValues("changes").Inc()
		ts.metrics.checkpointBytes.WithLabelValues("changes").Add(float64(len(b)))
		return nil
	}
	if err := lake.PutBytes(ctx, ts.store, ts.cfg.CheckpointPath(p), b); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if c.prune {
		// The links of the chains before are of no use once the base is
		// written; a crash before they are removed leaves them to the
		// first base after the restart.
		links, err := ts.store.List(ctx, ts.cfg.CheckpointPath(p)+".")
		if err != nil {
			return fmt.Errorf("list the checkpoints before %s: %w", ts.cfg.CheckpointPath(p), err)
		}
		for _, o := range links {
			if strings.HasPrefix(o.Path, ts.cfg.CheckpointPath(p)+"."+c.cp.ID+".") {
				continue
			}
			if err := ts.store.Delete(ctx, o.Path); err != nil {
				return fmt.Errorf("remove the checkpoint %s, before %s: %w", o.Path, ts.cfg.CheckpointPath(p), err)
			}
		}
		c.prune = false
	}
	if c.legacy != "" {
		if err := ts.store.Delete(ctx, c.legacy); err != nil {
			return fmt.Errorf("remove the checkpoint %s, now in %s: %w", c.legacy, ts.cfg.CheckpointPath(c.cp.Partition), err)
		}
		c.legacy = ""
	}
	ts.metrics.checkpoints.WithLabelValues("whole").Inc()
	ts.metrics.checkpointBytes.WithLabelValues("whole").Add(float64(len(b)))
	return nil
}

// emit writes the tasks' completed windows to the table, then the results
// to the output topic.
func (ts *tasks) emit(ctx context.Context, batches []taskResults) error {
	recs, err := ts.writeWindows(ctx, batches)
	if err != nil {
		return err
	}
	for _, b := range batches {
		for i := 0; i < len(b.results); i = windowEnd(b.results, i) {
			ts.metrics.windows.Inc()
		}
	}
	return ts.produce(ctx, recs)
}
