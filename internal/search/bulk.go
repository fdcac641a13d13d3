package search

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/retry"
	"github.com/sluicehq/sluice/internal/sink"
)

// send indexes the buffer's pending documents, round after round: each
// round sends them in requests of at most bulk_docs and bulk_bytes,
// in_flight at once, and reads every document's outcome. Documents the
// server pushed back are sent again after a backoff, up to max_rounds;
// then, or when a request failed as a whole (a server down), the runner
// gets the error, reports the fault and calls again later, when only the
// documents still pending are sent.
func (s *Search) send(ctx context.Context, r *sink.Range, b *buffer) error {
	backoff := retry.Backoff{Max: 5 * time.Second}
	for round := 1; ; round++ {
		batches := b.batches(s.cfg.BulkDocs, int(s.cfg.BulkBytes))
		if len(batches) == 0 {
			return nil
		}
		var (
			mu       sync.Mutex
			failures []error
			wg       sync.WaitGroup
			slots    = make(chan struct{}, s.inFlight.Load())
		)
		for _, batch := range batches {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				dead, err := s.sendBatch(ctx, b, batch)
				mu.Lock()
				defer mu.Unlock()
				r.Rejected = append(r.Rejected, dead...)
				if err != nil {
					failures = append(failures, err)
				}
			})
		}
		wg.Wait()
		if err := r.Point(PointBulkSent); err != nil {
			return err
		}
		left, why := b.pushedBack()
		s.adapt(left > 0 || len(failures) > 0)
		switch {
		case len(failures) == 1:
			return fmt.Errorf("bulk: %w", failures[0])
		case len(failures) > 1:
			// Requests to a server that is down fail alike: one says why.
			return fmt.Errorf("bulk: %w (and %d more requests failed)", failures[0], len(failures)-1)
		case left == 0:
			return nil
		case round >= s.cfg.MaxRounds:
			return fmt.Errorf("%w: %d documents of %s/%d still pushed back after %d rounds (%s)", errPushedBack, left, r.Topic, r.Partition, round, why)
		}
		s.logger.Debug("documents pushed back, sending them again", "topic", r.Topic, "partition", r.Partition, "documents", left, "why", why)
		if err := backoff.Wait(ctx, 0); err != nil {
			return err
		}
	}
}

// adapt sets the requests in flight for the next round: halved after a
// round the server pushed back on, one more after one it took whole, up
// to in_flight. A server whose queues are full gets fewer requests at once
// rather than the same number again.
func (s *Search) adapt(pushedBack bool) {
	cur := s.inFlight.Load()
	next := min(cur+1, int32(s.cfg.InFlight))
	if pushedBack {
		next = max(cur/2, 1)
	}
	s.inFlight.CompareAndSwap(cur, next)
}

// PointBulkSent is the sink's crash point: a round of requests answered,
// the range maybe partly indexed, nothing recorded.
const PointBulkSent = "after-bulk"

// batches groups the pending documents into requests.
func (b *buffer) batches(maxDocs, maxBytes int) [][]int {
	var out [][]int
	var cur []int
	size := 0
	for i := range b.docs {
		d := &b.docs[i]
		if d.state != pending {
			continue
		}
		n := d.end - d.start
		if d.solo {
			out = append(out, []int{i})
			continue
		}
		if len(cur) > 0 && (len(cur) >= maxDocs || size+n > maxBytes) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, i)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// pushedBack counts the documents still pending, and says why, from the
// last one's last answer.
func (b *buffer) pushedBack() (int, string) {
	n, why := 0, ""
	for i := range b.docs {
		if b.docs[i].state == pending {
			n++
			if b.docs[i].why != "" {
				why = b.docs[i].why
			}
		}
	}
	return n, why
}

// body is a request's body: the lines of its documents. A first round's
// batches are runs of consecutive documents, whose lines are already one
// piece of the buffer; later rounds' skip documents settled, and copy.
func (b *buffer) body(batch []int) []byte {
	first, last := &b.docs[batch[0]], &b.docs[batch[len(batch)-1]]
	if last.end-first.start == b.size(batch) {
		return b.lines[first.start:last.end]
	}
	body := make([]byte, 0, b.size(batch))
	for _, i := range batch {
		body = append(body, b.lines[b.docs[i].start:b.docs[i].end]...)
	}
	return body
}

// size is the bytes of a batch's lines.
func (b *buffer) size(batch []int) int {
	n := 0
	for _, i := range batch {
		n += b.docs[i].end - b.docs[i].start
	}
	return n
}

// bulkAnswer is a _bulk answer, filtered to the outcomes (bulkPath).
type bulkAnswer struct {
	Errors bool                        `json:"errors"`
	Items  []map[string]bulkItemAnswer `json:"items"`
}

type bulkItemAnswer struct {
	Status int        `json:"status"`
	Error  *itemError `json:"error"`
}

type itemError struct {
	Type     string     `json:"type"`
	Reason   string     `json:"reason"`
	CausedBy *itemError `json:"caused_by"`
}

func (e *itemError) String() string {
	if e == nil {
		return ""
	}
	s := e.Type + ": " + e.Reason
	if e.CausedBy != nil {
		s += "; caused by " + e.CausedBy.Type + ": " + e.CausedBy.Reason
	}
	return s
}

// sendBatch sends one request of docs and sets each one's outcome,
// returning the dead letters of those the server refused for good. An
// error is the request's failure as a whole.
func (s *Search) sendBatch(ctx context.Context, b *buffer, batch []int) ([]*kgo.Record, error) {
	status, answer, err := s.client.bulk(ctx, b.body(batch))
	if err != nil {
		b.setWhy(batch, err.Error())
		return nil, err
	}
	switch {
	case status == http.StatusOK:
	case status == http.StatusRequestEntityTooLarge || status == http.StatusBadRequest:
		// One of the documents breaks the request: send each alone to find
		// it, or, alone already, it is refused for good.
		if len(batch) > 1 {
			for _, i := range batch {
				b.docs[i].solo = true
			}
			return nil, nil
		}
		d := &b.docs[batch[0]]
		return []*kgo.Record{s.reject(b, d, &itemError{Type: http.StatusText(status), Reason: reason(answer)})}, nil
	case status == http.StatusTooManyRequests || status >= 500:
		b.setWhy(batch, fmt.Sprintf("status %d: %s", status, reason(answer)))
		for _, i := range batch {
			s.count(b.docs[i].typ, func(c *Counts) { c.Retried++ })
			s.metrics.documents.WithLabelValues(b.docs[i].typ, "retried").Inc()
		}
		return nil, nil
	default:
		// 403 (a read-only cluster, a missing privilege), 404 and the rest:
		// the server or its settings are wrong, not the documents.
		return nil, &statusError{status, reason(answer)}
	}
	if bytes.HasPrefix(answer, []byte(`{"errors":false`)) && !bytes.Contains(answer, []byte(`"error"`)) {
		for _, i := range batch {
			b.docs[i].state = indexed
		}
		return nil, nil
	}
	items, err := readItems(answer, len(batch))
	if err != nil {
		return nil, err
	}
	var dead []*kgo.Record
	for k, i := range batch {
		d := &b.docs[i]
		item := items[k]
		switch outcome(item, s.cfg.Versioning == "external" || s.cfg.DataStreams) {
		case indexed:
			d.state = indexed
		case rejected:
			dead = append(dead, s.reject(b, d, item.Error))
		default:
			d.why = fmt.Sprintf("status %d: %s", item.Status, item.Error)
			s.count(d.typ, func(c *Counts) { c.Retried++ })
			s.metrics.documents.WithLabelValues(d.typ, "retried").Inc()
		}
	}
	return dead, nil
}

// readItems reads the outcome of each of a _bulk request's n documents
// from its answer, in order.
func readItems(answer []byte, n int) ([]bulkItemAnswer, error) {
	var got bulkAnswer
	if err := json.Unmarshal(answer, &got); err != nil {
		return nil, fmt.Errorf("read _bulk answer: %w", err)
	}
	if len(got.Items) != n {
		return nil, fmt.Errorf("_bulk answered %d items for %d documents", len(got.Items), n)
	}
	out := make([]bulkItemAnswer, n)
	for k, item := range got.Items {
		for _, v := range item { // one: keyed by the action
			out[k] = v
		}
	}
	return out, nil
}

// outcome sorts one document's answer: indexed, refused for good
// (rejected), or to send again (pending). conflictDone is set when a 409
// means the document is there: under external versioning (this version or
// a newer one) and for creates (this id).
func outcome(item bulkItemAnswer, conflictDone bool) uint8 {
	switch st := item.Status; {
	case st >= 200 && st < 300:
		return indexed
	case st == http.StatusConflict && conflictDone:
		return indexed
	case st == http.StatusTooManyRequests, st >= 500, st == http.StatusRequestTimeout:
		return pending
	case item.Error != nil && strings.Contains(item.Error.Type, "rejected_execution"):
		return pending
	case st == http.StatusForbidden, st == http.StatusNotFound:
		// A read-only index (a full disk on the server), or one that may
		// not be created: faults of the server, which clear.
		return pending
	}
	return rejected
}

func (b *buffer) setWhy(batch []int, why string) {
	for _, i := range batch {
		b.docs[i].why = why
	}
}

// fieldPath finds the field a mapping error names.
var fieldPath = regexp.MustCompile(`field \[([^\]]+)\]`)

// reject settles d as refused and makes its dead letter.
func (s *Search) reject(b *buffer, d *doc, e *itemError) *kgo.Record {
	d.state = rejected
	s.count(d.typ, func(c *Counts) { c.DeadLettered++ })
	s.metrics.documents.WithLabelValues(d.typ, "dead_lettered").Inc()
	msg := e.String()
	path := ""
	if m := fieldPath.FindStringSubmatch(msg); m != nil {
		path = "/" + strings.ReplaceAll(m[1], ".", "/")
	}
	f := event.NewFailed(event.StageLoader, ReasonIndexRejected, []event.FieldError{{Path: path, Message: msg}},
		d.rootID, b.source(d), s.now())
	return bus.DeadLetter(s.dlqTopic, f, b.record(d), kgo.RecordHeader{Key: "sink", Value: []byte("search")})
}
