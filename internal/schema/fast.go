package schema

import (
	"encoding/json"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// fast checks the part of JSON Schema that event schemas are written in —
// types, required and known properties, enums of strings, bounds, lengths,
// patterns and formats — on a decoded document, without jsonschema's work
// per value (it writes every number out and parses it back as a big.Rat).
// The collector and the enricher validate every event, and valid events
// are nearly all of them. It only ever says "valid": a document it does
// not pass goes to jsonschema, which decides and names the errors, so it
// can cost time but never change an answer (FuzzFastAgrees).
type fast struct {
	anything bool            // the schema true
	types    map[string]bool // none: any type
	enum     []any           // strings, booleans and nulls; nil: no enum
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
func (b *bound) cmp(n json.Number) (int, bool) {
	if f, err := strconv.ParseFloat(string(n), 64); err == nil && b.exact {
		switch {
		case f < b.f:
			return -1, true
		case f > b.f:
			return 1, true
		}
	}
	r, ok := new(big.Rat).SetString(string(n))
	if !ok {
		return 0, false
	}
	return r.Cmp(b.rat), true
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
		f.types = map[string]bool{}
		for _, t := range s.Types.ToStrings() {
			f.types[t] = true
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

// check says whether v is certainly valid.
func (f *fast) check(v any) bool {
	if f.anything {
		return true
	}
	var t string
	integer := false
	switch v := v.(type) {
	case nil:
		t = "null"
	case bool:
		t = "boolean"
	case string:
		t = "string"
	case json.Number:
		t, integer = "number", !strings.ContainsAny(string(v), ".eE")
	case map[string]any:
		t = "object"
	case []any:
		t = "array"
	default:
		return false
	}
	// An integer written as 1.0 is one to JSON Schema: jsonschema decides.
	if f.types != nil && !f.types[t] && !(integer && f.types["integer"]) {
		return false
	}
	if f.enum != nil && !f.inEnum(v) {
		return false
	}
	if f.format != nil && f.format.Validate(v) != nil {
		return false
	}
	switch v := v.(type) {
	case map[string]any:
		return f.object(v)
	case []any:
		return f.array(v)
	case string:
		return f.string(v)
	case json.Number:
		return f.number(v)
	}
	return true
}

func (f *fast) inEnum(v any) bool {
	switch v.(type) {
	case string, bool, nil:
		for _, e := range f.enum {
			if e == v {
				return true
			}
		}
	}
	return false
}

func (f *fast) object(m map[string]any) bool {
	for _, r := range f.required {
		if _, ok := m[r]; !ok {
			return false
		}
	}
	for k, v := range m {
		p := f.props[k]
		switch {
		case p != nil:
		case f.noOthers:
			return false
		case f.additional != nil:
			p = f.additional
		default:
			continue
		}
		if !p.check(v) {
			return false
		}
	}
	return true
}

func (f *fast) array(a []any) bool {
	if (f.minItems != nil && len(a) < *f.minItems) || (f.maxItems != nil && len(a) > *f.maxItems) {
		return false
	}
	if f.items != nil {
		for _, v := range a {
			if !f.items.check(v) {
				return false
			}
		}
	}
	return true
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

func (f *fast) number(n json.Number) bool {
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
