package bus

import (
	"context"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Span is a partition's offsets to read or count records in, [Start, End).
type Span struct{ Start, End int64 }

// CountRecords counts, read committed, the records of each partition
// between its span's offsets. A record count cannot come from offsets
// alone: on a transactional topic, commit markers take offsets too, and
// aborted records are never read.
func CountRecords(ctx context.Context, cc ClientConfig, spans map[string]map[int32]Span) (map[string]int64, error) {
	out := map[string]int64{}
	for t := range spans {
		out[t] = 0
	}
	err := ReadSpans(ctx, cc, spans, func(r *kgo.Record) error {
		out[r.Topic]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ReadSpans calls fn, read committed, with each record of each partition
// between its span's offsets, in offset order within a partition; an
// error from fn stops the read and is returned. The records are gone once
// fn returns.
func ReadSpans(ctx context.Context, cc ClientConfig, spans map[string]map[int32]Span, fn func(*kgo.Record) error) error {
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
	if left == 0 {
		return nil
	}
	cl, err := NewClient(cc, slog.New(slog.DiscardHandler), kgo.ConsumePartitions(from),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return err
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
			return ctx.Err()
		}
		if err := fetches.Err0(); err != nil && pctx.Err() == nil {
			return err
		}
		if fetches.NumRecords() == 0 {
			break
		}
		for it := fetches.RecordIter(); !it.Done(); {
			r := it.Next()
			s := spans[r.Topic][r.Partition]
			if r.Offset < s.Start {
				continue // a reset to the start, for a span past the end
			}
			if r.Offset < s.End && !done[r.Topic][r.Partition] {
				if err := fn(r); err != nil {
					return err
				}
			}
			if r.Offset >= s.End-1 && !done[r.Topic][r.Partition] {
				if done[r.Topic] == nil {
					done[r.Topic] = map[int32]bool{}
				}
				done[r.Topic][r.Partition] = true
				left--
			}
		}
	}
	return nil
}
