package search

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
)

// buffer holds a partition's range as the _bulk lines of its documents,
// rendered once when added: a request body is their concatenation.
type buffer struct {
	s         *Search
	topic     string
	partition int32
	// lines holds each document's action and source lines; meta, what a
	// dead letter of it needs (its key and headers).
	lines []byte
	meta  []byte
	docs  []doc
	// types are the event types of the documents, each true when it is
	// an event rather than a model's row (whose fields no schema gives).
	types map[string]bool
	// names interns index names by type and date.
	names map[nameKey]string
	top   []event.Member
}

type nameKey struct {
	typ  string
	hour int64
}

// doc is one document of a buffer.
type doc struct {
	start, source, end int // its lines in buffer.lines: action, then source
	metaStart, metaEnd int
	offset             int64
	typ                string
	rootID             string
	state              uint8
	// solo sends it in a request of its own: a request it was in failed
	// as a whole (too large, or refused), and this finds which document.
	solo bool
	// why is the server's last answer for it while it is pending.
	why string
}

const (
	pending uint8 = iota
	indexed
	rejected
)

func newBuffer(s *Search, topic string, partition int32) *buffer {
	return &buffer{s: s, topic: topic, partition: partition, types: map[string]bool{}, names: map[nameKey]string{}}
}

// Add renders a record as its _bulk lines. A record that is not a JSON
// object is an error: the runner dead-letters it.
func (b *buffer) Add(r *kgo.Record) (int, error) {
	var err error
	b.top, _, err = event.ObjectMembers(r.Value, "", b.top[:0], nil)
	if err != nil {
		return 0, err
	}
	table := bus.Header(r, "table")
	typ, rootID := table, bus.Header(r, event.HeaderRootID)
	var at []byte
	stamped := false // has its own @timestamp, which data streams keep
	for _, m := range b.top {
		switch {
		case m.Is("@timestamp"):
			stamped = true
		case typ == "" && m.Is(event.FieldEventType) && m.Value[0] == '"':
			typ = event.Unquote(m.Value)
		case rootID == "" && m.Is(event.FieldRootID) && m.Value[0] == '"':
			rootID = event.Unquote(m.Value)
		case m.Is(b.s.cfg.TimeField) && m.Value[0] == '"':
			at = m.Value[1 : len(m.Value)-1]
		}
	}
	if typ == "" {
		typ = bus.Header(r, event.HeaderEventType)
	}
	typ = indexName(typ)
	if _, ok := b.types[typ]; !ok {
		b.types[typ] = table == ""
	}
	id := rootID
	if id == "" || table != "" {
		// Rows of a model share their event's root_id; their place in
		// Kafka is as stable.
		id = b.topic + "-" + strconv.Itoa(int(b.partition)) + "-" + strconv.FormatInt(r.Offset, 10)
	}
	t, ok := parseTime(at)
	if !ok {
		t = r.Timestamp
	}
	grew := cap(b.lines) + cap(b.meta)
	d := doc{start: len(b.lines), offset: r.Offset, typ: typ, rootID: rootID}
	op := "index"
	if b.s.cfg.DataStreams {
		op = "create"
	}
	b.lines = append(b.lines, `{"`...)
	b.lines = append(b.lines, op...)
	b.lines = append(b.lines, `":{"_index":"`...)
	b.lines = append(b.lines, b.indexOf(typ, t)...)
	b.lines = append(b.lines, `","_id":`...)
	b.lines = event.AppendString(b.lines, id)
	if b.s.cfg.Versioning == "external" {
		b.lines = append(b.lines, `,"version":`...)
		b.lines = strconv.AppendInt(b.lines, r.Offset, 10)
		b.lines = append(b.lines, `,"version_type":"external"`...)
	}
	b.lines = append(b.lines, "}}\n"...)
	d.source = len(b.lines)
	if b.s.cfg.DataStreams && !stamped {
		// The value is an object: @timestamp goes in before its end.
		end := bytes.LastIndexByte(r.Value, '}')
		b.lines = append(b.lines, r.Value[:end]...)
		if len(b.top) > 0 {
			b.lines = append(b.lines, ',')
		}
		b.lines = append(b.lines, `"@timestamp":"`...)
		b.lines = t.UTC().AppendFormat(b.lines, event.TimeLayout)
		b.lines = append(b.lines, `"}`...)
	} else {
		b.lines = append(b.lines, r.Value...)
	}
	// A line break in a _bulk source would end it early; in valid JSON one
	// can only be white space between tokens.
	if bytes.ContainsAny(r.Value, "\r\n") {
		for i, c := range b.lines[d.source:] {
			if c == '\n' || c == '\r' {
				b.lines[d.source+i] = ' '
			}
		}
	}
	b.lines = append(b.lines, '\n')
	d.end = len(b.lines)
	d.metaStart = len(b.meta)
	b.meta = appendBytes(b.meta, r.Key)
	b.meta = binary.AppendUvarint(b.meta, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		b.meta = appendBytes(appendBytes(b.meta, []byte(h.Key)), h.Value)
	}
	d.metaEnd = len(b.meta)
	b.docs = append(b.docs, d)
	return cap(b.lines) + cap(b.meta) - grew + docSize, nil
}

// docSize is a doc's own memory, about.
const docSize = 96

// indexOf is the index of a document of type typ at t.
func (b *buffer) indexOf(typ string, t time.Time) string {
	// Truncate floors times before 1970 too, where division would not.
	k := nameKey{typ, t.Truncate(time.Hour).Unix()}
	if n, ok := b.names[k]; ok {
		return n
	}
	n := b.s.index.name(typ, t)
	b.names[k] = n
	return n
}

// parseTime reads an RFC 3339 time.
func parseTime(s []byte) (time.Time, bool) {
	if len(s) == 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(s))
	return t, err == nil
}

// Rows counts the range's documents, for flush_rows.
func (b *buffer) Rows() int { return len(b.docs) }

// Release drops the buffer's memory.
func (b *buffer) Release() {
	b.lines, b.meta, b.docs = nil, nil, nil
}

// source is a document's event, as it came from Kafka (line breaks aside).
func (b *buffer) source(d *doc) []byte { return b.lines[d.source : d.end-1] }

// record rebuilds what a dead letter of d needs of its Kafka record.
func (b *buffer) record(d *doc) *kgo.Record {
	r := &kgo.Record{Topic: b.topic, Partition: b.partition, Offset: d.offset}
	m := b.meta[d.metaStart:d.metaEnd]
	r.Key, m = readBytes(m)
	n, k := binary.Uvarint(m)
	m = m[k:]
	for range n {
		var key, value []byte
		key, m = readBytes(m)
		value, m = readBytes(m)
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(key), Value: value})
	}
	return r
}

// indexedByType counts the documents indexed, by type.
func (b *buffer) indexedByType() map[string]int {
	out := map[string]int{}
	for i := range b.docs {
		if b.docs[i].state == indexed {
			out[b.docs[i].typ]++
		}
	}
	return out
}

func appendBytes(dst, b []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(b))), b...)
}

func readBytes(m []byte) (b, rest []byte) {
	n, k := binary.Uvarint(m)
	return m[k : k+int(n)], m[k+int(n):]
}
