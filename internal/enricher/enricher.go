// Package enricher is the stage between raw and enriched events: it
// validates each event's payload against its schema, enriches it (lookup
// joins, HTTP APIs) and models it into table rows, reading sluice.raw and
// writing sluice.enriched and sluice.dlq exactly once, in Kafka
// transactions: the outputs of a poll and the consumed offsets commit
// together or not at all.
package enricher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/enrich"
	"github.com/sluicehq/sluice/internal/schema"
)

// Reasons the enricher gives dead letters.
const (
	ReasonSchemaViolation = "schema_violation"
	ReasonUnknownSchema   = "unknown_schema"
	ReasonLookupMiss      = "lookup_miss"
	ReasonNotFound        = "enrichment_not_found"
	ReasonFailed          = "enrichment_failed"
)

// Config configures an enricher.
type Config struct {
	RawTopic, EnrichedTopic, DLQTopic string
	Group                             string
	// TransactionalID must be unique to each running enricher.
	TransactionalID string
	// UnknownSchema is pass (the default) or reject: what becomes of
	// events whose type and version have no schema.
	UnknownSchema string
	// Concurrency bounds the events enriched at once; MaxPollRecords the
	// events of one transaction.
	Concurrency    int
	MaxPollRecords int
	// Pipelines enrich events by type; others are only validated.
	Pipelines map[string]Pipeline
}

// Pipeline is what happens to one event type, in order: joins, an API
// call, a model.
type Pipeline struct {
	Joins []Join
	// API, when set, is called with the event ({"payload": …}); its
	// answer goes in the model's document under APIKey.
	API    *enrich.API
	APIKey string
	// Model, when set, turns the event into table rows; without one the
	// event goes on as it is, its payload enriched.
	Model *enrich.Model
}

// Join is a lookup join and what a miss does: nulls (and a metric), or,
// with Reject, a dead letter.
type Join struct {
	enrich.Join
	Reject bool
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{RawTopic: "sluice.raw", EnrichedTopic: "sluice.enriched", DLQTopic: "sluice.dlq",
		Group: "sluice-enricher", TransactionalID: "sluice-enricher", UnknownSchema: "pass", Concurrency: 256, MaxPollRecords: 10_000}
}

// Enricher is a running enricher.
type Enricher struct {
	cfg     Config
	schemas *schema.Registry
	sess    *kgo.GroupTransactSession
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time
	// cpu holds a token per core. Events waiting on an API hold none, so
	// the few events being validated or modelled at once leave the
	// scheduler free to run the API calls' goroutines the moment their
	// answers arrive; with hundreds of events modelling at once, answers
	// queued behind them and the calls took twice their latency.
	cpu chan struct{}
}

// New builds an enricher reading and writing through a transactional
// client made from cc.
func New(cfg Config, cc bus.ClientConfig, schemas *schema.Registry, logger *slog.Logger, reg prometheus.Registerer) (*Enricher, error) {
	if cfg.UnknownSchema != "pass" && cfg.UnknownSchema != "reject" {
		return nil, fmt.Errorf("unknown-schema policy %q: want pass or reject", cfg.UnknownSchema)
	}
	if cfg.TransactionalID == "" || cfg.Group == "" {
		return nil, errors.New("enricher: a group and a transactional id are required")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	sess, err := bus.NewGroupTransactSession(cc, logger,
		kgo.TransactionalID(cfg.TransactionalID),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.RawTopic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
	)
	if err != nil {
		return nil, err
	}
	return &Enricher{cfg: cfg, schemas: schemas, sess: sess, logger: logger, metrics: m, now: time.Now,
		cpu: make(chan struct{}, runtime.GOMAXPROCS(0))}, nil
}

// Run enriches until ctx is done. A poll's outputs and offsets commit in
// one transaction; a failure aborts it, and the records are read again.
func (e *Enricher) Run(ctx context.Context) error {
	defer e.sess.Close()
	for {
		fetches := e.sess.PollRecords(ctx, max(e.cfg.MaxPollRecords, 1))
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				e.logger.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		var recs []*kgo.Record
		fetches.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if len(recs) == 0 {
			continue
		}
		if err := e.sess.Begin(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
		outs := e.process(ctx, recs)
		var acks bus.Acks
		for _, out := range outs {
			for _, r := range out {
				e.sess.Produce(ctx, r, acks.Promise())
			}
		}
		produceErr := acks.Wait()
		try := kgo.TryCommit
		if produceErr != nil {
			e.logger.Warn("produce failed; aborting the transaction, the records will be read again", "err", produceErr)
			try = kgo.TryAbort
		}
		committed, err := e.sess.End(ctx, try)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("end transaction: %w", err)
		}
		if committed {
			e.metrics.events.Add(float64(len(recs)))
		} else {
			e.metrics.aborts.Inc()
		}
	}
}

// process enriches records concurrently, bounded, and returns each one's
// output records in the records' order.
func (e *Enricher) process(ctx context.Context, recs []*kgo.Record) [][]*kgo.Record {
	outs := make([][]*kgo.Record, len(recs))
	sem := make(chan struct{}, max(e.cfg.Concurrency, 1))
	var wg sync.WaitGroup
	for i, r := range recs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			outs[i] = e.enrich(ctx, r)
		})
	}
	wg.Wait()
	return outs
}
