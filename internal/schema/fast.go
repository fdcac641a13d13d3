package schema

import (
	"bytes"
	"encoding/json"
	"math/big"
	"reflect"
	"strconv"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// fast checks the part of JSON Schema that event schemas are written in —
// types, required and known properties, enums of strings, bounds, lengths,
// patterns and formats — on the document's bytes, in one pass that decodes
// only the scalars the schema constrains, without jsonschema's work per
// value (it writes every number out and parses it back as a big.Rat) and
// without building the document. The collector and the enricher validate
// every event, and valid events are nearly all of them. It only ever says
// "valid": a document it does not pass goes to jsonschema, which decides
// and names the errors, so it can cost time but never change an answer
// (FuzzFastAgrees).
type fast struct {
	anything bool  // the schema true
	types    kinds // none: any type
	enum     []any // strings, booleans and nulls; nil: no enum
	format   *jsonschema.Format

	required   []string
	props      map[string]*fast
	additional *fast // nil: any other property; never: none
	noOthers   bool  // additionalProperties: false

	minLen, maxLen *int
	pattern        jsonschema.Regexp

	min, max, exMin, exMax *bound

	items              *fast
	minItems, maxItems *int
}

// kinds is a set of JSON Schema's types.
type kinds uint8

const (
	kindNull kinds = 1 << iota
	kindBoolean
	kindString
	kindNumber
	kindInteger
	kindObject
	kindArray
)

var kindOf = map[string]kinds{"null": kindNull, "boolean": kindBoolean, "string": kindString, "number": kindNumber,
	"integer": kindInteger, "object": kindObject, "array": kindArray}

// allows says whether a value of kind t may have the schema's type: an
// integer (a number written without fraction or exponent) is also a
// number. One written as 1.0 is an integer to JSON Schema too, but not
// here: jsonschema decides those.
func (f *fast) allows(t kinds, integer bool) bool {
	return f.types == 0 || f.types&t != 0 || (integer && f.types&kindInteger != 0)
}

// bound is a numeric keyword's value, and the same as a float64 when that
// is exact.
type bound struct {
	rat   *big.Rat
	f     float64
	exact bool
}

func newBound(r *big.Rat) *bound {
	if r == nil {
		return nil
	}
	f, exact := r.Float64()
	return &bound{rat: r, f: f, exact: exact}
}

// cmp compares n with the bound: -1, 0 or +1, and false when n is no
// number it can read. A float64 decides unless it ties with the bound:
// the float nearest n lies strictly on n's side of any other float.
func (b *bound) cmp(n []byte) (int, bool) {
	if f, err := strconv.ParseFloat(string(n), 64); err == nil && b.exact {
		switch {
		case f < b.f:
			return -1, true
		case f > b.f:
			return 1, true
		case plainInteger(n):
			return 0, true // the float is n itself: a tie is equality
		}
	}
	r, ok := new(big.Rat).SetString(string(n))
	if !ok {
		return 0, false
	}
	return r.Cmp(b.rat), true
}

// plainInteger says whether n is an integer of at most 15 digits, which a
// float64 holds exactly.
func plainInteger(n []byte) bool {
	s := bytes.TrimPrefix(n, []byte("-"))
	return len(s) <= 15 && !bytes.ContainsAny(s, ".eE")
}

// known are the Schema fields fast either checks or may ignore: the rest
// must be unset for a schema to be checked fast.
var known = map[string]bool{
	// Bookkeeping and annotations.
	"up": true, "resource": true, "dynamicAnchors": true, "allPropsEvaluated": true, "allItemsEvaluated": true,
	"numItemsEvaluated": true, "DraftVersion": true, "Location": true, "ID": true, "Anchor": true,
	"DynamicAnchor": true, "RecursiveAnchor": true, "Title": true, "Description": true, "Default": true,
	"Comment": true, "ReadOnly": true, "WriteOnly": true, "Examples": true, "Deprecated": true,
	// Checked.
	"Bool": true, "Types": true, "Enum": true, "Format": true, "Required": true, "Properties": true,
	"AdditionalProperties": true, "MinLength": true, "MaxLength": true, "Pattern": true, "Maximum": true,
	"Minimum": true, "ExclusiveMaximum": true, "ExclusiveMinimum": true, "MinItems": true, "MaxItems": true,
	"Items": true, "Items2020": true,
}

// compileFast is s's fast check, or nil when s uses a keyword it does not
// check.
func compileFast(s *jsonschema.Schema) *fast {
	if s == nil {
		return nil
	}
	v := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		if !known[v.Type().Field(i).Name] && !v.Field(i).IsZero() {
			return nil
		}
	}
	if s.Bool != nil {
		if !*s.Bool {
			return nil
		}
		return &fast{anything: true}
	}
	f := &fast{format: s.Format, required: s.Required, minLen: s.MinLength, maxLen: s.MaxLength, pattern: s.Pattern,
		min: newBound(s.Minimum), max: newBound(s.Maximum), exMin: newBound(s.ExclusiveMinimum), exMax: newBound(s.ExclusiveMaximum),
		minItems: s.MinItems, maxItems: s.MaxItems}
	if f.format != nil && f.format.Name == "regex" {
		return nil // the validator may check it with another engine
	}
	if s.Types != nil && !s.Types.IsEmpty() {
		for _, t := range s.Types.ToStrings() {
			f.types |= kindOf[t]
		}
	}
	if s.Enum != nil {
		f.enum = []any{}
		for _, e := range s.Enum.Values {
			switch e.(type) {
			case string, bool, nil:
				f.enum = append(f.enum, e)
			default:
				return nil
			}
		}
	}
	if len(f.required) > 64 {
		return nil // more than scanObject's set of those seen holds
	}
	if len(s.Properties) > 0 {
		f.props = make(map[string]*fast, len(s.Properties))
		for name, p := range s.Properties {
			if f.props[name] = compileFast(p); f.props[name] == nil {
				return nil
			}
		}
	}
	switch a := s.AdditionalProperties.(type) {
	case nil:
	case bool:
		f.noOthers = !a
	case *jsonschema.Schema:
		if f.additional = compileFast(a); f.additional == nil {
			return nil
		}
	default:
		return nil
	}
	items := s.Items2020
	switch it := s.Items.(type) {
	case nil:
	case *jsonschema.Schema:
		items = it
	default:
		return nil
	}
	if items != nil {
		if f.items = compileFast(items); f.items == nil {
			return nil
		}
	}
	return f
}

// valid says whether the JSON document b is certainly valid.
func (f *fast) valid(b []byte) bool {
	d := decoder{b: b}
	d.space()
	if !f.scan(&d, 0) {
		return false
	}
	d.space()
	return d.i == len(d.b)
}

// scan reads the value at d and says whether it is certainly valid: false
// also when it is not JSON as decode reads it. A nil f is the schema true,
// whose values are only read.
func (f *fast) scan(d *decoder, depth int) bool {
	if d.i >= len(d.b) || depth > maxDepth {
		return false
	}
	if f != nil && f.anything {
		f = nil
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return f.object(d, depth)
	case c == '[':
		return f.array(d, depth)
	case c == '"':
		s, ok := d.text()
		if !ok || f == nil {
			return ok
		}
		return f.scalar(string(s), kindString)
	case c == '-' || (c >= '0' && c <= '9'):
		start := d.i
		if !d.number() {
			return false
		}
		if f == nil {
			return true
		}
		n := d.b[start:d.i]
		// Enums hold no numbers, and only a format needs the value boxed.
		if !f.allows(kindNumber, !bytes.ContainsAny(n, ".eE")) || f.enum != nil ||
			(f.format != nil && f.format.Validate(json.Number(n)) != nil) {
			return false
		}
		return f.number(n)
	}
	v, ok := d.literal()
	if !ok || f == nil {
		return ok
	}
	t := kindNull
	if v != nil {
		t = kindBoolean
	}
	return f.scalar(v, t)
}

// scalar checks a string, a bool or nil, of kind t.
func (f *fast) scalar(v any, t kinds) bool {
	if !f.allows(t, false) || (f.enum != nil && !f.inEnum(v)) || (f.format != nil && f.format.Validate(v) != nil) {
		return false
	}
	if s, ok := v.(string); ok {
		return f.string(s)
	}
	return true
}

func (f *fast) inEnum(v any) bool {
	for _, e := range f.enum {
		if e == v {
			return true
		}
	}
	return false
}

// object reads an object. A repeated name's every value is checked, where
// jsonschema sees only the last: stricter, so never wrong.
func (f *fast) object(d *decoder, depth int) bool {
	// Enums hold no objects, and a format may judge one: jsonschema decides.
	if f != nil && (!f.allows(kindObject, false) || f.enum != nil || f.format != nil) {
		return false
	}
	var seen uint64 // bit i: required[i] is present
	d.i++           // {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return f.hasRequired(seen)
	}
	for {
		d.space()
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return false
		}
		name, ok := d.text()
		if !ok {
			return false
		}
		var p *fast
		if f != nil {
			for i, r := range f.required {
				if r == string(name) {
					seen |= 1 << i
				}
			}
			p = f.props[string(name)]
			switch {
			case p != nil:
			case f.noOthers:
				return false
			default:
				p = f.additional // nil: anything
			}
		}
		d.space()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return false
		}
		d.i++
		d.space()
		if !p.scan(d, depth+1) {
			return false
		}
		if end, ok := d.after('}'); !ok || end {
			return ok && f.hasRequired(seen)
		}
	}
}

func (f *fast) hasRequired(seen uint64) bool {
	return f == nil || seen == 1<<len(f.required)-1
}

func (f *fast) array(d *decoder, depth int) bool {
	var items *fast
	if f != nil {
		if !f.allows(kindArray, false) || f.enum != nil || f.format != nil {
			return false
		}
		items = f.items
	}
	n := 0
	d.i++ // [
	d.space()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
	} else {
		for {
			d.space()
			if !items.scan(d, depth+1) {
				return false
			}
			n++
			end, ok := d.after(']')
			if !ok {
				return false
			}
			if end {
				break
			}
		}
	}
	return f == nil || !((f.minItems != nil && n < *f.minItems) || (f.maxItems != nil && n > *f.maxItems))
}

func (f *fast) string(s string) bool {
	if f.minLen != nil || f.maxLen != nil {
		n := utf8.RuneCountInString(s)
		if (f.minLen != nil && n < *f.minLen) || (f.maxLen != nil && n > *f.maxLen) {
			return false
		}
	}
	return f.pattern == nil || f.pattern.MatchString(s)
}

func (f *fast) number(n []byte) bool {
	for _, c := range [...]struct {
		b    *bound
		okIf func(int) bool
	}{
		{f.min, func(c int) bool { return c >= 0 }},
		{f.max, func(c int) bool { return c <= 0 }},
		{f.exMin, func(c int) bool { return c > 0 }},
		{f.exMax, func(c int) bool { return c < 0 }},
	} {
		if c.b == nil {
			continue
		}
		got, ok := c.b.cmp(n)
		if !ok || !c.okIf(got) {
			return false
		}
	}
	return true
}
