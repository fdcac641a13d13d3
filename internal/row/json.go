package row

import (
	"fmt"
	"strconv"
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
	// names maps key literals, as written, to their column names: events
	// repeat a few keys, so each is decoded once and rows share the
	// strings. Rows mostly repeat the previous row's keys in order, so
	// prevTop and prevPayload, by position, spare most lookups.
	names                map[string]*name
	prevTop, prevPayload []*name
}

type name struct {
	literal   string // the key as written, quoted
	column    string // the key, decoded
	prefixed  string // payload_<key>, for a payload key that clashes with the envelope
	envelope  bool   // seen as a top-level key
	timestamp bool
}

// maxNames bounds the key cache against events whose keys never repeat.
const maxNames = 4096

// Row flattens one event into fields appended to dst: each top-level member
// is a column, except payload, whose members are lifted to columns of their
// own (prefixed payload_ if they clash with an envelope field). Nested
// objects and arrays stay JSON text. The fields' text aliases value.
func (r *Rower) Row(value []byte, dst []Field) ([]Field, error) {
	var err error
	r.top, r.payload, err = event.ObjectMembers(value, event.FieldPayload, r.top[:0], r.payload[:0])
	if err != nil {
		return dst, fmt.Errorf("event is not a JSON object: %w", err)
	}
	lifted := len(r.payload) > 0
	base := len(dst)
	for i, m := range r.top {
		if lifted && m.Value[0] == '{' && m.Is(event.FieldPayload) {
			continue
		}
		n := r.name(m.Key, &r.prevTop, i)
		n.envelope = true
		dst = append(dst, Field{Name: n.column, Cell: cell(n, m.Value)})
	}
	envelope := dst[base:]
	for i, m := range r.payload {
		n := r.name(m.Key, &r.prevPayload, i)
		col := n.column
		for _, f := range envelope {
			if !n.envelope {
				break // never a top-level key: no clash
			}
			if f.Name == col {
				col = n.prefixed
				break
			}
		}
		dst = append(dst, Field{Name: col, Cell: cell(n, m.Value)})
	}
	return dst, nil
}

// name returns the column name of the key at position i of a row, where
// the previous row had prev[i].
func (r *Rower) name(key []byte, prev *[]*name, i int) *name {
	if i < len(*prev) && (*prev)[i].literal == string(key) {
		return (*prev)[i]
	}
	n := r.names[string(key)]
	if n == nil {
		if r.names == nil || len(r.names) >= maxNames {
			r.names = make(map[string]*name)
		}
		col := event.Unquote(key)
		n = &name{literal: string(key), column: col, prefixed: "payload_" + col, timestamp: timestampFields[col]}
		r.names[n.literal] = n
	}
	if i < len(*prev) {
		(*prev)[i] = n
	} else if i == len(*prev) {
		*prev = append(*prev, n)
	}
	return n
}

// cell types a raw JSON value.
func cell(n *name, raw []byte) Cell {
	switch raw[0] {
	case 'n':
		return Cell{}
	case 't':
		return Cell{Kind: KindBool, I: 1}
	case 'f':
		return Cell{Kind: KindBool}
	case '{', '[':
		return Cell{Kind: KindJSON, B: raw}
	case '"':
		s := unquote(raw)
		if n.timestamp {
			if t, err := time.Parse(time.RFC3339Nano, string(s)); err == nil {
				return Cell{Kind: KindTimestamp, I: t.UnixMicro()}
			}
		}
		return Cell{Kind: KindString, B: s}
	}
	if i, ok := parseInt(raw); ok {
		return Cell{Kind: KindInt, I: i}
	}
	f, err := parseFloat(raw)
	if err != nil {
		// Out of float range: keep the digits rather than lose them.
		return Cell{Kind: KindString, B: raw}
	}
	return Cell{Kind: KindFloat, F: f}
}

// unquote is a string literal's text, aliasing it when it has no escapes.
func unquote(lit []byte) []byte {
	for _, c := range lit {
		if c == '\\' {
			return []byte(event.Unquote(lit))
		}
	}
	return lit[1 : len(lit)-1]
}

// parseInt reads a JSON number that is an integer in int64's range; ok is
// false for anything else, which is read as a float. Up to 18 digits, the
// common case, it needs none of strconv's generality.
func parseInt(raw []byte) (int64, bool) {
	digits := raw
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) > 18 {
		i, err := strconv.ParseInt(string(raw), 10, 64)
		return i, err == nil
	}
	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if raw[0] == '-' {
		v = -v
	}
	return v, len(digits) > 0
}

// pow10 are the powers of ten that float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parseFloat reads a JSON number as a float64, as strconv.ParseFloat does.
// Decimals of up to 15 digits without an exponent, such as amounts and
// distances, are the quotient of two exactly held doubles, which IEEE
// division rounds correctly (Clinger's fast path); strconv's generality
// was a sixth of the loader's parsing time. Anything else takes strconv.
func parseFloat(raw []byte) (float64, error) {
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	var mant uint64
	point := -1
	for i, c := range digits {
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
		case c == '.' && point < 0:
			point = i
		default:
			return strconv.ParseFloat(string(raw), 64)
		}
	}
	if point < 1 || len(digits)-1 > len(pow10)-1 || point == len(digits)-1 {
		return strconv.ParseFloat(string(raw), 64)
	}
	f := float64(mant) / pow10[len(digits)-point-1]
	if raw[0] == '-' {
		f = -f
	}
	return f, nil
}
