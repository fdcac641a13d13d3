// Package schema is Sluice's schema registry, after Snowplow's Iglu: a
// directory of JSON Schemas laid out as <event_type>/<schema_version>.json,
// one per version of each event's payload. Stages validate payloads against
// it, and the lake takes its column types from it.
package schema

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/row"
)

// Key names a schema: an event type and a version of it.
type Key struct{ EventType, Version string }

func (k Key) String() string { return k.EventType + "/" + k.Version }

// Registry holds the compiled schemas of a directory. It is safe for
// concurrent use, and Reload swaps in a new set atomically.
type Registry struct {
	fsys fs.FS

	mu      sync.RWMutex
	schemas map[Key]*entry
}

type entry struct {
	schema     *jsonschema.Schema
	fast       *fast // nil: every document goes to schema
	columns    map[string]row.Kind
	properties int
	file       string
}

// Load compiles every <event_type>/<schema_version>.json under fsys (for
// example os.DirFS(dir)). A schema that does not compile fails the load,
// naming its file.
func Load(fsys fs.FS) (*Registry, error) {
	r := &Registry{fsys: fsys}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the directory again; on an error the schemas loaded before
// stay in use.
func (r *Registry) Reload() error {
	schemas := make(map[Key]*entry)
	// Formats are asserted (date-time, date, time, email, uuid, uri, ...):
	// a value that breaks its declared format is a violation, not a row
	// that turns its column into text. date-time takes the times real data
	// holds, not RFC 3339's alone: replayed times such as
	// 2025-01-01T00:18:38 have no zone, and are UTC.
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.SchemeURLLoader{"sluice": missingFile{}})
	c.AssertFormat()
	c.RegisterFormat(&jsonschema.Format{Name: "date-time", Validate: func(v any) error {
		s, ok := v.(string)
		if !ok {
			return nil // format applies to strings only
		}
		if _, ok := row.ParseTime(s); !ok {
			return errors.New("want RFC 3339, such as 2025-01-01T00:18:38Z, or the same without a zone (UTC)")
		}
		return nil
	}})
	// Every file is added before any is compiled, so that a schema's $ref
	// may name another file of the registry ("../address/1-0-0.json").
	type file struct {
		path, url string
		key       Key
		doc       any
	}
	var files []file
	err := fs.WalkDir(r.fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".json") {
			return nil
		}
		dir, name := path.Split(p)
		eventType := strings.Trim(dir, "/")
		if eventType == "" || strings.Contains(eventType, "/") {
			return fmt.Errorf("schema %s: want <event_type>/<schema_version>.json", p)
		}
		b, err := fs.ReadFile(r.fsys, p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("schema %s: %w", p, err)
		}
		url := "sluice:///" + p
		if err := c.AddResource(url, doc); err != nil {
			return fmt.Errorf("schema %s: %w", p, err)
		}
		files = append(files, file{p, url, Key{eventType, strings.TrimSuffix(name, ".json")}, doc})
		return nil
	})
	if err != nil {
		return fmt.Errorf("load schemas: %w", err)
	}
	for _, f := range files {
		sch, err := c.Compile(f.url)
		if err != nil {
			return fmt.Errorf("load schemas: schema %s: %w", f.path, err)
		}
		schemas[f.key] = &entry{schema: sch, fast: compileFast(sch), columns: columns(f.doc), properties: properties(f.doc), file: f.path}
	}
	r.mu.Lock()
	r.schemas = schemas
	r.mu.Unlock()
	return nil
}

// Keys lists the schemas loaded, sorted.
func (r *Registry) Keys() []Key {
	r.mu.RLock()
	defer r.mu.RUnlock()
	keys := make([]Key, 0, len(r.schemas))
	for k := range r.schemas {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys
}

// Info describes a registered schema.
type Info struct {
	Key
	// Draft is the JSON Schema draft it is read as: its $schema, else
	// 2020-12.
	Draft string `json:"draft"`
	// File is its path in the registry's directory.
	File string `json:"file"`
	// Properties is how many top-level properties it declares.
	Properties int `json:"properties"`
}

// Infos describes every schema loaded, sorted.
func (r *Registry) Infos() []Info {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Info, 0, len(r.schemas))
	for k, e := range r.schemas {
		out = append(out, Info{Key: k, Draft: draftName(e.schema.DraftVersion), File: e.file, Properties: e.properties})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.String() < out[j].Key.String() })
	return out
}

// Drafts are the JSON Schema drafts schemas may be written in.
var Drafts = []string{"4", "6", "7", "2019-09", "2020-12"}

func draftName(v int) string {
	switch v {
	case 2019:
		return "2019-09"
	case 2020:
		return "2020-12"
	}
	return strconv.Itoa(v)
}

func (r *Registry) get(k Key) *entry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.schemas[k]
}

// ErrNoSchema is returned by Validate for an event type and version the
// registry has no schema for.
var ErrNoSchema = errors.New("no schema")

// Validate checks a payload (raw JSON) against its schema. It returns
// ErrNoSchema when there is none, and otherwise every violation, with
// JSON pointer paths from the event's root (/payload/...).
func (r *Registry) Validate(k Key, payload []byte) ([]event.FieldError, error) {
	e := r.get(k)
	if e == nil {
		return nil, fmt.Errorf("%w for %s", ErrNoSchema, k)
	}
	if e.fast != nil && e.fast.valid(payload) {
		return nil, nil
	}
	doc, ok := decode(payload)
	if !ok {
		var err error
		if doc, err = jsonschema.UnmarshalJSON(bytes.NewReader(payload)); err != nil {
			return []event.FieldError{{Path: "/" + event.FieldPayload, Message: "not valid JSON: " + err.Error()}}, nil
		}
	}
	err := e.schema.Validate(doc)
	var ve *jsonschema.ValidationError
	if err == nil {
		return nil, nil
	}
	if !errors.As(err, &ve) {
		return nil, fmt.Errorf("validate %s: %w", k, err)
	}
	var errs []event.FieldError
	var walk func(u jsonschema.OutputUnit)
	walk = func(u jsonschema.OutputUnit) {
		if u.Error != nil && len(u.Errors) == 0 {
			errs = append(errs, event.FieldError{Path: "/" + event.FieldPayload + u.InstanceLocation, Message: u.Error.String()})
		}
		for _, c := range u.Errors {
			walk(c)
		}
	}
	walk(*ve.BasicOutput())
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Path < errs[j].Path })
	return errs, nil
}

// Columns gives the lake column types of a schema's top-level properties,
// or nil when there is no schema: integer is bigint, number double,
// boolean boolean, a string of format date-time or date a timestamp,
// objects and arrays JSON, and other strings strings. A property that
// allows several types (besides null) is left to the values.
func (r *Registry) Columns(k Key) map[string]row.Kind {
	if e := r.get(k); e != nil {
		return e.columns
	}
	return nil
}

// columns reads the column types from the schema document itself: format
// is an annotation the compiled schema does not keep.
func columns(doc any) map[string]row.Kind {
	props, _ := lookup(doc, "properties").(map[string]any)
	out := make(map[string]row.Kind, len(props))
	for name, p := range props {
		var types []string
		switch t := lookup(p, "type").(type) {
		case string:
			types = []string{t}
		case []any:
			for _, x := range t {
				if s, ok := x.(string); ok {
					types = append(types, s)
				}
			}
		}
		format, _ := lookup(p, "format").(string)
		var kinds []row.Kind
		for _, t := range types {
			switch t {
			case "integer":
				kinds = append(kinds, row.KindInt)
			case "number":
				kinds = append(kinds, row.KindFloat)
			case "boolean":
				kinds = append(kinds, row.KindBool)
			case "string":
				if format == "date-time" || format == "date" {
					kinds = append(kinds, row.KindTimestamp)
				} else {
					kinds = append(kinds, row.KindString)
				}
			case "object", "array":
				kinds = append(kinds, row.KindJSON)
			}
		}
		if len(kinds) == 1 {
			out[name] = kinds[0]
		}
	}
	return out
}

// missingFile answers for a $ref to a file the registry does not have;
// nothing is fetched from elsewhere.
type missingFile struct{}

func (missingFile) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s is not in the schema directory", strings.TrimPrefix(url, "sluice:///"))
}

// properties counts the top-level properties declared, typed or not.
func properties(doc any) int {
	props, _ := lookup(doc, "properties").(map[string]any)
	return len(props)
}

func lookup(doc any, key string) any {
	m, _ := doc.(map[string]any)
	return m[key]
}
