package schema

import (
	"encoding/json"
	"unicode/utf8"
)

// maxDepth bounds the nesting decode takes; deeper documents go the slow
// way, whose limit is encoding/json's.
const maxDepth = 512

// decode reads a JSON document as jsonschema.UnmarshalJSON does (objects
// as map[string]any, arrays as []any, numbers as json.Number, strings with
// invalid UTF-8 mended), without its reflection: the enricher validates
// every event, and that decoder was most of the cost. It reads documents
// as they come from producers; for anything else (a syntax error, deep
// nesting) ok is false, and the caller asks jsonschema for the document or
// its error.
func decode(b []byte) (doc any, ok bool) {
	d := decoder{b: b}
	d.space()
	v, ok := d.value(0)
	if !ok {
		return nil, false
	}
	d.space()
	return v, d.i == len(d.b)
}

type decoder struct {
	b []byte
	i int
}

func (d *decoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) value(depth int) (any, bool) {
	if d.i >= len(d.b) || depth > maxDepth {
		return nil, false
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.array(depth)
	case c == '"':
		s, ok := d.text()
		return string(s), ok
	case c == '-' || (c >= '0' && c <= '9'):
		start := d.i
		if !d.number() {
			return nil, false
		}
		return json.Number(d.b[start:d.i]), true
	}
	return d.literal()
}

// literal reads true, false or null.
func (d *decoder) literal() (any, bool) {
	for _, lit := range [...]struct {
		text string
		v    any
	}{{"true", true}, {"false", false}, {"null", nil}} {
		if len(d.b)-d.i >= len(lit.text) && string(d.b[d.i:d.i+len(lit.text)]) == lit.text {
			d.i += len(lit.text)
			return lit.v, true
		}
	}
	return nil, false
}

func (d *decoder) object(depth int) (any, bool) {
	d.i++ // {
	m := map[string]any{}
	d.space()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return m, true
	}
	for {
		d.space()
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return nil, false
		}
		k, ok := d.text()
		if !ok {
			return nil, false
		}
		d.space()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return nil, false
		}
		d.i++
		d.space()
		v, ok := d.value(depth + 1)
		if !ok {
			return nil, false
		}
		m[string(k)] = v // the last of a repeated name, as encoding/json
		if end, ok := d.after('}'); !ok || end {
			return m, ok
		}
	}
}

func (d *decoder) array(depth int) (any, bool) {
	d.i++ // [
	a := []any{}
	d.space()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return a, true
	}
	for {
		d.space()
		v, ok := d.value(depth + 1)
		if !ok {
			return nil, false
		}
		a = append(a, v)
		if end, ok := d.after(']'); !ok || end {
			return a, ok
		}
	}
}

// after reads what follows a member or an element: a comma, or the close
// of its object or array (end).
func (d *decoder) after(close byte) (end, ok bool) {
	d.space()
	if d.i >= len(d.b) {
		return false, false
	}
	switch d.b[d.i] {
	case ',':
		d.i++
		return false, true
	case close:
		d.i++
		return true, true
	}
	return false, false
}

// text reads a string, as its bytes when it is plain ASCII with no
// escapes; any other goes through encoding/json, which knows JSON's
// escapes and mends invalid UTF-8 as UnmarshalJSON does.
func (d *decoder) text() ([]byte, bool) {
	start := d.i
	d.i++ // "
	plain := true
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			if plain {
				return d.b[start+1 : d.i-1], true
			}
			var s string
			if json.Unmarshal(d.b[start:d.i], &s) != nil {
				return nil, false
			}
			return []byte(s), true
		case c == '\\':
			plain = false
			d.i++ // the escaped byte, whatever it is: encoding/json checks it
		case c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			plain = false
		}
	}
	return nil, false
}

// number reads a number as JSON writes it: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *decoder) number() bool {
	if d.b[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.b) && d.b[d.i] == '0':
		d.i++
	case d.i < len(d.b) && d.b[d.i] >= '1' && d.b[d.i] <= '9':
		d.digits()
	default:
		return false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if !d.digits() {
			return false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		return d.digits()
	}
	return true
}

// digits reads one or more digits.
func (d *decoder) digits() bool {
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}
