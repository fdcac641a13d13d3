package retry

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestBackoffBounds checks that each wait stays under a bound that doubles
// from Min up to Max, and that Reset starts over.
func TestBackoffBounds(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	bound := 10 * time.Millisecond
	for i := range 50 {
		if w := b.Next(); w < 0 || w > bound {
			t.Fatalf("wait %d = %v, want within [0, %v]", i, w, bound)
		}
		bound = min(2*bound, 80*time.Millisecond)
	}
	b.Reset()
	if w := b.Next(); w > 10*time.Millisecond {
		t.Errorf("after Reset the wait is %v, want at most Min", w)
	}
}

func TestWaitHonoursAtLeastAndContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b Backoff
		start := time.Now()
		if err := b.Wait(t.Context(), time.Second); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < time.Second {
			t.Errorf("waited %v, want at least the 1s asked", took)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := Sleep(ctx, time.Hour); err == nil {
			t.Error("Sleep outlived its context")
		}
	})
}
