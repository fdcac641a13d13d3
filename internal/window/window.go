// Package window is Sluice's event-time windowing: tumbling and sliding
// windows over groups, a watermark per input partition, deduplication, and
// the aggregates analysts ask of them. It is pure state, with no Kafka or
// storage: the aggregator stage feeds it records, checkpoints its State
// with the input offsets, and writes the windows it emits.
//
// Time is the events' own. A window [start, start+size) is emitted once,
// when the watermark (the least, over the partitions not idle, of the
// latest event time seen minus the delay) reaches its end. An event all of
// whose windows have been emitted is late: Add says so, with the window it
// missed, and never counts it, so the caller can dead-letter it rather
// than drop it as Spark does.
package window

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Op is an aggregate function.
type Op string

// The aggregates. First and last are by event time (ties by arrival);
// delta is last − first, for cumulative counters such as MTA turnstiles'.
const (
	Count Op = "count"
	Sum   Op = "sum"
	Min   Op = "min"
	Max   Op = "max"
	Avg   Op = "avg"
	First Op = "first"
	Last  Op = "last"
	Delta Op = "delta"
)

var ops = []Op{Count, Sum, Min, Max, Avg, First, Last, Delta}

// Aggregate is one output column: Op over the input Field (none for a
// count of events), named As.
type Aggregate struct {
	Op    Op     `yaml:"op" doc:"count, sum, min, max, avg, first, last or delta (last minus first)."`
	Field string `yaml:"field" doc:"The field aggregated; none for count."`
	As    string `yaml:"as" doc:"The output column's name."`
}

// Config configures an Operator.
type Config struct {
	// Size is the window length; Slide how far apart windows start (Size,
	// or zero, for tumbling windows). Size must be a multiple of Slide.
	Size, Slide time.Duration
	// Delay is how far behind the latest event time the watermark stays,
	// so that events up to Delay out of order still count.
	Delay time.Duration
	// IdleTimeout, when positive, is how long a partition may go without
	// events (by the wall clock) before it stops holding the watermark
	// back.
	IdleTimeout time.Duration
	// GroupBy names the grouping fields, in output order.
	GroupBy []string
	// Aggregates are the output columns after the group fields and the
	// window bounds.
	Aggregates []Aggregate
	// Dedupe names the fields that identify an event; a second event with
	// the same values is dropped and counted, for as long as the first
	// could still count (until its last window is emitted). None: no
	// deduplication.
	Dedupe []string
	// MaxOpen, when positive, bounds the state: past that many open
	// window-groups the watermark jumps to the earliest open window's end,
	// writing that window early. Events still due for it become late (dead
	// letters, never silent): memory stays bounded whatever the data.
	MaxOpen int
}

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	if c.Size <= 0 {
		return errors.New("window size must be positive")
	}
	if c.Slide < 0 || c.Slide > c.Size {
		return fmt.Errorf("window slide %v: want between 0 (tumbling) and the size %v", c.Slide, c.Size)
	}
	if c.Slide > 0 && c.Size%c.Slide != 0 {
		return fmt.Errorf("window size %v is not a multiple of the slide %v", c.Size, c.Slide)
	}
	if c.Delay < 0 {
		return fmt.Errorf("watermark delay %v: want zero or more", c.Delay)
	}
	if c.MaxOpen < 0 {
		return fmt.Errorf("state limit %d: want zero (none) or more window-groups", c.MaxOpen)
	}
	if len(c.Aggregates) == 0 {
		return errors.New("no aggregates: want at least one, such as {op: count}")
	}
	seen := map[string]bool{}
	for _, f := range c.GroupBy {
		seen[f] = true
	}
	for i, a := range c.Aggregates {
		if !slices.Contains(ops, a.Op) {
			return fmt.Errorf("aggregate %d: op %q: want one of %v", i+1, a.Op, ops)
		}
		if a.Field == "" && a.Op != Count {
			return fmt.Errorf("aggregate %d: %s needs a field", i+1, a.Op)
		}
		if a.As == "" {
			return fmt.Errorf("aggregate %d: no output name (as)", i+1)
		}
		if seen[a.As] || a.As == "window_start" || a.As == "window_end" {
			return fmt.Errorf("aggregate %d: output name %q is used twice", i+1, a.As)
		}
		seen[a.As] = true
	}
	return nil
}

func (c Config) slide() time.Duration {
	if c.Slide == 0 {
		return c.Size
	}
	return c.Slide
}

// Event is one input to Add.
type Event struct {
	Partition int32
	Time      time.Time
	// Group holds the values of Config.GroupBy, in order.
	Group []string
	// Values holds the value of each aggregate's field, in the order of
	// Config.Aggregates; NaN is null (not counted). A count of events
	// ignores its value.
	Values []float64
	// DedupeKey is the event's identity when Config.Dedupe is set.
	DedupeKey string
}

// Result is one emitted window of one group.
type Result struct {
	Group      []string
	Start, End time.Time
	Values     []float64 // per aggregate; NaN where nothing was counted
	Count      int64     // events in the window
}

// Outcome says what Add did with an event.
type Outcome int

const (
	Counted   Outcome = iota // in every window that contains it
	Late                     // after every window containing it was emitted
	Duplicate                // its DedupeKey was seen
)

// Operator holds the open windows. It is not safe for concurrent use.
type Operator struct {
	cfg Config
	now func() time.Time
	st  State
	// open holds each group's open windows (one or two for tumbling
	// windows), by the group's values joined with NULs: looked up without
	// making that string, which only a new group needs. A group whose
	// windows were all emitted (emptied) stays until the emission after,
	// so that a group with an event in every window (a turnstile's audit
	// every four hours) is not made again for each.
	open    map[string]*groupWindows
	emptied []string
	// ends are the groups with a window ending at each time (a group once
	// for each of its windows): an emission visits the groups it emits,
	// not every group, where the watermark lags and most are ahead of it.
	ends  map[int64][]string
	nOpen int    // open window-groups, over all groups
	key   []byte // Add's scratch for a group's key
	// seenEnds are the keys of st.Seen by the end they hold: an emission
	// forgets the keys of the ends it passes without visiting the others.
	seenEnds map[int64][]string
	// making is the batch where new windows are made, free are batches
	// whose windows are all emitted (see newAcc).
	making *accBatch
	free   []*accBatch
	// nextEnd is the earliest end of an open window: the watermark moves
	// with nearly every event, and only passing this is worth a scan.
	nextEnd int64
	forced  int64 // windows written early by MaxOpen
	// changed are the windows opened or counted in, added the dedupe
	// keys held, since the state was last taken (Changes).
	changed []*acc
	added   []string
	// began is the wall clock of the first event (or watermark) this
	// operator saw: idleness counts from when input began, not from when
	// the aggregator started or a partition was last seen before a
	// restart. Zero until then, when no partition is idle.
	began int64
}

type groupWindows struct {
	key   string   // in open
	group []string // the group's values, shared by its windows and their results
	wins  []*acc   // by start, ascending
}

// at is the group's window starting start, or nil and where it goes.
func (g *groupWindows) at(start int64) (*acc, int) {
	i := len(g.wins)
	for i > 0 && g.wins[i-1].Start >= start {
		if g.wins[i-1].Start == start {
			return g.wins[i-1], i - 1
		}
		i--
	}
	return nil, i
}

// openAt puts a, a window of g starting start, at i of g's (from g.at).
func (o *Operator) openAt(g *groupWindows, a *acc, start int64, i int) {
	a.Start = start
	g.wins = slices.Insert(g.wins, i, a)
	end := start + int64(o.cfg.Size)
	o.ends[end] = append(o.ends[end], g.key)
	o.nOpen++
	o.nextEnd = min(o.nextEnd, end)
}

// appendKey appends group's key in open to b.
func appendKey(b []byte, group []string) []byte {
	for i, g := range group {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, g...)
	}
	return b
}

// New returns an empty operator; now is the wall clock for idle timeouts.
func New(cfg Config, now func() time.Time) (*Operator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	o := &Operator{cfg: cfg, now: now, open: map[string]*groupWindows{}, nextEnd: math.MaxInt64, ends: map[int64][]string{}, seenEnds: map[int64][]string{}}
	o.st = State{Watermark: math.MinInt64, Partitions: map[int32]*Partition{}, Seen: map[string]int64{}}
	return o, nil
}

// Expect names input partitions before their first event: until one has
// an event, or times out idle, it holds the watermark back. Without it, a
// partition whose events come later than others' would find their
// windows emitted.
func (o *Operator) Expect(partitions ...int32) {
	now := o.now().UnixNano()
	for _, id := range partitions {
		if o.st.Partitions[id] == nil {
			o.st.Partitions[id] = &Partition{Max: math.MinInt64, LastSeen: now}
		}
	}
}

// Add counts e in every window containing it, unless it is late or a
// duplicate. Late events return the last window they missed.
func (o *Operator) Add(e Event) (Outcome, Result) {
	t := e.Time.UnixNano()
	p := o.st.Partitions[e.Partition]
	if p == nil {
		p = &Partition{Max: math.MinInt64}
		o.st.Partitions[e.Partition] = p
	}
	o.seen(p, t)
	size, slide := int64(o.cfg.Size), int64(o.cfg.slide())
	last := floorDiv(t, slide) * slide // the latest window containing t
	if last+size <= o.st.Watermark {
		return Late, Result{Group: e.Group, Start: time.Unix(0, last).UTC(), End: time.Unix(0, last+size).UTC()}
	}
	if len(o.cfg.Dedupe) > 0 {
		if _, dup := o.st.Seen[e.DedupeKey]; dup {
			return Duplicate, Result{}
		}
		o.st.Seen[e.DedupeKey] = last + size
		o.seenEnds[last+size] = append(o.seenEnds[last+size], e.DedupeKey)
		o.added = append(o.added, e.DedupeKey)
		if len(o.added) > 2*len(o.st.Seen)+accsAtOnce {
			o.compactAdded()
		}
	}
	o.st.Arrivals++
	o.key = appendKey(o.key[:0], e.Group)
	g := o.open[string(o.key)]
	if g == nil {
		g = &groupWindows{key: string(o.key), group: slices.Clone(e.Group)}
		o.open[g.key] = g
	}
	for start := last; start > t-size; start -= slide {
		if start+size <= o.st.Watermark {
			break // emitted already; the event still counts in later ones
		}
		a, i := g.at(start)
		if a == nil {
			a = o.newAcc(g.group)
			o.openAt(g, a, start, i)
		}
		a.add(o.cfg.Aggregates, t, o.st.Arrivals, e.Values)
		if !a.logged {
			a.logged = true
			o.changed = append(o.changed, a)
			if len(o.changed) > 2*o.nOpen+accsAtOnce {
				o.compactChanged()
			}
		}
	}
	return Counted, Result{}
}

// Observe records that partition has reached event time t without an event
// to count: a watermark its upstream broadcast, so that a task whose groups
// get no events from a partition still sees it advance.
func (o *Operator) Observe(partition int32, t time.Time) {
	p := o.st.Partitions[partition]
	if p == nil {
		p = &Partition{Max: math.MinInt64}
		o.st.Partitions[partition] = p
	}
	o.seen(p, t.UnixNano())
}

func (o *Operator) seen(p *Partition, t int64) {
	now := o.now().UnixNano()
	if o.began == 0 {
		o.began = now
	}
	p.LastSeen = now
	p.Idle = false
	if t > p.Max {
		p.Max = t
	}
}

// Advance moves the watermark as far as the partitions allow and returns
// the windows it completed, ordered by start, then group. Call it after
// every Add, so that whether an event is late depends on the events before
// it and not on how they were batched, and now and then while no events
// come, so that idle partitions time out. It is cheap when no window
// completes.
func (o *Operator) Advance() []Result { return o.AdvanceTo(nil) }

// AdvanceTo is Advance, appending the windows completed to dst: a caller
// that gathers them saves making and copying each emission's.
func (o *Operator) AdvanceTo(dst []Result) []Result {
	now := o.now().UnixNano()
	wm, furthest, active := int64(math.MaxInt64), int64(math.MinInt64), false
	for _, p := range o.st.Partitions {
		pw := sat(p.Max, -int64(o.cfg.Delay))
		furthest = max(furthest, pw)
		// Quiet for the idle timeout since input began (or since its last
		// event, if later): a partition with no events yet is not idle
		// the moment the first event comes elsewhere.
		if o.cfg.IdleTimeout > 0 && o.began > 0 && now-max(p.LastSeen, o.began) >= int64(o.cfg.IdleTimeout) {
			p.Idle = true
			continue
		}
		active = true
		wm = min(wm, pw)
	}
	if !active {
		wm = furthest // all idle: none holds the others back
	}
	if wm > o.st.Watermark {
		o.st.Watermark = wm
		if wm >= o.nextEnd {
			dst = o.emit(func(end int64) bool { return end <= wm }, dst)
		}
	}
	for o.cfg.MaxOpen > 0 && o.nOpen > o.cfg.MaxOpen {
		wm := o.nextEnd
		o.st.Watermark = max(o.st.Watermark, wm)
		n := len(dst)
		dst = o.emit(func(end int64) bool { return end <= wm }, dst)
		o.forced += int64(len(dst) - n)
	}
	return dst
}

// Forced is how many window-groups MaxOpen has written early.
func (o *Operator) Forced() int64 { return o.forced }

// Watermark is the current watermark; the zero time before any.
func (o *Operator) Watermark() time.Time {
	if o.st.Watermark == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, o.st.Watermark).UTC()
}

// Open is the number of open window-groups, the state's size.
func (o *Operator) Open() int { return o.nOpen }

// newAcc is an empty window of group. Windows are made accsAtOnce at a
// time, in a batch that is used again once they are all emitted: where a
// window-group takes one event or a few (a turnstile's audit every four
// hours), making each window alone cost more than counting in it. Windows
// opened together, about when they are read and emitted, are also
// together in memory, which a list of single free windows lost.
func (o *Operator) newAcc(group []string) *acc {
	b := o.making
	if b == nil || b.made == accsAtOnce {
		if n := len(o.free); n > 0 {
			b = o.free[n-1]
			o.free = o.free[:n-1]
			clear(b.accs)
			clear(b.aggs)
			b.made = 0
		} else {
			n := len(o.cfg.Aggregates)
			b = &accBatch{accs: make([]acc, accsAtOnce), aggs: make([]AggState, accsAtOnce*n)}
		}
		o.making = b
	}
	a := &b.accs[b.made]
	n := len(o.cfg.Aggregates)
	a.Group, a.Aggs, a.batch = group, b.aggs[b.made*n:(b.made+1)*n:(b.made+1)*n], b
	b.made++
	b.open++
	return a
}

// closed takes a back once it is emitted: its batch is free when it was
// the last of the batch's windows.
func (o *Operator) closed(a *acc) {
	b := a.batch
	if b == nil {
		return
	}
	if b.open--; b.open == 0 && b.made == accsAtOnce && len(o.free) < maxFreeBatches {
		o.free = append(o.free, b)
	}
}

// accBatch is windows made together: made of them so far, open of those.
type accBatch struct {
	accs       []acc
	aggs       []AggState
	made, open int
}

// maxFreeBatches bounds the memory kept for windows to come: 64 batches
// of 256 windows, several times what an emission of the MTA week's
// benchmark frees in a task.
const maxFreeBatches = 64

const accsAtOnce = 256

// emit drops the windows and dedupe keys whose ends are done, and
// appends the windows' results to dst.
func (o *Operator) emit(done func(end int64) bool, dst []Result) []Result {
	var order []emitted // the windows done, to sort
	var wins []*acc
	size := int64(o.cfg.Size)
	for _, k := range o.emptied {
		if g := o.open[k]; g != nil && len(g.wins) == 0 {
			delete(o.open, k) // no event since the emission before
		}
	}
	o.emptied = o.emptied[:0]
	var due []int64
	for end := range o.ends {
		if done(end) {
			due = append(due, end)
		}
	}
	for _, end := range due {
		for _, k := range o.ends[end] {
			g := o.open[k]
			if g == nil {
				continue
			}
			// A group's windows end in the order they start; those of
			// other due ends go too, and their visit finds none.
			n := 0
			for n < len(g.wins) && done(g.wins[n].Start+size) {
				order = append(order, emitted{g.wins[n].Start, k, int32(len(wins))})
				wins = append(wins, g.wins[n])
				n++
			}
			if n == 0 {
				continue
			}
			g.wins = slices.Delete(g.wins, 0, n)
			if len(g.wins) == 0 {
				o.emptied = append(o.emptied, k)
			}
			o.nOpen -= n
		}
		delete(o.ends, end)
	}
	o.nextEnd = math.MaxInt64
	for end := range o.ends {
		o.nextEnd = min(o.nextEnd, end)
	}
	for end, keys := range o.seenEnds {
		if done(end) {
			for _, k := range keys {
				delete(o.st.Seen, k)
			}
			delete(o.seenEnds, end)
		}
	}
	// By start, then group: the order of the groups' values, as their
	// keys join them with NULs, the least byte. Sorting indexes by
	// integers and keys took a third of the time that sorting the results
	// by their times and groups did.
	slices.SortFunc(order, func(a, b emitted) int {
		return cmp.Or(cmp.Compare(a.start, b.start), strings.Compare(a.key, b.key))
	})
	n := len(o.cfg.Aggregates)
	if len(dst)+len(order) > cap(dst) {
		// Twice as large, not the quarter more of append's growth for
		// large slices: a caller gathering many emissions (a backlog)
		// copied them over and over.
		grown := make([]Result, len(dst), max(2*cap(dst), len(dst)+len(order)))
		copy(grown, dst)
		dst = grown
	}
	values := make([]float64, len(order)*n) // held as long as the results are: until written
	for i, e := range order {
		a := wins[e.i]
		dst = append(dst, a.result(o.cfg.Aggregates, a.Start, size, values[i*n:(i+1)*n:(i+1)*n]))
		o.closed(a)
	}
	return dst
}

// emitted is a result of emit, or an open window of Snapshot, to sort by.
type emitted struct {
	start int64
	key   string
	i     int32
}

// floorDiv is a ÷ b rounded down, for times before 1970 too.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// sat is a + d without wrapping past the int64 range.
func sat(a, d int64) int64 {
	if d < 0 && a < math.MinInt64-d {
		return math.MinInt64
	}
	return a + d
}
