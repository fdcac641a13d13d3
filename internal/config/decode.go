package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// NodeDecoder is a setting that decodes itself, such as a list entry whose
// settings depend on its type; it calls DecodeNode for the rest.
type NodeDecoder interface {
	DecodeYAML(n *yaml.Node, path string) []error
}

// Defaulter is a setting with defaults of its own: a new list entry or map
// value is given them before its YAML is read over them.
type Defaulter interface {
	SetDefaults()
}

// DecodeYAML reads the YAML document b over v, a pointer to a config
// struct: keys it does not name keep their values. Every problem is
// reported, each with its YAML path (kafka.brokers[1], sinks[0].flush_rows)
// and line: unknown keys, values of the wrong type, durations and sizes that
// do not read.
func DecodeYAML(b []byte, v any) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file means every default
		}
		return err
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return errors.Join(DecodeNode(doc.Content[0], v, "")...)
}

// DecodeNode reads n over v, a pointer, as DecodeYAML does; path is n's.
func DecodeNode(n *yaml.Node, v any, path string) []error {
	return decode(n, reflect.ValueOf(v).Elem(), path)
}

// PathError is a problem with the setting at Path.
type PathError struct {
	Path string
	Line int // 0 when not from a file
	Err  error
}

func (e *PathError) Error() string {
	p := e.Path
	if p == "" {
		p = "(top level)"
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s: %v (line %d)", p, e.Err, e.Line)
	}
	return fmt.Sprintf("%s: %v", p, e.Err)
}

func (e *PathError) Unwrap() error { return e.Err }

func pathErr(n *yaml.Node, path string, format string, args ...any) []error {
	return []error{&PathError{Path: path, Line: n.Line, Err: fmt.Errorf(format, args...)}}
}

// Join names a key under path.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var (
	durationType   = reflect.TypeFor[time.Duration]()
	textUnmarshal  = reflect.TypeFor[encoding.TextUnmarshaler]()
	yamlUnmarshal  = reflect.TypeFor[yaml.Unmarshaler]()
	nodeDecoder    = reflect.TypeFor[NodeDecoder]()
	defaulter      = reflect.TypeFor[Defaulter]()
	nullTag        = "!!null"
	kindNames      = map[yaml.Kind]string{yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list", yaml.ScalarNode: "a value", yaml.AliasNode: "an alias"}
	errNotMapping  = "want a mapping of settings (key: value)"
	errNotSequence = "want a list"
)

func decode(n *yaml.Node, v reflect.Value, path string) []error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Tag == nullTag {
		return nil // key: with no value keeps the default
	}
	if v.CanAddr() {
		pt := v.Addr().Type()
		switch {
		case pt.Implements(nodeDecoder):
			return v.Addr().Interface().(NodeDecoder).DecodeYAML(n, path)
		case pt.Implements(yamlUnmarshal), pt.Implements(textUnmarshal):
			return scalar(n, v, path)
		}
	}
	if v.Type() == durationType {
		return duration(n, v, path)
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return decode(n, v.Elem(), path)
	case reflect.Struct:
		return decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return pathErr(n, path, "%s, got %s", errNotSequence, kindNames[n.Kind])
		}
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		var errs []error
		for i, item := range n.Content {
			elemPath := fmt.Sprintf("%s[%d]", path, i)
			if item.Tag == nullTag {
				errs = append(errs, pathErr(item, elemPath, "an empty entry: remove it, or give it its settings")...)
				continue
			}
			elem := out.Index(i)
			setDefaults(elem)
			errs = append(errs, decode(item, elem, elemPath)...)
		}
		v.Set(out)
		return errs
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return pathErr(n, path, "%s, got %s", errNotMapping, kindNames[n.Kind])
		}
		out := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := reflect.New(v.Type().Key()).Elem()
			if err := k.Decode(key.Addr().Interface()); err != nil {
				errs = append(errs, pathErr(k, path, "key %q: %v", k.Value, cleanYAMLError(err))...)
				continue
			}
			if val.Tag == nullTag {
				errs = append(errs, pathErr(val, Join(path, k.Value), "no value: give it one, or remove the key")...)
				continue
			}
			elem := reflect.New(v.Type().Elem()).Elem()
			setDefaults(elem)
			errs = append(errs, decode(val, elem, Join(path, k.Value))...)
			out.SetMapIndex(key, elem)
		}
		v.Set(out)
		return errs
	}
	return scalar(n, v, path)
}

func setDefaults(v reflect.Value) {
	if v.CanAddr() && v.Addr().Type().Implements(defaulter) {
		v.Addr().Interface().(Defaulter).SetDefaults()
	}
}

func decodeStruct(n *yaml.Node, v reflect.Value, path string) []error {
	if n.Kind != yaml.MappingNode {
		return pathErr(n, path, "%s, got %s", errNotMapping, kindNames[n.Kind])
	}
	fields := structFields(v.Type())
	var errs []error
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		f, ok := fields[key]
		if !ok {
			errs = append(errs, unknownKey(k, path, fields)...)
			continue
		}
		if seen[key] {
			errs = append(errs, pathErr(k, Join(path, key), "set twice")...)
			continue
		}
		seen[key] = true
		errs = append(errs, decode(val, v.FieldByIndex(f.index), Join(path, key))...)
	}
	return errs
}

func unknownKey(k *yaml.Node, path string, fields map[string]field) []error {
	if moved, ok := movedKeys[Join(path, k.Value)]; ok {
		return pathErr(k, Join(path, k.Value), "%s", moved)
	}
	known := make([]string, 0, len(fields))
	for name := range fields {
		known = append(known, name)
	}
	sort.Strings(known)
	msg := "unknown setting"
	if near := nearest(k.Value, known); near != "" {
		msg += fmt.Sprintf("; did you mean %s?", near)
	}
	return pathErr(k, Join(path, k.Value), "%s (known here: %s)", msg, strings.Join(known, ", "))
}

// movedKeys says where settings of earlier versions went.
var movedKeys = map[string]string{
	"loader":       "the lake loader is now a sink: list it under sinks: as - type: lake, with the same settings (docs/configuration.md)",
	"collector.id": "the collector id is now the top-level instance_id",
}

// nearest is the known key within two edits of key, if any.
func nearest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// field is a struct field reachable by a YAML key, through inlined
// structs.
type field struct {
	index []int
	sf    reflect.StructField
}

// structFields maps the YAML keys of t to its fields.
func structFields(t reflect.Type) map[string]field {
	out := map[string]field{}
	for _, f := range orderedFields(t) {
		out[key(f.sf)] = f
	}
	return out
}

// orderedFields are the fields of t reachable by a YAML key, in
// declaration order: `yaml:",inline"` structs lend theirs, and `yaml:"-"`
// fields have none.
func orderedFields(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() && !sf.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" || !sf.IsExported() && opts != "inline" {
			continue
		}
		if opts == "inline" {
			for _, f := range orderedFields(sf.Type) {
				out = append(out, field{index: append([]int{i}, f.index...), sf: f.sf})
			}
			continue
		}
		out = append(out, field{index: []int{i}, sf: sf})
	}
	return out
}

// key is a field's YAML key.
func key(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(sf.Name)
	}
	return name
}

// duration reads a duration: a Go duration string (250ms, 5s, 1h30m), or
// 0 for none.
func duration(n *yaml.Node, v reflect.Value, path string) []error {
	if n.Kind != yaml.ScalarNode {
		return pathErr(n, path, "want a duration such as 5s or 250ms, got %s", kindNames[n.Kind])
	}
	s := strings.TrimSpace(n.Value)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f == 0 {
			v.SetInt(0)
			return nil
		}
		return pathErr(n, path, "want a duration with a unit, such as %ss, got %s", s, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return pathErr(n, path, "want a duration such as 5s or 250ms, got %q", s)
	}
	v.SetInt(int64(d))
	return nil
}

func scalar(n *yaml.Node, v reflect.Value, path string) []error {
	if n.Kind != yaml.ScalarNode {
		return pathErr(n, path, "want %s, got %s", describe(v.Type()), kindNames[n.Kind])
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		return pathErr(n, path, "%v", cleanYAMLError(err))
	}
	return nil
}

// cleanYAMLError drops the yaml package's line prefix and Go type names,
// which the path and line say better.
func cleanYAMLError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	msg = strings.TrimSpace(msg)
	if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "line ") && i > 0 {
		msg = msg[i+2:]
	}
	if strings.HasPrefix(msg, "cannot unmarshal") {
		// cannot unmarshal !!str `lots` into int
		parts := strings.Fields(msg)
		if len(parts) >= 6 {
			return fmt.Errorf("want %s, got %s", goTypeWord(parts[len(parts)-1]), strings.Join(parts[3:len(parts)-2], " "))
		}
	}
	return errors.New(msg)
}

func goTypeWord(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	}
	return t
}

// describe is what a value of type t looks like, for errors.
func describe(t reflect.Type) string {
	switch name := typeName(t); name {
	case "boolean":
		return "true or false"
	case "integer":
		return "a whole number"
	case "number", "string", "duration", "size":
		return "a " + name
	}
	return "a value"
}
