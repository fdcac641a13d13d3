package event

import (
	"bytes"
	"strconv"
	"strings"
)

// ReasonNonFinite is the reason of an event holding NaN or ±Infinity when
// the collector is set to reject them.
const ReasonNonFinite = "non_finite_number"

// NonFinite is a NaN, Infinity or -Infinity found where a JSON value goes.
type NonFinite struct {
	Token string // as written: NaN, Infinity, -Infinity
	Path  string // JSON Pointer of the value, from the document's root
	At    int    // its offset in the input
}

// Original maps the span [start, end) of ReplaceNonFinite's output back to
// the input it was made from, given what it found there.
func Original(found []NonFinite, start, end int) (int, int) {
	shiftStart, shiftEnd, shift := 0, 0, 0
	for _, f := range found {
		out := f.At - shift // where its null is in the output
		grow := len(f.Token) - len("null")
		if out < start {
			shiftStart += grow
		}
		if out < end {
			shiftEnd += grow
		}
		shift += grow
	}
	return start + shiftStart, end + shiftEnd
}

// nonFiniteTokens are what Python's json, pandas, and Java's Gson and
// Jackson (with their non-numeric options) write for floats JSON cannot
// hold. The longest first: -Infinity before Infinity.
var nonFiniteTokens = []string{"-Infinity", "Infinity", "NaN"}

// ReplaceNonFinite returns b with every NaN, Infinity and -Infinity
// outside strings replaced by null, and where they were; found is empty,
// and out nil, when there is none. It reads b leniently, only to tell
// strings from values and to name paths: what it returns is for the
// parser to check, and it runs only on bodies the parser refused, so
// valid events never pay for it.
func ReplaceNonFinite(b []byte) (out []byte, found []NonFinite) {
	type level struct {
		array bool
		key   string
		index int
	}
	var stack []level
	path := func() string {
		var sb strings.Builder
		for _, l := range stack {
			sb.WriteByte('/')
			if l.array {
				sb.WriteString(strconv.Itoa(l.index))
			} else {
				sb.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(l.key))
			}
		}
		return sb.String()
	}
	expectKey := false // the next string in an object is a key
	last := 0          // b[last:i] is yet to be copied to out
	for i := 0; i < len(b); {
		switch c := b[i]; c {
		case '"':
			end := i + 1
			for end < len(b) && b[end] != '"' {
				if b[end] == '\\' {
					end++
				}
				end++
			}
			if expectKey && len(stack) > 0 && end < len(b) {
				stack[len(stack)-1].key = Unquote(b[i : end+1])
				expectKey = false
			}
			i = end + 1
		case '{', '[':
			stack = append(stack, level{array: c == '['})
			expectKey = c == '{'
			i++
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			i++
		case ',':
			if len(stack) > 0 {
				top := &stack[len(stack)-1]
				if top.array {
					top.index++
				} else {
					expectKey = true
				}
			}
			i++
		default:
			tok := ""
			for _, t := range nonFiniteTokens {
				if bytes.HasPrefix(b[i:], []byte(t)) && !identByte(b, i+len(t)) && !identBefore(b, i) {
					tok = t
					break
				}
			}
			if tok == "" {
				i++
				continue
			}
			out = append(append(out, b[last:i]...), "null"...)
			found = append(found, NonFinite{Token: tok, Path: path(), At: i})
			i += len(tok)
			last = i
		}
	}
	if found == nil {
		return nil, nil
	}
	return append(out, b[last:]...), found
}

// identByte reports whether b[i] continues a word (so NaNx is not NaN).
func identByte(b []byte, i int) bool {
	if i >= len(b) {
		return false
	}
	c := b[i]
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// identBefore reports whether the byte before b[i] is part of a word or a
// number (so 1Infinity or xNaN are left to the parser to refuse).
func identBefore(b []byte, i int) bool {
	return i > 0 && (identByte(b, i-1) || b[i-1] == '.' || b[i-1] == '-' || b[i-1] == '+')
}
