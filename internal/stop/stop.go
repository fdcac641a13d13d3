// Package stop is how a stage finishes, within a bound, the work it had
// taken when it is asked to stop: a write in flight when the process gets
// SIGTERM completes with its commit, rather than leaving its side effects
// (dead letters, files) for the next owner to make again.
package stop

import (
	"context"
	"time"
)

// Grace is a context that ends grace after ctx does, or when cancel is
// called. Work started under it before the stop runs to its end unless
// that takes longer than grace.
func Grace(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	g, cancel := context.WithCancel(context.WithoutCancel(ctx))
	after := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return g, func() { after(); cancel() }
}
