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
			)...)
		},
		MaxPollRecords: 10_000,
		Logger:         a.logger,
		Fn: func(_ context.Context, in []*kgo.Record, out func(*kgo.Record)) {
			for _, rec := range in {
				if r := a.route(rec, topic); r != nil {
					out(r)
				}
			}
		},
		Fault:     func(err error) { a.FaultFor("kafka", err, time.Minute) },
		Recovered: func() { a.Clear("kafka") },
	}.Run(ctx)
}

// route is the record rec becomes: keyed by its partition key on the
// repartition topic, a dead letter, or nil for a record to skip. The
// value stays as it came, so a late event's dead letter holds the input.
func (a *Aggregator) route(rec *kgo.Record, topic string) *kgo.Record {
	f, _, dead := a.read(rec)
	if f == nil {
		return dead
	}
	// Never a nil key: the partitioner spreads those at random.
	key := a.join([]byte{}, f, a.keyAt)
	headers := append(rec.Headers[:len(rec.Headers):len(rec.Headers)],
		kgo.RecordHeader{Key: headerSource, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)})
	return &kgo.Record{Topic: topic, Key: key, Value: rec.Value, Headers: headers}
}
