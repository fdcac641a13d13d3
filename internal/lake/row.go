package lake

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/event"
)

// timestampFields are the fields Sluice itself writes as RFC 3339 times; they
// become timestamp columns. Schemas will name more (issue: enricher).
var timestampFields = map[string]bool{
	event.FieldCollectorTstamp: true,
	"failed_at":                true,
}

// Rower flattens JSON events into rows, reusing its scratch space.
type Rower struct {
	top, payload []event.Member
}

// Row flattens one event into fields appended to dst: each top-level member
// is a column, except payload, whose members are lifted to columns of their
// own (prefixed payload_ if they clash with an envelope field). Nested
// objects and arrays stay JSON text.
func (r *Rower) Row(value []byte, dst []Field) ([]Field, error) {
	var err error
	if r.top, err = event.ObjectMembers(value, r.top[:0]); err != nil {
		return dst, fmt.Errorf("event is not a JSON object: %w", err)
	}
	var payload []byte
	for _, m := range r.top {
		if m.Key == event.FieldPayload && len(m.Value) > 0 && m.Value[0] == '{' {
			payload = m.Value
			continue
		}
		dst = append(dst, Field{Name: m.Key, Cell: cell(m.Key, m.Value)})
	}
	if payload == nil {
		return dst, nil
	}
	if r.payload, err = event.ObjectMembers(payload, r.payload[:0]); err != nil {
		return dst, fmt.Errorf("payload: %w", err)
	}
	for _, m := range r.payload {
		name := m.Key
		for _, t := range r.top {
			if t.Key == name {
				name = "payload_" + name
				break
			}
		}
		dst = append(dst, Field{Name: name, Cell: cell(name, m.Value)})
	}
	return dst, nil
}

// cell types a raw JSON value.
func cell(name string, raw []byte) Cell {
	switch raw[0] {
	case 'n':
		return Cell{}
	case 't':
		return Cell{Kind: KindBool, I: 1}
	case 'f':
		return Cell{Kind: KindBool}
	case '{', '[':
		return Cell{Kind: KindJSON, S: string(raw)}
	case '"':
		s := event.Unquote(raw)
		if timestampFields[name] {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return Cell{Kind: KindTimestamp, I: t.UnixMicro()}
			}
		}
		return Cell{Kind: KindString, S: s}
	}
	text := string(raw)
	if !strings.ContainsAny(text, ".eE") {
		if i, err := strconv.ParseInt(text, 10, 64); err == nil {
			return Cell{Kind: KindInt, I: i}
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		// Out of float range: keep the digits rather than lose them.
		return Cell{Kind: KindString, S: text}
	}
	return Cell{Kind: KindFloat, F: f}
}
