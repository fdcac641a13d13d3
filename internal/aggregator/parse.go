package aggregator

import (
	"bytes"
	"encoding/csv"
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
	Name string
	Type string // string, int, float or timestamp
}

// Types a CSV column can be declared with.
var columnTypes = []string{"string", "int", "float", "timestamp"}

// fields is one parsed input record: each field's text, and whether it is
// null (absent, JSON null, or an empty CSV field).
type fields map[string]string

// parser turns a record value into fields.
type parser interface {
	parse(value []byte) (fields, error)
}

// errSkip marks a record that is not an event: a CSV header line, or an
// envelope of another event type.
var errSkip = errors.New("not an event of this aggregation")

type csvParser struct {
	cols []Column
}

func (p csvParser) parse(value []byte) (fields, error) {
	r := csv.NewReader(bytes.NewReader(value))
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	rec, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("csv: %w", err)
	}
	if len(rec) != len(p.cols) {
		return nil, fmt.Errorf("csv: %d fields, the schema declares %d (%s)", len(rec), len(p.cols), p.names())
	}
	// A header line: every field is its column's name (MTA's keep trailing
	// spaces).
	header := true
	for i, c := range p.cols {
		if !strings.EqualFold(strings.TrimSpace(rec[i]), c.Name) {
			header = false
			break
		}
	}
	if header {
		return nil, errSkip
	}
	f := make(fields, len(rec))
	for i, c := range p.cols {
		v := strings.TrimSpace(rec[i])
		if v == "" {
			continue
		}
		switch c.Type {
		case "int":
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return nil, fmt.Errorf("%s: %q is not an int", c.Name, v)
			}
		case "float":
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				return nil, fmt.Errorf("%s: %q is not a float", c.Name, v)
			}
		}
		f[c.Name] = v
	}
	return f, nil
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
}

func (p jsonParser) parse(value []byte) (fields, error) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(value, &env); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if p.eventType != "" {
		var et string
		if err := json.Unmarshal(env["event_type"], &et); err != nil || et != p.eventType {
			return nil, errSkip
		}
	}
	f := fields{}
	put := func(m map[string]json.RawMessage) {
		for k, raw := range m {
			if _, ok := f[k]; ok {
				continue
			}
			if s, ok := text(raw); ok {
				f[k] = s
			}
		}
	}
	if raw, ok := env["payload"]; ok {
		var payload map[string]json.RawMessage
		if err := json.Unmarshal(raw, &payload); err != nil {
			return nil, fmt.Errorf("payload: want a JSON object: %w", err)
		}
		put(payload)
	}
	delete(env, "payload")
	put(env)
	return f, nil
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
func number(f fields, name string) float64 {
	s, ok := f[name]
	if !ok {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(s, 64)
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

// eventTime reads the time fields, joined by a space, with layout, as UTC
// unless the layout has a zone.
func eventTime(f fields, names []string, layout string) (time.Time, error) {
	parts := make([]string, 0, len(names))
	for _, n := range names {
		v, ok := f[n]
		if !ok {
			return time.Time{}, fmt.Errorf("time field %s is missing", n)
		}
		parts = append(parts, v)
	}
	s := strings.Join(parts, " ")
	t, err := time.Parse(layout, s)
	if err != nil && layout == time.RFC3339Nano {
		// ISO 8601 without a zone, as replay writes Parquet timestamps.
		t, err = time.Parse("2006-01-02T15:04:05.999999999", s)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q does not match the layout %q", s, layout)
	}
	return t.UTC(), nil
}
