package bus

import (
	"errors"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Acks gathers the acknowledgements of records produced asynchronously,
// as a transaction's records are before it ends: Promise for each, then
// Wait for all of them and their errors.
type Acks struct {
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

// Promise is the callback of one record's Produce.
func (a *Acks) Promise() func(*kgo.Record, error) {
	a.wg.Add(1)
	return func(_ *kgo.Record, err error) {
		defer a.wg.Done()
		if err != nil {
			a.mu.Lock()
			a.err = errors.Join(a.err, err)
			a.mu.Unlock()
		}
	}
}

// Wait waits for every promised record and returns their errors, joined.
func (a *Acks) Wait() error {
	a.wg.Wait()
	return a.err
}
