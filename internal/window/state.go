package window

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/event"
)

// State is everything an Operator knows, as plain data for a checkpoint:
// restoring it with the input offsets it covers resumes exactly where the
// operator was. Times are unix nanoseconds.
type State struct {
	Watermark  int64                `json:"watermark"`
	Arrivals   int64                `json:"arrivals"`
	Partitions map[int32]*Partition `json:"partitions"`
	// Seen holds the dedupe keys still able to match, with the end of the
	// last window of their event.
	Seen    map[string]int64 `json:"seen,omitempty"`
	Windows []WindowState    `json:"windows"`
}

// Partition is the watermark's view of one input partition.
type Partition struct {
	Max      int64 `json:"max"`       // latest event time seen
	LastSeen int64 `json:"last_seen"` // wall clock of its latest event
	Idle     bool  `json:"idle,omitempty"`
}

// WindowState is one open window of one group.
type WindowState struct {
	Start int64      `json:"start"`
	Group []string   `json:"group"`
	Count int64      `json:"count"`
	Aggs  []AggState `json:"aggs"`
}

// AggState accumulates one aggregate. N counts the values taken; the other
// fields mean something only when N > 0, so they are always finite.
type AggState struct {
	N        int64   `json:"n"`
	Sum      float64 `json:"sum"`
	Min      float64 `json:"min"`
	Max      float64 `json:"max"`
	First    float64 `json:"first"`
	FirstAt  int64   `json:"first_at"`
	FirstSeq int64   `json:"first_seq"`
	Last     float64 `json:"last"`
	LastAt   int64   `json:"last_at"`
	LastSeq  int64   `json:"last_seq"`
}

// acc is an open window, in the batch it was made in (nil: alone);
// logged when it is in the operator's changed windows.
type acc struct {
	WindowState
	batch  *accBatch
	logged bool
}

func (a *acc) add(aggs []Aggregate, t, seq int64, values []float64) {
	a.Count++
	for i := range aggs {
		if i >= len(values) {
			break
		}
		v := values[i]
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		s := &a.Aggs[i]
		if s.N == 0 {
			*s = AggState{N: 1, Sum: v, Min: v, Max: v, First: v, FirstAt: t, FirstSeq: seq, Last: v, LastAt: t, LastSeq: seq}
			continue
		}
		s.N++
		s.Sum += v
		s.Min, s.Max = min(s.Min, v), max(s.Max, v)
		if t < s.FirstAt || (t == s.FirstAt && seq < s.FirstSeq) {
			s.First, s.FirstAt, s.FirstSeq = v, t, seq
		}
		if t > s.LastAt || (t == s.LastAt && seq > s.LastSeq) {
			s.Last, s.LastAt, s.LastSeq = v, t, seq
		}
	}
}

// result is a's result in values, which has room for one per aggregate.
func (a *acc) result(aggs []Aggregate, start, size int64, values []float64) Result {
	r := Result{Group: a.Group, Start: time.Unix(0, start).UTC(), End: time.Unix(0, start+size).UTC(),
		Count: a.Count, Values: values}
	for i, ag := range aggs {
		s := a.Aggs[i]
		if ag.Op == Count {
			if ag.Field == "" {
				r.Values[i] = float64(a.Count)
			} else {
				r.Values[i] = float64(s.N)
			}
			continue
		}
		if s.N == 0 {
			r.Values[i] = math.NaN()
			continue
		}
		switch ag.Op {
		case Sum:
			r.Values[i] = s.Sum
		case Min:
			r.Values[i] = s.Min
		case Max:
			r.Values[i] = s.Max
		case Avg:
			r.Values[i] = s.Sum / float64(s.N)
		case First:
			r.Values[i] = s.First
		case Last:
			r.Values[i] = s.Last
		case Delta:
			r.Values[i] = s.Last - s.First
		}
	}
	return r
}

// Snapshot returns a copy of the state, windows in a fixed order, so that
// the same input gives the same checkpoint.
func (o *Operator) Snapshot() State {
	st := State{Watermark: o.st.Watermark, Arrivals: o.st.Arrivals,
		Partitions: o.partitions(), Seen: maps.Clone(o.st.Seen)}
	// By start, then group, as emit orders its results and for the same
	// reason: by integers and keys, not by the groups' values.
	order := make([]emitted, 0, o.nOpen)
	wins := make([]*acc, 0, o.nOpen)
	for k, g := range o.open {
		for _, a := range g.wins {
			order = append(order, emitted{a.Start, k, int32(len(wins))})
			wins = append(wins, a)
		}
	}
	slices.SortFunc(order, func(a, b emitted) int {
		return cmp.Or(cmp.Compare(a.start, b.start), strings.Compare(a.key, b.key))
	})
	st.Windows = make([]WindowState, len(order))
	for i, e := range order {
		a := wins[e.i]
		st.Windows[i] = a.WindowState
		st.Windows[i].Aggs = slices.Clone(a.Aggs)
	}
	o.forgetChanges()
	return st
}

// Changes returns what changed since the last Changes, Snapshot or
// Restore, as a State for Apply: the watermark, arrivals and partitions
// whole, the windows opened or counted in since and still open, and the
// dedupe keys added since and still held. What the watermark has passed
// since is not there: Apply drops it, as emission did. So a checkpoint
// of the changes costs what changed, where a Snapshot costs every open
// window and key, however few took an event since.
func (o *Operator) Changes() State {
	st := State{Watermark: o.st.Watermark, Arrivals: o.st.Arrivals, Partitions: o.partitions()}
	size := int64(o.cfg.Size)
	n := 0
	for _, a := range o.changed {
		if a.logged && a.Start+size > o.st.Watermark {
			n++
		}
	}
	st.Windows = make([]WindowState, 0, n)
	aggs := make([]AggState, 0, n*len(o.cfg.Aggregates))
	for _, a := range o.changed {
		// An emitted window's batch may since hold another, logged
		// again; the flag lists each once.
		if !a.logged || a.Start+size <= o.st.Watermark {
			a.logged = false
			continue
		}
		a.logged = false
		w := a.WindowState
		aggs = append(aggs, a.Aggs...)
		w.Aggs = aggs[len(aggs)-len(a.Aggs) : len(aggs) : len(aggs)]
		st.Windows = append(st.Windows, w)
	}
	clear(o.changed) // so as not to keep the windows emitted since alive
	o.changed = o.changed[:0]
	for _, k := range o.added {
		if end, held := o.st.Seen[k]; held {
			if st.Seen == nil {
				st.Seen = map[string]int64{}
			}
			st.Seen[k] = end
		}
	}
	clear(o.added)
	o.added = o.added[:0]
	return st
}

// Changed is at most how many windows and dedupe keys Changes would
// return now: enough to choose between it and a Snapshot.
func (o *Operator) Changed() int { return len(o.changed) + len(o.added) }

// compactChanged drops from the changed windows those emitted, and
// those listed twice (a window emitted, and its place in a batch used
// again): where the state is taken seldom, the list would grow with
// every window ever opened.
func (o *Operator) compactChanged() {
	size := int64(o.cfg.Size)
	kept := o.changed[:0]
	for _, a := range o.changed {
		if a.logged && a.Start+size > o.st.Watermark {
			a.logged = false // until the end: a second listing is not kept
			kept = append(kept, a)
			continue
		}
		a.logged = false
	}
	for _, a := range kept {
		a.logged = true
	}
	clear(o.changed[len(kept):])
	o.changed = kept
}

// compactAdded drops from the added dedupe keys those no longer held,
// for the same reason; and those listed twice (forgotten by an emission,
// and held again), when that is not enough.
func (o *Operator) compactAdded() {
	o.added = slices.DeleteFunc(o.added, func(k string) bool {
		_, held := o.st.Seen[k]
		return !held
	})
	if len(o.added) > len(o.st.Seen)+accsAtOnce {
		slices.Sort(o.added)
		o.added = slices.Compact(o.added)
	}
}

// forgetChanges starts the record of changes over.
func (o *Operator) forgetChanges() {
	for _, a := range o.changed {
		a.logged = false
	}
	clear(o.changed)
	clear(o.added)
	o.changed, o.added = o.changed[:0], o.added[:0]
}

func (o *Operator) partitions() map[int32]*Partition {
	ps := make(map[int32]*Partition, len(o.st.Partitions))
	for id, p := range o.st.Partitions {
		c := *p
		ps[id] = &c
	}
	return ps
}

// check reports what in st this operator's configuration cannot hold.
func (o *Operator) check(st State) error {
	for id, p := range st.Partitions {
		if p == nil {
			return fmt.Errorf("checkpoint partition %d has no state", id)
		}
	}
	for i, w := range st.Windows {
		if len(w.Aggs) != len(o.cfg.Aggregates) {
			return fmt.Errorf("checkpoint window %d has %d aggregates, the configuration %d: was the aggregation changed? start it with a new name",
				i, len(w.Aggs), len(o.cfg.Aggregates))
		}
		if len(w.Group) != len(o.cfg.GroupBy) {
			return fmt.Errorf("checkpoint window %d has %d group fields, the configuration %d: was the aggregation changed? start it with a new name",
				i, len(w.Group), len(o.cfg.GroupBy))
		}
	}
	return nil
}

// Restore replaces the operator's state with st, from a Snapshot.
// Partitions count as seen now: the time the process was down is not
// idleness.
func (o *Operator) Restore(st State) error {
	if err := o.check(st); err != nil {
		return err
	}
	o.open, o.emptied, o.ends, o.nOpen, o.nextEnd = map[string]*groupWindows{}, nil, map[int64][]string{}, 0, math.MaxInt64
	o.changed, o.added = nil, nil
	for i, w := range st.Windows {
		k := string(appendKey(nil, w.Group))
		g := o.open[k]
		if g == nil {
			g = &groupWindows{key: k, group: w.Group}
			o.open[k] = g
		}
		open, at := g.at(w.Start)
		if open != nil {
			o.open, o.ends, o.nOpen, o.nextEnd = map[string]*groupWindows{}, map[int64][]string{}, 0, math.MaxInt64
			return fmt.Errorf("checkpoint window %d: group %q has two windows starting %d", i, w.Group, w.Start)
		}
		a := &acc{WindowState: w}
		a.Group, a.Aggs = g.group, slices.Clone(w.Aggs)
		o.openAt(g, a, w.Start, at)
	}
	o.st = State{Watermark: st.Watermark, Arrivals: st.Arrivals, Seen: map[string]int64{}}
	o.seenEnds = map[int64][]string{}
	o.restorePartitions(st.Partitions)
	o.hold(st.Seen)
	return nil
}

// Apply brings the state to the one that st, from Changes, was taken
// of: its windows replace the open ones of their group and start, or
// open; its dedupe keys are added; and what its watermark has passed is
// dropped first, as emission dropped it. Nothing changes when st does not fit
// the configuration.
func (o *Operator) Apply(st State) error {
	if err := o.check(st); err != nil {
		return err
	}
	if st.Watermark < o.st.Watermark {
		return fmt.Errorf("checkpoint changes: watermark %d is before the state's %d", st.Watermark, o.st.Watermark)
	}
	o.forgetChanges()
	// What the watermark passed goes first, as emission took it before
	// the changes after it: a dedupe key it drops may be held again.
	o.st.Watermark, o.st.Arrivals = st.Watermark, st.Arrivals
	wm := o.st.Watermark
	o.emit(func(end int64) bool { return end <= wm }, nil)
	for _, w := range st.Windows {
		o.key = appendKey(o.key[:0], w.Group)
		g := o.open[string(o.key)]
		if g == nil {
			g = &groupWindows{key: string(o.key), group: slices.Clone(w.Group)}
			o.open[g.key] = g
		}
		a, i := g.at(w.Start)
		if a != nil {
			a.Count = w.Count
			copy(a.Aggs, w.Aggs)
			continue
		}
		a = &acc{WindowState: w}
		a.Group, a.Aggs = g.group, slices.Clone(w.Aggs)
		o.openAt(g, a, w.Start, i)
	}
	o.restorePartitions(st.Partitions)
	o.hold(st.Seen)
	return nil
}

// restorePartitions takes ps as the partitions' state, each seen now.
func (o *Operator) restorePartitions(ps map[int32]*Partition) {
	now := o.now().UnixNano()
	o.st.Partitions = make(map[int32]*Partition, len(ps))
	for id, p := range ps {
		c := *p
		c.LastSeen, c.Idle = now, false
		o.st.Partitions[id] = &c
	}
}

// hold adds dedupe keys and the ends they hold to.
func (o *Operator) hold(seen map[string]int64) {
	for k, end := range seen {
		if _, held := o.st.Seen[k]; held {
			continue
		}
		o.st.Seen[k] = end
		o.seenEnds[end] = append(o.seenEnds[end], k)
	}
}

// MarshalJSON writes st as encoding/json would from its field tags, but
// without reflection: a checkpoint holds every open window, and is
// written at emissions, where encoding/json spent a fifth of the
// aggregator's time.
func (st State) MarshalJSON() ([]byte, error) {
	size := 256 + 64*len(st.Seen)
	if len(st.Windows) > 0 {
		size += len(st.Windows) * (96 + 200*len(st.Windows[0].Aggs))
	}
	b := make([]byte, 0, size)
	b = strconv.AppendInt(append(b, `{"watermark":`...), st.Watermark, 10)
	b = strconv.AppendInt(append(b, `,"arrivals":`...), st.Arrivals, 10)
	b = append(b, `,"partitions":`...)
	if st.Partitions == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		for i, id := range slices.Sorted(maps.Keys(st.Partitions)) {
			if i > 0 {
				b = append(b, ',')
			}
			p := st.Partitions[id]
			b = append(strconv.AppendInt(append(b, '"'), int64(id), 10), `":`...)
			if p == nil {
				b = append(b, "null"...)
				continue
			}
			b = strconv.AppendInt(append(b, `{"max":`...), p.Max, 10)
			b = strconv.AppendInt(append(b, `,"last_seen":`...), p.LastSeen, 10)
			if p.Idle {
				b = append(b, `,"idle":true`...)
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	if len(st.Seen) > 0 {
		b = append(b, `,"seen":{`...)
		for i, k := range slices.Sorted(maps.Keys(st.Seen)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(append(event.AppendString(b, k), ':'), st.Seen[k], 10)
		}
		b = append(b, '}')
	}
	b = append(b, `,"windows":`...)
	if st.Windows == nil {
		return append(b, "null}"...), nil
	}
	b = append(b, '[')
	for i, w := range st.Windows {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(append(b, `{"start":`...), w.Start, 10)
		b = append(b, `,"group":`...)
		if w.Group == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '[')
			for j, g := range w.Group {
				if j > 0 {
					b = append(b, ',')
				}
				b = event.AppendString(b, g)
			}
			b = append(b, ']')
		}
		b = strconv.AppendInt(append(b, `,"count":`...), w.Count, 10)
		b = append(b, `,"aggs":`...)
		if w.Aggs == nil {
			b = append(b, "null}"...)
			continue
		}
		b = append(b, '[')
		for j, a := range w.Aggs {
			if j > 0 {
				b = append(b, ',')
			}
			for _, f := range []float64{a.Sum, a.Min, a.Max, a.First, a.Last} {
				if math.IsNaN(f) || math.IsInf(f, 0) {
					return nil, fmt.Errorf("window state: aggregate value %v is not a JSON number", f)
				}
			}
			b = strconv.AppendInt(append(b, `{"n":`...), a.N, 10)
			b = strconv.AppendFloat(append(b, `,"sum":`...), a.Sum, 'g', -1, 64)
			b = strconv.AppendFloat(append(b, `,"min":`...), a.Min, 'g', -1, 64)
			b = strconv.AppendFloat(append(b, `,"max":`...), a.Max, 'g', -1, 64)
			b = strconv.AppendFloat(append(b, `,"first":`...), a.First, 'g', -1, 64)
			b = strconv.AppendInt(append(b, `,"first_at":`...), a.FirstAt, 10)
			b = strconv.AppendInt(append(b, `,"first_seq":`...), a.FirstSeq, 10)
			b = strconv.AppendFloat(append(b, `,"last":`...), a.Last, 'g', -1, 64)
			b = strconv.AppendInt(append(b, `,"last_at":`...), a.LastAt, 10)
			b = strconv.AppendInt(append(b, `,"last_seq":`...), a.LastSeq, 10)
			b = append(b, '}')
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}"...), nil
}
