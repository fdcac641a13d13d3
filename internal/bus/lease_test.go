package bus

import (
	"context"
	"testing"
	"time"
)

// TestLease: of two processes sharing a lease, one holds it; when it lets
// go, the other holds it; another lease's name has a holder of its own.
func TestLease(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", t.TempDir())
	cc := ClientConfig{Brokers: []string{b.Addr()}}
	ctx := t.Context()
	a, c := NewLease(cc, "jobs-a", 1, testLogger(t)), NewLease(cc, "jobs-a", 1, testLogger(t))

	aCtx, aStop := context.WithCancel(ctx)
	heldA, err := a.Hold(aCtx)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		ctx context.Context
		err error
	}
	second := make(chan result, 1)
	go func() {
		held, err := c.Hold(ctx)
		second <- result{held, err}
	}()
	select {
	case <-second:
		t.Fatal("a second process holds the lease while the first does")
	case <-time.After(3 * time.Second):
	}
	if heldA.Err() != nil {
		t.Fatalf("the first holder lost the lease to a process that only waits: %v", heldA.Err())
	}

	other, err := NewLease(cc, "jobs-b", 1, testLogger(t)).Hold(ctx)
	if err != nil || other.Err() != nil {
		t.Fatalf("a lease of another name: %v", err)
	}

	aStop()
	select {
	case r := <-second:
		if r.err != nil || r.ctx.Err() != nil {
			t.Fatalf("the second process: %v", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the second process did not hold the lease within 30s of the first letting go")
	}
}
