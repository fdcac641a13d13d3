package collector

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Ordered pipelining. A client that sends a stream of requests at once
// (replay's batches, four in flight) names the stream and numbers each
// request, from 1: Sluice-Stream and Sluice-Sequence. The collector hands a
// request's records to Kafka only after those of the request numbered
// before it, so that every partition holds the stream's events in the
// client's order, while the requests still overlap their waits for Kafka's
// acknowledgements (the wait that takes the time). Without the headers,
// requests are independent, as before. A request numbered below the next
// one expected (a retry) goes at once: retries reorder.
const (
	headerStream   = "Sluice-Stream"
	headerSequence = "Sluice-Sequence"
)

// sequencer orders the requests of each stream.
type sequencer struct {
	mu      sync.Mutex
	streams map[string]*stream
}

type stream struct {
	next    uint64        // the request whose records go next
	changed chan struct{} // closed when next moves
	used    time.Time
}

// maxStreams bounds the streams remembered; past it, those unused for
// streamIdle are forgotten.
const (
	maxStreams = 10_000
	streamIdle = time.Minute
)

// turn is a request's place in its stream.
type turn struct {
	s    *sequencer
	st   *stream
	n    uint64
	once sync.Once
}

// turnOf is r's turn, or nil for a request without the headers.
func (s *sequencer) turnOf(r *http.Request) *turn {
	id := r.Header.Get(headerStream)
	if id == "" || len(id) > 128 {
		return nil
	}
	n, err := strconv.ParseUint(r.Header.Get(headerSequence), 10, 64)
	if err != nil || n == 0 {
		return nil
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams == nil {
		s.streams = map[string]*stream{}
	}
	st := s.streams[id]
	if st == nil {
		if len(s.streams) >= maxStreams {
			for k, old := range s.streams {
				if now.Sub(old.used) > streamIdle {
					delete(s.streams, k)
				}
			}
		}
		// A stream starts where its first request says: from 1, or, after
		// this collector restarted, where the client has got to.
		st = &stream{next: n, changed: make(chan struct{})}
		s.streams[id] = st
	}
	st.used = now
	return &turn{s: s, st: st, n: n}
}

// wait waits until the requests before this one have handed their records
// over, or timeout (the ordering is then given up for this request, rather
// than the request for the ordering).
func (t *turn) wait(ctx context.Context, timeout time.Duration) {
	if t == nil {
		return
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		t.s.mu.Lock()
		next, changed := t.st.next, t.st.changed
		t.s.mu.Unlock()
		if t.n <= next {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// done says this request has handed its records over, or never will: the
// next may go.
func (t *turn) done() {
	if t == nil {
		return
	}
	t.once.Do(func() {
		t.s.mu.Lock()
		defer t.s.mu.Unlock()
		if t.st.next <= t.n {
			t.st.next = t.n + 1
			close(t.st.changed)
			t.st.changed = make(chan struct{})
		}
	})
}
