package event

import (
	"encoding/hex"
	"fmt"

	"github.com/google/uuid"
)

// RootIDLen is the length of a root id in its text form.
const RootIDLen = 36

// AppendRootID appends a new UUID v7 in its text form: random, yet sorting
// by the time it was made, which keeps Kafka keys and lake files in rough
// time order. Appending lets the collector keep a request's ids in one
// buffer.
func AppendRootID(dst []byte) ([]byte, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return dst, fmt.Errorf("new root id: %w", err)
	}
	var text [RootIDLen]byte
	hex.Encode(text[0:8], id[0:4])
	text[8] = '-'
	hex.Encode(text[9:13], id[4:6])
	text[13] = '-'
	hex.Encode(text[14:18], id[6:8])
	text[18] = '-'
	hex.Encode(text[19:23], id[8:10])
	text[23] = '-'
	hex.Encode(text[24:], id[10:])
	return append(dst, text[:]...), nil
}

// NewRootID returns a new root id as a string.
func NewRootID() (string, error) {
	b, err := AppendRootID(make([]byte, 0, RootIDLen))
	return string(b), err
}
