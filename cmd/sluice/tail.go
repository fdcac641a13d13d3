package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/pipeline"
)

const tailUsage = `Usage: sluice tail TOPIC [-n N] [--follow] [--from-beginning]

Prints a topic's records as JSON lines: topic, partition, offset, timestamp,
key, headers and value (as JSON when it is JSON). By default the last N
records; --follow keeps printing new ones until Ctrl-C. Every topic is read
committed: a transactional topic's aborted records are never shown.

Without --brokers it asks the sluice up running on --data-dir
(./sluice-data by default), else the embedded broker at --broker-addr.
`

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("tail", tailUsage, stderr)
	pipeline.BrokerFlags(fs, "broker-addr")
	pipeline.ProcessFlags(fs, "data-dir")
	n := 10
	var follow, fromStart bool
	fs.Int(&n, "n", "how many of the newest records to print")
	fs.Bool(&follow, "follow", "keep printing new records until Ctrl-C")
	fs.Bool(&fromStart, "from-beginning", "print every record from the start of the topic (ignores -n)")
	logFlags(fs)
	pipeline.KafkaFlags(fs)
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(fs.Args()) != 1 {
		fs.Usage()
		return errUsage
	}
	topic := fs.Args()[0]
	cfg.BrokersOrLocal()
	admin, err := bus.NewClient(cfg.Client("sluice-tail"), logger)
	if err != nil {
		return err
	}
	defer admin.Close()
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	adm := kadm.NewClient(admin)
	starts, err := adm.ListStartOffsets(lctx, topic)
	if err != nil {
		return fmt.Errorf("list offsets of %s: %w (is Kafka running at %s?)", topic, err, cfg.Kafka.Brokers[0])
	}
	// Read committed, to the last stable offset: on a transactional topic
	// (sluice.enriched) only committed records are events, and commit
	// markers take offsets that are never read.
	ends, err := adm.ListCommittedOffsets(lctx, topic)
	if err != nil {
		return fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return fmt.Errorf("topic %s: %w (see 'sluice topics')", topic, err)
	}

	from := make(map[int32]kgo.Offset)
	remaining := make(map[int32]int64) // records to read before the tail is printed
	ends.Each(func(e kadm.ListedOffset) {
		s, _ := starts.Lookup(topic, e.Partition)
		// Twice n offsets back, and more, finds n records even where
		// markers take every other offset.
		first := max(s.Offset, e.Offset-2*int64(n)-2)
		if fromStart {
			first = s.Offset
		}
		from[e.Partition] = kgo.NewOffset().At(first)
		if e.Offset > first {
			remaining[e.Partition] = e.Offset
		}
	})
	cl, err := bus.NewClient(cfg.Client("sluice-tail"), logger,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(250*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()

	enc := json.NewEncoder(stdout)
	var backlog []*kgo.Record
	for round := 0; len(remaining) > 0 || follow; round++ {
		pctx := ctx
		var cancel context.CancelFunc = func() {}
		if len(remaining) > 0 {
			// A round with nothing read while some partitions still have
			// offsets to go means those are markers or aborted records.
			wait := 500 * time.Millisecond
			if round == 0 {
				wait = 10 * time.Second // connecting
			}
			pctx, cancel = context.WithTimeout(ctx, wait)
		}
		fetches := cl.PollFetches(pctx)
		timedOut := pctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			break
		}
		if err := fetches.Err0(); err != nil && !timedOut {
			return fmt.Errorf("fetch %s: %w", topic, err)
		}
		if fetches.NumRecords() == 0 && len(remaining) > 0 {
			clear(remaining)
		}
		for _, r := range fetches.Records() {
			if end, ok := remaining[r.Partition]; ok && r.Offset < end {
				backlog = append(backlog, r)
				if r.Offset+1 >= end {
					delete(remaining, r.Partition)
				}
				if fromStart {
					// Everything is printed, so nothing needs holding back.
					if err := enc.Encode(bus.Show(r)); err != nil {
						return err
					}
					backlog = backlog[:0]
				}
				continue
			}
			if err := printBacklog(enc, &backlog, n); err != nil {
				return err
			}
			if err := enc.Encode(bus.Show(r)); err != nil {
				return err
			}
		}
		if len(remaining) == 0 {
			if err := printBacklog(enc, &backlog, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// printBacklog prints the newest n records read before the tail point, in
// time order across partitions.
func printBacklog(enc *json.Encoder, backlog *[]*kgo.Record, n int) error {
	b := *backlog
	slices.SortStableFunc(b, func(x, y *kgo.Record) int { return x.Timestamp.Compare(y.Timestamp) })
	if len(b) > n {
		b = b[len(b)-n:]
	}
	for _, r := range b {
		if err := enc.Encode(bus.Show(r)); err != nil {
			return err
		}
	}
	*backlog = (*backlog)[:0]
	return nil
}
