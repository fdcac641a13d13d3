package bus

import (
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Acks gathers the acknowledgements of records produced asynchronously,
// as a transaction's records are before it ends: Promise for each, then
// Wait for all of them and their errors.
type Acks struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
	failed int
}

// Promise is the callback of one record's Produce.
func (a *Acks) Promise() func(*kgo.Record, error) {
	a.wg.Add(1)
	return func(_ *kgo.Record, err error) {
		defer a.wg.Done()
		if err != nil {
			a.mu.Lock()
			if a.err == nil {
				a.err = err
			}
			a.failed++
			a.mu.Unlock()
		}
	}
}

// Wait waits for every promised record and returns the first error, with
// how many records failed: when a broker fails, every record of a batch
// fails alike, and thousands of copies of one error say no more than one.
func (a *Acks) Wait() error {
	a.wg.Wait()
	if a.failed > 1 {
		return fmt.Errorf("%d records failed, the first with: %w", a.failed, a.err)
	}
	return a.err
}
