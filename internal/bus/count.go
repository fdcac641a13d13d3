package bus

import (
	"context"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Span is a partition's offsets to count records in, [Start, End).
type Span struct{ Start, End int64 }

// CountRecords counts, read committed, the records of each partition
// between its span's offsets. A record count cannot come from offsets
// alone: on a transactional topic, commit markers take offsets too, and
// aborted records are never read.
func CountRecords(ctx context.Context, cc ClientConfig, spans map[string]map[int32]Span) (map[string]int64, error) {
	from := map[string]map[int32]kgo.Offset{}
	left := 0
	for t, ps := range spans {
		for p, s := range ps {
			if s.End <= s.Start {
				continue
			}
			if from[t] == nil {
				from[t] = map[int32]kgo.Offset{}
			}
			from[t][p] = kgo.NewOffset().At(s.Start)
			left++
		}
	}
	out := map[string]int64{}
	for t := range spans {
		out[t] = 0
	}
	if left == 0 {
		return out, nil
	}
	cl, err := NewClient(cc, slog.New(slog.DiscardHandler), kgo.ConsumePartitions(from),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	done := map[string]map[int32]bool{}
	for round := 0; left > 0; round++ {
		// A round with nothing new means the rest are markers or aborted
		// records, which a read-committed read skips.
		wait := 500 * time.Millisecond
		if round == 0 {
			wait = 5 * time.Second // connecting
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		fetches := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := fetches.Err0(); err != nil && pctx.Err() == nil {
			return nil, err
		}
		if fetches.NumRecords() == 0 {
			break
		}
		fetches.EachRecord(func(r *kgo.Record) {
			s := spans[r.Topic][r.Partition]
			if r.Offset < s.End {
				out[r.Topic]++
			}
			if r.Offset >= s.End-1 && !done[r.Topic][r.Partition] {
				if done[r.Topic] == nil {
					done[r.Topic] = map[int32]bool{}
				}
				done[r.Topic][r.Partition] = true
				left--
			}
		})
	}
	return out, nil
}
