package enricher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/enrich"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/schema"
)

// enrich turns one raw record into its output records: the enriched event
// or its table rows, or one dead letter saying why not.
func (e *Enricher) enrich(ctx context.Context, r *kgo.Record) []*kgo.Record {
	e.cpu <- struct{}{}
	defer func() { <-e.cpu }()
	top, _, err := event.ObjectMembers(r.Value, "", nil, nil)
	if err != nil {
		return e.dead(r, event.ReasonInvalidJSON, []event.FieldError{{Path: "", Message: err.Error()}})
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
		return e.dead(r, event.ReasonMissingField, []event.FieldError{{Path: "", Message: "an event needs event_type and payload"}})
	}
	key := schema.Key{EventType: eventType, Version: version}
	errs, err := e.schemas.Validate(key, payload)
	switch {
	case errors.Is(err, schema.ErrNoSchema):
		e.metrics.unknown.WithLabelValues(eventType).Inc()
		if e.cfg.UnknownSchema == "reject" {
			return e.dead(r, ReasonUnknownSchema, []event.FieldError{{Path: "/" + event.FieldSchemaVersion,
				Message: fmt.Sprintf("no schema for %s; add schemas/%s/%s.json or run with --unknown-schema pass", key, eventType, version)}})
		}
	case err != nil:
		return e.dead(r, ReasonSchemaViolation, []event.FieldError{{Path: "/" + event.FieldPayload, Message: err.Error()}})
	case len(errs) > 0:
		return e.dead(r, ReasonSchemaViolation, errs)
	}

	p, ok := e.cfg.Pipelines[eventType]
	if !ok {
		return []*kgo.Record{e.out(r, r.Value, "")}
	}
	for _, j := range p.Joins {
		joined, matched, err := j.Apply(payload)
		if err != nil {
			return e.dead(r, ReasonFailed, []event.FieldError{{Path: "/" + event.FieldPayload, Message: err.Error()}})
		}
		if !matched {
			e.metrics.lookupMisses.WithLabelValues(eventType, j.Field).Inc()
			if j.Reject {
				return e.dead(r, ReasonLookupMiss, []event.FieldError{{Path: "/payload/" + j.Field, Message: "not in the lookup"}})
			}
		}
		payload = joined
	}
	var answer []byte
	if p.API != nil {
		doc := append(append([]byte(`{"payload":`), payload...), '}')
		<-e.cpu
		answer, err = p.API.Fetch(ctx, doc)
		e.cpu <- struct{}{}
		switch {
		case errors.Is(err, enrich.ErrNotFound):
			u, _ := p.API.URL(doc)
			return e.dead(r, ReasonNotFound, []event.FieldError{{Path: "/" + event.FieldPayload, Message: "the API has nothing at " + u}})
		case err != nil:
			return e.dead(r, ReasonFailed, []event.FieldError{{Path: "/" + event.FieldPayload, Message: err.Error()}})
		}
	}
	if p.Model == nil {
		return []*kgo.Record{e.out(r, withPayload(top, payload), "")}
	}
	doc := modelDocument(top, payload, p.APIKey, answer, e.now())
	rows, err := p.Model.Rows(doc)
	if err != nil {
		return e.dead(r, ReasonFailed, []event.FieldError{{Path: "", Message: "model: " + err.Error()}})
	}
	outs := make([]*kgo.Record, 0, len(rows)+1)
	if p.KeepEvent {
		outs = append(outs, e.out(r, withPayload(top, payload), ""))
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
