package stop

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestGrace checks that the context outlives its parent by the grace, no
// more, and that cancel ends it at once.
func TestGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		parent, stop := context.WithCancel(t.Context())
		ctx, cancel := Grace(parent, 30*time.Second)
		defer cancel()
		stop()
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if ctx.Err() != nil {
			t.Fatalf("ended %v before the grace: %v", 29*time.Second, ctx.Err())
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if ctx.Err() == nil {
			t.Fatal("still running after the grace")
		}
	})
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := Grace(t.Context(), time.Hour)
		cancel()
		if ctx.Err() == nil {
			t.Fatal("still running after cancel")
		}
	})
}
