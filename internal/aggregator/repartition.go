package aggregator

import (
	"context"
	"errors"
	"fmt"
	"strconv"

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
	sess, err := bus.NewGroupTransactSession(a.cc, a.logger, append(a.groupOpts(a.cfg.Group+"-repartition"),
		kgo.TransactionalID(a.cfg.TransactionalID),
		kgo.ConsumeTopics(a.cfg.Topic),
		kgo.RequireStableFetchOffsets(),
	)...)
	if err != nil {
		return err
	}
	defer sess.Close()
	topic := a.cfg.RepartitionTopic()
	for {
		fetches := sess.PollRecords(ctx, 10_000)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				a.logger.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
		var acks bus.Acks
		fetches.EachRecord(func(rec *kgo.Record) {
			if out := a.route(rec, topic); out != nil {
				sess.Produce(ctx, out, acks.Promise())
			}
		})
		produceErr := acks.Wait()
		try := kgo.TryCommit
		if produceErr != nil {
			a.logger.Warn("produce failed; aborting the transaction, the records will be read again", "err", produceErr)
			try = kgo.TryAbort
		}
		if _, err := sess.End(ctx, try); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("end transaction: %w", err)
		}
	}
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
