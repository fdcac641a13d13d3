package search

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/event"
)

// FuzzBulkLines adds any record to a buffer: one the buffer takes becomes
// exactly two lines of valid JSON, an action and its source, whatever line
// breaks or keys the value holds, so no record can break a _bulk body.
func FuzzBulkLines(f *testing.F) {
	f.Add([]byte(`{"event_type":"trip","payload":{"n":1},"collector_tstamp":"2025-01-01T00:00:00Z","root_id":"r1"}`), false)
	f.Add([]byte("{\n\"event_type\" :\r\n \"Trip View\",\n\"payload\":{}}\n"), true)
	f.Add([]byte(`{}`), true)
	f.Add([]byte(`{"root_id":"a\"b\n","event_type":"../x","collector_tstamp":"not a time"}`), false)
	f.Add([]byte(`not json {`), false)
	f.Add([]byte(`{"@timestamp":"2025-01-01T00:00:00Z","event_type":"log"}`), true)
	f.Fuzz(func(t *testing.T, value []byte, streams bool) {
		cfg := DefaultConfig()
		cfg.DataStreams = streams
		if streams {
			cfg.Index = "ev-{event_type}"
		}
		s, err := New(cfg, "dlq", nil, testLogger(t), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		b := s.NewBuffer("events", 0).(*buffer)
		if _, err := b.Add(&kgo.Record{Value: value, Headers: []kgo.RecordHeader{{Key: event.HeaderRootID, Value: value}}}); err != nil {
			return
		}
		d := &b.docs[0]
		lines := bytes.Split(b.lines[d.start:d.end], []byte("\n"))
		if len(lines) != 3 || len(lines[2]) != 0 {
			t.Fatalf("%d lines for %q: %q", len(lines)-1, value, b.lines)
		}
		var action map[string]map[string]any
		if err := json.Unmarshal(lines[0], &action); err != nil || len(action) != 1 {
			t.Fatalf("action %q: %v", lines[0], err)
		}
		var source map[string]any
		if err := json.Unmarshal(lines[1], &source); err != nil {
			t.Fatalf("source %q of %q: %v", lines[1], value, err)
		}

		if streams && source["@timestamp"] == nil {
			t.Fatalf("source %q has no @timestamp", lines[1])
		}
		if rec := b.record(d); string(rec.Headers[0].Value) != string(value) {
			t.Fatalf("the dead letter's record lost its header")
		}
	})
}

// FuzzReadItems reads any answer as a _bulk answer without panicking.
func FuzzReadItems(f *testing.F) {
	for _, name := range []string{"bulk-errors.json", "bulk-rejected.json"} {
		b, err := os.ReadFile("testdata/elasticsearch/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 3)
	}
	f.Add([]byte(`{"errors":false,"items":[{"index":{"status":201}}]}`), 1)
	f.Fuzz(func(t *testing.T, answer []byte, n int) {
		if n < 0 || n > 1000 {
			return
		}
		items, err := readItems(answer, n)
		if err == nil && len(items) != n {
			t.Fatalf("%d items for %d documents", len(items), n)
		}
		for _, item := range items {
			outcome(item, n%2 == 0)
			_ = item.Error.String()
		}
	})
}
