package bus

import (
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// RecyclePools is a client option for consumers that are done with each
// record once it is handled, as the loader is once a record is copied into
// a buffer: they call Record.Recycle, and the memory that compressed
// batches are decompressed into, and the records, are reused instead of
// allocated per fetch. Allocating fresh memory for every fetched byte cost
// more than reading it.
//
// A record's Value, Key and Headers must not be used after Recycle.
func RecyclePools() kgo.Opt {
	return kgo.WithPools(new(decompressPool), new(recordsPool))
}

type decompressPool struct {
	p sync.Pool
	// largest is the largest batch decompressed so far: new slices are
	// made that large, since growing one while decompressing copies it.
	largest atomic.Int64
}

func (d *decompressPool) GetDecompressBytes(compressed []byte, _ kgo.CompressionCodecType) []byte {
	guess := max(int(d.largest.Load()), 4*len(compressed))
	if b, ok := d.p.Get().([]byte); ok && cap(b) >= guess {
		return b
	}
	return make([]byte, 0, guess)
}

func (d *decompressPool) PutDecompressBytes(b []byte) {
	if n := int64(cap(b)); n > d.largest.Load() {
		d.largest.Store(n)
	}
	d.p.Put(b[:0]) //nolint:staticcheck // a slice header is small
}

type recordsPool struct{ p sync.Pool }

func (r *recordsPool) GetRecords(n int) []kgo.Record {
	if recs, ok := r.p.Get().([]kgo.Record); ok && cap(recs) >= n {
		return recs[:0]
	}
	return make([]kgo.Record, 0, n)
}

func (r *recordsPool) PutRecords(recs []kgo.Record) { r.p.Put(recs[:0]) } //nolint:staticcheck // a slice header is small
