package aggregator

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/lake/laketest"
	"github.com/sluicehq/sluice/internal/replay"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/source"
	"github.com/sluicehq/sluice/internal/window"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

var mtaColumns = []Column{{"C/A", "string"}, {"UNIT", "string"}, {"SCP", "string"}, {"STATION", "string"},
	{"LINENAME", "string"}, {"DIVISION", "string"}, {"DATE", "string"}, {"TIME", "string"}, {"DESC", "string"},
	{"ENTRIES", "int"}, {"EXITS", "int"}}

// mtaConfig is the seed's aggregation: per turnstile and 4-hour window,
// the sums of the counters (as the seed) and their deltas (what real
// cumulative counters mean).
func mtaConfig() Config {
	return Config{Name: "turnstile_4h", Topic: "mta-turnstile", Format: "csv", Columns: mtaColumns,
		Time:    Time{Fields: []string{"DATE", "TIME"}, Layout: "MM/DD/YYYY HH:mm:ss"},
		Window:  Window{Size: 4 * time.Hour, Delay: time.Hour},
		GroupBy: []string{"C/A", "UNIT", "SCP", "STATION", "LINENAME", "DIVISION", "DATE", "DESC"},
		Dedupe:  []string{"C/A", "UNIT", "SCP", "DATE", "TIME"},
		Aggregates: []window.Aggregate{{Op: window.Count, As: "readings"}, {Op: window.Sum, Field: "ENTRIES", As: "entries"},
			{Op: window.Sum, Field: "EXITS", As: "exits"}, {Op: window.Delta, Field: "ENTRIES", As: "entries_delta"},
			{Op: window.Delta, Field: "EXITS", As: "exits_delta"}},
		CheckpointInterval: 50 * time.Millisecond}
}

type env struct {
	t     *testing.T
	cc    bus.ClientConfig
	prod  *kgo.Client
	store lake.Storage
	// cats are the catalogs of the lakes, by their storage and storages
	// that wrap it.
	cats map[lake.Storage]*lake.Catalog
	// commits, if not nil, counts the aggregators' commits down: the one
	// that takes it below zero crashes, its files written.
	commits *atomic.Int64
}

// newLake makes a lake on disk with its catalog; wrappers are storages
// over it that the tests inject faults with.
func (e *env) newLake(wrap ...func(lake.Storage) lake.Storage) (*lake.Local, []lake.Storage) {
	e.t.Helper()
	dir := e.t.TempDir()
	local, err := lake.NewLocal(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	cat, err := lake.OpenCatalog(e.t.Context(), dir, lake.CatalogConfig{}, lake.S3Config{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cat.Close() })
	e.cats[local] = cat
	var wrapped []lake.Storage
	for _, w := range wrap {
		s := w(local)
		e.cats[s] = cat
		wrapped = append(wrapped, s)
	}
	return local, wrapped
}

func newEnv(t *testing.T, partitions int32) *env {
	t.Helper()
	b, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: t.TempDir(), Partitions: partitions}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cc := bus.ClientConfig{Brokers: []string{b.Addr()}}
	prod, err := bus.NewProducer(cc, bus.ProducerConfig{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	if err := bus.EnsureTopics(t.Context(), prod, partitions, 1, "mta-turnstile", "sluice.dlq", "sluice.agg.turnstile_4h"); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cc: cc, prod: prod, cats: map[lake.Storage]*lake.Catalog{}}
	e.store, _ = e.newLake()
	return e
}

// mtaLines is the bundled MTA week as a live feed would send it: in
// event-time order (the file is sorted by turnstile), the header first.
func mtaLines(t *testing.T) [][]byte {
	t.Helper()
	b, err := sample.TurnstilesInTimeOrder()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
}

func (e *env) produce(topic string, values [][]byte) {
	e.t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		// Keyed by turnstile (C/A, UNIT, SCP), as a feed might be: spread
		// over the partitions, and not by the aggregation's group.
		key := v
		if f := bytes.SplitN(v, []byte(","), 4); len(f) == 4 {
			key = bytes.Join(f[:3], []byte(","))
		}
		recs[i] = &kgo.Record{Topic: topic, Key: key, Value: v}
	}
	if err := e.prod.ProduceSync(e.t.Context(), recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
}

// runUntil runs an aggregator on store until done says so, then stops it
// and returns what Run returned.
func (e *env) runUntil(cfg Config, store lake.Storage, done func(*prometheus.Registry) bool) error {
	e.t.Helper()
	a := e.start(cfg, store)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-a.done:
			return a.err
		case <-deadline:
			a.stop()
			return errTimeout
		case <-time.After(10 * time.Millisecond):
		}
		if done(a.reg) {
			return a.stop()
		}
	}
}

// running is an aggregator started by start.
type running struct {
	a      *Aggregator
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned err
	err    error
}

func (e *env) start(cfg Config, store lake.Storage) *running {
	e.t.Helper()
	r := &running{reg: prometheus.NewRegistry(), done: make(chan struct{})}
	a, err := New(cfg, e.cc, e.prod, store, e.cats[store], testLogger(e.t), r.reg)
	if err != nil {
		e.t.Fatal(err)
	}
	r.a = a
	if c := e.commits; c != nil {
		a.beforeCommit = func() error {
			if c.Add(-1) < 0 {
				return fmt.Errorf("%w: %w", errCrash, errKilled)
			}
			return nil
		}
	}
	a.SetState(health.Running) // as the app does
	ctx, cancel := context.WithCancel(e.t.Context())
	r.cancel = cancel
	go func() {
		r.err = a.Run(ctx)
		close(r.done)
	}()
	e.t.Cleanup(func() { r.stop() })
	return r
}

// stop stops the aggregator and returns what Run returned.
func (r *running) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// eventually fails the test unless ok holds within 30 s.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30 s", what)
		}
	}
}

func counter(reg *prometheus.Registry, name, label string) float64 {
	mfs, _ := reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetValue() == label
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// consumed says when the aggregator has taken n records (of any outcome).
func consumed(n int) func(*prometheus.Registry) bool {
	return func(reg *prometheus.Registry) bool {
		return counter(reg, "sluice_aggregator_events_total", "") >= float64(n) &&
			counter(reg, "sluice_aggregator_checkpoints_total", "") > 0
	}
}

// reference computes the windows of the MTA lines independently: every
// emitted 4-hour window of every group, with the counters' sums and
// deltas, for windows ending by the final watermark: the least, over the
// partitions (rows keyed by UNIT, spread as Kafka's default partitioner
// does over partitions), of the latest time in it, less delay.
func reference(t *testing.T, lines [][]byte, delay time.Duration, partitions int) []string {
	t.Helper()
	type acc struct {
		n                            int64
		entries, exits               int64
		firstT, lastT                time.Time
		firstE, lastE, firstX, lastX int64
	}
	accs := map[string]*acc{}
	seen := map[string]bool{}
	maxT := map[int]time.Time{}
	byKey := kgo.StickyKeyPartitioner(nil).ForTopic("mta-turnstile")
	for _, l := range lines[1:] {
		f, err := csv.NewReader(bytes.NewReader(l)).Read()
		if err != nil {
			t.Fatal(err)
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		ts, err := time.Parse("01/02/2006 15:04:05", f[6]+" "+f[7])
		if err != nil {
			t.Fatal(err)
		}
		id := strings.Join([]string{f[0], f[1], f[2], f[6], f[7]}, "|")
		p := byKey.Partition(&kgo.Record{Key: []byte(f[1])}, partitions)
		if ts.After(maxT[p]) {
			maxT[p] = ts
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		start := ts.Truncate(4 * time.Hour)
		k := strings.Join([]string{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[8], start.Format(time.RFC3339)}, "|")
		en, _ := strconv.ParseInt(f[9], 10, 64)
		ex, _ := strconv.ParseInt(f[10], 10, 64)
		a := accs[k]
		if a == nil {
			a = &acc{firstT: ts, lastT: ts, firstE: en, lastE: en, firstX: ex, lastX: ex}
			accs[k] = a
		}
		a.n++
		a.entries += en
		a.exits += ex
		if ts.Before(a.firstT) {
			a.firstT, a.firstE, a.firstX = ts, en, ex
		}
		if !ts.Before(a.lastT) {
			a.lastT, a.lastE, a.lastX = ts, en, ex
		}
	}
	var wm time.Time
	for p := range partitions {
		if wm.IsZero() || maxT[p].Before(wm) {
			wm = maxT[p]
		}
	}
	wm = wm.Add(-delay)
	var out []string
	for k, a := range accs {
		parts := strings.Split(k, "|")
		start, _ := time.Parse(time.RFC3339, parts[len(parts)-1])
		if start.Add(4 * time.Hour).After(wm) {
			continue
		}
		out = append(out, fmt.Sprintf("%s|%s|%d|%d|%d|%d|%d", strings.Join(parts[:len(parts)-1], "|"),
			start.Format(time.RFC3339), a.n, a.entries, a.exits, a.lastE-a.firstE, a.lastX-a.firstX))
	}
	slices.Sort(out)
	return out
}

// lakeRows reads every row of the table back, as reference does.
func (e *env) lakeRows(t *testing.T, store lake.Storage) []string {
	t.Helper()
	return rowStrings(e.tableFiles(t, store))
}

// rowStrings are the rows of files, as rowString writes them, sorted.
func rowStrings(files map[string][]map[string]any) []string {
	var out []string
	for _, rows := range files {
		for _, r := range rows {
			out = append(out, rowString(r))
		}
	}
	slices.Sort(out)
	return out
}

// rowString is a row of the MTA aggregation as reference writes it.
func rowString(r map[string]any) string {
	return fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s|%s|%s|%v|%v|%v|%v|%v", r["C/A"], r["UNIT"], r["SCP"], r["STATION"],
		r["LINENAME"], r["DIVISION"], r["DATE"], r["DESC"], r["window_start"].(time.Time).UTC().Format(time.RFC3339),
		r["readings"], r["entries"], r["exits"], r["entries_delta"], r["exits_delta"])
}

// tableOffsets are the last window of each task that the table holds.
func (e *env) tableOffsets(t *testing.T, store lake.Storage) lake.Offsets {
	t.Helper()
	tbl, err := e.cats[store].Load(t.Context(), "agg_turnstile_4h")
	if errors.Is(err, lake.ErrNoTable) {
		return lake.Offsets{}
	}
	if err != nil {
		t.Fatal(err)
	}
	o, err := lake.TableOffsets(tbl)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// caughtUp says when the table holds the windows want does: its
// snapshots' last window of each task. Reading every file on every poll
// would starve the aggregator under the race detector.
func (e *env) caughtUp(t *testing.T, store lake.Storage, want lake.Offsets) func() bool {
	return func() bool { return maps.Equal(e.tableOffsets(t, store), want) }
}

// tableFiles reads each data file of the table's current snapshot, and
// checks that no other is in the lake.
func (e *env) tableFiles(t *testing.T, store lake.Storage) map[string][]map[string]any {
	t.Helper()
	return e.filesOf(t, store, "agg_turnstile_4h", true)
}

// filesOf reads each data file of a table's current snapshot; strict
// checks that no other is in the lake, which holds once the aggregators
// are done.
func (e *env) filesOf(t *testing.T, store lake.Storage, table string, strict bool) map[string][]map[string]any {
	t.Helper()
	cat := e.cats[store]
	out := map[string][]map[string]any{}
	tbl, err := cat.Load(t.Context(), table)
	if errors.Is(err, lake.ErrNoTable) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := tbl.Scan().PlanFiles(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		p := cat.Path(task.File.FilePath())
		b, err := store.ReadObject(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = readRows(t, b)
	}
	if !strict {
		return out
	}
	objs, err := store.List(t.Context(), table+"/data/")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if _, ok := out[o.Path]; !ok {
			t.Errorf("data file in no snapshot: %s", o.Path)
		}
	}
	return out
}

// TestMTAWeekEqualsReference feeds the bundled week, in time order, as
// `sluice replay --to kafka --preset mta-turnstile --format csv` does,
// into a 3-partition topic keyed by unit, and checks every window of every
// group against a reference computed here from the file.
func TestMTAWeekEqualsReference(t *testing.T) {
	e := newEnv(t, 3)
	lines := mtaLines(t)
	path := filepath.Join(t.TempDir(), sample.TurnstilesByTime)
	if err := os.WriteFile(path, bytes.Join(lines, []byte("\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := source.New(path, "")
	if err != nil {
		t.Fatal(err)
	}
	preset := replay.Presets["mta-turnstile"]
	src.Columns = preset.Columns
	rc := replay.DefaultConfig()
	rc.Kafka, rc.Topic, rc.KafkaFormat, rc.KeyField = e.prod, "mta-turnstile", "csv", preset.KeyField
	stats := new(replay.Stats)
	if err := replay.Run(t.Context(), rc, []*source.Source{src}, []*replay.Stats{stats}); err != nil {
		t.Fatal(err)
	}
	if got := stats.Accepted.Load(); got != int64(len(lines)-1) {
		t.Fatalf("replay sent %d rows, want %d", got, len(lines)-1)
	}
	if err := e.runUntil(mtaConfig(), e.store, consumed(len(lines)-1)); err != nil {
		t.Fatal(err)
	}
	want := reference(t, lines, time.Hour, 3)
	if len(want) < 500 {
		t.Fatalf("the reference has %d windows; the sample should give hundreds", len(want))
	}
	if diff := cmp.Diff(e.lakeRows(t, e.store), want); diff != "" {
		t.Errorf("lake rows (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(e.resultRows(t, "sluice.agg.turnstile_4h", len(want)), want); diff != "" {
		t.Errorf("results topic (-got +want):\n%s", diff)
	}
}

// records reads the first n records of topic, or as many as come in 10 s.
func (e *env) records(t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := bus.NewClient(e.cc, testLogger(t), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for len(recs) < n && ctx.Err() == nil {
		recs = append(recs, cl.PollFetches(ctx).Records()...)
	}
	return recs
}

// resultRows reads n records of the results topic, as rowString writes
// them, sorted; each record's key is its window's start and its group.
func (e *env) resultRows(t *testing.T, topic string, n int) []string {
	t.Helper()
	var got []string
	for _, r := range e.records(t, topic, n) {
		d := json.NewDecoder(bytes.NewReader(r.Value))
		d.UseNumber()
		var row map[string]any
		if err := d.Decode(&row); err != nil {
			t.Fatalf("result %s: %v", r.Value, err)
		}
		start, err := time.Parse(time.RFC3339, fmt.Sprint(row["window_start"]))
		if err != nil {
			t.Fatalf("result %s: window_start: %v", r.Value, err)
		}
		row["window_start"] = start
		key := start.Format(time.RFC3339)
		for _, g := range mtaConfig().GroupBy {
			key += "|" + fmt.Sprint(row[g])
		}
		if string(r.Key) != key {
			t.Errorf("result %s has the key %q, want %q", r.Value, r.Key, key)
		}
		got = append(got, rowString(row))
	}
	slices.Sort(got)
	return got
}

// flakyStorage fails every write after the first ok ones, as a process
// killed at that point would have left the lake: its error is a crash,
// which stops the aggregator, not a fault it waits out.
type flakyStorage struct {
	lake.Storage
	ok atomic.Int64
}

var (
	errKilled  = errors.New("killed")
	errTimeout = errors.New("the aggregator did not finish in 30 s")
)

func (s *flakyStorage) Create(ctx context.Context, p string) (lake.Writer, error) {
	if s.ok.Add(-1) < 0 {
		return nil, fmt.Errorf("%w: %w", errCrash, errKilled)
	}
	return s.Storage.Create(ctx, p)
}

// TestCrashAtAnyPointGivesTheSameRows stops the aggregator at each of its
// writes to the lake (a window file or a checkpoint), and between each
// write's files and their commit, restarts it, and compares the table,
// row for row, with an uninterrupted run's. The crashed run is fed the
// week a day at a time, so that it writes each day's windows apart; the
// restart finds the rest of the week there, and batches its windows in
// files otherwise (writeWindows). So files written before a crash, and
// not committed, may be left over: every row of theirs must be in the
// table, written again, and orphan removal must leave a table in which
// every file is in a snapshot.
func TestCrashAtAnyPointGivesTheSameRows(t *testing.T) {
	lines := mtaLines(t)
	cfg := mtaConfig()
	cfg.CheckpointInterval = time.Hour // checkpoints at emissions only: every crash replays
	ref := newEnv(t, 1)
	ref.produce("mta-turnstile", lines)
	if err := ref.runUntil(cfg, ref.store, consumed(len(lines))); err != nil {
		t.Fatal(err)
	}
	want, wantOffsets := ref.lakeRows(t, ref.store), ref.tableOffsets(t, ref.store)

	// The writes and commits of a run fed by day, to crash at each.
	const never = 1 << 40
	e := newEnv(t, 1)
	e.commits = new(atomic.Int64)
	e.commits.Store(never)
	var counting *flakyStorage
	_, _ = e.newLake(func(s lake.Storage) lake.Storage {
		counting = &flakyStorage{Storage: s}
		return counting
	})
	counting.ok.Store(never)
	r := e.start(cfg, counting)
	e.feed(r, lines)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	writes, commits := never-counting.ok.Load(), never-e.commits.Load()
	if files := len(e.tableFiles(t, counting)); files < 5 || writes <= int64(files) || commits < 3 {
		t.Fatalf("a run fed by day wrote %d files in %d writes and %d commits; want many, to crash at", files, writes, commits)
	}

	type point struct{ write, commit int64 }
	var points []point
	for n := range writes {
		points = append(points, point{n, never})
	}
	for n := range commits {
		points = append(points, point{never, n})
	}
	orphaned := 0 // data files left over, over every crash
	for _, p := range points {
		e := newEnv(t, 1)
		var flaky *flakyStorage
		store, _ := e.newLake(func(s lake.Storage) lake.Storage {
			flaky = &flakyStorage{Storage: s}
			return flaky
		})
		flaky.ok.Store(p.write)
		e.commits = new(atomic.Int64)
		e.commits.Store(p.commit)
		r := e.start(cfg, flaky)
		fed := e.feed(r, lines)
		if err := r.stop(); !errors.Is(err, errKilled) {
			t.Logf("crash at %+v: the run did not get that far (Run returned %v)", p, err)
			continue
		}
		e.produce("mta-turnstile", lines[fed:])
		// The restart is done when the table holds every window; if it
		// never does, the diff below says how it differs.
		e.commits = nil
		if err := e.runUntil(cfg, store, func(*prometheus.Registry) bool { return e.caughtUp(t, store, wantOffsets)() }); err != nil {
			t.Fatal(err)
		}
		cat := e.cats[store]
		orphans, err := cat.Orphans(t.Context(), "agg_turnstile_4h", 0, true)
		if err != nil {
			t.Fatal(err)
		}
		rows := rowStrings(e.filesOf(t, store, "agg_turnstile_4h", false))
		for _, o := range orphans {
			if !strings.Contains(o, "/data/") {
				continue // metadata of a commit cut short
			}
			orphaned++
			b, err := store.ReadObject(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range readRows(t, b) {
				if _, in := slices.BinarySearch(rows, rowString(r)); !in {
					t.Errorf("crash at %+v: the orphan %s has a row the table has not: %s", p, o, rowString(r))
				}
			}
		}
		if _, err := cat.Orphans(t.Context(), "agg_turnstile_4h", 0, false); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(e.lakeRows(t, store), want); diff != "" {
			t.Errorf("crash at %+v: rows differ from the uninterrupted run's (-got +want):\n%s", p, diff)
		}
	}
	t.Logf("%d writes and %d commits to crash at, %d data files left over", writes, commits, orphaned)
	if orphaned == 0 {
		t.Error("no crash left a data file over: the check of orphans checked nothing")
	}
}

// date is an MTA line's DATE field.
func date(line []byte) []byte {
	f := bytes.Split(line, []byte(","))
	if len(f) < 7 {
		return nil
	}
	return f[6]
}

// feed produces lines to the aggregator r a day of event time at a time,
// each once r has taken those before, until r stops; it returns how many
// it produced.
func (e *env) feed(r *running, lines [][]byte) int {
	e.t.Helper()
	fed := 0
	for fed < len(lines) {
		next := fed + 1
		for next < len(lines) && bytes.Equal(date(lines[next]), date(lines[fed])) {
			next++
		}
		e.produce("mta-turnstile", lines[fed:next])
		fed = next
		deadline := time.After(30 * time.Second)
		for counter(r.reg, "sluice_aggregator_events_total", "") < float64(fed) {
			select {
			case <-r.done:
				return fed
			case <-deadline:
				e.t.Fatalf("the aggregator took %v of %d records in 30 s", counter(r.reg, "sluice_aggregator_events_total", ""), fed)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return fed
}

// TestFullDiskIsWaitedOut fills the lake's disk while the aggregator
// writes windows: it stays up, says it is not ready and why, and when space
// comes back writes every window, the lake then as an uninterrupted run's.
func TestFullDiskIsWaitedOut(t *testing.T) {
	e := newEnv(t, 1)
	lines := mtaLines(t)
	cfg := mtaConfig()
	e.produce("mta-turnstile", lines[:len(lines)/3])
	var full *laketest.Full
	local, _ := e.newLake(func(s lake.Storage) lake.Storage {
		full = &laketest.Full{Storage: s}
		return full
	})
	r := e.start(cfg, full)
	eventually(t, "some windows written", func() bool { return counter(r.reg, "sluice_aggregator_windows_emitted_total", "") > 3 })
	full.Fill(true)
	e.produce("mta-turnstile", lines[len(lines)/3:])
	eventually(t, "the aggregator unready for its output", func() bool {
		err := r.a.Health().Ready()
		return err != nil && strings.Contains(err.Error(), "output") && strings.Contains(err.Error(), "no space left on device")
	})
	time.Sleep(time.Second)
	select {
	case <-r.done:
		t.Fatalf("the aggregator stopped on a full disk: %v", r.err)
	default:
	}
	full.Fill(false)
	eventually(t, "every record taken", func() bool { return consumed(len(lines))(r.reg) })
	eventually(t, "ready again", func() bool { return r.a.Health().Ready() == nil })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	ref := cfg
	ref.Group, ref.TransactionalID = "reference", "reference"
	if err := e.runUntil(ref, e.store, consumed(len(lines))); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e.lakeRows(t, local), e.lakeRows(t, e.store)); diff != "" {
		t.Errorf("rows after a full disk differ from an uninterrupted run's (-got +want):\n%s", diff)
	}
}

// TestTwoInstancesEqualOne shares a 4-partition topic between two
// instances, one of which stops halfway, handing its tasks to the other;
// the table has the same rows as one instance's, and no file outside its
// snapshots.
func TestTwoInstancesEqualOne(t *testing.T) {
	lines := mtaLines(t)
	half := len(lines) / 2
	one := newEnv(t, 4)
	one.produce("mta-turnstile", lines)
	if err := one.runUntil(mtaConfig(), one.store, consumed(len(lines))); err != nil {
		t.Fatal(err)
	}
	want, wantOffsets := one.lakeRows(t, one.store), one.tableOffsets(t, one.store)
	tasks := map[int32]bool{}
	for p := range one.tableFiles(t, one.store) {
		var task int32
		fmt.Sscanf(path.Base(p), "window-%d-", &task)
		tasks[task] = true
	}
	if len(tasks) != 4 {
		t.Fatalf("one instance wrote files of %d tasks, want 4", len(tasks))
	}

	two := newEnv(t, 4)
	cfgA, cfgB := mtaConfig(), mtaConfig()
	cfgA.TransactionalID, cfgB.TransactionalID = "a", "b"
	a, b := two.start(cfgA, two.store), two.start(cfgB, two.store)
	eventually(t, "both instances own two tasks", func() bool {
		return gauge(a.reg, "sluice_aggregator_tasks") == 2 && gauge(b.reg, "sluice_aggregator_tasks") == 2
	})
	two.produce("mta-turnstile", lines[:half])
	counted := func(rs ...*running) float64 {
		var n float64
		for _, r := range rs {
			n += counter(r.reg, "sluice_aggregator_events_total", "counted") + counter(r.reg, "sluice_aggregator_events_total", "duplicate")
		}
		return n
	}
	eventually(t, "the first half counted", func() bool {
		return counted(a, b) >= float64(half-1)
	})
	if counted(a) == 0 || counted(b) == 0 {
		t.Fatalf("instance a counted %v, b %v: want both to share the work", counted(a), counted(b))
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a takes over b's tasks", func() bool { return gauge(a.reg, "sluice_aggregator_tasks") == 4 })
	two.produce("mta-turnstile", lines[half:])
	eventually(t, "the table holds every window", two.caughtUp(t, two.store, wantOffsets))
	if diff := cmp.Diff(two.lakeRows(t, two.store), want); diff != "" {
		t.Errorf("two instances' rows (-got +want):\n%s", diff)
	}
}

func gauge(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

func TestLateEventsAreDeadLettered(t *testing.T) {
	e := newEnv(t, 1)
	lines := mtaLines(t)
	late := []byte("A002,R051,02-00-00,59 ST,NQR456W,BMT,05/27/2023,01:00:00,REGULAR,1,1")
	bad := []byte("A002,R051,02-00-00,59 ST,NQR456W,BMT,05/27/2023,01:00:00,REGULAR,many,1")
	badTime := []byte("A002,R051,02-00-00,59 ST,NQR456W,BMT,2023-05-27,01:00:00,REGULAR,1,1")
	e.produce("mta-turnstile", append(lines, late, bad, badTime))
	if err := e.runUntil(mtaConfig(), e.store, consumed(len(lines)+3)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range e.records(t, "sluice.dlq", 3) {
		var f event.Failed
		if err := json.Unmarshal(r.Value, &f); err != nil {
			t.Fatal(err)
		}
		got = append(got, f.Stage+" "+f.Reason+" "+f.Errors[0].Path)
		if f.Reason == ReasonLateEvent && !strings.Contains(f.Errors[0].Message, "window [2023-05-27T00:00:00Z, 2023-05-27T04:00:00Z)") {
			t.Errorf("late event message %q does not name the window it missed", f.Errors[0].Message)
		}
		if f.Reason == ReasonLateEvent {
			// Through the repartition topic, in its parsed form: the
			// dead letter still holds the input as it came.
			var orig string
			if err := json.Unmarshal(f.Original, &orig); err != nil || orig != string(late) {
				t.Errorf("late event's original is %s, want the input line %q", f.Original, late)
			}
			if bus.Header(r, headerParsed) != "" {
				t.Errorf("late event's dead letter has the header %s", headerParsed)
			}
		}
	}
	// Unreadable records are dead-lettered by the repartitioner, late ones
	// by their task: in no set order.
	slices.Sort(got)
	want := []string{"aggregator invalid_event_time /DATE", "aggregator invalid_record ", "aggregator late_event /DATE"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("dead letters (-got +want):\n%s", diff)
	}
}

func TestJSONEnvelopes(t *testing.T) {
	e := newEnv(t, 1)
	cfg := Config{Name: "trips_15m", Topic: "mta-turnstile", EventType: "yellow_taxi_trip",
		Time:    Time{Fields: []string{"tpep_pickup_datetime"}},
		Window:  Window{Size: 15 * time.Minute},
		GroupBy: []string{"pickup_zone"},
		Aggregates: []window.Aggregate{{Op: window.Count, As: "trips"}, {Op: window.Sum, Field: "fare_amount", As: "fares"},
			{Op: window.Avg, Field: "trip_distance", As: "avg_distance"}}}
	trip := func(at, zone string, fare, dist float64) []byte {
		return fmt.Appendf(nil, `{"event_type":"yellow_taxi_trip","schema_version":"1-0-0","payload":{"tpep_pickup_datetime":%q,"pickup_zone":%q,"fare_amount":%v,"trip_distance":%v}}`,
			at, zone, fare, dist)
	}
	e.produce("mta-turnstile", [][]byte{
		trip("2025-01-01T00:01:00", "East Village", 10, 1),
		[]byte(`{"event_type":"page_view","schema_version":"1","payload":{}}`),
		trip("2025-01-01T00:07:00", "East Village", 20.5, 3),
		trip("2025-01-01T00:09:00", "Midtown Center", 7, 2),
		trip("2025-01-01T00:31:00", "East Village", 1, 1),
	})
	if err := e.runUntil(cfg, e.store, consumed(5)); err != nil {
		t.Fatal(err)
	}
	var paths []string
	var got []map[string]any
	for p, rows := range e.filesOf(t, e.store, "agg_trips_15m", true) {
		paths = append(paths, p)
		for _, r := range rows {
			delete(r, "event_date")
			got = append(got, r)
		}
	}
	wantPaths := []string{"agg_trips_15m/data/event_date=2025-01-01/window-0-1735689600-1735690500.parquet"}
	if diff := cmp.Diff(paths, wantPaths); diff != "" {
		t.Errorf("files (-got +want):\n%s", diff)
	}
	start, end := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 1, 0, 15, 0, 0, time.UTC)
	want := []map[string]any{
		{"pickup_zone": "East Village", "window_start": start, "window_end": end, "trips": int64(2), "fares": 30.5, "avg_distance": 2.0},
		{"pickup_zone": "Midtown Center", "window_start": start, "window_end": end, "trips": int64(1), "fares": 7.0, "avg_distance": 2.0},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("rows (-got +want):\n%s", diff)
	}
}

func TestConfigValidate(t *testing.T) {
	good := mtaConfig()
	if err := good.Validate(); err != nil {
		t.Fatalf("the MTA config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"bad name", func(c *Config) { c.Name = "Turnstile 4h" }, "snake_case"},
		{"no topic", func(c *Config) { c.Topic = "" }, "no input topic"},
		{"bad format", func(c *Config) { c.Format = "xml" }, "want json or csv"},
		{"no columns", func(c *Config) { c.Columns = nil }, "needs columns"},
		{"bad type", func(c *Config) { c.Columns = []Column{{"x", "decimal"}} }, "decimal"},
		{"no time", func(c *Config) { c.Time.Fields = nil }, "no time field"},
		{"unknown field", func(c *Config) { c.GroupBy = append(c.GroupBy, "BOROUGH") }, "BOROUGH is not one of the csv columns"},
		{"bad output", func(c *Config) { c.Output.Format = "avro" }, "want parquet or csv.gz"},
		{"bad window", func(c *Config) { c.Window.Size = 0 }, "window size must be positive"},
	} {
		c := mtaConfig()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestTimeLayout(t *testing.T) {
	for in, want := range map[string]string{
		"MM-DD-YY HH:mm:ss":   "01-02-06 15:04:05",
		"MM/DD/YYYY HH:mm:ss": "01/02/2006 15:04:05",
		"rfc3339":             time.RFC3339Nano,
		"2006-01-02 15:04:05": "2006-01-02 15:04:05",
	} {
		if got := TimeLayout(in); got != want {
			t.Errorf("TimeLayout(%q): got %q, want %q", in, got, want)
		}
	}
}

// readRows reads a window file's rows, the window bounds as times.
func readRows(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	rows := laketest.ReadParquet(t, data)
	for _, r := range rows {
		for _, k := range []string{"window_start", "window_end"} {
			if us, ok := r[k].(int64); ok {
				r[k] = time.UnixMicro(us).UTC()
			}
		}
	}
	return rows
}

// TestMetricsFromTheStart: every outcome's counter is there at 0 before
// the first event, and each task's watermark is a gauge of its own.
func TestMetricsFromTheStart(t *testing.T) {
	e := newEnv(t, 2)
	r := e.start(mtaConfig(), e.store)
	series := func(name string) map[string]float64 {
		out := map[string]float64{}
		mfs, _ := r.reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				var k []string
				for _, l := range m.GetLabel() {
					if l.GetName() != "aggregation" {
						k = append(k, l.GetValue())
					}
				}
				out[strings.Join(k, ",")] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return out
	}
	if got := series("sluice_aggregator_events_total"); len(got) != 5 || got["late"] != 0 {
		t.Errorf("events before any: %v, want the five outcomes at 0", got)
	}
	lines := mtaLines(t)
	e.produce("mta-turnstile", lines)
	eventually(t, "every record taken", func() bool { return consumed(len(lines))(r.reg) })
	// Events are counted as a task takes them; its watermark gauge is set
	// when the tasks next advance, a moment later.
	eventually(t, "a watermark in 2023 for each of the 2 tasks", func() bool {
		got := series("sluice_aggregator_task_watermark_seconds")
		return len(got) == 2 && got["0"] >= 1.6e9 && got["1"] >= 1.6e9
	})
}

// TestQuietGroupsWindowsClose: the input's progress reaches every task, so
// the windows of a group that stops getting events close as the input
// moves on, even when its task gets no event of another group.
func TestQuietGroupsWindowsClose(t *testing.T) {
	e := newEnv(t, 1)
	cfg := Config{Name: "revenue_5m", Topic: "mta-turnstile", EventType: "checkout", Partitions: 2,
		Time: Time{Fields: []string{"ts"}}, Window: Window{Size: 5 * time.Minute, Delay: 30 * time.Second},
		GroupBy:            []string{"currency"},
		Aggregates:         []window.Aggregate{{Op: window.Count, As: "orders"}, {Op: window.Sum, Field: "amount", As: "revenue"}},
		CheckpointInterval: 50 * time.Millisecond}
	// Two currencies whose groups live in the two tasks.
	byKey := kgo.StickyKeyPartitioner(nil).ForTopic("x")
	quiet, busy := "EUR", ""
	for _, c := range []string{"USD", "GBP", "JPY", "CHF", "SEK"} {
		if byKey.Partition(&kgo.Record{Key: []byte(c)}, 2) != byKey.Partition(&kgo.Record{Key: []byte(quiet)}, 2) {
			busy = c
			break
		}
	}
	checkout := func(currency string, minute int) []byte {
		return fmt.Appendf(nil, `{"event_type":"checkout","schema_version":"1-0-0","payload":{"currency":%q,"amount":10,"ts":"2025-01-01T10:%02d:00Z"}}`, currency, minute)
	}
	var values [][]byte
	for m := range 10 {
		values = append(values, checkout(quiet, m), checkout(busy, m))
	}
	for m := 10; m < 60; m++ {
		values = append(values, checkout(busy, m))
	}
	e.produce("mta-turnstile", values)
	r := e.start(cfg, e.store)
	eventually(t, "the quiet currency's windows written", func() bool {
		for _, rows := range e.filesOf(t, e.store, "agg_revenue_5m", false) {
			for _, row := range rows {
				if row["currency"] == quiet && row["window_start"].(time.Time).Minute() == 5 {
					return true
				}
			}
		}
		return false
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestResumesFromJSONCheckpoint: a task whose checkpoint is in the JSON of
// earlier versions resumes from it, writes its successor in the binary
// form and removes it; the lake ends as an uninterrupted run's.
func TestResumesFromJSONCheckpoint(t *testing.T) {
	e := newEnv(t, 1)
	lines := mtaLines(t)
	half := len(lines) / 2
	e.produce("mta-turnstile", lines[:half])
	cfg := mtaConfig()
	if err := e.runUntil(cfg, e.store, consumed(half)); err != nil {
		t.Fatal(err)
	}
	b, err := e.store.ReadObject(t.Context(), cfg.CheckpointPath(0))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(checkpointMagic)) {
		t.Fatalf("checkpoint starts %q, want the binary form", b[:min(len(b), 40)])
	}
	cp, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(cp.State.Windows) == 0 || len(cp.State.Seen) == 0 {
		t.Fatalf("checkpoint has %d windows and %d dedupe keys: want a state to resume", len(cp.State.Windows), len(cp.State.Seen))
	}
	old, err := json.Marshal(cp)
	if err != nil {
		t.Fatal(err)
	}
	if err := lake.PutBytes(t.Context(), e.store, cfg.jsonCheckpointPath(0), old); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Delete(t.Context(), cfg.CheckpointPath(0)); err != nil {
		t.Fatal(err)
	}
	ref := newEnv(t, 1)
	ref.produce("mta-turnstile", lines)
	if err := ref.runUntil(cfg, ref.store, consumed(len(lines))); err != nil {
		t.Fatal(err)
	}
	want, wantOffsets := ref.lakeRows(t, ref.store), ref.tableOffsets(t, ref.store)

	e.produce("mta-turnstile", lines[half:])
	var reg *prometheus.Registry
	if err := e.runUntil(cfg, e.store, func(r *prometheus.Registry) bool {
		reg = r
		return consumed(len(lines)-half)(r) && e.caughtUp(t, e.store, wantOffsets)()
	}); err != nil {
		t.Fatal(err)
	}
	// From the JSON checkpoint's offset, not the start.
	if got := counter(reg, "sluice_aggregator_events_total", ""); got != float64(len(lines)-half) {
		t.Errorf("the resumed run read %v records, want the %d after the checkpoint", got, len(lines)-half)
	}
	if _, err := e.store.ReadObject(t.Context(), cfg.jsonCheckpointPath(0)); !errors.Is(err, lake.ErrNotExist) {
		t.Errorf("the JSON checkpoint is still there (%v); want it removed once its successor is written", err)
	}
	if _, err := e.store.ReadObject(t.Context(), cfg.CheckpointPath(0)); err != nil {
		t.Errorf("no checkpoint in the binary form: %v", err)
	}
	if diff := cmp.Diff(e.lakeRows(t, e.store), want); diff != "" {
		t.Errorf("rows after resuming from a JSON checkpoint differ from an uninterrupted run's (-got +want):\n%s", diff)
	}
}
