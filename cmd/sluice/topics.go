package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/pipeline"
)

const topicsUsage = `Usage: sluice topics [--brokers host:port] [--json] [--count-limit N]

Lists the topics with their partitions, offsets and records. Offsets are
offsets: on a transactional topic (sluice.enriched, the repartition topics)
commit markers take offsets too, so records are counted by reading them,
read committed, for topics of up to --count-limit offsets ('-' past it).
Without --brokers it asks the sluice up running on --data-dir
(./sluice-data by default), else the embedded broker at --broker-addr.
`

type partitionInfo struct {
	Partition int32 `json:"partition"`
	Start     int64 `json:"start_offset"`
	End       int64 `json:"end_offset"`
}

type topicInfo struct {
	Topic      string          `json:"topic"`
	Partitions []partitionInfo `json:"partitions"`
	// Offsets is the offsets the partitions span, end minus start.
	Offsets int64 `json:"offsets"`
	// Records is the records counted, or absent when the topic is over
	// the count limit.
	Records *int64 `json:"records,omitempty"`
}

func runTopics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("topics", topicsUsage, stderr)
	pipeline.BrokerFlags(fs, "broker-addr")
	pipeline.ProcessFlags(fs, "data-dir")
	var asJSON bool
	limit := 1_000_000
	fs.Bool(&asJSON, "json", "print JSON instead of a table")
	fs.Int(&limit, "count-limit", "count the records of topics spanning up to this many offsets (0: every topic)")
	logFlags(fs)
	pipeline.KafkaFlags(fs)
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	cfg.BrokersOrLocal()
	cl, err := bus.NewClient(cfg.Client("sluice-topics"), logger)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	topics, err := listTopics(ctx, kadm.NewClient(cl))
	if err != nil {
		return fmt.Errorf("%w (is Kafka running at %s?)", err, cfg.Kafka.Brokers[0])
	}
	spans := map[string]map[int32]bus.Span{}
	for _, t := range topics {
		if limit > 0 && t.Offsets > int64(limit) {
			continue
		}
		spans[t.Topic] = map[int32]bus.Span{}
		for _, p := range t.Partitions {
			spans[t.Topic][p.Partition] = bus.Span{Start: p.Start, End: p.End}
		}
	}
	counts, err := bus.CountRecords(ctx, cfg.Client("sluice-topics"), spans)
	if err != nil {
		return fmt.Errorf("count records: %w", err)
	}
	for i := range topics {
		if n, ok := counts[topics[i].Topic]; ok {
			topics[i].Records = &n
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(topics)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tRECORDS\tOFFSETS\tEND OFFSETS")
	for _, t := range topics {
		ends := make([]string, len(t.Partitions))
		for i, p := range t.Partitions {
			ends[i] = fmt.Sprintf("%d:%d", p.Partition, p.End)
		}
		records := "-"
		if t.Records != nil {
			records = fmt.Sprint(*t.Records)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%v\n", t.Topic, len(t.Partitions), records, t.Offsets, ends)
	}
	return tw.Flush()
}

func listTopics(ctx context.Context, adm *kadm.Client) ([]topicInfo, error) {
	details, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	names := details.Names()
	if len(names) == 0 {
		return []topicInfo{}, nil
	}
	starts, err := adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	slices.Sort(names)
	out := make([]topicInfo, 0, len(names))
	for _, name := range names {
		t := topicInfo{Topic: name}
		for _, p := range details[name].Partitions.Numbers() {
			s, _ := starts.Lookup(name, p)
			e, _ := ends.Lookup(name, p)
			t.Partitions = append(t.Partitions, partitionInfo{Partition: p, Start: s.Offset, End: e.Offset})
			t.Offsets += max(e.Offset-s.Offset, 0)
		}
		slices.SortFunc(t.Partitions, func(a, b partitionInfo) int { return int(a.Partition - b.Partition) })
		out = append(out, t)
	}
	return out, nil
}
