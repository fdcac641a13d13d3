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

// decodingMemory is the memory sink decoding records on the runner's
// goroutines (sink.Decoder), checking that each runner adds a partition's
// records in offset order.
type decodingMemory struct {
	*memory
	mu   sync.Mutex
	last map[int32]int64
	t    *testing.T
}

var _ sink.Decoder = (*decodingMemory)(nil)

// Resume starts a partition's order afresh: a runner that takes it over
// reloads from the destination's committed offset.
func (m *decodingMemory) Resume(ctx context.Context, topic string, p int32) (sink.Position, error) {
	m.mu.Lock()
	delete(m.last, p)
	m.mu.Unlock()
	return m.memory.Resume(ctx, topic, p)
}

func (m *decodingMemory) NewDecoding() sink.Decoding { return &decoding{m: m} }

type decoding struct {
	m    *decodingMemory
	recs []*kgo.Record
	ids  []string
	errs []error
}

func (d *decoding) Decode(recs []*kgo.Record) {
	d.recs, d.ids, d.errs = append(d.recs[:0], recs...), d.ids[:0], d.errs[:0]
	for _, r := range recs {
		var ev struct {
			RootID string `json:"root_id"`
		}
		err := json.Unmarshal(r.Value, &ev)
		d.ids, d.errs = append(d.ids, ev.RootID), append(d.errs, err)
	}
}

func (d *decoding) Add(buf sink.Buffer, i int) (int, error) {
	r := d.recs[i]
	d.m.mu.Lock()
	if last, ok := d.m.last[r.Partition]; ok && r.Offset <= last {
		d.m.t.Errorf("partition %d: offset %d added after %d", r.Partition, r.Offset, last)
	}
	d.m.last[r.Partition] = r.Offset
	d.m.mu.Unlock()
	if d.errs[i] != nil {
		return 0, &sink.Reject{Reason: event.ReasonInvalidJSON, Errors: []event.FieldError{{Message: d.errs[i].Error()}}}
	}
	buf.(*docs).byID[d.ids[i]] = string(r.Value)
	return len(r.Value), nil
}

// TestConformance runs the conformance suite on the memory sink: the
// runner's own guarantees, its dead letters for records a sink rejects
// among them, apart from any one sink; then on the memory sink decoding
// on several goroutines.
func TestConformance(t *testing.T) {
	t.Run("added", func(t *testing.T) { conformance(t, false) })
	t.Run("decoded", func(t *testing.T) { conformance(t, true) })
}

func conformance(t *testing.T, decoded bool) {
	sinktest.Run(t, func(t *testing.T) *sinktest.Destination {
		m := &memory{docs: map[string]string{}, committed: map[string]int64{}}
		var s sink.Sink = m
		if decoded {
			s = &decodingMemory{memory: m, last: map[int32]int64{}, t: t}
		}
		return &sinktest.Destination{
			New: func(*testing.T, sink.Env) sink.Sink { return s },
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
