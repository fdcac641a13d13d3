// Package sink is the runner every Kafka-to-somewhere sink shares: the lake
// loader today, the search sink next. The runner owns what every sink needs
// (the consumer group, resuming from the destination's own truth, the flush
// policy, the memory bound, rebalances, dead letters for records the sink
// cannot take, transient faults, and committing Kafka offsets for lag
// monitors); a Sink implements only how to resume, how to buffer records,
// how to write a range of them idempotently and how to commit it.
//
// How exactly-once is kept. Records are buffered per topic-partition; a
// flush hands the partition's buffered offset range [first, last] to the
// sink, which writes it (Write) so that writing it again leaves the
// destination as writing it once, then records last as committed in the
// destination itself (Commit); only then is the Kafka offset committed, as
// a courtesy to lag monitors. On assignment the runner asks the sink where
// the partition stands (Resume), not Kafka: it resumes after the committed
// offset, and if a write had begun past it (Position.Pending), it buffers
// exactly up to that write's last offset and flushes there, so that the
// rewrite covers the same range as the cut-short write did. A record is
// never in the destination twice, and none is lost.
//
// A sink that is a Decoder has each poll's records decoded on every core
// before they are added, in offset order, to its buffers (see Decoder).
//
// Flushes are written by a goroutine of their own, one at a time in the
// order they were handed over, while the runner buffers the next records;
// a partition's ranges thus land in offset order. A write that fails is
// retried, with backoff, until it succeeds: a full disk or a server that is
// down makes the sink unready (its health says why, once a period in the
// log) and stops its consumption once its memory is spent, and it resumes
// by itself when the fault clears. Nothing is committed that is not in the
// destination.
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/schema"
)

// Sink is a destination the runner feeds.
type Sink interface {
	// Resume reads, from the destination, where a partition stands.
	Resume(ctx context.Context, topic string, partition int32) (Position, error)
	// NewBuffer starts the buffer of a partition's next range.
	NewBuffer(topic string, partition int32) Buffer
	// Write writes a range so that writing it again, after a crash or a
	// failure, leaves the destination as writing it once. It calls
	// r.Point at its own crash points.
	Write(ctx context.Context, r *Range) error
	// Commit records in the destination that it holds the range's
	// partition up to r.Last.
	Commit(ctx context.Context, r *Range) error
}

// Rebaser is a sink that can take a topic that was deleted and made
// again: its offsets start again from 0, below those the destination
// holds, and records there would otherwise be taken for ones it has.
// Rebase makes the destination keep what it holds of the old topic and
// take the new one from its start; it returns the partition's position
// then. A sink without it faults instead, loudly, rather than skip them.
type Rebaser interface {
	Rebase(ctx context.Context, topic string, partition int32) (Position, error)
}

// Position is where a partition stands in the destination.
type Position struct {
	// Committed is the last offset the destination holds, or -1.
	Committed int64
	// Pending, when set, is the last offset of a write that began after
	// Committed and may not have finished: the runner's next range ends
	// exactly there. Sinks whose rewrites are idempotent whatever the
	// range (by document id, say) leave it 0.
	Pending int64
}

// Buffer holds one partition's records until they are written.
type Buffer interface {
	// Add takes a record, returning how many bytes of memory it added. A
	// *Reject error is a record the sink cannot take: the runner sends it
	// to the dead-letter topic instead. The record must not be kept: its
	// memory is reused once Add returns.
	Add(r *kgo.Record) (bytes int, err error)
	// Rows is what the flush_rows policy counts, such as the rows of the
	// largest table.
	Rows() int
	// Release gives the buffer's memory back, once written or dropped.
	Release()
}

// Decoder is a Sink whose buffers' work on a record splits in two: decoding
// (parsing, typing), which needs nothing of the buffer, then adding, in
// offset order. The runner decodes each poll's records in shares, one per
// core, at once, then adds them; a single goroutine parsing every record
// was the lake loader's bound.
type Decoder interface {
	// NewDecoding returns a decoding for one goroutine's shares.
	NewDecoding() Decoding
}

// Decoding decodes a share of a partition's records, then adds them.
type Decoding interface {
	// Decode decodes recs, replacing the share decoded before. The
	// decoded records may alias recs until they are added.
	Decode(recs []*kgo.Record)
	// Add adds the share's i-th record to buf, as buf.Add would.
	Add(buf Buffer, i int) (bytes int, err error)
}

// Splicer is a Decoding that can also add a run of its share's records at
// once: its records of one partition, whose rows it buffered while
// decoding. Adding them one by one is then the runner's work only for
// runs that are not ready (a record that changes the destination's
// columns, say, which must be added in order).
type Splicer interface {
	Decoding
	// Runs counts the share's runs: its records, in order, grouped by
	// partition.
	Runs() int
	// Run is run k's records, [from, to) in the share, and whether
	// Splice can add them.
	Run(k int) (from, to int, ready bool)
	// Splice adds run k's records to buf, as adding each would, and
	// returns the memory that took.
	Splice(buf Buffer, k int) (bytes int)
}

// Reject is a record a sink cannot take, and why.
type Reject struct {
	Reason string
	Errors []event.FieldError
}

func (r *Reject) Error() string {
	if len(r.Errors) > 0 {
		return r.Reason + ": " + r.Errors[0].Message
	}
	return r.Reason
}

// Range is a partition's records handed to the sink at once.
type Range struct {
	Topic     string
	Partition int32
	// First and Last are the range's offsets, inclusive.
	First, Last int64
	// Committed is the destination's committed offset before the range.
	Committed int64
	Buffer    Buffer
	// Rows and Bytes are what the runner counted into the buffer.
	Rows, Bytes int
	// Rejected are the dead letters of the range's records the sink could
	// not take, written before the range is committed.
	Rejected     []*kgo.Record
	deadLettered bool
	point        func(string) error
}

// Point marks a crash point of a sink's Write; tests stop the runner there
// as a crash would. It returns the error to return with, or nil.
func (r *Range) Point(name string) error {
	if r.point == nil {
		return nil
	}
	return r.point(name)
}

// The runner's own crash points, in the order of a flush.
const (
	PointWritten   = "after-write"  // the range written, not committed
	PointCommitted = "after-commit" // committed in the destination, not in Kafka
)

// ErrCrash is what an injected crash returns with.
var ErrCrash = errors.New("injected crash")

// Config is the runner's settings, which every sink's config embeds
// (`yaml:",inline"`).
type Config struct {
	Topics []string `yaml:"topics" flag:"loader-topics" doc:"Topics the sink consumes. Records of the dead-letter topic (topics.dlq) are dead letters."`
	Group  string   `yaml:"group" flag:"loader-group" doc:"Consumer group of the sink; instances sharing it share the partitions. Default: sluice-loader-<name> (sluice-loader-lake for the lake)."`
	// A partition's buffer is flushed when it holds FlushRows rows,
	// FlushBytes bytes, or FlushInterval after its first record arrived.
	FlushRows     int             `yaml:"flush_rows" flag:"flush-rows" doc:"Flush a partition's buffer when it holds this many rows (for the lake: in one table)."`
	FlushBytes    config.ByteSize `yaml:"flush_bytes" flag:"flush-bytes" doc:"Flush a partition's buffer when it holds this many bytes."`
	FlushInterval time.Duration   `yaml:"flush_interval" flag:"flush-interval" doc:"Flush a partition's buffer this long after its first record arrived."`
	// MemoryLimit bounds the bytes buffered across partitions, and being
	// written; past it the largest buffers are flushed early, then the
	// runner stops reading until the writes catch up.
	MemoryLimit config.ByteSize `yaml:"memory_limit" flag:"loader-memory" doc:"Bytes buffered across partitions, and being written, at most: past it the largest buffers are flushed early, then consumption waits for the writes (back-pressure, not growth)."`
}

// Runner is the Config itself, so that the runner finds its settings in
// any sink config that embeds it.
func (c *Config) Runner() *Config { return c }

// DefaultConfig returns the runner's documented defaults; Group is the
// sink's to set.
func DefaultConfig() Config {
	return Config{
		Topics:        []string{"sluice.enriched", "sluice.dlq"},
		FlushRows:     100_000,
		FlushBytes:    64 << 20,
		FlushInterval: 10 * time.Second,
		MemoryLimit:   512 << 20,
	}
}

// Validate reports settings the runner cannot start with.
func (c Config) Validate() error {
	var errs []error
	if len(c.Topics) == 0 {
		errs = append(errs, config.Field("topics", "no topics to consume"))
	}
	if c.Group == "" {
		errs = append(errs, config.Field("group", "consumer group is empty"))
	}
	if c.FlushRows < 1 {
		errs = append(errs, config.Field("flush_rows", "%d: want at least 1", c.FlushRows))
	}
	if c.FlushBytes < 1 {
		errs = append(errs, config.Field("flush_bytes", "%d: want at least 1", c.FlushBytes))
	}
	if c.FlushInterval <= 0 {
		errs = append(errs, config.Field("flush_interval", "%v: want a positive duration", c.FlushInterval))
	}
	if c.MemoryLimit < c.FlushBytes {
		errs = append(errs, config.Field("memory_limit", "memory limit %d must be at least the flush bytes %d", c.MemoryLimit, c.FlushBytes))
	}
	return errors.Join(errs...)
}

// Env is what the process gives a sink to build with.
type Env struct {
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Kafka   bus.ClientConfig
	// DLQTopic is the dead-letter topic.
	DLQTopic string
	// Lake is the process's lake, for sinks that write to it.
	Lake lake.Storage
	// Catalog is the lake's Iceberg catalog.
	Catalog *lake.Catalog
	// Schemas is the process's schema registry.
	Schemas *schema.Registry
	// InstanceID, when set, makes the runner a static member of its group
	// (KIP-345): restarted after a crash, it gets its partitions back at
	// once instead of after the crashed member's session timeout. Unique
	// to each running instance: the process's instance id.
	InstanceID string
}

// Spec registers a sink type: its name in the config (type: lake), what
// it is for, its settings and how to build it.
type Spec struct {
	Type string
	// Kind is a word for the types that do the same job against different
	// servers ("search" for opensearch and elasticsearch): a command may name
	// it to run every sink of those types.
	Kind string
	Doc  string
	// Lake is set for a sink that writes to the process's lake, which the
	// process then opens (and whose flags its command offers).
	Lake bool
	// Config returns a pointer to the type's settings with their defaults;
	// it embeds Config.
	Config func() any
	// New builds the sink from its settings, as Config returned them.
	New func(env Env, cfg any) (Sink, error)
}

// Settings is a sink config: it embeds the runner's Config.
type Settings interface {
	Runner() *Config
}

// validate checks a sink config that Validate may be defined on.
func validate(cfg any) error {
	if v, ok := cfg.(interface{ Validate() error }); ok {
		return v.Validate()
	}
	return fmt.Errorf("sink config %T has no Validate", cfg)
}

// Build makes the runner of a sink of type spec, called name, with its
// settings cfg (as spec.Config returned them, then read from the file).
func Build(name string, spec Spec, cfg any, env Env) (*Runner, error) {
	if err := validate(cfg); err != nil {
		return nil, fmt.Errorf("sink %s: %w", name, err)
	}
	settings, ok := cfg.(Settings)
	if !ok {
		return nil, fmt.Errorf("sink %s: config %T does not embed sink.Config", name, cfg)
	}
	s, err := spec.New(env, cfg)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", name, err)
	}
	return New(name, *settings.Runner(), s, env)
}
