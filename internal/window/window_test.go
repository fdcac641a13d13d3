package window

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var t0 = time.Date(2023, 5, 27, 0, 0, 0, 0, time.UTC)

func at(minutes float64) time.Time { return t0.Add(time.Duration(minutes * float64(time.Minute))) }

// row is a result as the tests compare it: window bounds in minutes
// after t0, and NaN as -1 so that cmp can compare.
type row struct {
	Group      []string
	Start, End float64
	Count      int64
	Values     []float64
}

func rows(rs []Result) []row {
	var out []row
	for _, r := range rs {
		vs := make([]float64, len(r.Values))
		for i, v := range r.Values {
			if math.IsNaN(v) {
				v = -1
			}
			vs[i] = v
		}
		out = append(out, row{r.Group, r.Start.Sub(t0).Minutes(), r.End.Sub(t0).Minutes(), r.Count, vs})
	}
	return out
}

func newOp(t *testing.T, cfg Config) *Operator {
	t.Helper()
	o, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// run adds every event, advancing after each, and returns all results.
func run(o *Operator, events []Event) []Result {
	var out []Result
	for _, e := range events {
		o.Add(e)
		out = append(out, o.Advance()...)
	}
	return out
}

func ev(minutes float64, group string, values ...float64) Event {
	return Event{Time: at(minutes), Group: []string{group}, Values: values}
}

func TestAggregates(t *testing.T) {
	all := []Aggregate{{Count, "", "events"}, {Count, "x", "xs"}, {Sum, "x", "sum"}, {Min, "x", "min"}, {Max, "x", "max"},
		{Avg, "x", "avg"}, {First, "x", "first"}, {Last, "x", "last"}, {Delta, "x", "delta"}}
	o := newOp(t, Config{Size: 10 * time.Minute, GroupBy: []string{"turnstile"}, Aggregates: all})
	nan := math.NaN()
	x := func(minutes float64, g string, v float64) Event {
		return ev(minutes, g, 0, v, v, v, v, v, v, v, v)
	}
	got := rows(run(o, []Event{
		x(3, "a", 120), // arrives out of order: still the window's last by event time
		x(1, "a", 100),
		x(2, "a", nan), // null: counted as an event, not as a value
		x(2, "b", 7),
		x(1, "a", 90), // the same time as the first: arrival breaks the tie
		x(12, "a", 5), // the next window; the watermark passes the first
	}))
	want := []row{
		{[]string{"a"}, 0, 10, 4, []float64{4, 3, 310, 90, 120, 310.0 / 3, 100, 120, 20}},
		{[]string{"b"}, 0, 10, 1, []float64{1, 1, 7, 7, 7, 7, 7, 7, 0}},
	}
	if diff := cmp.Diff(got, want, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("results (-got +want):\n%s", diff)
	}
	if o.Open() != 1 {
		t.Errorf("open windows: got %d, want 1 (a at 10-20)", o.Open())
	}
}

func TestEmptyAggregateIsNull(t *testing.T) {
	o := newOp(t, Config{Size: time.Minute, Aggregates: []Aggregate{{Sum, "x", "sum"}, {Count, "x", "n"}}})
	got := rows(run(o, []Event{ev(0, "", math.NaN(), math.NaN()), ev(5, "", 1, 1)}))
	want := []row{{[]string{""}, 0, 1, 1, []float64{-1, 0}}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("results (-got +want):\n%s", diff)
	}
}

func TestSlidingWindowsCountEveryContainingWindow(t *testing.T) {
	o := newOp(t, Config{Size: 15 * time.Minute, Slide: 5 * time.Minute, Aggregates: []Aggregate{{Sum, "x", "sum"}}})
	got := rows(run(o, []Event{ev(12, "g", 1), ev(14, "g", 10), ev(16, "g", 100), ev(60, "g", 0)}))
	want := []row{
		{[]string{"g"}, 0, 15, 2, []float64{11}},
		{[]string{"g"}, 5, 20, 3, []float64{111}},
		{[]string{"g"}, 10, 25, 3, []float64{111}},
		{[]string{"g"}, 15, 30, 1, []float64{100}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("results (-got +want):\n%s", diff)
	}
}

func TestLateEvents(t *testing.T) {
	o := newOp(t, Config{Size: 10 * time.Minute, Delay: 5 * time.Minute, Aggregates: []Aggregate{{Count, "", "n"}}})
	add := func(minutes float64) Outcome {
		out, _ := o.Add(ev(minutes, "g"))
		o.Advance()
		return out
	}
	for _, m := range []float64{1, 9, 14} { // watermark 9: window 0-10 open
		if got := add(m); got != Counted {
			t.Fatalf("event at %v: got %v, want counted", m, got)
		}
	}
	if got := add(4); got != Counted {
		t.Errorf("an event within the delay: got %v, want counted", got)
	}
	add(16) // watermark 11: window 0-10 emitted
	out, missed := o.Add(ev(8, "g"))
	if out != Late {
		t.Fatalf("an event behind the watermark: got %v, want late", out)
	}
	if diff := cmp.Diff(rows([]Result{missed}), []row{{[]string{"g"}, 0, 10, 0, nil}}, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("missed window (-got +want):\n%s", diff)
	}
	if got := o.Watermark(); !got.Equal(at(11)) {
		t.Errorf("watermark: got %v, want %v", got, at(11))
	}
}

func TestDedupe(t *testing.T) {
	o := newOp(t, Config{Size: 10 * time.Minute, Aggregates: []Aggregate{{Sum, "x", "sum"}}, Dedupe: []string{"id"}})
	dup := func(minutes float64, id string, x float64) Event {
		e := ev(minutes, "g", x)
		e.DedupeKey = id
		return e
	}
	var outcomes []Outcome
	var results []Result
	for _, e := range []Event{dup(1, "a", 1), dup(2, "b", 2), dup(3, "a", 1), dup(11, "c", 4), dup(12, "a", 8)} {
		out, _ := o.Add(e)
		outcomes = append(outcomes, out)
		results = append(results, o.Advance()...)
	}
	if diff := cmp.Diff(outcomes, []Outcome{Counted, Counted, Duplicate, Counted, Counted}); diff != "" {
		t.Errorf("outcomes (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(rows(results), []row{{[]string{"g"}, 0, 10, 2, []float64{3}}}); diff != "" {
		t.Errorf("results (-got +want):\n%s", diff)
	}
	// Keys of emitted windows are forgotten: the state does not grow.
	if got := len(o.Snapshot().Seen); got != 2 {
		t.Errorf("dedupe keys kept: got %d, want 2 (c and a of the open window)", got)
	}
}

// TestShuffleWithinDelay: any order of the same events, each at most the
// watermark delay out of order, gives the same windows.
func TestShuffleWithinDelay(t *testing.T) {
	cfg := Config{Size: 10 * time.Minute, Slide: 5 * time.Minute, Delay: 3 * time.Minute, GroupBy: []string{"g"},
		Aggregates: []Aggregate{{Count, "", "n"}, {Sum, "x", "sum"}, {First, "x", "first"}, {Last, "x", "last"}, {Delta, "x", "delta"}}}
	rng := rand.New(rand.NewPCG(1, 2))
	var events []Event
	for i := range 2000 {
		// Distinct times, so that first and last do not depend on arrival.
		events = append(events, ev(float64(i)*0.1+rng.Float64()*0.05, []string{"a", "b", "c"}[rng.IntN(3)], 0, float64(i), float64(i), float64(i), float64(i)))
	}
	events = append(events, ev(1000, "a", 0, 0, 0, 0, 0)) // closes every window
	want := rows(run(newOp(t, cfg), events))
	for trial := range 20 {
		shuffled := shuffleWithin(rng, events[:len(events)-1], 2*time.Minute)
		got := rows(run(newOp(t, cfg), append(shuffled, events[len(events)-1])))
		if diff := cmp.Diff(got, want); diff != "" {
			t.Fatalf("trial %d: results differ from in-order (-got +want):\n%s", trial, diff)
		}
	}
}

// TestWindowsMadeAgain: windows are made in batches, used again once
// emitted (newAcc), and each group stays for an emission with no window.
// Over many groups and windows, each a few events, every result is the
// reference's, computed here, so no window carries anything of one before.
func TestWindowsMadeAgain(t *testing.T) {
	cfg := Config{Size: 10 * time.Minute, GroupBy: []string{"g"},
		Aggregates: []Aggregate{{Count, "", "n"}, {Sum, "x", "sum"}, {Min, "x", "min"}, {First, "x", "first"}, {Last, "x", "last"}}}
	rng := rand.New(rand.NewPCG(5, 6))
	type key struct {
		g     string
		start float64
	}
	ref := map[key]*row{}
	var events []Event
	for w := range 40 {
		j := 0 // events in the window so far: their times rise
		for i := range 300 {
			// Some groups skip windows, and come back.
			if (i+w)%7 == 0 {
				continue
			}
			g := fmt.Sprint(i)
			for range 1 + rng.IntN(3) {
				m := float64(w*10) + float64(j)/100
				j++
				x := float64(rng.IntN(1000))
				events = append(events, ev(m, g, 0, x, x, x, x))
				k := key{g, float64(w * 10)}
				r := ref[k]
				if r == nil {
					r = &row{[]string{g}, k.start, k.start + 10, 0, []float64{0, 0, x, x, 0}}
					ref[k] = r
				}
				r.Count++
				r.Values[0], r.Values[1], r.Values[2], r.Values[4] = float64(r.Count), r.Values[1]+x, min(r.Values[2], x), x
			}
		}
	}
	events = append(events, ev(10_000, "end", 0, 0, 0, 0, 0)) // closes every window
	got := rows(run(newOp(t, cfg), events))
	var want []row
	for _, r := range ref {
		want = append(want, *r)
	}
	slices.SortFunc(want, func(a, b row) int {
		if a.Start != b.Start {
			return int(a.Start - b.Start)
		}
		return strings.Compare(a.Group[0], b.Group[0])
	})
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("results differ from the reference (-got +want):\n%s", diff)
	}
}

// shuffleWithin reorders events so that none comes after one more than d
// later than it: it sorts them by time plus a random offset below d.
func shuffleWithin(rng *rand.Rand, events []Event, d time.Duration) []Event {
	type keyed struct {
		e Event
		k time.Time
	}
	ks := make([]keyed, len(events))
	for i, e := range events {
		ks[i] = keyed{e, e.Time.Add(time.Duration(rng.Int64N(int64(d))))}
	}
	for i := 1; i < len(ks); i++ { // insertion sort: stable, and the input is nearly sorted
		for j := i; j > 0 && ks[j].k.Before(ks[j-1].k); j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	out := make([]Event, len(ks))
	for i, k := range ks {
		out[i] = k.e
	}
	return out
}

// TestWatermarkIsTheSlowestPartition, and an idle partition stops holding
// it back after the idle timeout, on the wall clock.
func TestIdlePartitionsAdvance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOp(t, Config{Size: 10 * time.Minute, IdleTimeout: 30 * time.Second, Aggregates: []Aggregate{{Count, "", "n"}}})
		add := func(p int32, minutes float64) []Result {
			e := ev(minutes, "g")
			e.Partition = p
			o.Add(e)
			return o.Advance()
		}
		add(0, 1)
		add(1, 2)
		if got := add(0, 25); len(got) != 0 {
			t.Fatalf("partition 1 at minute 2 holds the watermark: got %v, want nothing emitted", rows(got))
		}
		time.Sleep(10 * time.Second)
		add(0, 26)
		if got := o.Advance(); len(got) != 0 {
			t.Fatalf("before the idle timeout: got %v, want nothing emitted", rows(got))
		}
		time.Sleep(25 * time.Second) // partition 1 idle for 35 s, partition 0 for 25 s
		got := rows(o.Advance())
		if diff := cmp.Diff(got, []row{{[]string{"g"}, 0, 10, 2, []float64{2}}}); diff != "" {
			t.Errorf("after the idle timeout (-got +want):\n%s", diff)
		}
		// The partition comes back: it counts again, and its old times are late.
		if out, _ := o.Add(Event{Partition: 1, Time: at(3), Group: []string{"g"}}); out != Late {
			t.Errorf("an old event of the returning partition: got %v, want late", out)
		}
	})
}

// TestIdleCountsFromWhenInputBegan: an aggregator that started long before
// its input (or restarted) does not judge the partitions that have yet to
// send idle the moment the first one sends: idleness counts from when input
// began, so a partition a little behind the others is not late.
func TestIdleCountsFromWhenInputBegan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOp(t, Config{Size: 5 * time.Minute, Delay: 30 * time.Second, IdleTimeout: 5 * time.Second, Aggregates: []Aggregate{{Count, "", "n"}}})
		o.Expect(0, 1, 2)
		time.Sleep(time.Minute) // started, nothing yet
		// Partition 0's fetch comes first, an hour of event time, then the
		// others' from the same start.
		for m := 0.0; m < 60; m++ {
			e := ev(m, "g")
			o.Add(e)
			o.Advance()
		}
		var emitted []Result
		for _, p := range []int32{1, 2} {
			for m := 0.0; m < 60; m++ {
				e := ev(m, "g")
				e.Partition = p
				if out, missed := o.Add(e); out != Counted {
					t.Fatalf("partition %d minute %v: %v (missed %v), want counted", p, m, out, missed)
				}
				emitted = append(emitted, o.Advance()...)
			}
		}
		// Every window that minute 58:30 closed, each with all 15 events.
		if len(emitted) != 11 || emitted[0].Values[0] != 15 {
			t.Errorf("emitted %v, want 11 windows of 15 events", rows(emitted))
		}
	})
}

// TestObserveAdvancesWithoutEvents: a partition's broadcast watermark moves
// the operator's as its events would, counting nothing.
func TestObserveAdvancesWithoutEvents(t *testing.T) {
	o := newOp(t, Config{Size: 10 * time.Minute, Aggregates: []Aggregate{{Count, "", "n"}}})
	o.Expect(0, 1)
	o.Add(ev(1, "g"))
	if got := o.Advance(); len(got) != 0 {
		t.Fatalf("partition 1 holds the watermark: %v", rows(got))
	}
	o.Observe(0, at(30))
	o.Observe(1, at(25))
	got := rows(o.Advance())
	if diff := cmp.Diff(got, []row{{[]string{"g"}, 0, 10, 1, []float64{1}}}); diff != "" {
		t.Errorf("after both partitions' watermarks (-got +want):\n%s", diff)
	}
}

// TestCheckpointResumes: a snapshot taken mid-stream, through JSON and
// restored into a new operator, then the rest of the stream, gives what
// the uninterrupted run gives.
func TestCheckpointResumes(t *testing.T) {
	cfg := Config{Size: 10 * time.Minute, Slide: 5 * time.Minute, Delay: time.Minute, GroupBy: []string{"g"},
		Aggregates: []Aggregate{{Count, "", "n"}, {Avg, "x", "avg"}, {Delta, "x", "delta"}}, Dedupe: []string{"id"}}
	rng := rand.New(rand.NewPCG(3, 4))
	var events []Event
	for i := range 500 {
		e := ev(float64(i)*0.3, []string{"a", "b"}[rng.IntN(2)], 0, rng.Float64()*100, float64(i))
		e.DedupeKey = string(rune('a' + rng.IntN(26)))
		events = append(events, e)
	}
	want := rows(run(newOp(t, cfg), events))
	for _, cut := range []int{1, 137, 250, 499} {
		first := newOp(t, cfg)
		got := run(first, events[:cut])
		b, err := json.Marshal(first.Snapshot())
		if err != nil {
			t.Fatal(err)
		}
		var st State
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		second := newOp(t, cfg)
		if err := second.Restore(st); err != nil {
			t.Fatal(err)
		}
		got = append(got, run(second, events[cut:])...)
		if diff := cmp.Diff(rows(got), want); diff != "" {
			t.Errorf("cut at %d (-got +want):\n%s", cut, diff)
		}
		if diff := cmp.Diff(second.Snapshot(), func() State { o := newOp(t, cfg); run(o, events); return o.Snapshot() }(),
			cmpopts.IgnoreFields(Partition{}, "LastSeen")); diff != "" {
			t.Errorf("cut at %d: final state differs (-got +want):\n%s", cut, diff)
		}
	}
}

// TestChangesRebuildTheState takes the state of an operator now whole
// (Snapshot), now as its changes (Changes), each through the binary
// form, and rebuilds it on another operator as a restart would: Restore
// the last whole state, then Apply each change after it. At every step the
// rebuilt state is that of an operator that took none, and one rebuilt
// halfway emits what the first does. Many groups, so that windows are
// made again in batches; dedupe keys; sliding windows; a state limit,
// whose early emissions drop windows and keys too; and states taken
// seldom, whose record of changes is compacted meanwhile.
func TestChangesRebuildTheState(t *testing.T) {
	aggs := []Aggregate{{Count, "", "n"}, {Sum, "x", "sum"}, {First, "x", "first"}, {Last, "x", "last"}}
	for _, cfg := range []Config{
		{Size: 10 * time.Minute, Delay: 2 * time.Minute, GroupBy: []string{"g"}, Aggregates: aggs, Dedupe: []string{"id"}},
		{Size: 10 * time.Minute, Slide: 5 * time.Minute, Delay: time.Minute, GroupBy: []string{"g"}, Aggregates: aggs, Dedupe: []string{"id"}, MaxOpen: 700},
	} {
		t.Run(fmt.Sprintf("slide=%v,max=%d", cfg.Slide, cfg.MaxOpen), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 8))
			var events []Event
			for i := range 20_000 {
				e := ev(float64(i)*0.01, fmt.Sprint(rng.IntN(500)), 0, float64(i), float64(i), float64(i))
				e.DedupeKey = fmt.Sprint(rng.IntN(5000))
				events = append(events, e)
			}
			events = shuffleWithin(rng, events, time.Minute)
			want := rows(run(newOp(t, cfg), events))

			live, ref := newOp(t, cfg), newOp(t, cfg)
			var replica, half *Operator
			var got []Result
			wholes, changes := 0, 0
			for i := 0; i < len(events); {
				n := 1 + rng.IntN(400)
				if rng.IntN(8) == 0 {
					n = 5000 // a state taken seldom: its record of changes is compacted
				}
				n = min(n, len(events)-i)
				got = append(got, run(live, events[i:i+n])...)
				run(ref, events[i:i+n])
				i += n
				if len(live.changed) > 2*live.Open()+accsAtOnce || len(live.added) > 2*len(live.st.Seen)+accsAtOnce {
					t.Fatalf("after event %d: %d changed windows of %d open, %d added keys of %d held: want at most twice, and a batch",
						i, len(live.changed), live.Open(), len(live.added), len(live.st.Seen))
				}
				whole := replica == nil || rng.IntN(5) == 0
				var st State
				if whole {
					st, wholes = live.Snapshot(), wholes+1
				} else {
					st, changes = live.Changes(), changes+1
				}
				b, err := st.AppendBinary(nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := st.UnmarshalBinary(b); err != nil {
					t.Fatal(err)
				}
				if whole {
					replica = newOp(t, cfg)
					err = replica.Restore(st)
				} else {
					err = replica.Apply(st)
				}
				if err != nil {
					t.Fatalf("after event %d: %v", i, err)
				}
				// cmp.Diff only to say how they differ: it took most of the test's time.
				if rebuilt, taken := withoutClock(replica.Snapshot()), withoutClock(ref.Snapshot()); !reflect.DeepEqual(rebuilt, taken) {
					diff := cmp.Diff(rebuilt, taken)
					t.Fatalf("after event %d, rebuilt from %d whole states and %d changes: state differs (-rebuilt +taken whole):\n%s", i, wholes, changes, diff)
				}
				if half == nil && i >= len(events)/2 && !whole {
					half, replica = replica, nil // the next state is taken whole
					got = append(got, run(half, events[i:])...)
					if diff := cmp.Diff(rows(got), want); diff != "" {
						t.Errorf("rebuilt after event %d and run on: results differ (-got +want):\n%s", i, diff)
					}
				}
			}
			if changes < 20 || half == nil {
				t.Errorf("%d changes taken, half rebuilt %v: want many, to check", changes, half != nil)
			}
		})
	}
}

// TestAdvanceToAppends: AdvanceTo gathers the windows of many emissions
// in one slice, early ones of a state limit too, as Advance returns them
// one emission at a time.
func TestAdvanceToAppends(t *testing.T) {
	cfg := Config{Size: 10 * time.Minute, GroupBy: []string{"g"}, MaxOpen: 50, Aggregates: []Aggregate{{Count, "", "n"}, {Sum, "x", "sum"}}}
	var events []Event
	for i := range 3000 {
		events = append(events, ev(float64(i)*0.1, fmt.Sprint(i%70), 0, float64(i)))
	}
	ref := newOp(t, cfg)
	want := rows(run(ref, events))
	o := newOp(t, cfg)
	got := []Result{{Group: []string{"before"}, Start: t0, End: t0}}
	for _, e := range events {
		o.Add(e)
		got = o.AdvanceTo(got)
	}
	if diff := cmp.Diff(rows(got[1:]), want); diff != "" {
		t.Errorf("gathered by AdvanceTo (-got +want):\n%s", diff)
	}
	if got[0].Group[0] != "before" || o.Forced() == 0 || o.Forced() != ref.Forced() {
		t.Errorf("first result %v, forced %d: want the one before kept, and the %d written early by Advance", got[0].Group, o.Forced(), ref.Forced())
	}
}

// withoutClock is st without the wall clock's marks, which a restore
// sets to its own time.
func withoutClock(st State) State {
	for _, p := range st.Partitions {
		p.LastSeen, p.Idle = 0, false
	}
	return st
}

// TestApplyRefusesAnEarlierWatermark: changes are applied in the order
// taken; one from before the state is refused, and changes nothing.
func TestApplyRefusesAnEarlierWatermark(t *testing.T) {
	cfg := Config{Size: 10 * time.Minute, GroupBy: []string{"g"}, Aggregates: []Aggregate{{Count, "", "n"}}}
	o := newOp(t, cfg)
	run(o, []Event{ev(1, "a"), ev(2, "b")})
	early := o.Changes()
	run(o, []Event{ev(25, "a")})
	before := o.Snapshot()
	if err := o.Apply(early); err == nil {
		t.Error("changes with an earlier watermark: got no error")
	}
	if diff := cmp.Diff(o.Snapshot(), before); diff != "" {
		t.Errorf("a refused Apply changed the state (-got +want):\n%s", diff)
	}
	bad := o.Changes()
	bad.Windows = []WindowState{{Start: 0, Group: []string{"a", "extra"}, Aggs: []AggState{{}}}}
	if err := o.Apply(bad); err == nil {
		t.Error("changes with another group's shape: got no error")
	}
}

func TestRestoreRefusesAnotherConfiguration(t *testing.T) {
	a := newOp(t, Config{Size: time.Minute, Aggregates: []Aggregate{{Count, "", "n"}}})
	a.Add(ev(0, "g"))
	b := newOp(t, Config{Size: time.Minute, Aggregates: []Aggregate{{Count, "", "n"}, {Sum, "x", "s"}}})
	if err := b.Restore(a.Snapshot()); err == nil {
		t.Error("restoring a checkpoint of other aggregates: got no error")
	}
}

func TestConfigValidate(t *testing.T) {
	count := []Aggregate{{Count, "", "n"}}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no size", Config{Aggregates: count}},
		{"slide over size", Config{Size: time.Minute, Slide: 2 * time.Minute, Aggregates: count}},
		{"size not a multiple", Config{Size: 10 * time.Minute, Slide: 3 * time.Minute, Aggregates: count}},
		{"negative delay", Config{Size: time.Minute, Delay: -1, Aggregates: count}},
		{"no aggregates", Config{Size: time.Minute}},
		{"unknown op", Config{Size: time.Minute, Aggregates: []Aggregate{{"median", "x", "m"}}}},
		{"sum without field", Config{Size: time.Minute, Aggregates: []Aggregate{{Sum, "", "s"}}}},
		{"no name", Config{Size: time.Minute, Aggregates: []Aggregate{{Count, "", ""}}}},
		{"name twice", Config{Size: time.Minute, GroupBy: []string{"n"}, Aggregates: count}},
		{"reserved name", Config{Size: time.Minute, Aggregates: []Aggregate{{Count, "", "window_end"}}}},
	} {
		if err := tc.cfg.Validate(); err == nil {
			t.Errorf("%s: got no error", tc.name)
		}
	}
	if err := (Config{Size: time.Hour, Slide: 15 * time.Minute, Aggregates: count}).Validate(); err != nil {
		t.Errorf("a good config: %v", err)
	}
}

func TestTimesBefore1970(t *testing.T) {
	o := newOp(t, Config{Size: time.Hour, Aggregates: []Aggregate{{Count, "", "n"}}})
	old := time.Date(1969, 12, 31, 23, 30, 0, 0, time.UTC)
	o.Add(Event{Time: old})
	o.Add(Event{Time: old.Add(2 * time.Hour)})
	got := o.Advance()
	if len(got) != 1 || !got[0].Start.Equal(time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("got %+v, want the window starting 1969-12-31T23:00", got)
	}
}

// BenchmarkAdd counts 5,000 groups' events in 4-hour windows, dense (each
// window-group takes about 60 events) and sparse (one event each, as a
// turnstile's audit every four hours), emitting as the watermark passes.
func BenchmarkAdd(b *testing.B) {
	for _, c := range []struct {
		name string
		step time.Duration // between events
	}{{"dense", 50 * time.Millisecond}, {"sparse", 4 * time.Hour / 5000}} {
		b.Run(c.name, func(b *testing.B) {
			o, err := New(Config{Size: 4 * time.Hour, Delay: time.Hour, GroupBy: []string{"turnstile"},
				Aggregates: []Aggregate{{Sum, "entries", "entries"}, {Delta, "entries", "entries_delta"}}}, nil)
			if err != nil {
				b.Fatal(err)
			}
			groups := make([][]string, 5000)
			for i := range groups {
				groups[i] = []string{string(rune(i))}
			}
			values := []float64{1, 1}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				o.Add(Event{Time: t0.Add(time.Duration(i) * c.step), Group: groups[i%len(groups)], Values: values})
				if i%1000 == 0 {
					o.Advance()
				}
				i++
			}
		})
	}
}

// TestStateLimit: past MaxOpen window-groups the earliest window is
// written early, and an event due for it afterwards is late, not lost.
// BenchmarkCheckpoint takes the state of an operator holding 100,000
// open windows and dedupe keys, in its binary form, after each 1,000
// events: whole (Snapshot, the baseline, and what each checkpoint was
// before there were links) and as its changes (Changes, a link). Both
// count the same events; the difference is the checkpoint's.
func BenchmarkCheckpoint(b *testing.B) {
	const groups, between = 100_000, 1000
	for _, kind := range []string{"whole", "changes"} {
		b.Run(kind, func(b *testing.B) {
			o, err := New(Config{Size: 24 * time.Hour, Delay: time.Hour, GroupBy: []string{"turnstile"}, Dedupe: []string{"id"},
				Aggregates: []Aggregate{{Sum, "entries", "entries"}, {Delta, "entries", "entries_delta"}}}, nil)
			if err != nil {
				b.Fatal(err)
			}
			keys := make([][]string, groups)
			for i := range keys {
				keys[i] = []string{fmt.Sprint(i)}
			}
			values := []float64{1, 1}
			i := 0
			add := func() {
				// A millisecond apart: the day's window stays open.
				o.Add(Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Group: keys[i%groups], Values: values, DedupeKey: strconv.Itoa(i)})
				o.Advance()
				i++
			}
			for range groups {
				add()
			}
			o.Snapshot()
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				for range between {
					add()
				}
				var st State
				if kind == "whole" {
					st = o.Snapshot()
				} else {
					st = o.Changes()
				}
				if buf, err = st.AppendBinary(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(buf)), "B/checkpoint")
		})
	}
}

func TestStateLimit(t *testing.T) {
	o := newOp(t, Config{Size: 10 * time.Minute, Delay: time.Hour, MaxOpen: 4, Aggregates: []Aggregate{{Count, "", "n"}}})
	var got []Result
	for i, g := range []string{"a", "b", "c"} {
		got = append(got, run(o, []Event{ev(float64(i), g), ev(float64(10+i), g)})...)
	}
	// Six window-groups over two windows: the first window (three groups)
	// goes early, long before the hour's delay would let it.
	want := []row{{[]string{"a"}, 0, 10, 1, []float64{1}}, {[]string{"b"}, 0, 10, 1, []float64{1}}, {[]string{"c"}, 0, 10, 1, []float64{1}}}
	if diff := cmp.Diff(rows(got), want); diff != "" {
		t.Errorf("early windows (-got +want):\n%s", diff)
	}
	if o.Open() > 4 || o.Forced() != 3 {
		t.Errorf("open %d, forced %d: want at most 4 open and 3 forced", o.Open(), o.Forced())
	}
	if out, _ := o.Add(ev(5, "a")); out != Late {
		t.Errorf("an event for the early window: got %v, want late", out)
	}
}

// TestExpectedPartitionsHoldTheWatermark: a partition named by Expect
// holds the watermark until its first event, so its events are not late
// for having come after another partition's.
func TestExpectedPartitionsHoldTheWatermark(t *testing.T) {
	o := newOp(t, Config{Size: 10 * time.Minute, Aggregates: []Aggregate{{Count, "", "n"}}})
	o.Expect(0, 1)
	first := run(o, []Event{{Partition: 0, Time: at(1)}, {Partition: 0, Time: at(25)}})
	if len(first) != 0 || !o.Watermark().IsZero() {
		t.Fatalf("partition 1 not seen yet: got %d windows, watermark %v; want none", len(first), o.Watermark())
	}
	if out, _ := o.Add(Event{Partition: 1, Time: at(2)}); out != Counted {
		t.Fatalf("partition 1's first event: got %v, want counted", out)
	}
	got := run(o, []Event{{Partition: 1, Time: at(30)}})
	if diff := cmp.Diff(rows(got), []row{{nil, 0, 10, 2, []float64{2}}}, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("windows once both partitions moved (-got +want):\n%s", diff)
	}
}

// TestStateJSON: the state's own encoder decodes to what encoding/json's
// reflection would, for odd strings, nils and extreme values too.
func TestStateJSON(t *testing.T) {
	type plain State // encoding/json's view, without MarshalJSON
	for _, st := range []State{
		{},
		{Watermark: math.MinInt64, Partitions: map[int32]*Partition{}, Windows: []WindowState{}},
		{Watermark: 5, Arrivals: 9, Partitions: map[int32]*Partition{3: {Max: 1, LastSeen: 2, Idle: true}, 0: {Max: math.MinInt64}, 7: nil},
			Seen: map[string]int64{"a\x00b": 1, `q"\` + "\n\x7f": 2, "bad\xffutf8": 3, "é": 4},
			Windows: []WindowState{
				{Start: -10, Group: []string{"x", "", "\u2028"}, Count: 2, Aggs: []AggState{
					{N: 2, Sum: 0.1 + 0.2, Min: -1e300, Max: 1e-300, First: 3, FirstAt: 1, FirstSeq: 2, Last: 4, LastAt: 5, LastSeq: 6}, {}}},
				{Group: nil, Aggs: nil}}},
	} {
		mine, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := json.Marshal(plain(st))
		if err != nil {
			t.Fatal(err)
		}
		var got, want plain
		if err := json.Unmarshal(mine, &got); err != nil {
			t.Fatalf("%s: %v", mine, err)
		}
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("decoded (-own encoder +encoding/json):\n%s\n%s", diff, mine)
		}
	}
	if _, err := json.Marshal(State{Windows: []WindowState{{Aggs: []AggState{{Sum: math.Inf(1)}}}}}); err == nil {
		t.Error("an infinite sum encoded; want an error, as encoding/json gives")
	}
}

// TestStateBinary: the binary form reads back as the state it was written
// from, for odd strings, nils and extreme values too; empty and nil
// collections read back as the operator makes them.
func TestStateBinary(t *testing.T) {
	for _, st := range []State{
		{Partitions: map[int32]*Partition{}, Windows: []WindowState{}},
		{Watermark: math.MinInt64, Arrivals: math.MaxInt64, Partitions: map[int32]*Partition{math.MinInt32: {}}, Windows: []WindowState{}},
		{Watermark: 5, Arrivals: 9, Partitions: map[int32]*Partition{3: {Max: 1, LastSeen: 2, Idle: true}, 0: {Max: math.MinInt64}},
			Seen: map[string]int64{"a\x00b": 1, `q"\` + "\n\x7f": 2, "bad\xffutf8": 3, "é": 4, "": -1},
			Windows: []WindowState{
				{Start: -10, Group: []string{"x", "", "\u2028"}, Count: 2, Aggs: []AggState{
					{N: 2, Sum: 0.1 + 0.2, Min: -1e300, Max: 1e-300, First: math.Inf(-1), FirstAt: 1, FirstSeq: 2, Last: 4, LastAt: 5, LastSeq: 6}, {}}},
				{Group: []string{}, Aggs: []AggState{}}}},
	} {
		b, err := st.AppendBinary([]byte("head"))
		if err != nil {
			t.Fatal(err)
		}
		var got State
		if err := got.UnmarshalBinary(b[len("head"):]); err != nil {
			t.Fatalf("%+v: %v", st, err)
		}
		if diff := cmp.Diff(got, st); diff != "" {
			t.Errorf("read back (-got +want):\n%s", diff)
		}
		for n := range len(b) - len("head") {
			if err := got.UnmarshalBinary(b[len("head") : len("head")+n]); err == nil {
				t.Errorf("%+v cut to %d bytes read without an error", st, n)
			}
		}
	}
}

// FuzzStateBinary: no bytes, however broken, panic the reader or make it
// allocate past what they could hold; what it reads writes back the same.
func FuzzStateBinary(f *testing.F) {
	st := State{Watermark: 5, Arrivals: 9, Partitions: map[int32]*Partition{3: {Max: 1, LastSeen: 2, Idle: true}},
		Seen: map[string]int64{"k": 1}, Windows: []WindowState{{Start: 1, Group: []string{"g"}, Count: 1, Aggs: []AggState{{N: 1, Sum: 2}}}}}
	b, err := st.AppendBinary(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var st State
		if st.UnmarshalBinary(b) != nil {
			return
		}
		again, err := st.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		var st2 State
		if err := st2.UnmarshalBinary(again); err != nil {
			t.Fatalf("written back, it does not read: %v", err)
		}
		if diff := cmp.Diff(st2, st, cmpopts.EquateNaNs()); diff != "" {
			t.Errorf("read, written and read again (-got +want):\n%s", diff)
		}
		// A checkpoint read, whole or as changes, never panics the
		// operator, whatever it holds.
		o, err := New(Config{Size: time.Minute, Slide: 30 * time.Second, GroupBy: []string{"g"}, Dedupe: []string{"id"},
			Aggregates: []Aggregate{{Sum, "x", "s"}}, MaxOpen: 10}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = o.Restore(st)
		_ = o.Apply(st)
		o.Add(Event{Time: time.Unix(0, st.Watermark), Group: []string{"g"}, Values: []float64{1}, DedupeKey: "k"})
		o.Advance()
		o.Changes()
		o.Snapshot()
	})
}
