// Package sinktest is the conformance suite every sink passes, on a real
// (embedded) Kafka broker: a crash at every write and commit point then a
// restart, two instances sharing the partitions with a rebalance in the
// middle, a poison record, and a full stop of the destination. Each ends
// with every record the suite produced exactly once in the destination or
// in the dead letters, and nothing else.
//
// A sink's test gives the suite its destination:
//
//	func TestConformance(t *testing.T) {
//		sinktest.Run(t, func(t *testing.T) *sinktest.Destination { ... })
//	}
package sinktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/internal/sink"
)

// Topics the suite produces to and dead-letters to, on the embedded broker;
// on a real cluster (kafkatest.Env) each test has its own.
const (
	Topic    = "conformance.events"
	DLQTopic = "conformance.dlq"
)

// Destination is one destination under test.
type Destination struct {
	// New makes a sink over the destination, as a fresh process would;
	// env carries the suite's logger, registry and dead-letter topic.
	New func(t *testing.T, env sink.Env) sink.Sink
	// Held counts, by root id, the records the destination holds,
	// dead letters it keeps itself included.
	Held func(t *testing.T) map[string]int
	// Stop makes every write to the destination fail, as a full disk or a
	// server that is down does, while on.
	Stop func(on bool)
	// Points are every crash point of a flush, the sink's and the
	// runner's, in order.
	Points []string
}

// Run runs the suite; newDest makes a fresh destination for each test.
func Run(t *testing.T, newDest func(t *testing.T) *Destination) {
	t.Run("CrashAtEveryPoint", func(t *testing.T) {
		points := newDest(t).Points
		for _, p := range []string{sink.PointWritten, sink.PointCommitted} {
			if !slices.Contains(points, p) {
				points = append(points, p)
			}
		}
		for _, point := range points {
			t.Run(point, func(t *testing.T) { crashAt(t, newHarness(t, newDest(t)), point) })
		}
	})
	t.Run("TwoInstancesRebalance", func(t *testing.T) { twoInstances(t, newHarness(t, newDest(t))) })
	t.Run("StopMidWrite", func(t *testing.T) { stopMidWrite(t, newHarness(t, newDest(t))) })
	t.Run("DestinationDown", func(t *testing.T) { destinationDown(t, newHarness(t, newDest(t))) })
	t.Run("LargePolls", func(t *testing.T) { largePolls(t, newHarness(t, newDest(t))) })
	t.Run("TopicMadeAgain", func(t *testing.T) { topicMadeAgain(t, newHarness(t, newDest(t))) })
}

type harness struct {
	t      *testing.T
	d      *Destination
	cc     bus.ClientConfig
	logger *slog.Logger
	ids    map[string]bool
	next   int
	// topic, dlq and group are the suite's names, made apart from other
	// tests' on a shared cluster.
	topic, dlq, group string
}

// newHarness starts the embedded broker, or, when kafkatest.Env says so,
// uses the real Kafka cluster, whose topics have the cluster's default
// replication (3, with min.insync.replicas 2).
func newHarness(t *testing.T, d *Destination) *harness {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	brokers, replication := kafkatest.Brokers(t), int16(-1)
	if brokers == nil {
		b, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: t.TempDir(), Partitions: 3}, logger)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		brokers, replication = []string{b.Addr()}, 1
	}
	h := &harness{t: t, d: d, cc: bus.ClientConfig{Brokers: brokers}, logger: logger, ids: map[string]bool{},
		topic: kafkatest.Names(Topic), dlq: kafkatest.Names(DLQTopic), group: kafkatest.Names("conformance")}
	cl := h.producer()
	defer cl.Close()
	if err := bus.EnsureTopics(t.Context(), cl, 3, replication, h.topic, h.dlq); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) producer() *kgo.Client {
	cl, err := bus.NewProducer(h.cc, bus.ProducerConfig{}, h.logger)
	if err != nil {
		h.t.Fatal(err)
	}
	return cl
}

// produce writes n events over the partitions, of two event types and two
// days, and one poison record that is not JSON.
func (h *harness) produce(n int) {
	h.t.Helper()
	cl := h.producer()
	defer cl.Close()
	var recs []*kgo.Record
	for range n {
		i := h.next
		h.next++
		id := fmt.Sprintf("id-%06d", i)
		typ := []string{"conformance_trip", "ConformanceView"}[i%2]
		ts := time.Date(2025, 1, 1+i%2, 0, 0, i%60, 0, time.UTC).Format(event.TimeLayout)
		v := fmt.Sprintf(`{"event_type":%q,"schema_version":"1-0-0","payload":{"n":%d,"fare":%d.5,"zone":"Z%d"},"collector_tstamp":%q,"root_id":%q,"collector_id":"c"}`,
			typ, i, i, i%7, ts, id)
		recs = append(recs, &kgo.Record{Topic: h.topic, Key: []byte(id), Value: []byte(v), Headers: []kgo.RecordHeader{
			{Key: event.HeaderEventType, Value: []byte(typ)}, {Key: event.HeaderRootID, Value: []byte(id)}}})
		h.ids[id] = true
	}
	poison := fmt.Sprintf("poison-%06d", h.next)
	h.next++
	recs = append(recs, &kgo.Record{Topic: h.topic, Key: []byte(poison), Value: []byte("not json {"),
		Headers: []kgo.RecordHeader{{Key: event.HeaderRootID, Value: []byte(poison)}}})
	h.ids[poison] = true
	if err := cl.ProduceSync(h.t.Context(), recs...).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

// runner builds a runner of a fresh sink over the destination.
func (h *harness) runner(flushRows int, options ...func(*sink.Config)) *sink.Runner {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	env := sink.Env{Logger: h.logger, Metrics: reg, Kafka: h.cc, DLQTopic: h.dlq}
	cfg := sink.DefaultConfig()
	cfg.Topics, cfg.Group = []string{h.topic}, h.group
	cfg.FlushRows, cfg.FlushInterval = flushRows, 100*time.Millisecond
	cfg.FlushBytes, cfg.MemoryLimit = 1<<20, 8<<20
	for _, o := range options {
		o(&cfg)
	}
	r, err := sink.New("conformance", cfg, h.d.New(h.t, env), env)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// running runs r until stop is called, which returns Run's error.
type running struct {
	r      *sink.Runner
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func (h *harness) start(r *sink.Runner) *running {
	ctx, cancel := context.WithCancel(context.WithoutCancel(h.t.Context()))
	rn := &running{r: r, cancel: cancel, done: make(chan error, 1)}
	r.SetState(health.Running) // as the app does
	go func() { rn.done <- r.Run(ctx) }()
	h.t.Cleanup(func() { rn.stop() })
	return rn
}

func (rn *running) stop() error {
	rn.once.Do(func() {
		rn.cancel()
		rn.err = <-rn.done
	})
	return rn.err
}

// committed is the destination's committed offset of every partition.
func (h *harness) committed() map[int32]int64 {
	h.t.Helper()
	env := sink.Env{Logger: h.logger, Metrics: prometheus.NewRegistry(), Kafka: h.cc, DLQTopic: h.dlq}
	s := h.d.New(h.t, env)
	out := map[int32]int64{}
	for p := range int32(3) {
		pos, err := s.Resume(h.t.Context(), h.topic, p)
		if err != nil {
			out[p] = -2
			continue
		}
		out[p] = pos.Committed
	}
	return out
}

// waitCaughtUp waits until the destination holds every partition's end.
func (h *harness) waitCaughtUp(within time.Duration) {
	h.t.Helper()
	h.waitHolding(func(held, end int64) bool { return held >= end-1 }, within)
}

// waitHolding waits until done holds of each partition's committed offset
// in the destination and its end offset in Kafka.
func (h *harness) waitHolding(done func(held, end int64) bool, within time.Duration) {
	h.t.Helper()
	cl := h.producer()
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(h.t.Context(), h.topic)
	if err != nil {
		h.t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for {
		all := true
		got := h.committed()
		ends.Each(func(o kadm.ListedOffset) {
			all = all && done(got[o.Partition], o.Offset)
		})
		if all {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the destination did not catch up with Kafka within %v: committed %v", within, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// check counts every record in the destination and the dead-letter topic:
// each produced exactly once, nothing else.
func (h *harness) check() {
	h.t.Helper()
	counts := h.d.Held(h.t)
	for id, n := range h.deadLetters() {
		counts[id] += n
	}
	missing, twice := 0, 0
	for id := range h.ids {
		switch n := counts[id]; {
		case n == 0:
			if missing++; missing <= 5 {
				h.t.Errorf("record %s is neither in the destination nor a dead letter", id)
			}
		case n > 1:
			if twice++; twice <= 5 {
				h.t.Errorf("record %s is there %d times, want once", id, n)
			}
		}
	}
	for id, n := range counts {
		if !h.ids[id] {
			h.t.Errorf("unexpected record %s (%d times)", id, n)
		}
	}
	if missing+twice > 0 {
		h.t.Errorf("%d of %d records missing, %d more than once", missing, len(h.ids), twice)
	}
}

// deadLetters counts, by root id, the dead letters the runner sent.
func (h *harness) deadLetters() map[string]int {
	h.t.Helper()
	cl, err := bus.NewClient(h.cc, h.logger, kgo.ConsumeTopics(h.dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(h.t.Context(), h.dlq)
	if err != nil {
		h.t.Fatal(err)
	}
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	out := map[string]int{}
	ctx, cancel := context.WithTimeout(h.t.Context(), 10*time.Second)
	defer cancel()
	for got := int64(0); got < want && ctx.Err() == nil; {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			got++
			out[bus.Header(r, event.HeaderRootID)]++
		})
	}
	return out
}

// crashAt stops the runner at point in its third flush, as a crash would,
// then runs a fresh one with other flush sizes over the same destination.
func crashAt(t *testing.T, h *harness, point string) {
	h.produce(400)
	crashed := h.runner(37)
	hits := 0
	crashed.Crash = func(p string) error {
		if p != point {
			return nil
		}
		if hits++; hits == 3 {
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	if err := crashed.Run(t.Context()); !errors.Is(err, sink.ErrCrash) {
		t.Fatalf("Run = %v, want the injected crash", err)
	}
	h.produce(100)
	rn := h.start(h.runner(1000))
	h.waitCaughtUp(30 * time.Second)
	if err := rn.stop(); err != nil {
		t.Fatal(err)
	}
	h.check()
}

// twoInstances runs one runner, starts a second in the same group while
// records flow (a rebalance in the middle), and stops the first before the
// end (another).
func twoInstances(t *testing.T, h *harness) {
	h.produce(300)
	a := h.start(h.runner(37))
	deadline := time.Now().Add(20 * time.Second)
	for progress := false; !progress; {
		for _, c := range h.committed() {
			progress = progress || c >= 0
		}
		if time.Now().After(deadline) {
			t.Fatal("the first instance wrote nothing within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b := h.start(h.runner(29))
	for range 3 {
		h.produce(200)
		time.Sleep(300 * time.Millisecond)
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	h.produce(200)
	h.waitCaughtUp(60 * time.Second)
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	h.check()
}

// stopMidWrite stops a runner while it writes its first range. A clean
// stop lets the write in flight finish with its commit: otherwise its dead
// letters, sent before the commit, would be sent again by the range's next
// owner. Then a fresh runner reads on, and is ready once caught up.
func stopMidWrite(t *testing.T, h *harness) {
	h.produce(400)
	r := h.runner(37)
	var rn *running
	started, stopped := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.Crash = func(p string) error {
		if p == sink.PointWritten {
			once.Do(func() {
				<-started
				rn.cancel()
				close(stopped)
			})
		}
		return nil
	}
	rn = h.start(r)
	close(started)
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the runner wrote nothing within 30s")
	}
	if err := rn.stop(); err != nil {
		t.Fatal(err)
	}
	if got := h.committed(); !slices.ContainsFunc(slices.Collect(maps.Values(got)), func(c int64) bool { return c >= 0 }) {
		t.Fatalf("the range written when the runner was stopped is not committed: committed %v", got)
	}
	h.produce(100)
	fresh := h.runner(1000)
	rn = h.start(fresh)
	h.waitCaughtUp(30 * time.Second)
	if err := fresh.Health().Ready(); err != nil {
		t.Errorf("the runner is not ready once caught up: %v", err)
	}
	if err := rn.stop(); err != nil {
		t.Fatal(err)
	}
	h.check()
}

// largePolls loads records produced before the runner starts, with a
// memory budget that lets a poll hold thousands of records of a partition:
// a sink that decodes on several goroutines (sink.Decoder) then does so
// window after window, each decoded while the one before is added.
func largePolls(t *testing.T, h *harness) {
	h.produce(20_000)
	rn := h.start(h.runner(5000, func(c *sink.Config) { c.FlushBytes, c.MemoryLimit = 64<<20, 256<<20 }))
	h.waitCaughtUp(60 * time.Second)
	if err := rn.stop(); err != nil {
		t.Fatal(err)
	}
	h.check()
}

// destinationDown stops every write while records flow: the runner stays
// up, says it is not ready and why, and when the destination is back,
// catches up by itself with every record exactly once.
func destinationDown(t *testing.T, h *harness) {
	h.produce(200)
	r := h.runner(37)
	rn := h.start(r)
	h.waitCaughtUp(30 * time.Second)
	h.d.Stop(true)
	h.produce(500)
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := r.Health().Ready()
		if err != nil && strings.Contains(err.Error(), "destination") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runner is still ready (%v) with its destination down", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // several retries, and the runner must still run
	select {
	case err := <-rn.done:
		t.Fatalf("the runner stopped with its destination down: %v", err)
	default:
	}
	h.d.Stop(false)
	h.waitCaughtUp(60 * time.Second)
	deadline = time.Now().Add(10 * time.Second)
	for r.Health().Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the runner is not ready after its destination came back: %v", r.Health().Ready())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := rn.stop(); err != nil {
		t.Fatal(err)
	}
	h.check()
}

// topicMadeAgain loads the topic, deletes it and makes it again, as
// resetting Kafka does, and runs a fresh runner over new records whose
// offsets the destination already holds for the old topic. A
// sink.Rebaser takes them, and every record of both topics is there
// once; any other sink must not skip them silently: its runner says why
// it is not ready.
func topicMadeAgain(t *testing.T, h *harness) {
	h.produce(200)
	rn := h.start(h.runner(37))
	h.waitCaughtUp(30 * time.Second)
	if err := rn.stop(); err != nil {
		t.Fatal(err)
	}
	h.remakeTopic()
	h.produce(60)
	r := h.runner(37)
	rn = h.start(r)
	env := sink.Env{Logger: h.logger, Metrics: prometheus.NewRegistry(), Kafka: h.cc, DLQTopic: h.dlq}
	if _, ok := h.d.New(t, env).(sink.Rebaser); ok {
		// Until the runner takes the new topic, the destination holds
		// more than its end: caught up is holding its end exactly.
		h.waitHolding(func(held, end int64) bool { return held == end-1 }, 30*time.Second)
		if err := rn.stop(); err != nil {
			t.Fatal(err)
		}
		h.check()
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := r.Health().Ready()
		if err != nil && strings.Contains(err.Error(), "deleted and made again") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runner of a sink that cannot take the new topic is ready (%v): its records would be skipped unseen", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := rn.stop(); err != nil {
		t.Fatal(err)
	}
}

// remakeTopic deletes the suite's topic and makes it again, empty.
func (h *harness) remakeTopic() {
	h.t.Helper()
	cl := h.producer()
	defer cl.Close()
	if _, err := kadm.NewClient(cl).DeleteTopics(h.t.Context(), h.topic); err != nil {
		h.t.Fatal(err)
	}
	// A deletion completes in the background: the topic can be made
	// again once it is gone.
	replication := int16(1)
	if kafkatest.Brokers(h.t) != nil {
		replication = -1
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := bus.EnsureTopics(h.t.Context(), cl, 3, replication, h.topic)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("make %s again: %v", h.topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
