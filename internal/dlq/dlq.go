// Package dlq finds the dead letters of the dead-letter topic and sends
// them back to the raw topic, as they were or fixed, so that the pipeline
// takes them again once what failed them is mended.
//
// A dead letter is replayed at most once, whoever replays it and however
// often: each replay goes in Kafka transactions of one fixed transactional
// id that write, together, the events to the raw topic and a record of
// which dead letters they came from (by partition and offset) to the
// replay log topic. Before choosing what to send, a replay takes the
// transactional id, which fences any replay still running and aborts its
// open transaction, then reads the whole log: what a committed transaction
// sent is skipped, what an interrupted one was sending was aborted with it
// and is sent again. The log is also the history of replays: who, when,
// which filter, and which dead letters.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/row"
)

// TransactionalID is the one transactional id of every replay, so that a
// replay fences the one before it.
const TransactionalID = "sluice-dlq-replay"

// HeaderReplayOf names, on a replayed event, the dead letter it came from:
// "<dlq topic>/<partition>/<offset>".
const HeaderReplayOf = "replay_of"

// Topics are the topics a replay reads and writes.
type Topics struct {
	DLQ, Raw, Log string
	// Replication is the log topic's replication factor, when a replay
	// makes it: -1 (or 0) for the cluster's default.
	Replication int16
}

// Coord is where a dead letter is in the dead-letter topic.
type Coord struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

func (c Coord) String() string { return fmt.Sprintf("%d/%d", c.Partition, c.Offset) }

// ParseCoord reads a Coord as String writes it.
func ParseCoord(s string) (Coord, error) {
	var c Coord
	if _, err := fmt.Sscanf(s, "%d/%d", &c.Partition, &c.Offset); err != nil || c.String() != s || c.Partition < 0 || c.Offset < 0 {
		return Coord{}, fmt.Errorf("dead letter %q: want PARTITION/OFFSET, such as 0/42", s)
	}
	return c, nil
}

// Filter selects dead letters; its zero value selects every one.
type Filter struct {
	Stage  string `json:"stage,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Since and Until bound when the dead letter was written (its record's
	// time), [Since, Until).
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
}

// ParseWhen reads a filter's time: a duration back from now (1h), or a
// time as row.ParseTime reads one (2026-12-01T10:00:00Z, 2026-12-01); ""
// is the zero time, no bound.
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if t, ok := row.ParseTime(s); ok {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want a time (2026-12-01T10:00:00Z, 2026-12-01) or a duration back from now (1h)", s)
}

func (f Filter) match(dl *DeadLetter) bool {
	return (f.Stage == "" || f.Stage == dl.Stage) && (f.Reason == "" || f.Reason == dl.Reason) &&
		(f.Until.IsZero() || dl.Time.Before(f.Until)) && !dl.Time.Before(f.Since)
}

// DeadLetter is a failed-event record, where it is in the topic, and the
// replay that sent it back, if one did.
type DeadLetter struct {
	Coord
	Time time.Time `json:"time"`
	event.Failed
	ReplayedIn string `json:"replayed_in,omitempty"`
}

// Replayer reads the dead letters and replays them.
type Replayer struct {
	cc     bus.ClientConfig
	topics Topics
	logger *slog.Logger
	now    func() time.Time
}

// New makes a replayer of the dead letters of topics.DLQ.
func New(cc bus.ClientConfig, topics Topics, logger *slog.Logger) *Replayer {
	if topics.Replication == 0 {
		topics.Replication = -1
	}
	return &Replayer{cc: cc, topics: topics, logger: logger, now: time.Now}
}

// Scan calls fn with each dead letter f selects, by partition and offset,
// marked with the replay that sent it back; fn returns false to stop. A
// record of the topic that is not a failed event is skipped.
func (r *Replayer) Scan(ctx context.Context, f Filter, fn func(*DeadLetter) bool) error {
	return r.ScanAfter(ctx, f, nil, fn)
}

// ScanAfter is Scan from just after a dead letter, when after is set: the
// next page of a listing.
func (r *Replayer) ScanAfter(ctx context.Context, f Filter, after *Coord, fn func(*DeadLetter) bool) error {
	replayed, err := r.replayed(ctx)
	if err != nil {
		return err
	}
	return r.scan(ctx, f, after, replayed, fn)
}

var errStop = errors.New("stop")

func (r *Replayer) scan(ctx context.Context, f Filter, after *Coord, replayed map[Coord]string, fn func(*DeadLetter) bool) error {
	spans, err := r.spans(ctx, r.topics.DLQ, f.Since)
	if err != nil {
		return err
	}
	if after != nil {
		for p, s := range spans {
			switch {
			case p < after.Partition:
				delete(spans, p)
			case p == after.Partition:
				s.Start = max(s.Start, after.Offset+1)
				spans[p] = s
			}
		}
	}
	// Partitions are read one after another, so that fn sees them in order.
	parts := make([]int32, 0, len(spans))
	for p := range spans {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	for _, p := range parts {
		one := map[string]map[int32]bus.Span{r.topics.DLQ: {p: spans[p]}}
		err := bus.ReadSpans(ctx, r.cc, one, func(rec *kgo.Record) error {
			dl, ok := deadLetterOf(rec, replayed)
			if !ok || !f.match(dl) {
				return nil
			}
			if !fn(dl) {
				return errStop
			}
			return nil
		})
		if errors.Is(err, errStop) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read dead letters of %s: %w", r.topics.DLQ, err)
		}
	}
	return nil
}

// Get finds one dead letter.
func (r *Replayer) Get(ctx context.Context, c Coord) (*DeadLetter, error) {
	replayed, err := r.replayed(ctx)
	if err != nil {
		return nil, err
	}
	return r.get(ctx, c, replayed)
}

func (r *Replayer) get(ctx context.Context, c Coord, replayed map[Coord]string) (*DeadLetter, error) {
	var out *DeadLetter
	one := map[string]map[int32]bus.Span{r.topics.DLQ: {c.Partition: {Start: c.Offset, End: c.Offset + 1}}}
	err := bus.ReadSpans(ctx, r.cc, one, func(rec *kgo.Record) error {
		if dl, ok := deadLetterOf(rec, replayed); ok {
			out = dl
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read dead letter %s: %w", c, err)
	}
	if out == nil {
		return nil, fmt.Errorf("%w: %s of %s", ErrNotFound, c, r.topics.DLQ)
	}
	return out, nil
}

// deadLetterOf reads a record of the dead-letter topic, marked with the
// replay that sent it back; ok is false for a record that is not a failed
// event.
func deadLetterOf(rec *kgo.Record, replayed map[Coord]string) (dl *DeadLetter, ok bool) {
	dl = &DeadLetter{Coord: Coord{rec.Partition, rec.Offset}, Time: rec.Timestamp.UTC()}
	if json.Unmarshal(rec.Value, &dl.Failed) != nil || dl.Stage == "" {
		return nil, false
	}
	dl.ReplayedIn = replayed[dl.Coord]
	return dl, true
}

// ErrNotFound is returned for a dead letter that is not in the topic.
var ErrNotFound = errors.New("no such dead letter")

// spans are the offsets of topic's partitions to read: from the first
// record written at or after since, to the last stable offset.
func (r *Replayer) spans(ctx context.Context, topic string, since time.Time) (map[int32]bus.Span, error) {
	cl, err := bus.NewClient(r.cc, r.logger)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	starts, err := adm.ListStartOffsets(lctx, topic)
	if err == nil && !since.IsZero() {
		starts, err = adm.ListOffsetsAfterMilli(lctx, since.UnixMilli(), topic)
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListCommittedOffsets(lctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		if topic == r.topics.Log && errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, nil // no replay yet
		}
		return nil, fmt.Errorf("topic %s: %w (see 'sluice topics')", topic, err)
	}
	out := map[int32]bus.Span{}
	ends.Each(func(e kadm.ListedOffset) {
		s, _ := starts.Lookup(topic, e.Partition)
		// After the last record, ListOffsetsAfterMilli answers -1.
		if s.Offset >= 0 && s.Offset < e.Offset {
			out[e.Partition] = bus.Span{Start: s.Offset, End: e.Offset}
		}
	})
	return out, nil
}

// Replay is one replay as the log keeps it: each of its transactions is
// one record, with the dead letters it sent.
type Replay struct {
	ID          string    `json:"replay_id"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
	Filter      *Filter   `json:"filter,omitempty"`
	DeadLetters []Sent    `json:"dead_letters"`
}

// Sent is a dead letter a replay sent, and whether it was fixed first.
type Sent struct {
	Coord
	Fixed bool `json:"fixed,omitempty"`
}

// Replays lists the replays of the log, oldest first, each with every
// dead letter it sent.
func (r *Replayer) Replays(ctx context.Context) ([]Replay, error) {
	var out []Replay
	at := map[string]int{} // replay id → its place in out
	err := r.readLog(ctx, func(rp Replay) {
		if i, ok := at[rp.ID]; ok {
			out[i].DeadLetters = append(out[i].DeadLetters, rp.DeadLetters...)
			return
		}
		at[rp.ID] = len(out)
		out = append(out, rp)
	})
	return out, err
}

// replayed maps every dead letter the log says was sent to its replay.
func (r *Replayer) replayed(ctx context.Context) (map[Coord]string, error) {
	out := map[Coord]string{}
	err := r.readLog(ctx, func(rp Replay) {
		for _, s := range rp.DeadLetters {
			out[s.Coord] = rp.ID
		}
	})
	return out, err
}

func (r *Replayer) readLog(ctx context.Context, fn func(Replay)) error {
	spans, err := r.spans(ctx, r.topics.Log, time.Time{})
	if err != nil {
		return err
	}
	err = bus.ReadSpans(ctx, r.cc, map[string]map[int32]bus.Span{r.topics.Log: spans}, func(rec *kgo.Record) error {
		var rp Replay
		if err := json.Unmarshal(rec.Value, &rp); err != nil {
			return fmt.Errorf("record %d/%d: %w", rec.Partition, rec.Offset, err)
		}
		fn(rp)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the replay log %s: %w", r.topics.Log, err)
	}
	return nil
}

// Options are how a replay runs.
type Options struct {
	// By says who replays, for the log.
	By string
	// DryRun finds what would be sent, and sends nothing.
	DryRun bool
	// Fixed replaces the originals of these dead letters.
	Fixed map[Coord][]byte
	// Batch is how many dead letters a transaction sends; 500 if 0.
	Batch int
	// Progress, if set, is told after each transaction how many of the
	// dead letters to send are sent.
	Progress func(sent, total int)
}

// Report says what a replay found and did.
type Report struct {
	ID string `json:"replay_id,omitempty"`
	// Matched counts the dead letters the filter selects.
	Matched int `json:"matched"`
	// AlreadyReplayed counts those an earlier replay sent.
	AlreadyReplayed int `json:"already_replayed"`
	// Replayed counts those sent now, or that would be, in a dry run.
	Replayed int  `json:"replayed"`
	DryRun   bool `json:"dry_run,omitempty"`
	// Unreplayable are those whose original is not a valid event: they
	// need fixing first.
	Unreplayable []Refused `json:"unreplayable,omitempty"`
}

// Refused is a dead letter that cannot be replayed, and why.
type Refused struct {
	Coord
	Reason string `json:"reason"`
}

// Replay sends back the dead letters f selects that no replay sent yet.
func (r *Replayer) Replay(ctx context.Context, f Filter, opts Options) (Report, error) {
	return r.replay(ctx, &f, nil, opts)
}

// ReplayOne sends back one dead letter, with opts.Fixed's original for it
// if there is one. It fails with ErrAlreadyReplayed if a replay sent it.
func (r *Replayer) ReplayOne(ctx context.Context, c Coord, opts Options) (Report, error) {
	return r.replay(ctx, nil, &c, opts)
}

// ErrAlreadyReplayed is returned when the one dead letter asked for was
// sent back before.
var ErrAlreadyReplayed = errors.New("already replayed")

func (r *Replayer) replay(ctx context.Context, f *Filter, one *Coord, opts Options) (Report, error) {
	rep := Report{DryRun: opts.DryRun}
	var cl *kgo.Client
	if !opts.DryRun {
		var err error
		cl, err = bus.NewClient(r.cc, r.logger, kgo.TransactionalID(TransactionalID),
			kgo.TransactionTimeout(time.Minute), kgo.RequiredAcks(kgo.AllISRAcks()))
		if err != nil {
			return rep, err
		}
		defer cl.Close()
		if err := bus.EnsureTopics(ctx, cl, 1, r.topics.Replication, r.topics.Log); err != nil {
			return rep, err
		}
		// Taking the id fences an earlier replay, so the log read below
		// holds everything it committed.
		if _, _, err := cl.ProducerID(ctx); err != nil {
			return rep, fmt.Errorf("take the replay's transactional id: %w (is Kafka reachable, and is %s allowed to write transactionally?)", err, TransactionalID)
		}
	}
	replayed, err := r.replayed(ctx)
	if err != nil {
		return rep, err
	}
	var todo []outgoing
	now := r.now()
	collect := func(dl *DeadLetter) bool {
		rep.Matched++
		if dl.ReplayedIn != "" {
			rep.AlreadyReplayed++
			return true
		}
		out, err := r.outgoing(dl, opts.Fixed, now)
		if err != nil {
			rep.Unreplayable = append(rep.Unreplayable, Refused{Coord: dl.Coord, Reason: err.Error()})
			return true
		}
		todo = append(todo, out)
		return true
	}
	if one != nil {
		dl, err := r.get(ctx, *one, replayed)
		if err != nil {
			return rep, err
		}
		if dl.ReplayedIn != "" {
			return rep, fmt.Errorf("dead letter %s: %w in replay %s", dl.Coord, ErrAlreadyReplayed, dl.ReplayedIn)
		}
		collect(dl)
		if len(rep.Unreplayable) > 0 {
			return rep, fmt.Errorf("dead letter %s: %s", dl.Coord, rep.Unreplayable[0].Reason)
		}
	} else if err := r.scan(ctx, *f, nil, replayed, collect); err != nil {
		return rep, err
	}
	if opts.DryRun || len(todo) == 0 {
		rep.Replayed = len(todo)
		return rep, nil
	}
	id, err := event.AppendRootID(nil)
	if err != nil {
		return rep, err
	}
	rep.ID = string(id)
	batch := opts.Batch
	if batch <= 0 {
		batch = 500
	}
	for len(todo) > 0 {
		n := min(batch, len(todo))
		if err := r.send(ctx, cl, rep.ID, f, opts, todo[:n]); err != nil {
			return rep, err
		}
		todo = todo[n:]
		rep.Replayed += n
		if opts.Progress != nil {
			opts.Progress(rep.Replayed, rep.Replayed+len(todo))
		}
	}
	r.logger.Info("replayed dead letters", "replay_id", rep.ID, "by", opts.By, "replayed", rep.Replayed,
		"already_replayed", rep.AlreadyReplayed, "unreplayable", len(rep.Unreplayable))
	return rep, nil
}

// outgoing is a dead letter to send: its event's record for the raw
// topic, and its entry in the log.
type outgoing struct {
	rec  *kgo.Record
	sent Sent
}

// outgoing makes the record of dl's original, or of its fix in fixed.
func (r *Replayer) outgoing(dl *DeadLetter, fixed map[Coord][]byte, now time.Time) (outgoing, error) {
	original, isFixed := fixed[dl.Coord]
	if !isFixed {
		original = dl.Original
	}
	rec, err := rawEvent(dl, original, now)
	if err != nil {
		return outgoing{}, err
	}
	rec.Topic = r.topics.Raw
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderReplayOf, Value: []byte(r.topics.DLQ + "/" + dl.Coord.String())})
	return outgoing{rec: rec, sent: Sent{Coord: dl.Coord, Fixed: isFixed}}, nil
}

// send writes one transaction: the events of todo to the raw topic and
// their record to the log, all or none.
func (r *Replayer) send(ctx context.Context, cl *kgo.Client, id string, f *Filter, opts Options, todo []outgoing) (err error) {
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("begin a replay transaction: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		// A fresh context: the replay's may be what ended it.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		aerr := cl.AbortBufferedRecords(actx)
		if aerr == nil {
			aerr = cl.EndTransaction(actx, kgo.TryAbort)
		}
		if aerr != nil {
			// The next replay's fencing aborts it instead.
			r.logger.Warn("abort a replay transaction", "replay_id", id, "err", aerr)
		}
	}()
	entry := Replay{ID: id, By: opts.By, At: r.now().UTC(), Filter: f}
	var acks bus.Acks
	for _, o := range todo {
		cl.Produce(ctx, o.rec, acks.Promise())
		entry.DeadLetters = append(entry.DeadLetters, o.sent)
	}
	value, err := json.Marshal(entry)
	if err != nil {
		return err
	}
	cl.Produce(ctx, &kgo.Record{Topic: r.topics.Log, Key: []byte(id), Value: value}, acks.Promise())
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("send replayed events: %w", err)
	}
	if err := acks.Wait(); err != nil {
		return fmt.Errorf("send replayed events to %s: %w", r.topics.Raw, err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("commit replayed events: %w (another replay may have taken over: run it again to send what this one did not)", err)
	}
	return nil
}

// rawEvent is the record the collector would have written for original:
// a valid envelope, stamped with the dead letter's root id (else the
// original's, else a new one) and the original's collector time and id,
// if it had them, so that its table and day are those of the first try.
func rawEvent(dl *DeadLetter, original []byte, now time.Time) (*kgo.Record, error) {
	var s string
	if json.Unmarshal(original, &s) == nil {
		// A body that was not JSON is kept as a string; a fixed one may
		// still be one, holding the event's JSON.
		original = []byte(s)
	}
	env, inv := event.Parse(original)
	if inv != nil {
		return nil, fmt.Errorf("its original is not a valid event (%s: %s): fix it first", inv.Reason, inv.Error())
	}
	stamp := event.Stamp{RootID: dl.RootID, CollectorTstamp: event.FormatTime(now), CollectorID: TransactionalID}
	top, _, err := event.ObjectMembers(original, "", nil, nil)
	if err != nil {
		return nil, err
	}
	for _, m := range top {
		if m.Value[0] != '"' {
			continue
		}
		switch v := event.Unquote(m.Value); {
		case m.Is(event.FieldRootID) && stamp.RootID == "":
			stamp.RootID = v
		case m.Is(event.FieldCollectorTstamp):
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				stamp.CollectorTstamp = event.FormatTime(t)
			}
		case m.Is(event.FieldCollectorID):
			stamp.CollectorID = v
		}
	}
	if stamp.RootID == "" {
		id, err := event.AppendRootID(nil)
		if err != nil {
			return nil, err
		}
		stamp.RootID = string(id)
	}
	return &kgo.Record{Key: []byte(stamp.RootID), Value: env.AppendStamped(nil, stamp), Headers: []kgo.RecordHeader{
		{Key: event.HeaderEventType, Value: []byte(env.EventType)},
		{Key: event.HeaderSchemaVersion, Value: []byte(env.SchemaVersion)},
		{Key: event.HeaderRootID, Value: []byte(stamp.RootID)},
	}}, nil
}
