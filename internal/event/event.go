// Package event defines the contracts that every stage shares: the envelope a
// client sends, the fields the collector stamps on it, the Kafka headers that
// repeat them, and the failed-event record that every stage writes to the
// dead-letter topic.
//
// The collector must never change anything a client sent other than adding its
// own fields, so parsing works on the raw bytes: the top-level object is split
// into members whose values are kept byte for byte, and the stamped event is
// written by copying those bytes, never by re-encoding a decoded payload.
package event

import (
	"encoding/json"
	"fmt"
	"time"
)

// Envelope field names.
const (
	FieldEventType       = "event_type"
	FieldSchemaVersion   = "schema_version"
	FieldPayload         = "payload"
	FieldEventID         = "event_id"
	FieldCollectorTstamp = "collector_tstamp"
	FieldRootID          = "root_id"
	FieldCollectorID     = "collector_id"
)

// Kafka record header keys. They repeat envelope fields so that consumers can
// route a record without parsing its value.
const (
	HeaderEventType     = "event_type"
	HeaderSchemaVersion = "schema_version"
	HeaderRootID        = "root_id"
	HeaderStage         = "stage"
	HeaderReason        = "reason"
)

// Reasons are the short, stable codes that explain why an event failed. They
// appear in HTTP answers, in failed-event records and as metric labels, so
// they never change once released.
const (
	ReasonInvalidJSON  = "invalid_json"
	ReasonMissingField = "missing_field"
	ReasonWrongType    = "wrong_type"
	ReasonEmptyField   = "empty_field"
)

// Stages that write failed events.
const (
	StageCollector  = "collector"
	StageEnricher   = "enricher"
	StageAggregator = "aggregator"
	StageLoader     = "loader"
)

// TimeLayout is how every Sluice timestamp is written: UTC, RFC 3339, with a
// fixed six fractional digits so that the strings sort as the times do.
const TimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// FormatTime writes t in TimeLayout, in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// FieldError is one problem found in an event, at a JSON pointer path.
type FieldError struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// Failed is the dead-letter record every stage writes, in one shape, so that
// a failed event can be found, understood, fixed and replayed.
type Failed struct {
	Stage    string       `json:"stage"`
	Reason   string       `json:"reason"`
	Errors   []FieldError `json:"errors"`
	FailedAt string       `json:"failed_at"`
	RootID   string       `json:"root_id,omitempty"`
	// Original is the event as it arrived: its JSON when it was JSON, else the
	// raw body as a JSON string.
	Original json.RawMessage `json:"original"`
}

// NewFailed builds a failed-event record for original, which is kept as JSON
// when it is valid JSON and as a string otherwise.
func NewFailed(stage, reason string, errs []FieldError, rootID string, original []byte, at time.Time) Failed {
	var orig json.RawMessage
	if len(original) > 0 && json.Valid(original) {
		orig = json.RawMessage(original)
	} else {
		// Marshalling a string cannot fail; invalid UTF-8 becomes U+FFFD.
		orig, _ = json.Marshal(string(original))
	}
	if errs == nil {
		errs = []FieldError{}
	}
	return Failed{
		Stage:    stage,
		Reason:   reason,
		Errors:   errs,
		FailedAt: FormatTime(at),
		RootID:   rootID,
		Original: orig,
	}
}

// Marshal encodes the record.
func (f Failed) Marshal() ([]byte, error) {
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("marshal failed event: %w", err)
	}
	return b, nil
}
