package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/kafkatest"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

// fixture is a broker (the embedded one, or the real cluster that
// SLUICE_TEST_KAFKA names) with a dead-letter topic holding dead letters
// of two stages and three reasons.
type fixture struct {
	cc     bus.ClientConfig
	topics Topics
	prod   *kgo.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	if brokers == nil {
		b, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: t.TempDir(), Partitions: 3}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		brokers = []string{b.Addr()}
	}
	f := &fixture{cc: bus.ClientConfig{Brokers: brokers},
		topics: Topics{DLQ: kafkatest.Names("sluice.dlq"), Raw: kafkatest.Names("sluice.raw"), Log: kafkatest.Names("sluice.replays")}}
	prod, err := bus.NewProducer(f.cc, bus.ProducerConfig{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	f.prod = prod
	if err := bus.EnsureTopics(t.Context(), prod, 3, -1, f.topics.DLQ, f.topics.Raw); err != nil {
		t.Fatal(err)
	}
	return f
}

// deadLetter writes a dead letter of stage and reason for original, keyed
// by rootID, at time at.
func (f *fixture) deadLetter(t *testing.T, stage, reason, rootID, original string, at time.Time) {
	t.Helper()
	fl := event.NewFailed(stage, reason, []event.FieldError{{Path: "/payload/x", Message: "bad"}}, rootID, []byte(original), at)
	rec := bus.DeadLetter(f.topics.DLQ, fl, nil)
	rec.Timestamp = at
	if err := f.prod.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) replayer() *Replayer {
	return New(f.cc, f.topics, slog.New(slog.DiscardHandler))
}

// raw reads the raw topic: root id → times seen, and the events.
func (f *fixture) raw(t *testing.T, want int) (map[string]int, map[string]map[string]any) {
	t.Helper()
	cl, err := bus.NewClient(f.cc, slog.New(slog.DiscardHandler), kgo.ConsumeTopics(f.topics.Raw),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen, events := map[string]int{}, map[string]map[string]any{}
	// Until want records came (a loaded machine may bring none for a
	// while), then until a poll brings no more: extras show too.
	deadline := time.Now().Add(30 * time.Second)
	for total, empty := 0, 0; ; {
		ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
		fetches := cl.PollFetches(ctx)
		cancel()
		n := fetches.NumRecords()
		total += n
		if n == 0 {
			empty++
		}
		// Nothing read yet takes two empty polls: the client may still
		// be finding where to start.
		if n == 0 && (total >= want && (total > 0 || empty >= 2) || time.Now().After(deadline)) {
			break
		}
		fetches.EachRecord(func(r *kgo.Record) {
			var ev map[string]any
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				t.Errorf("raw record %s: %v", r.Value, err)
			}
			id := ev[event.FieldRootID].(string)
			if got := bus.Header(r, event.HeaderRootID); got != id {
				t.Errorf("root_id header %q, value's %q", got, id)
			}
			if !strings.HasPrefix(bus.Header(r, HeaderReplayOf), f.topics.DLQ+"/") {
				t.Errorf("replay_of header %q", bus.Header(r, HeaderReplayOf))
			}
			seen[id]++
			events[id] = ev
		})
	}
	return seen, events
}

func envelope(i int) string {
	return fmt.Sprintf(`{"event_type":"page_view","schema_version":"1-0-0","payload":{"i":%d}}`, i)
}

// stamped is an event as the collector wrote it, as an enricher dead
// letter holds it.
func stamped(i int, at time.Time) string {
	return fmt.Sprintf(`{"event_type":"page_view","schema_version":"1-0-0","payload":{"i":%d},"collector_tstamp":%q,"root_id":"r%d","collector_id":"c1"}`,
		i, event.FormatTime(at), i)
}

func TestReplayFiltered(t *testing.T) {
	f := newFixture(t)
	day := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for i := range 30 {
		reason := []string{"enrichment_failed", "schema_violation", "enrichment_failed"}[i%3]
		f.deadLetter(t, event.StageEnricher, reason, fmt.Sprintf("r%d", i), stamped(i, day), day.Add(time.Duration(i)*time.Minute))
	}
	// A collector dead letter whose body was not JSON: not replayable
	// until fixed, and not selected by the filter below anyway.
	f.deadLetter(t, event.StageCollector, event.ReasonInvalidJSON, "c0", `{"event_type":`, day.Add(time.Hour))
	r := f.replayer()
	filter := Filter{Stage: event.StageEnricher, Reason: "enrichment_failed", Since: day.Add(10 * time.Minute)}

	dry, err := r.Replay(t.Context(), filter, Options{By: "test", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	// i = 11, 12, 14, 15, ..., 29 with i%3 != 1: 13 of them.
	if diff := cmp.Diff(Report{Matched: 13, Replayed: 13, DryRun: true}, dry); diff != "" {
		t.Errorf("dry run (-want +got):\n%s", diff)
	}
	if seen, _ := f.raw(t, 0); len(seen) != 0 {
		t.Fatalf("a dry run sent %d events", len(seen))
	}

	var progress []int
	rep, err := r.Replay(t.Context(), filter, Options{By: "alice", Batch: 5, Progress: func(sent, total int) {
		progress = append(progress, sent)
		if total != 13 {
			t.Errorf("progress total %d, want 13", total)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ID == "" || rep.Matched != 13 || rep.Replayed != 13 || rep.AlreadyReplayed != 0 {
		t.Errorf("report %+v, want 13 matched and replayed", rep)
	}
	if diff := cmp.Diff([]int{5, 10, 13}, progress); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	seen, events := f.raw(t, 13)
	var want []string
	for i := 10; i < 30; i++ {
		if i%3 != 1 {
			want = append(want, fmt.Sprintf("r%d", i))
		}
	}
	var got []string
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s sent %d times", id, n)
		}
		got = append(got, id)
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("replayed root ids (-want +got):\n%s", diff)
	}
	// The event is the one the collector wrote: its time and collector.
	if ev := events["r11"]; ev["collector_tstamp"] != event.FormatTime(day) || ev["collector_id"] != "c1" ||
		ev["payload"].(map[string]any)["i"] != 11.0 {
		t.Errorf("replayed r11 = %v", ev)
	}

	// Again: nothing more is sent.
	again, err := r.Replay(t.Context(), filter, Options{By: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Report{Matched: 13, AlreadyReplayed: 13}, again); diff != "" {
		t.Errorf("second replay (-want +got):\n%s", diff)
	}
	if seen, _ := f.raw(t, 13); len(seen) != 13 {
		t.Errorf("after a second replay, %d events", len(seen))
	}

	replays, err := r.Replays(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(replays) != 1 || replays[0].By != "alice" || len(replays[0].DeadLetters) != 13 || replays[0].ID != rep.ID ||
		replays[0].Filter == nil || replays[0].Filter.Reason != "enrichment_failed" {
		t.Errorf("replays %+v, want alice's one of 13", replays)
	}
	listed := 0
	if err := r.Scan(t.Context(), Filter{Stage: event.StageEnricher, Reason: "enrichment_failed"}, func(dl *DeadLetter) bool {
		listed++
		if replayed := slices.Contains(got, dl.RootID); (dl.ReplayedIn == rep.ID) != replayed || !replayed && dl.ReplayedIn != "" {
			t.Errorf("dead letter %s (%s): replayed in %q", dl.Coord, dl.RootID, dl.ReplayedIn)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if listed != 20 {
		t.Errorf("listed %d enrichment_failed dead letters, want 20", listed)
	}
}

// TestReplayFixed fixes a collector dead letter whose body was not a valid
// event and sends it back: stamped as the collector would, with the dead
// letter's root id; a second send is refused.
func TestReplayFixed(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	f.deadLetter(t, event.StageCollector, event.ReasonInvalidJSON, "c0", `{"event_type":"page_view","payload":{"i":1}`, at)
	r := f.replayer()
	var dl *DeadLetter
	if err := r.Scan(t.Context(), Filter{}, func(d *DeadLetter) bool { dl = d; return false }); err != nil || dl == nil {
		t.Fatalf("scan: %v, %v", dl, err)
	}
	if _, err := r.ReplayOne(t.Context(), dl.Coord, Options{By: "alice"}); err == nil || !strings.Contains(err.Error(), "fix it first") {
		t.Fatalf("replaying the broken original: %v, want 'fix it first'", err)
	}
	fixed := []byte(`{"event_type":"page_view","schema_version":"1-0-0","payload":{"i":1}}`)
	rep, err := r.ReplayOne(t.Context(), dl.Coord, Options{By: "alice", Fixed: map[Coord][]byte{dl.Coord: fixed}})
	if err != nil || rep.Replayed != 1 {
		t.Fatalf("replay the fixed one: %+v, %v", rep, err)
	}
	if _, err := r.ReplayOne(t.Context(), dl.Coord, Options{By: "bob", Fixed: map[Coord][]byte{dl.Coord: fixed}}); !errors.Is(err, ErrAlreadyReplayed) {
		t.Fatalf("replaying it again: %v, want ErrAlreadyReplayed", err)
	}
	seen, events := f.raw(t, 1)
	if diff := cmp.Diff(map[string]int{"c0": 1}, seen); diff != "" {
		t.Fatalf("raw events (-want +got):\n%s", diff)
	}
	if ev := events["c0"]; ev["collector_id"] != TransactionalID || ev["schema_version"] != "1-0-0" {
		t.Errorf("replayed event %v", ev)
	}
	replays, err := r.Replays(t.Context())
	if err != nil || len(replays) != 1 || !replays[0].DeadLetters[0].Fixed || replays[0].Filter != nil {
		t.Errorf("replays %+v, %v: want one, of a fixed dead letter", replays, err)
	}
	if _, err := r.Get(t.Context(), Coord{Partition: dl.Partition, Offset: dl.Offset + 100}); !errors.Is(err, ErrNotFound) {
		t.Errorf("a dead letter past the end: %v, want ErrNotFound", err)
	}
}

// TestReplayInterrupted stops a replay after its first transaction, and
// kills one, in effect, in the middle of its second (a transaction left
// open); the replays run again send every dead letter once.
func TestReplayInterrupted(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for i := range 40 {
		f.deadLetter(t, event.StageEnricher, "enrichment_failed", fmt.Sprintf("r%d", i), stamped(i, at), at)
	}
	r := f.replayer()
	ctx, cancel := context.WithCancel(t.Context())
	_, err := r.Replay(ctx, Filter{}, Options{By: "a", Batch: 10, Progress: func(sent, _ int) {
		if sent == 10 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted replay: %v, want canceled", err)
	}
	if seen, _ := f.raw(t, 10); len(seen) != 10 {
		t.Fatalf("after the interrupted replay: %d events, want its first transaction's 10", len(seen))
	}

	// A replay whose transaction is left open, as a killed one's is.
	open, err := bus.NewClient(f.cc, slog.New(slog.DiscardHandler), kgo.TransactionalID(TransactionalID), kgo.TransactionTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	dls := map[Coord]bool{}
	if err := r.Scan(t.Context(), Filter{}, func(dl *DeadLetter) bool {
		if dl.ReplayedIn == "" && len(dls) < 5 {
			dls[dl.Coord] = true
			rec, err := rawEvent(dl, dl.Original, at)
			if err != nil {
				t.Fatal(err)
			}
			rec.Topic = f.topics.Raw
			if err := open.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	// The second replay fences it: its five events are aborted, and sent
	// again, with the other 25.
	rep, err := r.Replay(t.Context(), Filter{}, Options{By: "b", Batch: 7})
	open.Close()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Matched != 40 || rep.AlreadyReplayed != 10 || rep.Replayed != 30 {
		t.Errorf("report %+v, want 40 matched, 10 already, 30 replayed", rep)
	}
	seen, _ := f.raw(t, 40)
	if len(seen) != 40 {
		t.Errorf("%d distinct events, want 40", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s sent %d times", id, n)
		}
	}
}

func TestParseCoord(t *testing.T) {
	for s, ok := range map[string]bool{"0/42": true, "2/0": true, "x": false, "1/": false, "1/2/3": false, "01/2": false, "-1/5": false} {
		c, err := ParseCoord(s)
		if (err == nil) != ok || ok && c.String() != s {
			t.Errorf("ParseCoord(%q) = %v, %v", s, c, err)
		}
	}
}

// TestReplayConcurrent runs two replays of the same dead letters at once:
// the later one fences the earlier, and after one more run each event is
// in the raw topic once.
func TestReplayConcurrent(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for i := range 60 {
		f.deadLetter(t, event.StageEnricher, "enrichment_failed", fmt.Sprintf("r%d", i), stamped(i, at), at)
	}
	errs := make(chan error, 2)
	for _, by := range []string{"a", "b"} {
		go func() {
			_, err := f.replayer().Replay(t.Context(), Filter{}, Options{By: by, Batch: 5})
			errs <- err
		}()
	}
	failed := 0
	for range 2 {
		if err := <-errs; err != nil {
			failed++
			t.Logf("a replay stopped: %v", err)
		}
	}
	if failed == 2 {
		t.Fatal("both replays failed")
	}
	if _, err := f.replayer().Replay(t.Context(), Filter{}, Options{By: "c"}); err != nil {
		t.Fatal(err)
	}
	seen, _ := f.raw(t, 60)
	if len(seen) != 60 {
		t.Errorf("%d distinct events, want 60", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s sent %d times", id, n)
		}
	}
}
