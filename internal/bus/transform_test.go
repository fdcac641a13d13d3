package bus

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kafkatest"
)

// TestTransformBackToBack runs transactions back to back, as a stage under
// load does, and checks that none waits out franz-go's 5 s minimum
// metadata age (see ClientConfig.opts). On Kafka 4 a transaction's first produce
// can get CONCURRENT_TRANSACTIONS while the last one's markers are still
// being written, so this checks something only against a real cluster
// (make test runs it there, SLUICE_TEST_KAFKA=cluster); the embedded
// broker never answers so.
func TestTransformBackToBack(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	if brokers == nil {
		brokers = []string{startBroker(t, "127.0.0.1:0", t.TempDir()).Addr()}
	}
	cc := ClientConfig{Brokers: brokers}
	ctx := t.Context()
	in, out, group := kafkatest.Names("transform.in"), kafkatest.Names("transform.out"), kafkatest.Names("transform")
	prod, err := NewProducer(cc, DefaultProducerConfig(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := EnsureTopics(ctx, prod, 1, -1, in, out); err != nil {
		t.Fatal(err)
	}
	const records, perTransaction = 2000, 100
	var recs []*kgo.Record
	for i := range records {
		recs = append(recs, &kgo.Record{Topic: in, Value: fmt.Appendf(nil, "%d", i)})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	exited := make(chan struct{})
	defer func() { stop(); <-exited }() // the loop logs to the test until it returns
	var committed, transactions atomic.Int64
	// The longest time between two commits, once the first is in: a
	// stalled transaction waits 4.5 s or so; unstalled, each takes tens of
	// milliseconds on the test cluster.
	var last time.Time
	var longest time.Duration
	done := make(chan struct{})
	go func() {
		defer close(exited)
		Transform{
			Session: func() (*kgo.GroupTransactSession, error) {
				return NewGroupTransactSession(cc, testLogger(t), kgo.TransactionalID(group), kgo.ConsumerGroup(group),
					kgo.ConsumeTopics(in), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			},
			MaxPollRecords: perTransaction,
			Logger:         testLogger(t),
			Fn: func(_ context.Context, in []*kgo.Record, emit func(*kgo.Record)) {
				for _, r := range in {
					emit(&kgo.Record{Topic: out, Value: r.Value})
				}
			},
			Committed: func(n int) { // called by the loop's goroutine only
				if now := time.Now(); !last.IsZero() {
					longest = max(longest, now.Sub(last))
				}
				last = time.Now()
				transactions.Add(1)
				if committed.Add(int64(n)) == records {
					close(done)
				}
			},
		}.Run(runCtx)
	}()

	select {
	case <-done:
		if longest > 2500*time.Millisecond {
			t.Errorf("of %d transactions back to back, one took %v: it waited out a metadata refresh", transactions.Load(), longest)
		}
		t.Logf("%d transactions back to back, the longest %v", transactions.Load(), longest)
	case <-time.After(2 * time.Minute):
		t.Fatalf("%d of %d records committed in 2 minutes", committed.Load(), records)
	}
}
