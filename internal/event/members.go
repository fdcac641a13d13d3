package event

import (
	"errors"
	"unicode/utf8"
)

// Member is a member of a JSON object as written: Key is its key's string
// literal, quotes included and escapes not decoded, and Value its raw JSON
// value. Both alias the object's bytes.
type Member struct {
	Key   []byte
	Value []byte
}

// Name is the member's key, decoded.
func (m Member) Name() string { return Unquote(m.Key) }

// Is reports whether the member's decoded key is name, without decoding
// when the key has no escapes.
func (m Member) Is(name string) bool {
	if len(m.Key) == len(name)+2 && string(m.Key[1:len(m.Key)-1]) == name {
		return true
	}
	for _, c := range m.Key {
		if c == '\\' {
			return m.Name() == name
		}
	}
	return false
}

// ErrNotObject is returned by ObjectMembers for valid JSON that is not an
// object.
var ErrNotObject = errors.New("not a JSON object")

// ObjectMembers validates b as a JSON object and appends its top-level
// members to top and, when the member named nested holds an object, that
// object's members to inner, all in one pass over the bytes. Later stages
// read events through it without decoding the values they pass through;
// nested is how the loader lifts payload's members into columns.
func ObjectMembers(b []byte, nested string, top, inner []Member) ([]Member, []Member, error) {
	// A member's own members arrive before it ends: they are gathered from
	// mark on, then kept if it is the nested object or dropped. A repeated
	// nested key keeps its last object, as encoding/json does.
	base, mark := len(inner), len(inner)
	ok := walk(b, 2, func(s span) {
		if s.depth == 2 {
			if s.keyEnd > 0 {
				inner = append(inner, Member{Key: b[s.keyStart:s.keyEnd], Value: b[s.start:s.end]})
			}
			return
		}
		m := Member{Value: b[s.start:s.end]}
		if s.keyEnd > 0 {
			m.Key = b[s.keyStart:s.keyEnd]
		}
		top = append(top, m)
		switch {
		case nested == "" || m.Key == nil || !m.Is(nested):
			inner = inner[:mark]
		case m.Value[0] == '{':
			inner = inner[:base+copy(inner[base:], inner[mark:])]
			mark = len(inner)
		default: // a later nested key that is not an object replaces an earlier one
			inner, mark = inner[:base], base
		}
	})
	if !ok || !utf8.Valid(b) {
		return top, inner[:base], describe(b)
	}
	if firstByte(b) != '{' {
		return top, inner[:base], ErrNotObject
	}
	return top, inner, nil
}
