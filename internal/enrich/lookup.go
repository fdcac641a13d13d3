package enrich

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/source"
)

// Lookup is a table loaded in memory from a CSV or Parquet file, keyed by
// one of its columns: the TLC taxi zones by LocationID, say.
type Lookup struct {
	rows map[string][]Field // by key, as text
}

// LoadLookup reads the file at path (anything `sluice replay` reads) and
// keys its rows by the column key.
func LoadLookup(ctx context.Context, path, key string) (*Lookup, error) {
	src, err := source.New(path, "")
	if err != nil {
		return nil, err
	}
	l := &Lookup{rows: map[string][]Field{}}
	err = src.Rows(ctx, nil, func(n int64, row []byte) error {
		members, _, err := event.ObjectMembers(row, "", nil, nil)
		if err != nil {
			return fmt.Errorf("row %d: %w", n, err)
		}
		var k string
		found := false
		fields := make([]Field, 0, len(members))
		for _, m := range members {
			name := m.Name()
			v := append([]byte(nil), m.Value...)
			if name == key {
				k, found = keyText(v), true
			}
			fields = append(fields, Field{name, v})
		}
		if !found {
			return fmt.Errorf("row %d has no key column %q", n, key)
		}
		l.rows[k] = fields
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load lookup %s: %w", path, err)
	}
	return l, nil
}

// Len is how many keys the lookup holds.
func (l *Lookup) Len() int { return len(l.rows) }

// keyText is a JSON value as the text keys compare by: strings unquoted,
// numbers as written (1.0 and 1 are the same key).
func keyText(v []byte) string {
	if len(v) > 0 && v[0] == '"' {
		return strings.TrimSpace(event.Unquote(v))
	}
	s := string(v)
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == float64(int64(f)) {
		return strconv.FormatInt(int64(f), 10)
	}
	return s
}

// Join adds a lookup's columns to events: the value of the payload's Field
// finds the row, whose Columns are added under new names.
type Join struct {
	Lookup *Lookup
	Field  string
	// Columns maps the lookup's columns to the names they take in the
	// payload: Borough → pickup_borough.
	Columns []Rename
}

// Rename is a column taken under another name.
type Rename struct{ From, To string }

// Apply returns the payload with the join's columns appended (null when
// the key is absent or not in the lookup), its members with those columns
// added, and whether it matched. members are the payload's top-level
// members, as event.ObjectMembers gives them: the enricher has them from
// its one pass over the event, so a join reads no bytes but the key's,
// and a second join finds the first one's columns among those returned.
func (j Join) Apply(payload []byte, members []event.Member) (out []byte, joined []event.Member, matched bool, err error) {
	body := bytesTrimRightSpace(payload)
	if len(body) < 2 || body[len(body)-1] != '}' {
		return nil, nil, false, event.ErrNotObject
	}
	var row []Field
	for _, m := range members {
		if m.Is(j.Field) && m.Value[0] != 'n' {
			row = j.Lookup.find(m.Value)
		}
	}
	// Reopen the object: drop its closing brace, then add the columns.
	out = bytesTrimRightSpace(append(make([]byte, 0, len(body)+32*len(j.Columns)), body[:len(body)-1]...))
	empty := out[len(out)-1] == '{'
	type span struct{ key, value [2]int }
	spans := make([]span, 0, len(j.Columns))
	for i, c := range j.Columns {
		v := null
		for _, f := range row {
			if f.Name == c.From {
				v = f.Value
			}
		}
		if i > 0 || !empty {
			out = append(out, ',')
		}
		var s span
		s.key[0] = len(out)
		out = append(event.AppendString(out, c.To), ':')
		s.key[1], s.value[0] = len(out)-1, len(out)
		out = append(out, v...)
		s.value[1] = len(out)
		spans = append(spans, s)
	}
	out = append(out, '}')
	// The new members alias out, which is final only now.
	joined = members[:len(members):len(members)]
	for _, s := range spans {
		joined = append(joined, event.Member{Key: out[s.key[0]:s.key[1]], Value: out[s.value[0]:s.value[1]]})
	}
	return out, joined, row != nil, nil
}

// find is the row of a key value. An integer written plainly is its own
// key text, and is looked up without a copy: nearly every join key is one.
func (l *Lookup) find(v []byte) []Field {
	plain := len(v) > 0 && (v[0] != '0' || len(v) == 1)
	for _, c := range v {
		if c < '0' || c > '9' {
			plain = false
			break
		}
	}
	if plain {
		return l.rows[string(v)]
	}
	return l.rows[keyText(v)]
}

func bytesTrimRightSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\n' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
