package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/event"
)

// TestDLQReplayKill9 replays 3,000 dead letters with `sluice dlq replay`,
// killed with SIGKILL in the middle three times, then run to the end:
// each dead letter's event is in the raw topic once. A dry run before sends
// nothing, a replay filtered by reason sends only those, and the history
// lists the replays.
func TestDLQReplayKill9(t *testing.T) {
	k, prod := kafkaFor(t, "sluice.raw", "sluice.dlq")
	raw, dlqTopic, log := k.name("sluice.raw"), k.name("sluice.dlq"), k.name("sluice.replays")
	const n = 3000
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	var recs []*kgo.Record
	for i := range n {
		reason := "enrichment_failed"
		if i%10 == 0 {
			reason = "schema_violation"
		}
		original := fmt.Sprintf(`{"event_type":"page_view","schema_version":"1-0-0","payload":{"i":%d},"collector_tstamp":%q,"root_id":"r%d","collector_id":"c1"}`,
			i, event.FormatTime(at), i)
		recs = append(recs, bus.DeadLetter(dlqTopic, event.NewFailed(event.StageEnricher, reason,
			[]event.FieldError{{Path: "/payload", Message: "forms API answered 503"}}, fmt.Sprintf("r%d", i), []byte(original), at), nil))
	}
	if err := prod.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dlq := func(args ...string) *exec.Cmd {
		return exec.Command(binary, append(append([]string{"dlq"}, args...), "--brokers", k.brokers,
			"--topic-raw", raw, "--topic-dlq", dlqTopic, "--topic-replays", log, "--log-format", "json")...)
	}
	run := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := dlq(args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("sluice dlq %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.String()
	}

	if out := run("replay", "--dry-run", "--by", "tester"); !strings.Contains(out, "matched 3000 dead letters: would replay 3000, 0 already replayed") {
		t.Errorf("dry run said:\n%s", out)
	}
	if got := rawEvents(t, k.brokers, raw, 0); len(got) != 0 {
		t.Fatalf("the dry run sent %d events", len(got))
	}
	if out := run("replay", "--reason", "schema_violation", "--by", "tester"); !strings.Contains(out, "matched 300 dead letters: replayed 300, 0 already replayed") {
		t.Errorf("the filtered replay said:\n%s", out)
	}
	// Each replay is killed once it has sent some events, in the middle
	// of its transactions of ten: the raw topic's end offsets grow.
	adm := kadm.NewClient(prod)
	written := func() int64 {
		ends, err := adm.ListEndOffsets(t.Context(), raw)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		return sum
	}
	for range 3 {
		base := written()
		cmd := dlq("replay", "--batch", "10", "--by", "killed")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); written() < base+100 && time.Now().Before(deadline); {
			time.Sleep(2 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	if sent := len(rawEvents(t, k.brokers, raw, 0)); sent >= n {
		t.Fatalf("after the kills: %d events sent; the kills came too late to test anything", sent)
	}
	if out := run("replay", "--by", "tester"); !strings.Contains(out, "matched 3000 dead letters: replayed ") {
		t.Errorf("the last replay said:\n%s", out)
	}
	got := rawEvents(t, k.brokers, raw, n)
	if len(got) != n {
		t.Errorf("%d distinct events in the raw topic, want %d", len(got), n)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("%s: %d times", id, c)
		}
	}
	if out := run("replay", "--by", "tester"); !strings.Contains(out, "replayed 0, 3000 already replayed") {
		t.Errorf("a replay after all said:\n%s", out)
	}
	var sent int
	for _, line := range strings.Split(strings.TrimSpace(run("history", "--json")), "\n") {
		var rp struct {
			By          string `json:"by"`
			DeadLetters []any  `json:"dead_letters"`
		}
		if err := json.Unmarshal([]byte(line), &rp); err != nil {
			t.Fatalf("history line %q: %v", line, err)
		}
		sent += len(rp.DeadLetters)
	}
	if sent != n {
		t.Errorf("the history lists %d dead letters sent, want %d", sent, n)
	}
	if out := run("list", "--reason", "schema_violation", "-n", "3"); strings.Count(out, "schema_violation") != 3 {
		t.Errorf("list said:\n%s", out)
	}
}

// rawEvents counts the committed events of the raw topic by root id. It
// reads until want records came (a loaded machine may bring none for a
// while), then until a poll brings no more, so that extras show.
func rawEvents(t *testing.T, brokers, topic string, want int) map[string]int {
	t.Helper()
	cl, err := bus.NewClient(bus.ClientConfig{Brokers: strings.Split(brokers, ",")}, slog.New(slog.DiscardHandler), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for total, empty := 0, 0; ; {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
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
			return out
		}
		fetches.EachRecord(func(r *kgo.Record) { out[bus.Header(r, event.HeaderRootID)]++ })
	}
}
