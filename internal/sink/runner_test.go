package sink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

// memory is the smallest sink there is: documents in a map by root id, as
// a search index keeps them by document id, so that writing a range again
// writes the same documents. It rejects records that are not JSON, which
// the runner dead-letters.
type memory struct {
	mu        sync.Mutex
	docs      map[string]string
	committed map[string]int64
	down      atomic.Bool
}

var _ sink.Sink = (*memory)(nil)

var errDown = errors.New("the destination is down")

func (m *memory) Resume(_ context.Context, topic string, p int32) (sink.Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.committed[fmt.Sprint(topic, p)]
	if !ok {
		c = -1
	}
	return sink.Position{Committed: c, Pending: -1}, nil
}

type docs struct{ byID map[string]string }

func (d *docs) Add(r *kgo.Record) (int, error) {
	var ev struct {
		RootID string `json:"root_id"`
	}
	if err := json.Unmarshal(r.Value, &ev); err != nil {
		return 0, &sink.Reject{Reason: event.ReasonInvalidJSON, Errors: []event.FieldError{{Message: err.Error()}}}
	}
	d.byID[ev.RootID] = string(r.Value)
	return len(r.Value), nil
}

func (d *docs) Rows() int { return len(d.byID) }
func (d *docs) Release()  {}

func (m *memory) NewBuffer(string, int32) sink.Buffer { return &docs{byID: map[string]string{}} }

func (m *memory) Write(_ context.Context, r *sink.Range) error {
	if m.down.Load() {
		return errDown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, doc := range r.Buffer.(*docs).byID {
		m.docs[id] = doc
	}
	return nil
}

func (m *memory) Commit(_ context.Context, r *sink.Range) error {
	if m.down.Load() {
		return errDown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.committed[fmt.Sprint(r.Topic, r.Partition)] = r.Last
	return nil
}

// TestConformance runs the conformance suite on the memory sink: the
// runner's own guarantees, its dead letters for records a sink rejects
// among them, apart from any one sink.
func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) *sinktest.Destination {
		m := &memory{docs: map[string]string{}, committed: map[string]int64{}}
		return &sinktest.Destination{
			New: func(*testing.T, sink.Env) sink.Sink { return m },
			Held: func(*testing.T) map[string]int {
				m.mu.Lock()
				defer m.mu.Unlock()
				out := map[string]int{}
				for id := range m.docs {
					out[id]++
				}
				return out
			},
			Stop:   m.down.Store,
			Points: []string{sink.PointWritten, sink.PointCommitted},
		}
	})
}
