package aggregator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Column is a declared field of CSV input.
type Column struct {
	Name string `yaml:"name" doc:"The field's name."`
	Type string `yaml:"type" doc:"string, int, float or timestamp."`
}

// Types a CSV column can be declared with.
var columnTypes = []string{"string", "int", "float", "timestamp"}

// fields is one parsed input record: the text of each field the
// aggregation uses, in the order of its slots (see slots), absent when
// null (missing, JSON null, or an empty CSV field).
type fields []field

type field struct {
	s  string
	ok bool
}

// slots numbers the fields an aggregation uses, so that parsing fills a
// slice instead of a map.
type slots map[string]int

func (s slots) add(name string) int {
	if i, ok := s[name]; ok {
		return i
	}
	s[name] = len(s)
	return len(s) - 1
}

// parser turns a record value into fields; f has a field per slot.
type parser interface {
	parse(value []byte, f fields) error
}

// errSkip marks a record that is not an event: a CSV header line, or an
// envelope of another event type.
var errSkip = errors.New("not an event of this aggregation")

type csvParser struct {
	cols []Column
	slot []int // per column: its slot, or -1 when unused
}

func newCSVParser(cols []Column, s slots) csvParser {
	p := csvParser{cols: cols, slot: make([]int, len(cols))}
	for i, c := range cols {
		p.slot[i] = -1
		if n, ok := s[c.Name]; ok {
			p.slot[i] = n
		}
	}
	return p
}

// parse reads one CSV line (RFC 4180 quoting; a stray quote inside a
// field is taken as it is). Every int and float column is checked, used
// or not, so that a record is whole or a dead letter.
func (p csvParser) parse(value []byte, f fields) error {
	line := strings.TrimRight(string(value), "\r\n")
	clear(f)
	header := true
	n := 0
	for rest, more := line, true; more; n++ {
		var v string
		var err error
		v, rest, more, err = nextCSVField(rest)
		if err != nil {
			return fmt.Errorf("csv: field %d: %w", n+1, err)
		}
		if n >= len(p.cols) {
			continue // counted, and refused below
		}
		v = strings.TrimSpace(v)
		c := p.cols[n]
		// A header line: every field is its column's name (MTA's keep
		// trailing spaces).
		header = header && strings.EqualFold(v, c.Name)
		if v == "" {
			continue
		}
		switch c.Type {
		case "int":
			if _, err := strconv.ParseInt(v, 10, 64); err != nil && !header {
				return fmt.Errorf("%s: %q is not an int", c.Name, v)
			}
		case "float":
			if _, err := strconv.ParseFloat(v, 64); err != nil && !header {
				return fmt.Errorf("%s: %q is not a float", c.Name, v)
			}
		}
		if p.slot[n] >= 0 {
			f[p.slot[n]] = field{v, true}
		}
	}
	if n != len(p.cols) {
		return fmt.Errorf("csv: %d fields, the schema declares %d (%s)", n, len(p.cols), p.names())
	}
	if header {
		return errSkip
	}
	return nil
}

// nextCSVField splits the first field off line: its text, unquoted, the
// rest after its comma, and whether there was one.
func nextCSVField(line string) (v, rest string, more bool, err error) {
	if !strings.HasPrefix(line, `"`) {
		if i := strings.IndexByte(line, ','); i >= 0 {
			return line[:i], line[i+1:], true, nil
		}
		return line, "", false, nil
	}
	var b strings.Builder
	s := line[1:]
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			return "", "", false, errors.New("a quoted field is not closed")
		}
		b.WriteString(s[:i])
		s = s[i+1:]
		switch {
		case strings.HasPrefix(s, `"`): // an escaped quote
			b.WriteByte('"')
			s = s[1:]
		case s == "":
			return b.String(), "", false, nil
		case s[0] == ',':
			return b.String(), s[1:], true, nil
		default: // a stray quote: part of the text
			b.WriteByte('"')
		}
	}
}

func (p csvParser) names() string {
	names := make([]string, len(p.cols))
	for i, c := range p.cols {
		names[i] = c.Name
	}
	return strings.Join(names, ",")
}

// jsonParser reads Sluice envelopes: payload fields by name, and the
// envelope's own (collector_tstamp, event_id, …) where the payload has no
// field of that name.
type jsonParser struct {
	eventType string
	slots     slots
}

func (p jsonParser) parse(value []byte, f fields) error {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(value, &env); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if p.eventType != "" {
		var et string
		if err := json.Unmarshal(env["event_type"], &et); err != nil || et != p.eventType {
			return errSkip
		}
	}
	clear(f)
	// Payload fields first; the envelope's fill what they left null.
	put := func(m map[string]json.RawMessage) {
		for k, raw := range m {
			if i, used := p.slots[k]; used && !f[i].ok {
				if s, ok := text(raw); ok {
					f[i] = field{s, true}
				}
			}
		}
	}
	if raw, ok := env["payload"]; ok {
		var payload map[string]json.RawMessage
		if err := json.Unmarshal(raw, &payload); err != nil {
			return fmt.Errorf("payload: want a JSON object: %w", err)
		}
		put(payload)
	}
	delete(env, "payload")
	put(env)
	return nil
}

// text is a JSON value as a field's text: strings unquoted, numbers and
// booleans as written, objects and arrays as JSON; null is absent.
func text(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", false
	case raw[0] == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	}
	return string(raw), true
}

// number is a field's value for an aggregate; NaN when null or not a
// number.
func number(f field) float64 {
	if !f.ok {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(f.s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// TimeLayout turns a layout written the seed's way (MM-DD-YY HH:mm:ss,
// MM/DD/YYYY HH:mm:ss, YYYY-MM-DDTHH:mm:ss) into Go's; "rfc3339" and Go
// layouts pass through.
func TimeLayout(s string) string {
	if strings.EqualFold(s, "rfc3339") || s == "" {
		return time.RFC3339Nano
	}
	if strings.Contains(s, "2006") || strings.Contains(s, "15:04") {
		return s
	}
	r := strings.NewReplacer("YYYY", "2006", "YY", "06", "MM", "01", "DD", "02", "HH", "15", "mm", "04", "ss", "05", "SSS", "000")
	return r.Replace(s)
}

// timeReader reads an event's time with a Go layout.
type timeReader struct {
	layout string
	digits digitLayout // nil unless the layout is only numbers and separators
}

func newTimeReader(layout string) timeReader {
	return timeReader{layout: layout, digits: newDigitLayout(layout)}
}

// read reads the time fields (names, in slots at), joined by a space, as
// UTC unless the layout has a zone.
func (r timeReader) read(f fields, names []string, at []int) (time.Time, error) {
	var scratch [64]byte
	b := scratch[:0]
	for i, n := range names {
		v := f[at[i]]
		if !v.ok {
			return time.Time{}, fmt.Errorf("time field %s is missing", n)
		}
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, v.s...)
	}
	// The time as text, made only for time.Parse and errors: one field's
	// is its own, and b's scratch stays on the stack.
	var s string
	if len(names) == 1 {
		s = f[at[0]].s
	}
	t, ok := r.digits.parse(b)
	if !ok {
		if s == "" {
			s = string(b)
		}
		var err error
		t, err = time.Parse(r.layout, s)
		if err != nil && r.layout == time.RFC3339Nano {
			// ISO 8601 without a zone, as replay writes Parquet timestamps.
			t, err = time.Parse("2006-01-02T15:04:05.999999999", s)
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("time %q does not match the layout %q", s, r.layout)
		}
	}
	if t.Before(earliest) || !t.Before(latest) {
		if s == "" {
			s = string(b)
		}
		return time.Time{}, fmt.Errorf("time %q is outside the years %d to %d that windows hold", s, earliest.Year(), latest.Year()-1)
	}
	return t.UTC(), nil
}

// digitLayout is a Go layout made of the year, month, day, hour, minute
// and second as fixed-width numbers (2006, 01, 02, 15, 04, 05), once each,
// and separators that are neither letters (but ISO 8601's T), digits,
// '.', ',' nor '_', such as the MTA's 01/02/2006 15:04:05: each byte of the layout is a
// separator or a digit of a field. Read digit by digit, in a tenth of
// time.Parse's time, a time gives what time.Parse would (FuzzDigitLayout),
// or false for time.Parse to decide: a one-digit hour, a fraction of a
// second, anything out of range.
type digitLayout []byte

// The fields of a digitLayout, as its bytes mark them.
const (
	digitYear = iota + 1
	digitMonth
	digitDay
	digitHour
	digitMinute
	digitSecond
)

var digitFields = []struct {
	token string
	field byte
}{{"2006", digitYear}, {"01", digitMonth}, {"02", digitDay}, {"15", digitHour}, {"04", digitMinute}, {"05", digitSecond}}

// newDigitLayout is layout as a digitLayout, or nil if it is not one.
func newDigitLayout(layout string) digitLayout {
	var l digitLayout
	seen := 0
	for i := 0; i < len(layout); {
		token := false
		for _, d := range digitFields {
			if strings.HasPrefix(layout[i:], d.token) {
				if seen&(1<<d.field) != 0 {
					return nil
				}
				seen |= 1 << d.field
				for range len(d.token) {
					l = append(l, d.field)
				}
				i, token = i+len(d.token), true
				break
			}
		}
		if token {
			continue
		}
		c := layout[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if c == 'T' && !strings.HasPrefix(layout[i:], "Tue") {
			letter = false // ISO 8601's
		}
		if letter || c >= '0' && c <= '9' || c == '.' || c == ',' || c == '_' || c < ' ' || c >= 0x80 {
			return nil // another of Go's layout elements, or a byte to leave to it
		}
		l = append(l, c)
		i++
	}
	if seen != 1<<digitYear|1<<digitMonth|1<<digitDay|1<<digitHour|1<<digitMinute|1<<digitSecond {
		return nil
	}
	return l
}

// parse reads b with l; false when l is nil or b is not in its strict form.
func (l digitLayout) parse(b []byte) (time.Time, bool) {
	if l == nil || len(b) != len(l) {
		return time.Time{}, false
	}
	var v [digitSecond + 1]int
	for i, c := range l {
		if c > digitSecond {
			if b[i] != c {
				return time.Time{}, false
			}
			continue
		}
		if b[i] < '0' || b[i] > '9' {
			return time.Time{}, false
		}
		v[c] = v[c]*10 + int(b[i]-'0')
	}
	year, month, day := v[digitYear], time.Month(v[digitMonth]), v[digitDay]
	if month < 1 || month > 12 || day < 1 || day > time.Date(year, month+1, 0, 0, 0, 0, 0, time.UTC).Day() ||
		v[digitHour] > 23 || v[digitMinute] > 59 || v[digitSecond] > 59 {
		return time.Time{}, false
	}
	return time.Date(year, month, day, v[digitHour], v[digitMinute], v[digitSecond], 0, time.UTC), true
}

// earliest and latest bound the event times a window holds: windows count
// time in int64 nanoseconds (years 1678 to 2262), with room to spare for
// a window's size. A time past them (a typo such as 3023) would wrap
// around to another century.
var (
	earliest = time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC)
	latest   = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)
