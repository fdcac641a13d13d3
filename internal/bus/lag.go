package bus

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// GroupLag is how far a consumer group is behind its topics.
type GroupLag struct {
	Group string `json:"group"`
	// State is Kafka's: Stable, PreparingRebalance, Empty, Dead...
	State   string `json:"state"`
	Members int    `json:"members"`
	// Lag is the sum of the partitions' lag, in offsets.
	Lag        int64          `json:"lag"`
	Partitions []PartitionLag `json:"partitions"`
	Err        string         `json:"error,omitempty"`
}

// PartitionLag is a group's lag on one partition. Lag counts offsets from
// the group's committed offset to the last stable offset, so on a
// transactional topic it includes commit markers; a partition with nothing
// but markers left counts as caught up (0). LagSeconds is the age of the
// first record the group has yet to read.
type PartitionLag struct {
	Topic      string  `json:"topic"`
	Partition  int32   `json:"partition"`
	Committed  int64   `json:"committed"`
	End        int64   `json:"end"`
	Lag        int64   `json:"lag"`
	LagSeconds float64 `json:"lag_seconds"`
}

// Lags reports the lag of each group, through cl (whose connection settings
// it reuses to read the first unread record of each lagging partition).
func Lags(ctx context.Context, cl *kgo.Client, cc ClientConfig, groups ...string) ([]GroupLag, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	adm := kadm.NewClient(cl)
	described, err := adm.Lag(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("group lag: %w", err)
	}
	var topics []string
	for _, d := range described {
		for t := range d.Lag {
			if !slices.Contains(topics, t) {
				topics = append(topics, t)
			}
		}
	}
	// The last stable offset, which read-committed consumers stop at.
	stable, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil && len(topics) > 0 {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	out := make([]GroupLag, 0, len(groups))
	unread := map[string]map[int32]kgo.Offset{}
	for _, g := range groups {
		d, ok := described[g]
		gl := GroupLag{Group: g, State: "Unknown"}
		if !ok {
			out = append(out, gl)
			continue
		}
		gl.State, gl.Members = d.State, len(d.Members)
		if err := d.Error(); err != nil {
			gl.Err = err.Error()
		}
		for _, m := range d.Lag.Sorted() {
			end := m.End.Offset
			if o, ok := stable.Lookup(m.Topic, m.Partition); ok && o.Err == nil {
				end = o.Offset
			}
			committed := m.Commit.At
			from := committed
			if from < 0 {
				from = m.Start.Offset
			}
			p := PartitionLag{Topic: m.Topic, Partition: m.Partition, Committed: committed, End: end, Lag: max(end-from, 0)}
			if p.Lag > 0 {
				if unread[m.Topic] == nil {
					unread[m.Topic] = map[int32]kgo.Offset{}
				}
				unread[m.Topic][m.Partition] = kgo.NewOffset().At(from)
			}
			gl.Partitions = append(gl.Partitions, p)
		}
		out = append(out, gl)
	}
	if len(unread) > 0 {
		first, err := firstRecords(ctx, cc, unread)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		for i := range out {
			out[i].Lag = 0
			for j := range out[i].Partitions {
				p := &out[i].Partitions[j]
				if p.Lag == 0 {
					continue
				}
				r, ok := first[p.Topic][p.Partition]
				switch {
				case !ok:
					p.Lag = 0 // only transaction markers left
				case r.Offset >= p.End:
					p.Lag = 0
				default:
					p.LagSeconds = max(now.Sub(r.Timestamp).Seconds(), 0)
				}
				out[i].Lag += p.Lag
			}
		}
	}
	slices.SortFunc(out, func(a, b GroupLag) int { return cmp.Compare(a.Group, b.Group) })
	return out, nil
}

// firstRecords reads, read-committed, the first record at or after each
// offset. A partition with nothing but transaction markers left gives none:
// the read waits for them no longer than a fetch wait or two.
func firstRecords(ctx context.Context, cc ClientConfig, from map[string]map[int32]kgo.Offset) (map[string]map[int32]*kgo.Record, error) {
	want := 0
	for _, ps := range from {
		want += len(ps)
	}
	cl, err := NewClient(cc, slog.New(slog.DiscardHandler), kgo.ConsumePartitions(from), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.FetchMaxPartitionBytes(64<<10))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	out := map[string]map[int32]*kgo.Record{}
	for got := 0; got < want && ctx.Err() == nil; {
		cl.PollFetches(ctx).EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			if out[p.Topic] == nil {
				out[p.Topic] = map[int32]*kgo.Record{}
			}
			if _, ok := out[p.Topic][p.Partition]; !ok {
				out[p.Topic][p.Partition] = p.Records[0]
				got++
			}
		})
	}
	return out, nil
}
