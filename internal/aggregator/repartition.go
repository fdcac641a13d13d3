package aggregator

import (
	"context"
	"encoding/binary"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/window"
)

// headerSource carries a repartitioned record's input partition: the
// tasks keep a watermark per input partition, as one reading the input
// would.
const headerSource = "sluice-source-partition"

// headerWatermark marks a record that is no event but an input partition's
// progress, broadcast to every task (as stream processors broadcast
// watermarks downstream): its value is the latest event time the
// repartitioner has seen on that partition, in Unix nanoseconds. A task
// whose groups get no event from a partition still sees it advance, so the
// windows of quiet groups close with the rest.
const headerWatermark = "sluice-watermark"

// headerParsed marks a repartitioned event whose value is its parsed form
// (appendParsed) ahead of the input's value: its task counts it without
// parsing the input a second time. Its value is the form's version.
const headerParsed = "sluice-parsed"

// parsedVersion is the parsed form's layout; a task parses the input of
// any other.
const parsedVersion = "1"

// repartition reads the input in the repartitioner's consumer group and
// writes each event to the repartition topic, keyed by its group, in one
// transaction with the input offsets: an event reaches its task once,
// whatever crashes. Records that are not events become dead letters here,
// before they cost a task anything.
func (a *Aggregator) repartition(ctx context.Context) error {
	topic := a.cfg.RepartitionTopic()
	return bus.Transform{
		Session: func() (*kgo.GroupTransactSession, error) {
			return bus.NewGroupTransactSession(a.cc, a.logger, append(a.groupOpts(a.cfg.Group+"-repartition"),
				kgo.TransactionalID(a.cfg.TransactionalID),
				kgo.ConsumeTopics(a.cfg.Topic),
				kgo.RequireStableFetchOffsets(),
				kgo.RecordPartitioner(partitioner()),
				kgo.FetchMaxPartitionBytes(fetchPartitionBytes),
			)...)
		},
		MaxPollRecords: 10_000,
		Logger:         a.logger,
		Fn: func(_ context.Context, in []*kgo.Record, out func(*kgo.Record)) {
			// Routed on every core, a slice of the poll each, and written
			// in the input's order.
			routed := make([]*kgo.Record, len(in))
			times := make([]time.Time, len(in))
			var g errgroup.Group
			slice := max(1000, (len(in)+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0))
			for lo := 0; lo < len(in); lo += slice {
				hi := min(lo+slice, len(in))
				g.Go(func() error {
					f := make(fields, len(a.slots))
					for i := lo; i < hi; i++ {
						routed[i], times[i] = a.route(in[i], topic, f)
					}
					return nil
				})
			}
			_ = g.Wait() // no error: a record that cannot be read is a dead letter
			latest := map[int32]time.Time{}
			for i, rec := range in {
				if routed[i] != nil {
					out(routed[i])
				}
				if at := times[i]; !at.IsZero() && at.After(latest[rec.Partition]) {
					latest[rec.Partition] = at
				}
			}
			// After the events, in the same transaction: each partition's
			// progress, to every task.
			for p, at := range latest {
				for task := range a.tasks {
					out(&kgo.Record{Topic: topic, Partition: task, Key: []byte{}, Headers: []kgo.RecordHeader{
						{Key: headerWatermark, Value: strconv.AppendInt(nil, at.UnixNano(), 10)},
						{Key: headerSource, Value: strconv.AppendInt(nil, int64(p), 10)},
					}})
				}
			}
		},
		Fault:     func(err error) { a.FaultFor("kafka", err, time.Minute) },
		Recovered: func() { a.Clear("kafka") },
	}.Run(ctx)
}

// fetchPartitionBytes bounds what a fetch takes of each input partition.
// A task's watermark is the least of the input partitions', and a poll
// takes a fetch's partitions one after the other: with Kafka's 1 MiB a
// partition ran a day of MTA audits ahead of the others, whose windows the
// tasks held open, checkpointed and visited the while. The tasks read
// their partitions with it too: their first poll, of 1 MiB from each,
// came 66 ms after they were assigned (of a 1.4 s backlog), now 6 to 15.
const fetchPartitionBytes = 128 << 10

// route is the record rec becomes: keyed by its partition key on the
// repartition topic, a dead letter, or nil for a record to skip; and the
// event's time; f is scratch for its fields. The value is the event parsed,
// then the input's value as it came, which a late event's dead letter
// holds.
func (a *Aggregator) route(rec *kgo.Record, topic string, f fields) (*kgo.Record, time.Time) {
	f, at, dead := a.read(rec, f)
	if f == nil {
		return dead, time.Time{}
	}
	// Never a nil key: the partitioner spreads those at random. Key and
	// value share one allocation, and the headers' values are shared.
	b := a.join(make([]byte, 0, a.routedSize(f)+len(rec.Value)), f, a.keyAt)
	key := b[:len(b):len(b)]
	value := append(a.appendParsed(b[len(b):], f, at), rec.Value...)
	headers := append(rec.Headers[:len(rec.Headers):len(rec.Headers)],
		kgo.RecordHeader{Key: headerSource, Value: partitionText(rec.Partition)},
		kgo.RecordHeader{Key: headerParsed, Value: parsedVersionText})
	return &kgo.Record{Topic: topic, Key: key, Value: value, Headers: headers}, at
}

// parsedVersionText and partitionText are header values that records
// share, read only.
var (
	parsedVersionText = []byte(parsedVersion)
	partitionTexts    = func() (t [64][]byte) {
		for i := range t {
			t[i] = strconv.AppendInt(nil, int64(i), 10)
		}
		return t
	}()
)

func partitionText(p int32) []byte {
	if p >= 0 && int(p) < len(partitionTexts) {
		return partitionTexts[p]
	}
	return strconv.AppendInt(nil, int64(p), 10)
}

// routedSize bounds the bytes of a routed record's key and parsed event,
// so that one allocation holds them and the input's value: the record
// is made for each event.
func (a *Aggregator) routedSize(f fields) int {
	n := 3*binary.MaxVarintLen64 + len(a.keyAt) + len(a.dedupeAt) + 8*len(a.aggAt)
	for _, at := range [][]int{a.keyAt, a.dedupeAt} {
		for _, i := range at {
			n += len(f[i].s)
		}
	}
	for _, i := range a.groupAt {
		n += binary.MaxVarintLen64 + len(f[i].s)
	}
	return n
}

// appendParsed appends what a task needs of an event to b: its time, its
// group's values, its aggregates' values and its dedupe key. The input's
// value follows, for dead letters.
func (a *Aggregator) appendParsed(b []byte, f fields, at time.Time) []byte {
	b = binary.AppendVarint(b, at.UnixNano())
	for _, i := range a.groupAt {
		b = binary.AppendUvarint(b, uint64(len(f[i].s)))
		b = append(b, f[i].s...)
	}
	for _, i := range a.aggAt {
		v := 0.0 // a count of events ignores it
		if i >= 0 {
			v = number(f[i])
		}
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	b = binary.AppendUvarint(b, uint64(a.dedupeLen(f)))
	return a.join(b, f, a.dedupeAt)
}

// readParsed reads an event of the repartition topic in its parsed form
// into e, and returns the input's value; false when rec is not in the
// form this aggregation writes (an older version, or another
// configuration's), for it to be parsed from the input.
func (a *Aggregator) readParsed(rec *kgo.Record, e *window.Event) ([]byte, bool) {
	if bus.Header(rec, headerParsed) != parsedVersion {
		return nil, false
	}
	// One string, that the group's values are sliced from.
	v := string(rec.Value)
	off := 0
	next := func() (uint64, bool) {
		n, size := uvarint(v[off:])
		off += size
		return n, size > 0
	}
	t, size := varint(v)
	if size <= 0 {
		return nil, false
	}
	off = size
	e.Time = time.Unix(0, t).UTC()
	e.Group = slices.Grow(e.Group[:0], len(a.groupAt))[:len(a.groupAt)]
	for i := range e.Group {
		n, ok := next()
		if !ok || n > uint64(len(v)-off) {
			return nil, false
		}
		e.Group[i] = v[off : off+int(n)]
		off += int(n)
	}
	e.Values = slices.Grow(e.Values[:0], len(a.aggAt))[:len(a.aggAt)]
	for i := range e.Values {
		if len(v)-off < 8 {
			return nil, false
		}
		e.Values[i] = math.Float64frombits(binary.LittleEndian.Uint64(rec.Value[off:]))
		off += 8
	}
	n, ok := next()
	if !ok || n > uint64(len(v)-off) {
		return nil, false
	}
	e.DedupeKey = ""
	if len(a.dedupeAt) > 0 {
		// Its own string: the operator keeps it, and should not keep the
		// record's with it.
		e.DedupeKey = strings.Clone(v[off : off+int(n)])
	}
	off += int(n)
	return rec.Value[off:], true
}

// uvarint and varint are binary's, over a string.
func uvarint(s string) (uint64, int) {
	var x uint64
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -1
			}
			return x | uint64(c)<<(7*i), i + 1
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	return 0, 0
}

func varint(s string) (int64, int) {
	ux, n := uvarint(s)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, n
}

// partitioner places the repartition topic's records: an event by its key,
// as Kafka's own partitioner would (murmur2), and a broadcast watermark in
// the partition it names.
func partitioner() kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(topic string) func(*kgo.Record, int) int {
		byKey := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
		return func(r *kgo.Record, n int) int {
			if len(r.Headers) > 0 && r.Headers[0].Key == headerWatermark {
				return int(r.Partition)
			}
			return byKey.Partition(r, n)
		}
	})
}
