package bus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLagsAndCounts checks lag in offsets and in time, on a plain topic
// and on a transactional one whose commit markers take offsets, and the
// record counts of both.
func TestLagsAndCounts(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0", t.TempDir())
	defer b.Close()
	cc := ClientConfig{Brokers: []string{b.Addr()}}
	cl, err := NewClient(cc, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := EnsureTopics(t.Context(), cl, 1, 1, "plain", "txn"); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Topic: "plain", Value: fmt.Appendf(nil, "%d", i), Timestamp: old})
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Three transactions of two records on txn: 9 offsets, 6 records.
	tx, err := NewClient(cc, testLogger(t), kgo.TransactionalID("lag-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for range 3 {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := tx.ProduceSync(t.Context(), &kgo.Record{Topic: "txn", Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(group, topic string, offset int64) {
		g, err := NewClient(cc, testLogger(t), kgo.ConsumerGroup(group))
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		g.CommitOffsetsSync(t.Context(), map[string]map[int32]kgo.EpochOffset{topic: {0: {Epoch: -1, Offset: offset}}},
			func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
				if err != nil {
					t.Fatal(err)
				}
			})
	}
	commit("behind", "plain", 4)
	commit("caught-up", "txn", 8) // after the last record (7): only its commit marker is left
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	lags, err := Lags(ctx, cl, cc, "behind", "caught-up")
	if err != nil {
		t.Fatal(err)
	}
	byGroup := map[string]GroupLag{}
	for _, l := range lags {
		byGroup[l.Group] = l
	}
	behind := byGroup["behind"]
	if behind.Lag != 6 || len(behind.Partitions) != 1 || behind.Partitions[0].LagSeconds < 50 {
		t.Errorf("behind: %+v, want lag 6 records a minute old", behind)
	}
	if up := byGroup["caught-up"]; up.Lag != 0 {
		t.Errorf("caught-up: %+v, want lag 0 (only a marker left)", up)
	}

	counts, err := CountRecords(ctx, cc, map[string]map[int32]Span{"plain": {0: {0, 10}}, "txn": {0: {0, 9}}})
	if err != nil {
		t.Fatal(err)
	}
	if counts["plain"] != 10 || counts["txn"] != 6 {
		t.Errorf("counts %v, want plain 10 and txn 6 (9 offsets)", counts)
	}
}
