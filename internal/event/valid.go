package event

import "encoding/binary"

// span is a value found by walk: its byte range and, when its parent is an
// object, the range of its key's string literal (quotes included).
type span struct {
	depth            int
	keyStart, keyEnd int // both 0 for array elements
	start, end       int
}

// valid reports whether b is exactly one JSON value (RFC 8259), with
// optional surrounding white space.
func valid(b []byte) bool { return walk(b, 0, nil) }

// walk validates b as exactly one JSON value (RFC 8259), with optional
// surrounding white space, accepting what encoding/json.Valid accepts
// (FuzzValid holds the two equal) several times faster. The collector reads
// every byte it receives through here, so it is the hottest loop.
//
// While validating, it calls visit for every value nested 1 to upto levels
// deep (the members of the top-level object, the elements of a top-level
// array and, with upto 2, their members), once the value is complete. That
// is how envelopes are split into members without a second pass.
//
// Nesting deeper than maxDepth is refused, as encoding/json refuses it.
func walk(b []byte, upto int, visit func(span)) bool {
	i := skipWS(b, 0)
	// stack holds the open containers: '{' or '['.
	var stackBuf [64]byte
	stack := stackBuf[:0]
	// Where the pending values at depths 1..upto began, and their keys.
	var cur pending
	if upto > len(cur)-1 {
		upto = len(cur) - 1
	}
	for {
		// Expect a value at b[i].
		if i >= len(b) {
			return false
		}
		if d := len(stack); d >= 1 && d <= upto {
			cur[d].start = i
		}
		switch c := b[i]; c {
		case '{', '[':
			if len(stack) >= maxDepth {
				return false
			}
			stack = append(stack, c)
			i = skipWS(b, i+1)
			if i >= len(b) {
				return false
			}
			if c == '{' {
				if b[i] == '}' {
					i++
					stack = stack[:len(stack)-1]
					goto afterValue
				}
				if i = cur.key(b, i, len(stack), upto); i < 0 {
					return false
				}
			} else if b[i] == ']' {
				i++
				stack = stack[:len(stack)-1]
				goto afterValue
			}
			continue
		case '"':
			if i = validString(b, i); i < 0 {
				return false
			}
		case 't':
			if !hasLit(b, i, "true") {
				return false
			}
			i += 4
		case 'f':
			if !hasLit(b, i, "false") {
				return false
			}
			i += 5
		case 'n':
			if !hasLit(b, i, "null") {
				return false
			}
			i += 4
		default:
			if i = validNumber(b, i); i < 0 {
				return false
			}
		}
	afterValue:
		// A value just ended at b[i], inside the container at depth
		// len(stack).
		for {
			if d := len(stack); d >= 1 && d <= upto && visit != nil {
				sp := cur[d]
				sp.depth, sp.end = d, i
				if stack[d-1] == '[' {
					sp.keyStart, sp.keyEnd = 0, 0
				}
				visit(sp)
			}
			i = skipWS(b, i)
			if len(stack) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			top := stack[len(stack)-1]
			switch b[i] {
			case ',':
				i = skipWS(b, i+1)
				if top == '{' {
					if i = cur.key(b, i, len(stack), upto); i < 0 {
						return false
					}
				}
			case '}':
				if top != '{' {
					return false
				}
				i++
				stack = stack[:len(stack)-1]
				continue
			case ']':
				if top != '[' {
					return false
				}
				i++
				stack = stack[:len(stack)-1]
				continue
			default:
				return false
			}
			break
		}
	}
}

// pending holds, by depth, the values walk has begun but not finished.
type pending [3]span

// key validates `"key" :` at b[i], inside an object at depth d, notes where
// the key is when d is a depth walk reports, and returns the index of the
// value after it, or -1.
func (cur *pending) key(b []byte, i, d, upto int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	end := validString(b, i)
	if end < 0 {
		return -1
	}
	if d <= upto {
		cur[d].keyStart, cur[d].keyEnd = i, end
	}
	i = skipWS(b, end)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipWS(b, i+1)
}

// maxDepth matches encoding/json's nesting limit.
const maxDepth = 10000

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

func hasLit(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// anySpecial reports whether one of the eight bytes of w is special: a
// byte below 0x20, a quote or a backslash. Each test is the classic
// has-zero-byte trick (a byte's high bit survives the subtraction only if
// the byte was below the bound); they never miss a special byte, and may
// flag a word whose first special byte is elsewhere, which only sends the
// scan to the byte loop early.
func anySpecial(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	below := func(x, n uint64) uint64 { return (x - ones*n) &^ x & highs }
	return below(w, 0x20)|below(w^(ones*'"'), 1)|below(w^(ones*'\\'), 1) != 0
}

// special marks the bytes a string scan must stop at: the quote, the
// backslash and control characters.
var special = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// validString checks the string starting at b[i] and returns the index just
// past its closing quote, or -1.
func validString(b []byte, i int) int {
	i++
	for {
		// The common case: runs of plain characters, eight at a time
		// while no byte of the word is special, then one at a time up to
		// the special one.
		for i+8 <= len(b) && !anySpecial(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && !special[b[i]] {
			i++
		}
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		default: // a control character
			return -1
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// validNumber checks the number starting at b[i] and returns the index just
// past it, or -1: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case isDigit(b[i]):
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i
}
