package bus

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPartitionByBatch produces records with keys unique to each, as the
// collector's root ids are, in one call: by the keys' hash they spread over
// every partition, a batch each; a batch at a time they all go to one
// partition, since they fill less than 64 KiB. A record keeps its key
// either way.
func TestPartitionByBatch(t *testing.T) {
	addr := startBroker(t, "127.0.0.1:0", t.TempDir()).Addr()
	for _, tc := range []struct {
		byBatch        bool
		wantPartitions int
	}{
		{byBatch: false, wantPartitions: 4},
		{byBatch: true, wantPartitions: 1},
	} {
		t.Run(fmt.Sprintf("by batch %v", tc.byBatch), func(t *testing.T) {
			cl, err := NewProducer(ClientConfig{Brokers: []string{addr}}, ProducerConfig{PartitionByBatch: tc.byBatch}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			topic := fmt.Sprintf("by-batch-%v", tc.byBatch)
			if err := EnsureTopics(t.Context(), cl, 4, 1, topic); err != nil {
				t.Fatal(err)
			}
			var recs []*kgo.Record
			for i := range 200 {
				recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "root-%03d", i), Value: fmt.Appendf(nil, "event %03d", i)})
			}
			results := cl.ProduceSync(t.Context(), recs...)
			if err := results.FirstErr(); err != nil {
				t.Fatal(err)
			}
			partitions := map[int32]int{}
			for _, r := range results {
				partitions[r.Record.Partition]++
				if want := "root-" + string(r.Record.Value[len("event "):]); string(r.Record.Key) != want {
					t.Errorf("record %q has key %q, want %q", r.Record.Value, r.Record.Key, want)
				}
			}
			if diff := cmp.Diff(tc.wantPartitions, len(partitions)); diff != "" {
				t.Errorf("partitions used (-want +got):\n%s\n%v", diff, partitions)
			}
		})
	}
}
