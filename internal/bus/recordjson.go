package bus

import (
	"encoding/json"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ShownRecord is a record as Sluice shows it to people (sluice tail, the
// console): where it is, its key and headers as text, and its value as
// JSON when it is JSON, else as a JSON string.
type ShownRecord struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp string            `json:"timestamp"`
	Key       string            `json:"key,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Value     json.RawMessage   `json:"value"`
}

// Show makes a record's ShownRecord; it copies what it keeps.
func Show(r *kgo.Record) ShownRecord {
	t := ShownRecord{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Timestamp: r.Timestamp.UTC().Format(time.RFC3339Nano),
		Key:       string(r.Key),
	}
	if len(r.Headers) > 0 {
		t.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			t.Headers[h.Key] = string(h.Value)
		}
	}
	if json.Valid(r.Value) {
		t.Value = append(json.RawMessage(nil), r.Value...)
	} else {
		t.Value, _ = json.Marshal(string(r.Value))
	}
	return t
}
