// Package retry is how Sluice waits before trying again: exponential
// backoff with full jitter (AWS's "Exponential Backoff and Jitter"), so that
// many clients retrying one server spread out instead of arriving together.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff gives the waits between attempts: each a random time up to a
// bound that starts at Min and doubles up to Max. The zero value waits up to
// 100 ms, then up to 30 s.
type Backoff struct {
	Min, Max time.Duration
	bound    time.Duration
}

// Next is the wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.bound == 0 {
		b.bound = b.Min
		if b.bound <= 0 {
			b.bound = 100 * time.Millisecond
		}
	}
	wait := time.Duration(rand.Int64N(int64(b.bound) + 1))
	limit := b.Max
	if limit <= 0 {
		limit = 30 * time.Second
	}
	b.bound = min(2*b.bound, limit)
	return wait
}

// Reset starts over from Min, after a success.
func (b *Backoff) Reset() { b.bound = 0 }

// Wait sleeps for Next, but never less than atLeast (a server's
// Retry-After), and returns ctx's error if ctx ends first.
func (b *Backoff) Wait(ctx context.Context, atLeast time.Duration) error {
	return Sleep(ctx, max(b.Next(), atLeast))
}

// Sleep waits for d or until ctx is done, whichever is first, and returns
// ctx's error in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
