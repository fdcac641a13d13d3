package config

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// NodeEncoder is a setting that writes itself, such as a typed list entry.
type NodeEncoder interface {
	EncodeYAML() *yaml.Node
}

// Masked is what EncodeYAML writes for a secret (a field tagged
// secret:"true") that is set.
const Masked = "*****"

// EncodeYAML writes v, a config struct, as YAML that DecodeYAML reads
// back: durations as 10s, sizes as 64MiB, secrets masked.
func EncodeYAML(v any) ([]byte, error) {
	n := EncodeNode(reflect.ValueOf(v), false)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// EncodeNode is v as a YAML node; secret masks it.
func EncodeNode(v reflect.Value, secret bool) *yaml.Node {
	for !v.IsValid() || v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if !v.IsValid() || v.IsNil() {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: nullTag, Value: "null"}
		}
		v = v.Elem()
	}
	if secret && !v.IsZero() {
		if v.Kind() == reflect.Slice {
			n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for range v.Len() {
				n.Content = append(n.Content, str(Masked))
			}
			return n
		}
		return str(Masked)
	}
	if v.CanInterface() {
		if e, ok := v.Interface().(NodeEncoder); ok {
			return e.EncodeYAML()
		}
	}
	if v.CanAddr() {
		if e, ok := v.Addr().Interface().(NodeEncoder); ok {
			return e.EncodeYAML()
		}
	}
	if v.Type() == durationType {
		return str(time.Duration(v.Int()).String())
	}
	if m, ok := textMarshaler(v); ok {
		b, err := m.MarshalText()
		if err == nil {
			return str(string(b))
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range orderedFields(v.Type()) {
			n.Content = append(n.Content, str(key(f.sf)),
				EncodeNode(v.FieldByIndex(f.index), f.sf.Tag.Get("secret") == "true"))
		}
		return n
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		scalars := true
		for i := range v.Len() {
			item := EncodeNode(v.Index(i), false)
			scalars = scalars && item.Kind == yaml.ScalarNode
			n.Content = append(n.Content, item)
		}
		if scalars {
			n.Style = yaml.FlowStyle
		}
		return n
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		for _, k := range keys {
			n.Content = append(n.Content, str(fmt.Sprint(k)), EncodeNode(v.MapIndex(k), false))
		}
		return n
	}
	var n yaml.Node
	if err := n.Encode(v.Interface()); err != nil {
		return str(fmt.Sprint(v.Interface()))
	}
	return &n
}

func textMarshaler(v reflect.Value) (encoding.TextMarshaler, bool) {
	if v.CanInterface() {
		if m, ok := v.Interface().(encoding.TextMarshaler); ok {
			return m, true
		}
	}
	if v.CanAddr() {
		if m, ok := v.Addr().Interface().(encoding.TextMarshaler); ok {
			return m, true
		}
	}
	return nil, false
}

func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// Setting describes one key of the configuration, for its reference.
type Setting struct {
	// Path is the key's place, such as collector.http_addr, sinks[].topics
	// or sinks[].tables.<name>.format.
	Path    string
	Type    string
	Default string
	Flag    string // --http-addr, or empty
	Env     string // SLUICE_HTTP_ADDR, or empty
	Doc     string
}

// Describe lists the settings of v, a config struct holding its defaults,
// under prefix, in declaration order. Typed entries (NodeDecoder) are
// listed as one setting; their types describe themselves.
func Describe(v any, prefix string) []Setting {
	return describeValue(reflect.ValueOf(v), prefix)
}

func describeValue(v reflect.Value, prefix string) []Setting {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v = reflect.New(v.Type().Elem())
		}
		v = v.Elem()
	}
	var out []Setting
	for _, f := range orderedFields(v.Type()) {
		fv := v.FieldByIndex(f.index)
		path := Join(prefix, key(f.sf))
		s := Setting{Path: path, Type: typeName(fv.Type()), Doc: f.sf.Tag.Get("doc")}
		if name := f.sf.Tag.Get("flag"); name != "" {
			s.Flag, s.Env = "--"+name, EnvName(name)
		}
		ft := fv.Type()
		switch {
		case reflect.PointerTo(ft).Implements(nodeDecoder):
			out = append(out, s)
			continue
		case isSettingsStruct(ft):
			out = append(out, describeValue(fv, path)...)
			continue
		case ft.Kind() == reflect.Slice && reflect.PointerTo(ft.Elem()).Implements(nodeDecoder):
			s.Type = "list"
			out = append(out, s)
			continue
		case ft.Kind() == reflect.Slice && isSettingsStruct(ft.Elem()):
			s.Type = "list"
			out = append(out, s)
			elem := reflect.New(ft.Elem())
			setDefaults(elem.Elem())
			out = append(out, describeValue(elem, path+"[]")...)
			continue
		case ft.Kind() == reflect.Map && isSettingsStruct(ft.Elem()):
			s.Type = "map"
			out = append(out, s)
			elem := reflect.New(ft.Elem())
			setDefaults(elem.Elem())
			out = append(out, describeValue(elem, path+".<name>")...)
			continue
		}
		s.Default = defaultText(fv, f.sf.Tag.Get("secret") == "true")
		out = append(out, s)
	}
	return out
}

// isSettingsStruct is a struct of settings, not a value such as a time.
func isSettingsStruct(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	if reflect.PointerTo(t).Implements(textUnmarshal) || reflect.PointerTo(t).Implements(yamlUnmarshal) {
		return false
	}
	return true
}

func defaultText(v reflect.Value, secret bool) string {
	if v.IsZero() && v.Kind() != reflect.Bool && v.Kind() != reflect.Int && v.Kind() != reflect.Int32 && v.Kind() != reflect.Int64 {
		return ""
	}
	n := EncodeNode(v, secret)
	b, err := yaml.Marshal(n)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func typeName(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	if reflect.PointerTo(t).Implements(textUnmarshal) || reflect.PointerTo(t).Implements(yamlUnmarshal) {
		if t.Name() == "ByteSize" {
			return "size"
		}
		return "string"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list of " + typeName(t.Elem()) + "s"
	case reflect.Map:
		return "map of " + typeName(t.Elem()) + "s"
	case reflect.Pointer:
		return typeName(t.Elem())
	}
	return t.Kind().String()
}
