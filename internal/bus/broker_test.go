package bus

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func startBroker(t *testing.T, addr, dir string) *Broker {
	t.Helper()
	b, err := StartBroker(BrokerConfig{Addr: addr, Dir: dir, Partitions: 2}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func produce(t *testing.T, addr, topic string, values ...string) {
	t.Helper()
	cl, err := NewProducer(ClientConfig{Brokers: []string{addr}}, ProducerConfig{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := EnsureTopics(t.Context(), cl, 2, 1, topic); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for _, v := range values {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(v), Value: []byte(v)})
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func consumeAll(t *testing.T, addr, topic string, n int) []string {
	t.Helper()
	cl, err := NewClient(ClientConfig{Brokers: []string{addr}}, testLogger(t),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []string
	for len(got) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s", len(got), n, topic)
		}
		f.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

func TestBrokerRestartKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, "127.0.0.1:0", dir)
	addr := b.Addr()
	var want []string
	for i := range 100 {
		want = append(want, fmt.Sprintf("event-%03d", i))
	}
	produce(t, addr, "restart", want...)
	b.Close()

	b = startBroker(t, addr, dir)
	defer b.Close()
	got := consumeAll(t, addr, "restart", len(want))
	if diff := cmp.Diff(slices.Sorted(slices.Values(want)), slices.Sorted(slices.Values(got))); diff != "" {
		t.Errorf("records after restart (-want +got):\n%s", diff)
	}
	// The restarted broker keeps taking writes after the old ones.
	produce(t, addr, "restart", "after")
	if got := consumeAll(t, addr, "restart", len(want)+1); len(got) != len(want)+1 {
		t.Errorf("got %d records, want %d", len(got), len(want)+1)
	}
}

func TestBrokerDirectoryIsLocked(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, "127.0.0.1:0", dir)
	defer b.Close()
	_, err := StartBroker(BrokerConfig{Addr: "127.0.0.1:0", Dir: dir, Partitions: 1}, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "in use by another sluice process") {
		t.Fatalf("second broker on the same directory: %v, want a lock error", err)
	}
}

func TestBrokerAddressInUse(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", t.TempDir())
	defer b.Close()
	_, err := StartBroker(BrokerConfig{Addr: b.Addr(), Dir: t.TempDir(), Partitions: 1}, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "--broker-addr") {
		t.Fatalf("second broker on the same port: %v, want advice to pass --broker-addr", err)
	}
}

// TestCreateTopicsAnswer checks the broker's CreateTopics answer against
// what Kafka gives and Java's admin client needs: each topic's configs, set
// on the topic (never a null list), its partitions, validate-only without
// creating, and an error for a topic that exists.
func TestCreateTopicsAnswer(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", t.TempDir())
	defer b.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	create := func(validate bool, topics ...kmsg.CreateTopicsRequestTopic) *kmsg.CreateTopicsResponse {
		t.Helper()
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Topics, req.ValidateOnly, req.TimeoutMillis = topics, validate, 10_000
		resp, err := req.RequestWith(t.Context(), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	topic := func(name string, partitions int32, configs ...string) kmsg.CreateTopicsRequestTopic {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, -1
		for i := 0; i+1 < len(configs); i += 2 {
			c := kmsg.NewCreateTopicsRequestTopicConfig()
			c.Name, c.Value = configs[i], kmsg.StringPtr(configs[i+1])
			rt.Configs = append(rt.Configs, c)
		}
		return rt
	}
	type answer struct {
		Topic      string
		Code       int16
		Partitions int32
		Configs    map[string]string
	}
	summarize := func(resp *kmsg.CreateTopicsResponse) []answer {
		var out []answer
		for _, st := range resp.Topics {
			if st.Configs == nil {
				t.Errorf("%s: null configs", st.Topic)
			}
			a := answer{Topic: st.Topic, Code: st.ErrorCode, Partitions: st.NumPartitions, Configs: map[string]string{}}
			for _, c := range st.Configs {
				if c.Source != 1 {
					t.Errorf("%s: config %s has source %d, want 1 (DYNAMIC_TOPIC_CONFIG)", st.Topic, c.Name, c.Source)
				}
				a.Configs[c.Name] = *c.Value
			}
			out = append(out, a)
		}
		return out
	}
	got := summarize(create(false, topic("plain", -1), topic("compacted", 4, "cleanup.policy", "compact")))
	want := []answer{{Topic: "plain", Partitions: 2, Configs: map[string]string{}},
		{Topic: "compacted", Partitions: 4, Configs: map[string]string{"cleanup.policy": "compact"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("create (-want +got):\n%s", diff)
	}
	got = summarize(create(true, topic("plain", -1), topic("only-validated", -1)))
	want = []answer{{Topic: "plain", Code: kerr.TopicAlreadyExists.Code, Partitions: -1, Configs: map[string]string{}},
		{Topic: "only-validated", Partitions: 2, Configs: map[string]string{}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("validate only (-want +got):\n%s", diff)
	}
	if err := EnsureTopics(t.Context(), cl, 1, 1, "only-validated"); err != nil {
		t.Fatal(err) // it was not made, so this makes it
	}
}
