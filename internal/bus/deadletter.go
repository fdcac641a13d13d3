package bus

import (
	"bytes"
	"encoding/json"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/event"
)

// DeadLetter is the record every stage writes to the dead-letter topic for
// an event it could not take: the failed-event record f as its value, keyed
// as the event was (by its root id when it had no key, as the collector's
// events are), carrying the event's own headers and then stage, reason and
// root_id, and extra. src is the record that failed, or nil when the event
// never was one (the collector's rejected bodies).
func DeadLetter(topic string, f event.Failed, src *kgo.Record, extra ...kgo.RecordHeader) *kgo.Record {
	value, err := f.Marshal()
	if err != nil {
		// Only an Original that is not JSON fails; keep it as a string.
		f.Original, _ = json.Marshal(string(f.Original))
		value, _ = f.Marshal()
	}
	// The source's memory may be reused once it is handled (RecyclePools):
	// the dead letter keeps copies.
	r := &kgo.Record{Topic: topic, Value: value}
	var n int
	if src != nil {
		r.Key, n = bytes.Clone(src.Key), len(src.Headers)
	}
	if r.Key == nil && f.RootID != "" {
		r.Key = []byte(f.RootID)
	}
	r.Headers = make([]kgo.RecordHeader, 0, n+3+len(extra))
	if src != nil {
		for _, h := range src.Headers {
			switch h.Key {
			case event.HeaderStage, event.HeaderReason, event.HeaderRootID:
				continue // set below, for this failure
			}
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: bytes.Clone(h.Value)})
		}
	}
	r.Headers = append(r.Headers,
		kgo.RecordHeader{Key: event.HeaderStage, Value: []byte(f.Stage)},
		kgo.RecordHeader{Key: event.HeaderReason, Value: []byte(f.Reason)})
	if f.RootID != "" {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: event.HeaderRootID, Value: []byte(f.RootID)})
	}
	r.Headers = append(r.Headers, extra...)
	return r
}
