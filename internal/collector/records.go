package collector

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
)

// recordBuilder makes a request's Kafka records in a handful of
// allocations: records, headers and bytes (values, keys, header values)
// each come from one slab. At thousands of events per batch, one allocation
// per field was a fifth of the collector's CPU.
type recordBuilder struct {
	c       *Collector
	tstamp  string
	recs    []kgo.Record
	hdrs    []kgo.RecordHeader
	buf     []byte
	rootIDs [][]byte // of accepted events, in order; slices of buf
	// dead holds the dead letters of rejected events, made one by one:
	// rejections are rare, and one builder makes every stage's.
	dead []*kgo.Record
}

// Record fields beyond the client's bytes: the stamp, key and headers.
const perRecordOverhead = 3*event.RootIDLen + len(event.TimeLayout) + 128

func (c *Collector) newRecordBuilder(events, bodyLen int, now time.Time) *recordBuilder {
	return &recordBuilder{
		c:      c,
		tstamp: event.FormatTime(now),
		recs:   make([]kgo.Record, 0, events),
		hdrs:   make([]kgo.RecordHeader, 0, 3*events),
		buf:    make([]byte, 0, bodyLen+events*(perRecordOverhead+len(c.cfg.ID))),
	}
}

// bytes appends b to the slab and returns the copy. If the slab grows,
// earlier copies keep the old array alive, so they stay valid.
func (b *recordBuilder) bytes(s string) []byte {
	start := len(b.buf)
	b.buf = append(b.buf, s...)
	return b.buf[start:len(b.buf):len(b.buf)]
}

func (b *recordBuilder) newRootID() ([]byte, error) {
	start := len(b.buf)
	var err error
	if b.buf, err = event.AppendRootID(b.buf); err != nil {
		return nil, err
	}
	return b.buf[start:len(b.buf):len(b.buf)], nil
}

func (b *recordBuilder) add(topic string, key, value []byte, headers ...kgo.RecordHeader) {
	h := len(b.hdrs)
	b.hdrs = append(b.hdrs, headers...)
	b.recs = append(b.recs, kgo.Record{Topic: topic, Key: key, Value: value, Headers: b.hdrs[h:len(b.hdrs):len(b.hdrs)]})
}

// raw adds an accepted event, stamped, for the raw topic.
func (b *recordBuilder) raw(env *event.Envelope) error {
	rootID, err := b.newRootID()
	if err != nil {
		return err
	}
	start := len(b.buf)
	b.buf = env.AppendStamped(b.buf, event.Stamp{
		CollectorTstamp: b.tstamp,
		RootID:          string(rootID),
		CollectorID:     b.c.cfg.ID,
	})
	value := b.buf[start:len(b.buf):len(b.buf)]
	b.add(b.c.cfg.RawTopic, rootID, value,
		kgo.RecordHeader{Key: event.HeaderEventType, Value: b.bytes(env.EventType)},
		kgo.RecordHeader{Key: event.HeaderSchemaVersion, Value: b.bytes(env.SchemaVersion)},
		kgo.RecordHeader{Key: event.HeaderRootID, Value: rootID})
	b.rootIDs = append(b.rootIDs, rootID)
	return nil
}

// failed adds a failed-event record for the dead-letter topic and returns
// its root id.
func (b *recordBuilder) failed(reason string, errs []event.FieldError, original []byte, at time.Time) ([]byte, error) {
	rootID, err := b.newRootID()
	if err != nil {
		return nil, err
	}
	f := event.NewFailed(event.StageCollector, reason, errs, string(rootID), original, at)
	b.dead = append(b.dead, bus.DeadLetter(b.c.cfg.DLQTopic, f, nil))
	return rootID, nil
}

// records returns the records to produce.
func (b *recordBuilder) records() []*kgo.Record {
	out := make([]*kgo.Record, len(b.recs), len(b.recs)+len(b.dead))
	for i := range b.recs {
		out[i] = &b.recs[i]
	}
	return append(out, b.dead...)
}
