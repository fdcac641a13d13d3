package console

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/query"
)

// TestShareLake checks that requests within the ttl share one engine, that
// a stale one is closed only once its last borrower is done, and a new one
// opened for the next request.
func TestShareLake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opened, closed := 0, 0
		share := ShareLake(func(context.Context) (*query.Engine, *lake.Catalog, func(), error) {
			opened++
			return nil, nil, func() { closed++ }, nil
		}, 3*time.Second)
		ctx := t.Context()
		_, _, done1, _ := share(ctx)
		_, _, done2, _ := share(ctx)
		if opened != 1 {
			t.Fatalf("two borrowers at once opened %d engines", opened)
		}
		done1()
		done1() // twice is once
		time.Sleep(4 * time.Second)
		_, _, done3, _ := share(ctx)
		if opened != 2 || closed != 0 {
			t.Fatalf("after the ttl: %d opened, %d closed; want 2, 0 (the old one still lent)", opened, closed)
		}
		done2()
		if closed != 1 {
			t.Fatalf("the stale engine's last borrower done: %d closed, want 1", closed)
		}
		done3()
		if closed != 1 {
			t.Fatalf("the current engine was closed while current")
		}
	})
}
