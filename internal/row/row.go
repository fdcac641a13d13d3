// Package row is the typed row that every stage and sink shares: a Kind
// per value, Cells, named Fields, and the one way a JSON event becomes a
// row (Rower). It knows nothing of Parquet or any other file format, so
// schemas and sinks use it without pulling in a writer.
package row

import (
	"fmt"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/internal/event"
)

// Kind is the type of a value, and of a column once a batch is written.
type Kind uint8

// Kinds of values.
const (
	KindNull Kind = iota
	KindBool
	KindInt
	KindFloat
	KindString
	KindTimestamp // microseconds since the Unix epoch, UTC
	KindJSON      // a nested object or array, kept as JSON text
)

func (k Kind) String() string {
	return [...]string{"null", "boolean", "bigint", "double", "string", "timestamp", "json"}[k]
}

// Cell is one typed value: I holds ints, booleans (0 or 1) and timestamps,
// F floats, and B the text of strings and JSON. B may alias the event it
// came from: a Buffer copies it.
type Cell struct {
	Kind Kind
	I    int64
	F    float64
	B    []byte
}

// Field is a named cell of a row.
type Field struct {
	Name string
	Cell Cell
}

// AppendText appends a cell as text, for string columns, conflicts and CSV.
func (c Cell) AppendText(dst []byte) []byte {
	switch c.Kind {
	case KindBool:
		return strconv.AppendBool(dst, c.I != 0)
	case KindInt:
		return strconv.AppendInt(dst, c.I, 10)
	case KindFloat:
		return strconv.AppendFloat(dst, c.F, 'g', -1, 64)
	case KindTimestamp:
		return time.UnixMicro(c.I).UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z")
	}
	return append(dst, c.B...)
}

// Text is a cell as a string.
func (c Cell) Text() string { return string(c.AppendText(nil)) }

// ParseKind reads a column type as Kind.String writes it.
func ParseKind(s string) (Kind, error) {
	for k := KindBool; k <= KindJSON; k++ {
		if k.String() == s {
			return k, nil
		}
	}
	return KindNull, fmt.Errorf("column type %q: want boolean, bigint, double, string, timestamp or json", s)
}

// Coerce converts a cell to the type a schema gives its column: this is
// where exact types enter, from the loader's per-table column settings
// today and from the enricher's schemas later. ok is false when the value
// does not fit the type; the cell is then returned unchanged, to be kept
// as a string like any other type conflict rather than lost.
func Coerce(c Cell, want Kind) (out Cell, ok bool) {
	if c.Kind == want || c.Kind == KindNull {
		return c, true
	}
	switch want {
	case KindString:
		return Cell{Kind: KindString, B: c.AppendText(nil)}, true
	case KindFloat:
		if c.Kind == KindInt {
			return Cell{Kind: KindFloat, F: float64(c.I)}, true
		}
		if c.Kind == KindString {
			if f, err := strconv.ParseFloat(string(c.B), 64); err == nil {
				return Cell{Kind: KindFloat, F: f}, true
			}
		}
	case KindInt:
		if c.Kind == KindFloat && c.F == float64(int64(c.F)) {
			return Cell{Kind: KindInt, I: int64(c.F)}, true
		}
		if c.Kind == KindString {
			if i, err := strconv.ParseInt(string(c.B), 10, 64); err == nil {
				return Cell{Kind: KindInt, I: i}, true
			}
		}
	case KindBool:
		if c.Kind == KindString {
			if b, err := strconv.ParseBool(string(c.B)); err == nil {
				return Cell{Kind: KindBool, I: b2i(b)}, true
			}
		}
	case KindTimestamp:
		switch c.Kind {
		case KindString:
			if t, ok := ParseTime(string(c.B)); ok {
				return Cell{Kind: KindTimestamp, I: t.UnixMicro()}, true
			}
		case KindInt: // seconds, milliseconds or microseconds since the epoch, by magnitude
			switch i := c.I; {
			case i > -1e11 && i < 1e11:
				return Cell{Kind: KindTimestamp, I: i * 1e6}, true
			case i > -1e14 && i < 1e14:
				return Cell{Kind: KindTimestamp, I: i * 1e3}, true
			default:
				return Cell{Kind: KindTimestamp, I: i}, true
			}
		}
	case KindJSON:
		if c.Kind == KindString {
			return Cell{Kind: KindJSON, B: event.AppendString(nil, string(c.B))}, true
		}
		return Cell{Kind: KindJSON, B: c.AppendText(nil)}, c.Kind != KindTimestamp
	}
	return c, false
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// ParseTime reads the event times seen in real data, in UTC: RFC 3339, ISO
// 8601 or SQL style with or without a zone (none is UTC), and the US dates
// of CSV exports: 2025-01-01T00:18:38, 2025-01-01 00:18:38.000000000,
// 2022-01-01 00:35:40+00:00, 05/27/2023 00:00:00, 2025-01-01.
func ParseTime(s string) (time.Time, bool) {
	if t, ok := parseCommonTime(s); ok {
		return t, true
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// parseCommonTime reads the form nearly every event time takes —
// 2025-01-01T00:18:38 or with a space for the T, an optional fraction of
// one to nine digits, an optional Z — without trying layouts one after
// the other, each failure an error allocated: the loader and the enricher
// read times of every event. It gives what the layouts would
// (FuzzParseTime), or false for any other form, which they decide.
func parseCommonTime(s string) (time.Time, bool) {
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	digits := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
			n = n*10 + int(s[i]-'0')
		}
		return n, true
	}
	year, ok1 := digits(0, 4)
	month, ok2 := digits(5, 7)
	day, ok3 := digits(8, 10)
	hour, ok4 := digits(11, 13)
	minute, ok5 := digits(14, 16)
	sec, ok6 := digits(17, 19)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || month < 1 || month > 12 || day < 1 ||
		day > daysIn(time.Month(month), year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	rest, nsec := s[19:], 0
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return time.Time{}, false
		}
		frac, _ := digits(20, 19+n)
		for range 10 - n {
			frac *= 10
		}
		rest, nsec = rest[n:], frac
	}
	if rest != "" && rest != "Z" {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

// daysIn is the number of days of month in year, in the proleptic
// Gregorian calendar, as time.Parse checks them.
func daysIn(month time.Month, year int) int {
	return time.Date(year, month+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00", "01/02/2006 15:04:05", "01/02/2006 03:04:05 PM", time.DateOnly, "01/02/2006"}

// UnmarshalText reads a column type as String writes it, for settings.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// MarshalText writes the column type as String does.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
