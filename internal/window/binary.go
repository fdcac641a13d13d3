package window

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// AppendBinary appends st in its binary form to b: varints and the bits
// of floats, in the order of MarshalJSON, a third of its size and a
// fraction of its cost. A checkpoint holds every open window and dedupe
// key, and is written at emissions.
func (st State) AppendBinary(b []byte) ([]byte, error) {
	// Room for about all of it at once: growing a checkpoint of thousands
	// of windows by appends copied it over and over.
	perWindow := 16
	if len(st.Windows) > 0 {
		perWindow += 24*len(st.Windows[0].Group) + 64*len(st.Windows[0].Aggs)
	}
	b = slices.Grow(b, 32+32*len(st.Partitions)+40*len(st.Seen)+perWindow*len(st.Windows))
	b = binary.AppendVarint(b, st.Watermark)
	b = binary.AppendVarint(b, st.Arrivals)
	b = binary.AppendUvarint(b, uint64(len(st.Partitions)))
	for _, id := range slices.Sorted(maps.Keys(st.Partitions)) {
		p := st.Partitions[id]
		if p == nil {
			return nil, fmt.Errorf("window state: partition %d is nil", id)
		}
		b = binary.AppendVarint(b, int64(id))
		b = binary.AppendVarint(b, p.Max)
		b = binary.AppendVarint(b, p.LastSeen)
		b = append(b, boolByte(p.Idle))
	}
	b = binary.AppendUvarint(b, uint64(len(st.Seen)))
	for _, k := range slices.Sorted(maps.Keys(st.Seen)) {
		b = appendString(b, k)
		b = binary.AppendVarint(b, st.Seen[k])
	}
	b = binary.AppendUvarint(b, uint64(len(st.Windows)))
	for _, w := range st.Windows {
		b = binary.AppendVarint(b, w.Start)
		b = binary.AppendUvarint(b, uint64(len(w.Group)))
		for _, g := range w.Group {
			b = appendString(b, g)
		}
		b = binary.AppendVarint(b, w.Count)
		b = binary.AppendUvarint(b, uint64(len(w.Aggs)))
		for _, a := range w.Aggs {
			b = binary.AppendVarint(b, a.N)
			for _, f := range [...]float64{a.Sum, a.Min, a.Max, a.First, a.Last} {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
			}
			for _, i := range [...]int64{a.FirstAt, a.FirstSeq, a.LastAt, a.LastSeq} {
				b = binary.AppendVarint(b, i)
			}
		}
	}
	return b, nil
}

// UnmarshalBinary reads the form AppendBinary writes; it refuses anything
// else, including trailing bytes, and never trusts a count for more than
// the bytes left could hold.
func (st *State) UnmarshalBinary(b []byte) error {
	r := reader{b: b}
	out := State{Watermark: r.varint(), Arrivals: r.varint(), Partitions: map[int32]*Partition{}}
	for n := r.count(4); n > 0; n-- {
		id := r.varint()
		if id < math.MinInt32 || id > math.MaxInt32 {
			r.fail("partition %d is out of range", id)
		}
		p := &Partition{Max: r.varint(), LastSeen: r.varint()}
		switch c := r.byte(); c {
		case 0:
		case 1:
			p.Idle = true
		default:
			r.fail("partition %d: idle is %d", id, c)
		}
		out.Partitions[int32(id)] = p
	}
	if n := r.count(2); n > 0 {
		out.Seen = make(map[string]int64, n)
		for ; n > 0; n-- {
			k := r.string()
			out.Seen[k] = r.varint()
		}
	}
	n := r.count(4)
	out.Windows = make([]WindowState, 0, n)
	for ; n > 0; n-- {
		w := WindowState{Start: r.varint()}
		w.Group = make([]string, r.count(1))
		for i := range w.Group {
			w.Group[i] = r.string()
		}
		w.Count = r.varint()
		w.Aggs = make([]AggState, r.count(44))
		for i := range w.Aggs {
			a := &w.Aggs[i]
			a.N = r.varint()
			a.Sum, a.Min, a.Max, a.First, a.Last = r.float(), r.float(), r.float(), r.float(), r.float()
			a.FirstAt, a.FirstSeq, a.LastAt, a.LastSeq = r.varint(), r.varint(), r.varint(), r.varint()
		}
		out.Windows = append(out.Windows, w)
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d bytes after the state", len(r.b))
	}
	if r.err != nil {
		return fmt.Errorf("window state: %w", r.err)
	}
	*st = out
	return nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// reader reads a binary state; its first error sticks, and every read
// after it gives zero.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("cut short")

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
	r.b = nil
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("%w", errShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("%w", errShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a count of things at least min bytes each.
func (r *reader) count(min int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/min) {
		r.fail("a count of %d is more than the %d bytes left hold", n, len(r.b))
		return 0
	}
	return int(n)
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail("%w", errShort)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) float() float64 {
	if len(r.b) < 8 {
		r.fail("%w", errShort)
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return f
}

func (r *reader) string() string {
	n := r.count(1)
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
