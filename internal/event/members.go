package event

import (
	"errors"
	"unicode/utf8"
)

// Member is a top-level key of a JSON object, unquoted, and its value as
// raw JSON.
type Member struct {
	Key   string
	Value []byte
}

// ErrNotObject is returned by ObjectMembers for valid JSON that is not an
// object.
var ErrNotObject = errors.New("not a JSON object")

// ObjectMembers validates b as a JSON object and appends its top-level
// members to dst in order, in one pass over the bytes. Later stages use it
// to read events without decoding values they pass through.
func ObjectMembers(b []byte, dst []Member) ([]Member, error) {
	ok := walk(b, 1, func(s span) {
		dst = append(dst, Member{Key: Unquote(b[s.keyStart:s.keyEnd]), Value: b[s.start:s.end]})
	})
	if !ok || !utf8.Valid(b) {
		return dst, describe(b)
	}
	if firstByte(b) != '{' {
		return dst, ErrNotObject
	}
	return dst, nil
}
