// Package enrich holds the enricher's transformations: lookup joins from
// files, and models that unnest an event and its API response into rows of
// lake tables.
package enrich

import (
	"bytes"
	"cmp"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/internal/event"
)

// Model turns one document, such as {"event": payload, "form": API
// response, "retrieved_timestamp": …}, into rows of one or more tables.
// Models are configuration: the form model (FormModel) is one, not code.
type Model struct {
	Tables []TableModel `yaml:"tables" doc:"The tables the event becomes rows of, in order."`
}

// TableModel makes the rows of one table.
type TableModel struct {
	// Name is the lake table; rows carry it in their table header.
	Name string `yaml:"name" doc:"The lake table the rows go to."`
	// From is the dotted path of the object that is the row, or of an
	// array whose elements are rows ("" is the document itself).
	From string `yaml:"from" doc:"Dotted path, in the document, of the object that is the row or of the array whose elements are rows: event.items. The document is {event: the payload, envelope: the event's other fields (root_id, collector_tstamp, event_type, ...), api: the API's answer when api is set, retrieved_timestamp}."`
	// Optional lets an event have nothing (or null) at From: no rows,
	// rather than a failed event.
	Optional bool `yaml:"optional" doc:"The event may have nothing, or null, at from: it then has no rows of this table. Otherwise such an event is an enrichment_failed dead letter."`
	// Nested is the dotted path, inside an element, of an array of
	// elements of the same kind (a group's fields): they become rows too,
	// with ParentColumn holding their parent's id.
	Nested       string `yaml:"nested" doc:"Dotted path, inside an element, of an array of elements of the same kind (a group's own fields): they become rows too."`
	ParentColumn string `yaml:"parent_column" doc:"The column of a nested element's row that holds its parent's id."`
	IDField      string `yaml:"id_field" doc:"The element's id field, for parent_column; default id."` // the element's id, for ParentColumn; default id
	// Separator joins the names of nested objects' members: settings_language.
	Separator string `yaml:"separator" doc:"Joins the names of nested objects' members into column names (settings_language); default _."`
	// Rename maps flattened names to column names (ref → reference).
	Rename map[string]string `yaml:"rename" doc:"Flattened names to column names: {ref: reference}."`
	// Columns are always in the row, in this order, null when absent;
	// with Rest, the other flattened fields follow.
	Columns []string `yaml:"columns" doc:"Columns every row has, in this order, null when absent."`
	Rest    bool     `yaml:"rest" doc:"After columns, the element's other fields, flattened."`
	// Include adds values from elsewhere in the document: Path's value as
	// column As.
	Include []Include `yaml:"include" doc:"Values from elsewhere in the document, each {path, as}: the parent event's keys, such as {path: envelope.root_id, as: checkout_id}."`
	// Parent adds the row of an earlier table of the model (its first),
	// every column prefixed with Prefix.
	Parent       string `yaml:"parent" doc:"An earlier table of the model whose (first) row's columns every row gets, prefixed with parent_prefix."`
	ParentPrefix string `yaml:"parent_prefix" doc:"The prefix of the parent's columns."`
}

// Include is a value from elsewhere in the document.
type Include struct {
	Path string `yaml:"path" doc:"Dotted path in the document."`
	As   string `yaml:"as" doc:"The column's name."`
}

// Field is a column of a row: its name and raw JSON value.
type Field struct {
	Name  string
	Value []byte
}

// Row is one row of a table.
type Row struct {
	Table  string
	Fields []Field
}

// JSON encodes the row as a JSON object, columns in order.
func (r Row) JSON() []byte {
	b := []byte{'{'}
	for i, f := range r.Fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = event.AppendString(b, f.Name)
		b = append(append(b, ':'), f.Value...)
	}
	return append(b, '}')
}

var null = []byte("null")

// Rows applies the model to a JSON document.
func (m Model) Rows(doc []byte) ([]Row, error) {
	// The document's top level is parsed once: each table and include
	// looks up a path in it, and it holds a whole API answer.
	top, _, err := event.ObjectMembers(doc, "", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("model document: %w", err)
	}
	var out []Row
	first := map[string]Row{}
	for _, t := range m.Tables {
		sep := t.Separator
		if sep == "" {
			sep = "_"
		}
		src := lookupIn(doc, top, t.From)
		if t.Optional && (src == nil || bytes.Equal(src, null)) {
			continue
		}
		if src == nil {
			return nil, fmt.Errorf("table %s: nothing at %q", t.Name, t.From)
		}
		var extra []Field
		for _, inc := range t.Include {
			v := lookupIn(doc, top, inc.Path)
			if v == nil {
				v = null
			}
			extra = append(extra, Field{inc.As, v})
		}
		if t.Parent != "" {
			p, ok := first[t.Parent]
			if !ok {
				return nil, fmt.Errorf("table %s: parent table %s has no row before it", t.Name, t.Parent)
			}
			for _, f := range p.Fields {
				extra = append(extra, Field{t.ParentPrefix + f.Name, f.Value})
			}
		}
		var rows []Row
		switch src[0] {
		case '{':
			rows, err = t.element(src, nil, sep, extra, rows)
		case '[':
			rows, err = t.elements(src, nil, sep, extra, rows)
		default:
			err = fmt.Errorf("table %s: %q is neither an object nor an array", t.Name, t.From)
		}
		if err != nil {
			return nil, err
		}
		if len(rows) > 0 {
			if _, ok := first[t.Name]; !ok {
				first[t.Name] = rows[0]
			}
		}
		out = append(out, rows...)
	}
	return out, nil
}

func (t TableModel) elements(arr []byte, parentID []byte, sep string, extra []Field, rows []Row) ([]Row, error) {
	var err error
	for _, el := range arrayElements(arr) {
		if el[0] != '{' {
			continue // only objects are rows
		}
		if rows, err = t.element(el, parentID, sep, extra, rows); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// element makes the row of one object, then the rows of its nested
// elements.
func (t TableModel) element(obj []byte, parentID []byte, sep string, extra []Field, rows []Row) ([]Row, error) {
	var flat []Field
	var nested []byte
	if err := t.flatten(obj, "", "", sep, &flat, &nested); err != nil {
		return nil, err
	}
	for i, f := range flat {
		if to, ok := t.Rename[f.Name]; ok {
			flat[i].Name = to
		}
	}
	var row Row
	row.Table = t.Name
	used := make(map[string]bool, len(flat))
	value := func(name string) []byte {
		for _, f := range flat {
			if f.Name == name {
				used[name] = true
				return cell(f.Value)
			}
		}
		// A listed column may also come from elsewhere in the document.
		for _, f := range extra {
			if f.Name == name {
				used[name] = true
				return f.Value
			}
		}
		return nil
	}
	for _, c := range t.Columns {
		v := value(c)
		if v == nil {
			if c == t.ParentColumn && parentID != nil {
				v = parentID
			} else {
				v = null
			}
			used[c] = true
		}
		row.Fields = append(row.Fields, Field{c, v})
	}
	if t.Rest {
		for _, f := range flat {
			if !used[f.Name] {
				used[f.Name] = true
				row.Fields = append(row.Fields, Field{f.Name, cell(f.Value)})
			}
		}
	}
	if t.ParentColumn != "" && !used[t.ParentColumn] {
		v := null
		if parentID != nil {
			v = parentID
		}
		row.Fields = append(row.Fields, Field{t.ParentColumn, v})
	}
	for _, f := range extra {
		if !used[f.Name] {
			row.Fields = append(row.Fields, f)
		}
	}
	rows = append(rows, row)
	if nested != nil {
		id := lookup(obj, cmp.Or(t.IDField, "id"))
		return t.elements(nested, id, sep, extra, rows)
	}
	return rows, nil
}

// flatten appends an object's members to out, nested objects' members
// named with their path joined by sep, arrays as JSON strings. The array at
// the table's Nested path is set aside instead.
func (t TableModel) flatten(obj []byte, prefix, path, sep string, out *[]Field, nested *[]byte) error {
	members, _, err := event.ObjectMembers(obj, "", nil, nil)
	if err != nil {
		return fmt.Errorf("table %s: %w", t.Name, err)
	}
	for _, m := range members {
		name := m.Name()
		p := name
		if path != "" {
			p = path + "." + name
		}
		switch m.Value[0] {
		case '{':
			if err := t.flatten(m.Value, prefix+name+sep, p, sep, out, nested); err != nil {
				return err
			}
		case '[':
			if t.Nested != "" && p == t.Nested {
				*nested = m.Value
				continue
			}
			// Left as the array: cell makes it a string if a column
			// takes it. An API answer's arrays are most of it, and most
			// are no column (a form's fields are rows of their own).
			*out = append(*out, Field{prefix + name, m.Value})
		default:
			*out = append(*out, Field{prefix + name, m.Value})
		}
	}
	return nil
}

// cell is a flattened member's value as a column holds it: an array as a
// JSON string, anything else as it is (objects are flattened, so a value
// that starts with '[' is an array).
func cell(v []byte) []byte {
	if v[0] == '[' {
		return event.AppendString(nil, string(v))
	}
	return v
}

// lookupIn is lookup in a document whose top-level members are parsed.
func lookupIn(doc []byte, top []event.Member, path string) []byte {
	if path == "" {
		return doc
	}
	key, rest, _ := strings.Cut(path, ".")
	var v []byte
	for _, m := range top {
		if m.Is(key) {
			v = m.Value // the last wins, as in encoding/json
		}
	}
	if v == nil || rest == "" {
		return v
	}
	return lookup(v, rest)
}

// lookup finds the value at a dotted path of object members, or nil.
func lookup(doc []byte, path string) []byte {
	if path == "" {
		return doc
	}
	cur := doc
	for _, key := range strings.Split(path, ".") {
		if len(cur) == 0 || cur[0] != '{' {
			return nil
		}
		members, _, err := event.ObjectMembers(cur, "", nil, nil)
		if err != nil {
			return nil
		}
		var next []byte
		for _, m := range members {
			if m.Is(key) {
				next = m.Value // the last wins, as in encoding/json
			}
		}
		if next == nil {
			return nil
		}
		cur = next
	}
	return cur
}

// arrayElements splits a JSON array into its elements.
func arrayElements(arr []byte) [][]byte {
	elems, inv := event.SplitArray(arr)
	if inv != nil {
		return nil
	}
	out := make([][]byte, len(elems))
	for i, e := range elems {
		out[i] = e.Bytes()
	}
	return out
}
