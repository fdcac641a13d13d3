package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Invalid says why bytes are not a valid envelope: a reason code for the
// first problem, and every problem found.
type Invalid struct {
	Reason string
	Errors []FieldError
}

func (e *Invalid) Error() string {
	if len(e.Errors) == 0 {
		return e.Reason
	}
	if e.Errors[0].Path == "" {
		return e.Errors[0].Message
	}
	return e.Errors[0].Path + ": " + e.Errors[0].Message
}

func (e *Invalid) add(reason, path, msg string) {
	if e.Reason == "" {
		e.Reason = reason
	}
	e.Errors = append(e.Errors, FieldError{Path: path, Message: msg})
}

// member is one top-level key and its value, both as the raw bytes the
// client sent.
type member struct {
	key   string
	raw   []byte // the whole `"key":value` span, re-emitted unchanged
	value []byte
}

// Envelope is a validated client event. It keeps the client's bytes so that
// the stored event differs from what was sent only by the collector's fields.
type Envelope struct {
	EventType     string
	SchemaVersion string
	// EventID is the client's own id, when it sent one.
	EventID string
	members []member
}

// Stamp is what the collector adds to every event it accepts.
type Stamp struct {
	CollectorTstamp string
	RootID          string
	CollectorID     string
}

// reserved reports whether the collector owns a top-level key. A client's
// value for such a key is replaced, never stored beside the collector's.
func reserved(key string) bool {
	return key == FieldCollectorTstamp || key == FieldRootID || key == FieldCollectorID
}

// Parse validates b as one envelope.
func Parse(b []byte) (*Envelope, *Invalid) {
	var buf [16]span
	members := buf[:0]
	if !walk(b, 1, func(s span) { members = append(members, s) }) || !utf8.Valid(b) {
		return nil, describe(b)
	}
	return fromMembers(b, firstByte(b), members)
}

// describe says why b is not one well-formed UTF-8 JSON value. It runs
// only on the error path, so it can afford encoding/json's messages.
func describe(b []byte) *Invalid {
	msg := "body is empty"
	switch {
	case skipWS(b, 0) == len(b):
	case json.Valid(b):
		msg = "body is not valid UTF-8"
	default:
		var raw json.RawMessage
		err := json.Unmarshal(b, &raw)
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			msg = fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error())
		case err != nil:
			msg = "invalid JSON: " + err.Error()
		default:
			msg = "invalid JSON"
		}
	}
	return &Invalid{Reason: ReasonInvalidJSON, Errors: []FieldError{{Path: "", Message: msg}}}
}

func firstByte(b []byte) byte {
	if i := skipWS(b, 0); i < len(b) {
		return b[i]
	}
	return 0
}

// fromMembers builds an envelope from the top-level members of a value
// starting with first, all as spans of b.
func fromMembers(b []byte, first byte, spans []span) (*Envelope, *Invalid) {
	if first != '{' {
		return nil, &Invalid{Reason: ReasonWrongType, Errors: []FieldError{{
			Path: "", Message: "an event must be a JSON object, got " + kind(first),
		}}}
	}
	env := &Envelope{members: make([]member, 0, len(spans))}
	var keyBuf [16]string
	keys := keyBuf[:0]
	var seen map[string]struct{}
	if len(spans) > 16 {
		seen = make(map[string]struct{}, len(spans))
	}
	for i, sp := range spans {
		key := memberKey(b[sp.keyStart:sp.keyEnd])
		keys = append(keys, key)
		dup := false
		if seen != nil {
			_, dup = seen[key]
			seen[key] = struct{}{}
		} else {
			for _, prev := range keys[:i] {
				if prev == key {
					dup = true
					break
				}
			}
		}
		if dup {
			return nil, &Invalid{Reason: ReasonInvalidJSON, Errors: []FieldError{{
				Path: pointer(key), Message: "duplicate key " + strconv.Quote(key),
			}}}
		}
		if !reserved(key) {
			env.members = append(env.members, member{key: key, raw: b[sp.keyStart:sp.end], value: b[sp.start:sp.end]})
		}
	}

	// On the stack: only a refusal takes a copy to the heap.
	var inv Invalid
	env.EventType = requireString(&inv, env.value(FieldEventType), FieldEventType)
	env.SchemaVersion = requireString(&inv, env.value(FieldSchemaVersion), FieldSchemaVersion)
	switch p := env.value(FieldPayload); {
	case p == nil:
		inv.add(ReasonMissingField, pointer(FieldPayload), "payload is required")
	case p[0] != '{':
		inv.add(ReasonWrongType, pointer(FieldPayload), "payload must be a JSON object, got "+kind(p[0]))
	}
	if id := env.value(FieldEventID); id != nil {
		if id[0] != '"' {
			inv.add(ReasonWrongType, pointer(FieldEventID), "event_id must be a string, got "+kind(id[0]))
		} else {
			env.EventID = Unquote(id)
		}
	}
	if inv.Reason != "" {
		refused := inv
		return nil, &refused
	}
	return env, nil
}

// envelopeKeys are the keys every event has, whose strings a parse shares
// rather than copies out of each body.
var envelopeKeys = [...]string{FieldEventType, FieldSchemaVersion, FieldPayload, FieldEventID,
	FieldCollectorTstamp, FieldRootID, FieldCollectorID}

// memberKey is Unquote for an object's key, without a copy for the
// envelope's own keys.
func memberKey(lit []byte) string {
	inner := lit[1 : len(lit)-1]
	for _, k := range envelopeKeys {
		if string(inner) == k {
			return k
		}
	}
	return Unquote(lit)
}

func requireString(inv *Invalid, v []byte, field string) string {
	switch {
	case v == nil:
		inv.add(ReasonMissingField, pointer(field), field+" is required")
	case v[0] != '"':
		inv.add(ReasonWrongType, pointer(field), field+" must be a string, got "+kind(v[0]))
	default:
		s := Unquote(v)
		if isBlank(s) {
			inv.add(ReasonEmptyField, pointer(field), field+" must not be empty")
		}
		return s
	}
	return ""
}

// Payload is the payload's raw JSON, as the client sent it.
func (e *Envelope) Payload() []byte { return e.value(FieldPayload) }

func (e *Envelope) value(key string) []byte {
	for _, m := range e.members {
		if m.key == key {
			return m.value
		}
	}
	return nil
}

// AppendStamped appends the event as the collector stores it: the client's
// members, unchanged and in order, then the collector's fields.
func (e *Envelope) AppendStamped(dst []byte, s Stamp) []byte {
	dst = append(dst, '{')
	for _, m := range e.members {
		dst = append(dst, m.raw...)
		dst = append(dst, ',')
	}
	dst = appendField(dst, FieldCollectorTstamp, s.CollectorTstamp)
	dst = append(dst, ',')
	dst = appendField(dst, FieldRootID, s.RootID)
	dst = append(dst, ',')
	dst = appendField(dst, FieldCollectorID, s.CollectorID)
	return append(dst, '}')
}

func appendField(dst []byte, key, value string) []byte {
	dst = append(dst, '"')
	dst = append(dst, key...)
	dst = append(dst, `":`...)
	return AppendString(dst, value)
}

// AppendString appends s as a JSON string. strconv.Quote is not used because
// its Go escapes (\x7f, \a) are not JSON. The runs of bytes that need no
// escape, nearly all, are copied whole: a byte at a time took about twice
// as long, for short values and long (BenchmarkAppendString).
func AppendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	from := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[from:i]...)
		if c < 0x20 {
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		} else {
			dst = append(dst, '\\', c)
		}
		from = i + 1
	}
	dst = append(dst, s[from:]...)
	return append(dst, '"')
}

// Element is one event of a JSON array batch, already validated and split
// into members by SplitArray.
type Element struct {
	body    []byte
	value   span
	members []span
}

// Bytes are the element as sent.
func (e Element) Bytes() []byte { return e.body[e.value.start:e.value.end] }

// Offset is where the element starts in the batch body.
func (e Element) Offset() int { return e.value.start }

// Parse checks the element as an envelope.
func (e Element) Parse() (*Envelope, *Invalid) {
	return fromMembers(e.body, e.body[e.value.start], e.members)
}

// SplitArray validates a JSON array body and splits it into elements, each
// still to be checked as an envelope on its own, in one pass over the
// bytes. A body that is not an array is reported as invalid_json or
// wrong_type for the batch as a whole.
func SplitArray(b []byte) ([]Element, *Invalid) {
	var spans []span
	if !walk(b, 2, func(s span) { spans = append(spans, s) }) || !utf8.Valid(b) {
		return nil, describe(b)
	}
	if first := firstByte(b); first != '[' {
		return nil, &Invalid{Reason: ReasonWrongType, Errors: []FieldError{{
			Path: "", Message: "a batch must be a JSON array or NDJSON, got " + kind(first),
		}}}
	}
	// walk reports an element's members before the element itself.
	var elems []Element
	from := 0
	for i, sp := range spans {
		if sp.depth == 1 {
			elems = append(elems, Element{body: b, value: sp, members: spans[from:i:i]})
			from = i + 1
		}
	}
	return elems, nil
}

// Unquote decodes a JSON string literal, taking the copy-free path when it
// holds no escapes.
func Unquote(lit []byte) string {
	inner := lit[1 : len(lit)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(lit, &s); err != nil {
				return string(inner)
			}
			return s
		}
	}
	return string(inner)
}

func isBlank(s string) bool {
	for _, r := range s {
		switch r {
		case ' ', '\t', '\n', '\r':
		default:
			return false
		}
	}
	return true
}

func kind(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// pointer is the JSON pointer (RFC 6901) of a top-level key.
func pointer(key string) string {
	esc := make([]byte, 0, len(key)+1)
	esc = append(esc, '/')
	for i := 0; i < len(key); i++ {
		switch key[i] {
		case '~':
			esc = append(esc, "~0"...)
		case '/':
			esc = append(esc, "~1"...)
		default:
			esc = append(esc, key[i])
		}
	}
	return string(esc)
}

// Line is one non-blank line of an NDJSON body, numbered from 1.
type Line struct {
	Number int
	Data   []byte
}

// SplitLines returns the non-blank lines of an NDJSON body. Each is parsed on
// its own, so one bad line rejects only itself.
func SplitLines(b []byte) []Line {
	var lines []Line
	for n := 1; len(b) > 0; n++ {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if skipWS(line, 0) < len(line) {
			lines = append(lines, Line{Number: n, Data: line})
		}
	}
	return lines
}
