package collector

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
)

// recordBuilder makes a request's Kafka records in a handful of
// allocations: records, headers and bytes (values, keys, header values)
// each come from one slab. At thousands of events per batch, one allocation
// per field was a fifth of the collector's CPU. It also waits for Kafka's
// answers, and once Kafka has answered for every record, the builder and
// its slabs serve a later request: at one event per request, they were a
// third of the bytes the collector allocated.
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
	ptrs []*kgo.Record // what records returns

	// Kafka's answers: promise sends each on acks, and the last one to
	// answer cancels the records' context.
	promise func(*kgo.Record, error)
	acks    chan error
	pending atomic.Int64
	cancel  context.CancelFunc
	// settled is set once every record's promise has answered: franz-go
	// no longer holds them, and release may reuse the builder.
	settled bool
}

// builders are recordBuilders whose records Kafka has answered for.
var builders = sync.Pool{New: func() any {
	b := &recordBuilder{}
	b.promise = b.answer
	return b
}}

// Builders with larger slabs are left to the garbage collector, so that
// one large batch does not keep its memory for good.
const (
	maxPooledBytes   = 64 << 10
	maxPooledRecords = 256
)

// Record fields beyond the client's bytes: the stamp, key and headers.
const perRecordOverhead = 3*event.RootIDLen + len(event.TimeLayout) + 128

func (c *Collector) newRecordBuilder(events, bodyLen int, now time.Time) *recordBuilder {
	b := builders.Get().(*recordBuilder)
	b.c, b.tstamp = c, event.FormatTime(now)
	b.recs = slices.Grow(b.recs[:0], events)
	b.hdrs = slices.Grow(b.hdrs[:0], 3*events)
	b.buf = slices.Grow(b.buf[:0], bodyLen+events*(perRecordOverhead+len(c.cfg.ID)))
	return b
}

// release gives the builder back for a later request, once the answer no
// longer needs its bytes, if Kafka has answered for every record. A
// builder whose wait ended otherwise (a timeout, the client gone) may
// still be in franz-go's hands, and is left to the garbage collector.
func (b *recordBuilder) release() {
	if !b.settled || cap(b.buf) > maxPooledBytes || cap(b.recs) > maxPooledRecords {
		return
	}
	clear(b.recs)
	clear(b.ptrs)
	clear(b.dead)
	b.recs, b.hdrs, b.buf, b.ptrs = b.recs[:0], b.hdrs[:0], b.buf[:0], b.ptrs[:0]
	b.rootIDs, b.dead = b.rootIDs[:0], b.dead[:0]
	b.c, b.cancel, b.settled = nil, nil, false
	builders.Put(b)
}

// expectAcks readies the builder for n answers; the last one calls cancel.
func (b *recordBuilder) expectAcks(n int, cancel context.CancelFunc) <-chan error {
	if cap(b.acks) < n {
		b.acks = make(chan error, n)
	}
	b.pending.Store(int64(n))
	b.cancel = cancel
	return b.acks
}

// answer is every record's promise. The answer is sent last: once the
// handler has them all it may release the builder, so nothing here may
// touch it after.
func (b *recordBuilder) answer(_ *kgo.Record, err error) {
	acks := b.acks
	if b.pending.Add(-1) == 0 {
		b.cancel()
	}
	acks <- err
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
	b.ptrs = slices.Grow(b.ptrs[:0], len(b.recs)+len(b.dead))
	for i := range b.recs {
		b.ptrs = append(b.ptrs, &b.recs[i])
	}
	b.ptrs = append(b.ptrs, b.dead...)
	return b.ptrs
}
