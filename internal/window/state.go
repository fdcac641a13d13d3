package window

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
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

type acc WindowState

func newAcc(group []string, n int) *acc {
	return &acc{Group: slices.Clone(group), Aggs: make([]AggState, n)}
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

func (a *acc) result(aggs []Aggregate, start, size int64) Result {
	r := Result{Group: a.Group, Start: time.Unix(0, start).UTC(), End: time.Unix(0, start+size).UTC(),
		Count: a.Count, Values: make([]float64, len(aggs))}
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
		Partitions: map[int32]*Partition{}, Seen: maps.Clone(o.st.Seen)}
	for id, p := range o.st.Partitions {
		c := *p
		st.Partitions[id] = &c
	}
	for k, a := range o.open {
		w := WindowState(*a)
		w.Start = k.start
		w.Aggs = slices.Clone(a.Aggs)
		st.Windows = append(st.Windows, w)
	}
	slices.SortFunc(st.Windows, func(a, b WindowState) int {
		return cmp.Or(cmp.Compare(a.Start, b.Start), slices.Compare(a.Group, b.Group))
	})
	return st
}

// Restore replaces the operator's state with st. Partitions count as seen
// now: the time the process was down is not idleness.
func (o *Operator) Restore(st State) error {
	open := map[windowKey]*acc{}
	nextEnd := int64(math.MaxInt64)
	for i, w := range st.Windows {
		if len(w.Aggs) != len(o.cfg.Aggregates) {
			return fmt.Errorf("checkpoint window %d has %d aggregates, the configuration %d: was the aggregation changed? start it with a new name",
				i, len(w.Aggs), len(o.cfg.Aggregates))
		}
		if len(w.Group) != len(o.cfg.GroupBy) {
			return fmt.Errorf("checkpoint window %d has %d group fields, the configuration %d: was the aggregation changed? start it with a new name",
				i, len(w.Group), len(o.cfg.GroupBy))
		}
		a := acc(w)
		a.Aggs = slices.Clone(w.Aggs)
		open[windowKey{w.Start, strings.Join(w.Group, "\x00")}] = &a
		nextEnd = min(nextEnd, w.Start+int64(o.cfg.Size))
	}
	now := o.now().UnixNano()
	o.st = State{Watermark: st.Watermark, Arrivals: st.Arrivals, Partitions: map[int32]*Partition{}, Seen: maps.Clone(st.Seen)}
	if o.st.Seen == nil {
		o.st.Seen = map[string]int64{}
	}
	for id, p := range st.Partitions {
		c := *p
		c.LastSeen, c.Idle = now, false
		o.st.Partitions[id] = &c
	}
	o.open, o.nextEnd = open, nextEnd
	return nil
}
