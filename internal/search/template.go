package search

import (
	"encoding/json"
	"fmt"
	"hash/fnv"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/row"
)

// template is an index template of one event type's indices.
type template struct {
	name, pattern string
	body          []byte
}

// mapping is a field's mapping in a template.
type mapping map[string]any

// envelope are the types of the fields every event carries.
var envelope = map[string]mapping{
	event.FieldEventType:       {"type": "keyword"},
	event.FieldSchemaVersion:   {"type": "keyword"},
	event.FieldEventID:         {"type": "keyword"},
	event.FieldRootID:          {"type": "keyword"},
	event.FieldCollectorID:     {"type": "keyword"},
	event.FieldCollectorTstamp: {"type": "date"},
}

// template describes the indices of event type typ: the envelope's
// fields, the payload's from every registered version of its schema, and
// strings as keywords (dashboards group by them) unless a schema says
// otherwise. Its priority grows with its pattern's length, so that the
// templates of types such as page and page-view, whose patterns overlap,
// never share one (which the servers refuse).
func (s *Search) template(typ string, isEvent bool) template {
	pattern := s.index.wildcard(typ)
	props := map[string]any{}
	for k, v := range envelope {
		props[k] = v
	}
	if isEvent && s.schemas != nil {
		payload := map[string]any{}
		// Versions come sorted: later ones win where they disagree.
		for _, k := range s.schemas.Keys() {
			if indexName(k.EventType) != typ {
				continue
			}
			for name, kind := range s.schemas.Columns(k) {
				if m := fieldMapping(kind); m != nil {
					payload[name] = m
				}
			}
		}
		if len(payload) > 0 {
			props[event.FieldPayload] = map[string]any{"properties": payload}
		}
	}
	settings := map[string]any{}
	if s.cfg.Shards > 0 {
		settings["number_of_shards"] = s.cfg.Shards
	}
	if s.cfg.Replicas >= 0 {
		settings["number_of_replicas"] = s.cfg.Replicas
	}
	if s.cfg.DataStreams {
		props["@timestamp"] = mapping{"type": "date"}
	}
	doc := map[string]any{
		"index_patterns": []string{pattern},
		"priority":       100 + len(pattern),
		"template": map[string]any{
			"settings": settings,
			"mappings": map[string]any{
				"dynamic_templates": []any{map[string]any{"strings_as_keywords": map[string]any{
					"match_mapping_type": "string",
					"mapping":            map[string]any{"type": "keyword", "ignore_above": 8191},
				}}},
				"properties": props,
			},
		},
		"_meta": map[string]any{"managed_by": "sluice", "event_type": typ},
	}
	if s.cfg.DataStreams {
		doc["data_stream"] = map[string]any{}
	}
	body, _ := json.Marshal(doc) // maps of strings and numbers always encode
	h := fnv.New32a()
	h.Write([]byte(pattern))
	return template{name: fmt.Sprintf("sluice-%s-%08x", typ, h.Sum32()), pattern: pattern, body: body}
}

// fieldMapping is the mapping of a payload field of a schema's type, or
// nil to let the server map it from its values (objects and arrays).
func fieldMapping(k row.Kind) mapping {
	switch k {
	case row.KindInt:
		return mapping{"type": "long"}
	case row.KindFloat:
		return mapping{"type": "double"}
	case row.KindBool:
		return mapping{"type": "boolean"}
	case row.KindTimestamp:
		return mapping{"type": "date"}
	case row.KindString:
		return mapping{"type": "keyword", "ignore_above": 8191}
	}
	return nil
}
