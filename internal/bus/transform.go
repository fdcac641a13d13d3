package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/retry"
)

// Transform is a consume-transform-produce loop in Kafka transactions, the
// one every stage that reads Kafka and writes Kafka exactly once runs: each
// poll's records go through Fn, whose outputs commit together with the
// poll's offsets, or not at all. An aborted transaction's records are read
// again.
type Transform struct {
	// Session makes the loop's transactional consumer-producer. A session
	// that fails to end a transaction cannot be used again (franz-go: no
	// error of End is retryable), so the loop closes it and, after a
	// backoff, makes another: a broker that is down is a pause, not the end.
	Session func() (*kgo.GroupTransactSession, error)
	// MaxPollRecords bounds the records of one transaction.
	MaxPollRecords int
	// Fn transforms a poll's records, calling out with each output record
	// in the order they are to be written.
	Fn     func(ctx context.Context, in []*kgo.Record, out func(*kgo.Record))
	Logger *slog.Logger
	// Committed is told how many input records a committed transaction
	// took; Aborted of each aborted one.
	Committed func(n int)
	Aborted   func()
	// Fault is told of an error that keeps the loop from committing, again
	// at least every retry.Backoff's bound while it lasts, and Recovered
	// when a transaction commits after it.
	Fault     func(err error)
	Recovered func()
}

// Run runs the loop until ctx is done, then returns nil; it returns an
// error only when it cannot make a session at all.
func (t Transform) Run(ctx context.Context) error {
	l := &transformLoop{Transform: t}
	for ctx.Err() == nil {
		sess, err := t.Session()
		if err != nil {
			return err
		}
		err = l.session(ctx, sess)
		sess.Close()
		if err == nil || ctx.Err() != nil {
			return nil
		}
		l.fault(err)
		if retry.Sleep(ctx, l.backoff.Next()) != nil {
			return nil
		}
	}
	return nil
}

// transformLoop is a Transform's state while it runs.
type transformLoop struct {
	Transform
	backoff retry.Backoff
	faulted bool
}

func (l *transformLoop) fault(err error) {
	l.faulted = true
	if l.Fault != nil {
		l.Fault(err)
	}
}

// session runs transactions on sess until ctx is done (nil) or a
// transaction fails to end (the error). Produce failures abort the
// transaction and wait a backoff before the records are read again.
func (l *transformLoop) session(ctx context.Context, sess *kgo.GroupTransactSession) error {
	// A transactional id's new producer fences its predecessor, and Kafka
	// aborts the transaction that one left open, only when the new one
	// asks for its producer id, which franz-go does at its first produce.
	// Until then the group's offsets stay unstable and their fetch waits:
	// a restarted instance sat out its killed predecessor's transaction
	// timeout (40 s) before reading. Asking first takes it at once.
	if _, _, err := sess.Client().ProducerID(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("init the transactional producer: %w", err)
	}
	for {
		fetches := sess.PollRecords(ctx, max(l.MaxPollRecords, 1))
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				l.Logger.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		var in []*kgo.Record
		fetches.EachRecord(func(r *kgo.Record) { in = append(in, r) })
		if len(in) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
		var acks Acks
		l.Fn(ctx, in, func(r *kgo.Record) { sess.Produce(ctx, r, acks.Promise()) })
		produceErr := acks.Wait()
		try := kgo.TryCommit
		if produceErr != nil {
			try = kgo.TryAbort
		}
		ok, err := sess.End(ctx, try)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("end transaction: %w", err)
		case produceErr != nil:
			if l.Aborted != nil {
				l.Aborted()
			}
			l.fault(fmt.Errorf("produce failed, transaction aborted; its records will be read again: %w", produceErr))
			if retry.Sleep(ctx, l.backoff.Next()) != nil {
				return nil
			}
		case ok:
			l.backoff.Reset()
			if l.faulted && l.Recovered != nil {
				l.Recovered()
			}
			l.faulted = false
			if l.Committed != nil {
				l.Committed(len(in))
			}
		case l.Aborted != nil: // a rebalance came between
			l.Aborted()
		}
	}
}
