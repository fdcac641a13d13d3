package enricher

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/enrich"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/schema"
)

// step is one record's way through a poll: prepared (parsed, validated,
// joined), then its API's answer fetched, then finished (modelled).
type step struct {
	// outs, once set, are the record's outputs: a dead letter, or the
	// event of a type no pipeline names.
	outs    []*kgo.Record
	top     []event.Member
	payload []byte
	p       Pipeline
	// doc and url are the API's document and the call's URL; call is the
	// poll's call whose answer the record takes.
	doc  []byte
	url  string
	call int
}

// call is one distinct API call of a poll: every record of the poll that
// renders the same URL takes its answer.
type call struct {
	api    *enrich.API
	doc    []byte
	answer []byte
	err    error
}

type callKey struct {
	api *enrich.API
	url string
}

// process enriches a poll's records and returns each one's output records
// in the records' order. It runs in three phases: every record is
// prepared, on every core; then the poll's distinct API calls are made,
// with no other work in the process to delay their answers; then every
// record is finished, on every core. Overlapping the calls with the
// modelling of answered records made them slower: each answer, and the
// call after it, waited for a core busy modelling (and the API server, on
// the same machine in the benchmark, for its timers). The poll commits as
// one transaction, so no record's output is later for waiting.
func (e *Enricher) process(ctx context.Context, recs []*kgo.Record) [][]*kgo.Record {
	steps := make([]step, len(recs))
	onCores(len(recs), func(i int) { e.prepare(recs[i], &steps[i]) })
	var calls []call
	index := map[callKey]int{}
	for i := range steps {
		st := &steps[i]
		if st.outs != nil || st.p.API == nil {
			continue
		}
		k := callKey{st.p.API, st.url}
		n, ok := index[k]
		if !ok {
			n = len(calls)
			index[k] = n
			calls = append(calls, call{api: st.p.API, doc: st.doc})
		}
		st.call = n
	}
	sem := make(chan struct{}, max(e.cfg.Concurrency, 1))
	var wg sync.WaitGroup
	for i := range calls {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c := &calls[i]
			c.answer, c.err = c.api.Fetch(ctx, c.doc)
		})
	}
	wg.Wait()
	outs := make([][]*kgo.Record, len(recs))
	onCores(len(recs), func(i int) { outs[i] = e.finish(recs[i], &steps[i], calls) })
	return outs
}

// onCores calls f for every index below n, from a goroutine per core.
func onCores(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		})
	}
	wg.Wait()
}

// prepare parses, validates and joins a raw record, and renders its API
// call. A record that goes no further gets its outputs.
func (e *Enricher) prepare(r *kgo.Record, st *step) {
	top, fields, err := event.ObjectMembers(r.Value, event.FieldPayload, nil, nil)
	if err != nil {
		st.outs = e.dead(r, event.ReasonInvalidJSON, []event.FieldError{{Path: "", Message: err.Error()}})
		return
	}
	var eventType, version string
	var payload []byte
	for _, m := range top {
		switch {
		case m.Is(event.FieldEventType) && m.Value[0] == '"':
			eventType = event.Unquote(m.Value)
		case m.Is(event.FieldSchemaVersion) && m.Value[0] == '"':
			version = event.Unquote(m.Value)
		case m.Is(event.FieldPayload):
			payload = m.Value
		}
	}
	if eventType == "" || payload == nil {
		st.outs = e.dead(r, event.ReasonMissingField, []event.FieldError{{Path: "", Message: "an event needs event_type and payload"}})
		return
	}
	key := schema.Key{EventType: eventType, Version: version}
	errs, err := e.schemas.Validate(key, payload)
	switch {
	case errors.Is(err, schema.ErrNoSchema):
		e.metrics.unknown.WithLabelValues(eventType).Inc()
		if e.cfg.UnknownSchema == "reject" {
			st.outs = e.dead(r, ReasonUnknownSchema, []event.FieldError{{Path: "/" + event.FieldSchemaVersion,
				Message: fmt.Sprintf("no schema for %s; add schemas/%s/%s.json or run with --unknown-schema pass", key, eventType, version)}})
			return
		}
	case err != nil:
		st.outs = e.dead(r, ReasonSchemaViolation, []event.FieldError{{Path: "/" + event.FieldPayload, Message: err.Error()}})
		return
	case len(errs) > 0:
		st.outs = e.dead(r, ReasonSchemaViolation, errs)
		return
	}

	p, ok := e.cfg.Pipelines[eventType]
	if !ok {
		st.outs = []*kgo.Record{e.out(r, r.Value, "")}
		return
	}
	for _, j := range p.Joins {
		joined, joinedFields, matched, err := j.Apply(payload, fields)
		if err != nil {
			st.outs = e.dead(r, ReasonFailed, []event.FieldError{{Path: "/" + event.FieldPayload, Message: err.Error()}})
			return
		}
		if !matched {
			e.metrics.lookupMisses.WithLabelValues(eventType, j.Field).Inc()
			if j.Reject {
				st.outs = e.dead(r, ReasonLookupMiss, []event.FieldError{{Path: "/payload/" + j.Field, Message: "not in the lookup"}})
				return
			}
		}
		payload, fields = joined, joinedFields
	}
	st.top, st.payload, st.p = top, payload, p
	if p.API != nil {
		st.doc = append(append([]byte(`{"payload":`), payload...), '}')
		if st.url, err = p.API.URL(st.doc); err != nil {
			st.outs = e.dead(r, ReasonFailed, []event.FieldError{{Path: "/" + event.FieldPayload,
				Message: fmt.Errorf("%w: %w", enrich.ErrFailed, err).Error()}})
		}
	}
}

// finish turns a prepared record, with its API's answer, into its
// outputs: the enriched event or its table rows, or one dead letter saying
// why not.
func (e *Enricher) finish(r *kgo.Record, st *step, calls []call) []*kgo.Record {
	if st.outs != nil {
		return st.outs
	}
	p := st.p
	var answer []byte
	if p.API != nil {
		c := calls[st.call]
		switch {
		case errors.Is(c.err, enrich.ErrNotFound):
			return e.dead(r, ReasonNotFound, []event.FieldError{{Path: "/" + event.FieldPayload, Message: "the API has nothing at " + st.url}})
		case c.err != nil:
			return e.dead(r, ReasonFailed, []event.FieldError{{Path: "/" + event.FieldPayload, Message: c.err.Error()}})
		}
		answer = c.answer
	}
	if p.Model == nil {
		return []*kgo.Record{e.out(r, withPayload(st.top, st.payload), "")}
	}
	doc := modelDocument(st.top, st.payload, p.APIKey, answer, e.now())
	rows, err := p.Model.Rows(doc)
	if err != nil {
		return e.dead(r, ReasonFailed, []event.FieldError{{Path: "", Message: "model: " + err.Error()}})
	}
	outs := make([]*kgo.Record, 0, len(rows)+1)
	if p.KeepEvent {
		outs = append(outs, e.out(r, withPayload(st.top, st.payload), ""))
	}
	for _, row := range rows {
		outs = append(outs, e.out(r, row.JSON(), row.Table))
	}
	return outs
}

// modelDocument is what a model reads: {"event": the payload, "envelope":
// the event's other members, the API's answer under apiKey, and
// "retrieved_timestamp"}.
func modelDocument(top []event.Member, payload []byte, apiKey string, answer []byte, now time.Time) []byte {
	doc := append(append([]byte(`{"event":`), payload...), `,"envelope":{`...)
	first := true
	for _, m := range top {
		if m.Is(event.FieldPayload) {
			continue
		}
		if !first {
			doc = append(doc, ',')
		}
		first = false
		doc = append(append(append(doc, m.Key...), ':'), m.Value...)
	}
	doc = append(doc, '}')
	if apiKey != "" {
		doc = append(append(event.AppendString(append(doc, ','), apiKey), ':'), orNull(answer)...)
	}
	doc = append(doc, `,"retrieved_timestamp":`...)
	doc = event.AppendString(doc, event.FormatTime(now))
	return append(doc, '}')
}

func orNull(b []byte) []byte {
	if b == nil {
		return []byte("null")
	}
	return b
}

// withPayload rebuilds an event with its payload replaced.
func withPayload(top []event.Member, payload []byte) []byte {
	b := []byte{'{'}
	for i, m := range top {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(append(b, m.Key...), ':')
		if m.Is(event.FieldPayload) {
			b = append(b, payload...)
		} else {
			b = append(b, m.Value...)
		}
	}
	return append(b, '}')
}

// out is an output record on the enriched topic, keeping the input's key
// and headers, with a table header when the value is a table row.
func (e *Enricher) out(r *kgo.Record, value []byte, table string) *kgo.Record {
	headers := append([]kgo.RecordHeader(nil), r.Headers...)
	if table != "" {
		headers = append(headers, kgo.RecordHeader{Key: "table", Value: []byte(table)})
	}
	return &kgo.Record{Topic: e.cfg.EnrichedTopic, Key: r.Key, Value: value, Headers: headers}
}

// dead is the dead letter of a record.
func (e *Enricher) dead(r *kgo.Record, reason string, errs []event.FieldError) []*kgo.Record {
	e.metrics.dead.WithLabelValues(reason).Inc()
	f := event.NewFailed(event.StageEnricher, reason, errs, bus.Header(r, event.HeaderRootID), r.Value, e.now())
	return []*kgo.Record{bus.DeadLetter(e.cfg.DLQTopic, f, r)}
}
