package bus

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestAcksOneErrorWithACount: when a batch fails (a stop cancels every
// record of a transaction, say), the error is one line with how many
// failed, not one copy of it per record.
func TestAcksOneErrorWithACount(t *testing.T) {
	var a Acks
	for i := range 300 {
		p := a.Promise()
		if i%3 == 0 {
			go p(nil, nil)
		} else {
			go p(&kgo.Record{}, context.Canceled)
		}
	}
	err := a.Wait()
	if !errors.Is(err, context.Canceled) || err.Error() != "200 records failed, the first with: context canceled" || strings.Count(err.Error(), "\n") > 0 {
		t.Errorf("Wait = %q", err)
	}
	var ok Acks
	go ok.Promise()(nil, nil)
	if err := ok.Wait(); err != nil {
		t.Errorf("Wait with no failure = %v", err)
	}
}
