package aggregator

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/window"
)

// TestTaskDue: completed windows and due checkpoints wait for the write in
// flight, to go with the next, and a task holds at most holdRows windows,
// whatever the time: the bound on its memory while it catches up on a
// backlog.
func TestTaskDue(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	const interval = 10 * time.Second
	tests := []struct {
		name    string
		done    int
		dirty   bool
		owed    bool // windows written, no checkpoint after them
		since   time.Duration
		writing bool
		want    bool
	}{
		{name: "nothing completed, checkpoint not due", writing: true, want: false},
		{name: "nothing completed, no write in flight", want: false},
		{name: "completed windows wait for the write in flight", done: 10, writing: true, want: false},
		{name: "no write in flight: written at once", done: 1, want: true},
		{name: "one short of holdRows", done: holdRows - 1, writing: true, want: false},
		{name: "holdRows reached during a write", done: holdRows, writing: true, want: true},
		{name: "checkpoint interval passed with records taken", dirty: true, since: interval, want: true},
		{name: "checkpoint interval passed: waits for the write in flight", dirty: true, since: interval, writing: true, want: false},
		{name: "checkpoint interval passed, holdRows reached", done: holdRows, dirty: true, since: interval, writing: true, want: true},
		{name: "windows written, checkpointGap not passed", dirty: true, owed: true, since: checkpointGap / 2, want: false},
		{name: "windows written, checkpointGap passed", dirty: true, owed: true, since: checkpointGap, want: true},
		{name: "windows written, checkpointGap passed: waits for the write in flight", dirty: true, owed: true, since: checkpointGap, writing: true, want: false},
		{name: "records taken, no windows, checkpointGap passed", dirty: true, since: checkpointGap, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := &task{done: make([]window.Result, tt.done), dirty: tt.dirty, owed: tt.owed, lastCheckpoint: now.Add(-tt.since)}
			if got := tk.due(now, tt.writing, interval); got != tt.want {
				t.Errorf("due = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestWriteForget: a failed write keeps nothing of a task that moved to
// another owner, whose checkpoint it could otherwise replace with an older
// one, and keeps the other tasks' windows and checkpoints whole.
func TestWriteForget(t *testing.T) {
	w := &write{
		batches:     []taskResults{{task: 1, results: make([]window.Result, 2)}, {task: 2, results: make([]window.Result, 3)}},
		checkpoints: []taskCheckpoint{{cp: checkpoint{checkpointHead: checkpointHead{Partition: 1, Offset: 10}}}, {cp: checkpoint{checkpointHead: checkpointHead{Partition: 2, Offset: 20}}}},
		commit:      map[int32]kgo.EpochOffset{1: {Epoch: -1, Offset: 10}, 2: {Epoch: -1, Offset: 20}},
	}
	w.forget(1)
	var tasks []int32
	for _, b := range w.batches {
		tasks = append(tasks, b.task)
	}
	for _, c := range w.checkpoints {
		tasks = append(tasks, c.cp.Partition)
	}
	for p := range w.commit {
		tasks = append(tasks, p)
	}
	if diff := cmp.Diff([]int32{2, 2, 2}, tasks); diff != "" {
		t.Errorf("tasks left in the write (-want +got):\n%s", diff)
	}
	if len(w.batches[0].results) != 3 {
		t.Errorf("task 2 keeps %d windows, want 3", len(w.batches[0].results))
	}
}

// TestFileRuns: a task's windows go in a file a day, up to the row bound
// (a window of more alone), after those the table holds; CSV.gz files hold
// a window each.
func TestFileRuns(t *testing.T) {
	day := time.Date(2023, 5, 27, 0, 0, 0, 0, time.UTC)
	// Windows of 4 hours from day's 16:00, each of two groups: 16:00 and
	// 20:00 on the 27th, then 00:00 to 20:00 on the 28th.
	var results []window.Result
	for w := range 8 {
		start := day.Add(time.Duration(16+4*w) * time.Hour)
		for _, g := range []string{"a", "b"} {
			results = append(results, window.Result{Group: []string{g}, Start: start, End: start.Add(4 * time.Hour)})
		}
	}
	none := int64(math.MinInt64)
	for _, c := range []struct {
		name      string
		done      int64
		oneWindow bool
		maxRows   int
		want      [][2]int
	}{
		{"a file a day", none, false, 100, [][2]int{{0, 4}, {4, 16}}},
		{"after the table's", day.Add(20 * time.Hour).Unix(), false, 100, [][2]int{{4, 16}}},
		{"up to the bound", none, false, 4, [][2]int{{0, 4}, {4, 8}, {8, 12}, {12, 16}}},
		{"a window over the bound alone", none, false, 1, [][2]int{{0, 2}, {2, 4}, {4, 6}, {6, 8}, {8, 10}, {10, 12}, {12, 14}, {14, 16}}},
		{"csv.gz: a window each", day.Add(28 * time.Hour).Unix(), true, 100, [][2]int{{8, 10}, {10, 12}, {12, 14}, {14, 16}}},
	} {
		if diff := cmp.Diff(fileRuns(results, c.done, c.oneWindow, c.maxRows), c.want); diff != "" {
			t.Errorf("%s (-got +want):\n%s", c.name, diff)
		}
	}
}

// TestCheckpointChain: a task's checkpoints are a base and links of what
// changed since, and a task loaded from them has the state and offset of
// the last; a link that does not follow the one before (one written by
// another instance after the same one) or a gap ends the chain there. The
// next base removes the links of the chains before it.
func TestCheckpointChain(t *testing.T) {
	e := newEnv(t, 1)
	cfg := mtaConfig()
	newTasks := func() *tasks {
		a, err := New(cfg, e.cc, e.prod, e.store, e.cats[e.store], testLogger(t), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		return &tasks{Aggregator: a, topic: "mta-turnstile", inputs: 1, m: map[int32]*task{}}
	}
	ts := newTasks()
	tk, err := ts.load(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	lines := mtaLines(t)
	next := 0
	// checkpoint counts n more lines in the task and writes its checkpoint.
	checkpoint := func(n int) checkpointHead {
		for ; n > 0 && next < len(lines); n-- {
			ts.add(tk, &kgo.Record{Topic: "mta-turnstile", Offset: int64(next), Value: lines[next]})
			next++
		}
		tk.done = nil // the windows' files are not this test's
		w := ts.take([]*task{tk}, true)
		if err := w.run(t.Context(), ts); err != nil {
			t.Fatal(err)
		}
		return w.checkpoints[0].cp.checkpointHead
	}
	links := func() []string {
		objs, err := e.store.List(t.Context(), cfg.CheckpointPath(0)+".")
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, o := range objs {
			paths = append(paths, strings.TrimPrefix(o.Path, cfg.CheckpointPath(0)))
		}
		return paths
	}
	loaded := func() *task {
		lt, err := newTasks().load(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		return lt
	}

	// A base of 2,000 readings, then links of a few readings each.
	first := checkpoint(2000)
	var heads []checkpointHead
	for range 5 {
		heads = append(heads, checkpoint(10))
	}
	if first.Base != "" {
		t.Fatalf("the first checkpoint is link %d of %s, want a base", first.Link, first.Base)
	}
	var want []string
	for i, h := range heads {
		want = append(want, fmt.Sprintf(".%s.%06d", first.ID, i+1))
		if h.Base != first.ID || h.Link != i+1 {
			t.Fatalf("checkpoint %d after the base is link %d of %q, want link %d of %s", i+1, h.Link, h.Base, i+1, first.ID)
		}
	}
	if diff := cmp.Diff(links(), want); diff != "" {
		t.Fatalf("links (-got +want):\n%s", diff)
	}
	// The metrics count each kind and its bytes: the five links together
	// are smaller than the base.
	count := func(c *prometheus.CounterVec, kind string) float64 { return counterValue(c.WithLabelValues(kind)) }
	if whole, changes := count(ts.metrics.checkpoints, "whole"), count(ts.metrics.checkpoints, "changes"); whole != 1 || changes != 5 {
		t.Errorf("checkpoints counted: %v whole, %v changes; want 1 and 5", whole, changes)
	}
	if whole, changes := count(ts.metrics.checkpointBytes, "whole"), count(ts.metrics.checkpointBytes, "changes"); changes <= 0 || changes >= whole {
		t.Errorf("checkpoint bytes counted: %v whole, %v changes; want the changes fewer, and some", whole, changes)
	}

	lt := loaded()
	if lt.next != tk.next {
		t.Errorf("loaded from the chain at offset %d, want the last link's %d", lt.next, tk.next)
	}
	if diff := cmp.Diff(lt.op.Snapshot(), tk.op.Snapshot(), cmpopts.IgnoreFields(window.Partition{}, "LastSeen", "Idle")); diff != "" {
		t.Errorf("state loaded from the chain (-got +want):\n%s", diff)
	}

	// Another instance's link after link 4: the chain ends at 4.
	b, err := e.store.ReadObject(t.Context(), cfg.linkPath(0, first.ID, 5))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	foreign.After = "another"
	if b, err = encode(foreign); err != nil {
		t.Fatal(err)
	}
	if err := lake.PutBytes(t.Context(), e.store, cfg.linkPath(0, first.ID, 5), b); err != nil {
		t.Fatal(err)
	}
	if got := loaded().next; got != heads[3].Offset {
		t.Errorf("with a foreign link 5: loaded at offset %d, want link 4's %d", got, heads[3].Offset)
	}
	// A gap after link 2: the chain ends at 2.
	if err := e.store.Delete(t.Context(), cfg.linkPath(0, first.ID, 3)); err != nil {
		t.Fatal(err)
	}
	if got := loaded().next; got != heads[1].Offset {
		t.Errorf("with link 3 missing: loaded at offset %d, want link 2's %d", got, heads[1].Offset)
	}

	// A task loaded starts a chain of its own, whose base removes the
	// links before.
	tk = loaded()
	next = int(tk.next)
	if h := checkpoint(10); h.Base != "" {
		t.Errorf("the first checkpoint after a load is link %d of %s, want a base", h.Link, h.Base)
	}
	if got := links(); len(got) > 0 {
		t.Errorf("links left after a new base: %q", got)
	}
	for range maxLinks {
		checkpoint(1)
	}
	if got := len(links()); got != maxLinks {
		t.Errorf("%d links after a base, want %d", got, maxLinks)
	}
	if h := checkpoint(1); h.Base != "" {
		t.Errorf("the checkpoint after %d links is link %d of %s, want a base", maxLinks, h.Link, h.Base)
	}
	if got := links(); len(got) > 0 {
		t.Errorf("links left after the base that follows the longest chain: %q", got)
	}
}
