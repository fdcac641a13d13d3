package aggregator

import (
	"context"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
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
			)...)
		},
		MaxPollRecords: 10_000,
		Logger:         a.logger,
		Fn: func(_ context.Context, in []*kgo.Record, out func(*kgo.Record)) {
			latest := map[int32]time.Time{}
			f := make(fields, len(a.slots))
			for _, rec := range in {
				r, at := a.route(rec, topic, f)
				if r != nil {
					out(r)
				}
				if !at.IsZero() && at.After(latest[rec.Partition]) {
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

// route is the record rec becomes: keyed by its partition key on the
// repartition topic, a dead letter, or nil for a record to skip; and the
// event's time; f is scratch for its fields. The value stays as it came, so a late event's dead letter
// holds the input.
func (a *Aggregator) route(rec *kgo.Record, topic string, f fields) (*kgo.Record, time.Time) {
	f, at, dead := a.read(rec, f)
	if f == nil {
		return dead, time.Time{}
	}
	// Never a nil key: the partitioner spreads those at random.
	key := a.join([]byte{}, f, a.keyAt)
	headers := append(rec.Headers[:len(rec.Headers):len(rec.Headers)],
		kgo.RecordHeader{Key: headerSource, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)})
	return &kgo.Record{Topic: topic, Key: key, Value: rec.Value, Headers: headers}, at
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
