package bus

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// LeaseTopic is the one-partition topic whose partition a Lease holds.
const LeaseTopic = "sluice.lease"

// LeaseTimeout is how long a Lease's holder that died keeps it.
const LeaseTimeout = 10 * time.Second

// Lease elects one process among those sharing a name: the member of the
// consumer group of that name that Kafka assigns the single partition of
// LeaseTopic. When it stops or dies, the group rebalances (at once on a
// clean stop, after LeaseTimeout on a crash) and another member
// holds it: nothing but Kafka coordinates them.
type Lease struct {
	cc          ClientConfig
	name        string
	replication int16
	logger      *slog.Logger
}

// NewLease makes a lease named name (the consumer group) on the cluster
// of cc; replication is LeaseTopic's, when this creates it (-1: the
// cluster's default).
func NewLease(cc ClientConfig, name string, replication int16, logger *slog.Logger) *Lease {
	return &Lease{cc: cc, name: name, replication: replication, logger: logger}
}

// Hold joins the group and returns once this process holds the lease,
// with a context that ends when it no longer does (the partition went to
// another member, or ctx ended). It leaves the group when that context
// ends.
func (l *Lease) Hold(ctx context.Context) (context.Context, error) {
	held, lose := context.WithCancel(ctx)
	got := make(chan struct{})
	var once sync.Once
	holds := func(m map[string][]int32) bool {
		for _, p := range m[LeaseTopic] {
			if p == 0 {
				return true
			}
		}
		return false
	}
	cl, err := NewClient(l.cc, l.logger,
		kgo.ConsumerGroup(l.name), kgo.ConsumeTopics(LeaseTopic),
		// A dead holder's lease passes on after this, not Kafka's 45 s:
		// a member only heartbeats, so a short timeout costs nothing,
		// and Kafka's smallest allowed (group.min.session.timeout.ms) is 6 s.
		kgo.SessionTimeout(LeaseTimeout), kgo.HeartbeatInterval(LeaseTimeout/10),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if holds(m) {
				once.Do(func() { close(got) })
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if holds(m) {
				lose()
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if holds(m) {
				lose()
			}
		}),
	)
	if err != nil {
		lose()
		return nil, err
	}
	if err := EnsureTopics(ctx, cl, 1, l.replication, LeaseTopic); err != nil {
		cl.Close()
		lose()
		return nil, fmt.Errorf("lease %s: %w", l.name, err)
	}
	// Polling keeps the member in the group; nothing is ever produced to
	// the topic, so there is nothing to read.
	go func() {
		for held.Err() == nil {
			cl.PollFetches(held)
		}
		// Leaving revokes the partition at once, for the next holder.
		cl.LeaveGroup()
		cl.Close()
	}()
	select {
	case <-got:
		return held, nil
	case <-held.Done():
		return nil, ctx.Err()
	}
}
