// Package search is the real-time search sink: on the sink runner (package
// sink), it indexes events into OpenSearch or Elasticsearch through the
// _bulk API that both speak, for dashboards on fresh data.
//
// What it guarantees. Every document's _id is its event's root_id (or,
// for a row a model made and a record without one, its topic, partition
// and offset), so writing a range again, after a crash, a rebalance or a
// retry, leaves the index as writing it once: no duplicates. A _bulk
// answer is read document by document, never trusted for its status
// alone: a document the server pushed back (429, es_rejected_execution_
// exception, 5xx, a read-only index) is sent again alone, with backoff,
// while consumption waits; one it refused for good (a mapping conflict, a
// parse error) goes to the dead-letter topic with reason index_rejected,
// the server's error and the original. A range's offset is recorded in the
// offsets index only when every one of its documents has an outcome, and
// a restart resumes there.
package search

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/row"
	"github.com/sluicehq/sluice/internal/schema"
	"github.com/sluicehq/sluice/internal/sink"
)

// Spec registers the sink as type opensearch; SpecElasticsearch is the
// same sink under the name Elasticsearch users look for.
var Spec = sink.Spec{
	Type: "opensearch",
	Kind: "search",
	Doc: "Indexes events into OpenSearch through the _bulk API, one index per event type and day by default, " +
		"with idempotent ids, per-document outcomes and index_rejected dead letters (docs/search.md).",
	Config: newConfig,
	New:    build,
}

// SpecElasticsearch registers the sink as type elasticsearch: Elasticsearch
// 8 and 9 take the same requests.
var SpecElasticsearch = sink.Spec{
	Type:   "elasticsearch",
	Kind:   "search",
	Doc:    "The opensearch sink, for Elasticsearch 8 and 9, which speak the same _bulk API (docs/search.md).",
	Config: newElasticsearchConfig,
	New:    build,
}

func newConfig() any {
	c := DefaultConfig()
	return &c
}

// newElasticsearchConfig is the defaults under the type elasticsearch.
func newElasticsearchConfig() any {
	c := DefaultConfig()
	c.Group = "sluice-loader-elasticsearch"
	return &c
}

func build(env sink.Env, cfg any) (sink.Sink, error) {
	var schemas Schemas
	if env.Schemas != nil {
		schemas = env.Schemas
	}
	return New(*cfg.(*Config), env.DLQTopic, schemas, env.Logger, env.Metrics)
}

// ReasonIndexRejected is the dead letter of an event the server refused
// for good: a mapping conflict, a value it could not parse.
const ReasonIndexRejected = "index_rejected"

// Schemas lists the registered schemas and their top-level payload types,
// for the index templates' mappings.
type Schemas interface {
	Keys() []schema.Key
	Columns(schema.Key) map[string]row.Kind
}

// Search is the search sink.
type Search struct {
	cfg      Config
	index    indexPattern
	dlqTopic string
	schemas  Schemas
	logger   *slog.Logger
	metrics  *metrics
	client   *client
	now      func() time.Time
	// inFlight is the requests sent at once now (adapt).
	inFlight atomic.Int32

	// setupMu guards what is made on the server once: the offsets index
	// and the templates of the types seen.
	setupMu   sync.Mutex
	offsetsOK bool
	templates map[string]bool

	mu     sync.Mutex
	counts map[string]*Counts // by event type, for the status API
}

// Counts is what the status API shows of one event type's documents.
type Counts struct {
	Indexed      int64 `json:"indexed"`
	Retried      int64 `json:"retried"`
	DeadLettered int64 `json:"dead_lettered"`
}

var _ sink.Sink = (*Search)(nil)

// New builds the search sink; documents it cannot index become dead
// letters on dlqTopic.
func New(cfg Config, dlqTopic string, schemas Schemas, logger *slog.Logger, reg prometheus.Registerer) (*Search, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("search sink config: %w", err)
	}
	index, _ := parseIndex(cfg.Index) // Validate parsed it
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	cl, err := newClient(cfg, m)
	if err != nil {
		return nil, err
	}
	s := &Search{cfg: cfg, index: index, dlqTopic: dlqTopic, schemas: schemas, logger: logger, metrics: m,
		client: cl, now: time.Now, templates: map[string]bool{}, counts: map[string]*Counts{}}
	s.inFlight.Store(int32(cfg.InFlight))
	return s, nil
}

// Details is what the status API shows of the sink: its servers and the
// documents of each event type.
func (s *Search) Details() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	counts := make(map[string]Counts, len(s.counts))
	for k, c := range s.counts {
		counts[k] = *c
	}
	urls := make([]string, len(s.cfg.URLs))
	for i, u := range s.cfg.URLs {
		urls[i] = redacted(u)
	}
	return map[string]any{"urls": urls, "documents": counts}
}

// redacted is a URL without the password it may carry.
func redacted(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

func (s *Search) count(typ string, f func(*Counts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts[typ]
	if c == nil {
		c = &Counts{}
		s.counts[typ] = c
	}
	f(c)
}

// offsetID is the offsets index's document of a partition.
func (s *Search) offsetID(topic string, partition int32) string {
	return fmt.Sprintf("%s.%s.%d", s.cfg.Group, topic, partition)
}

// Resume reads the partition's last written offset from the offsets
// index.
func (s *Search) Resume(ctx context.Context, topic string, partition int32) (sink.Position, error) {
	off, found, err := s.client.getOffset(ctx, s.cfg.OffsetsIndex, s.offsetID(topic, partition))
	if err != nil {
		return sink.Position{}, fmt.Errorf("read offset of %s/%d: %w", topic, partition, err)
	}
	if !found {
		return sink.Position{Committed: -1}, nil
	}
	return sink.Position{Committed: off}, nil
}

// NewBuffer starts a partition's next range.
func (s *Search) NewBuffer(topic string, partition int32) sink.Buffer {
	return newBuffer(s, topic, partition)
}

// Write indexes the range's documents that have no outcome yet.
func (s *Search) Write(ctx context.Context, r *sink.Range) error {
	b := r.Buffer.(*buffer)
	if err := s.setup(ctx, b); err != nil {
		return err
	}
	return s.send(ctx, r, b)
}

// Commit records the range's last offset in the offsets index. Its
// version is the offset, so a commit never goes back: one of a range
// already committed (a retry, or an instance that lost the partition) is
// a conflict the server refuses, and counts as done.
func (s *Search) Commit(ctx context.Context, r *sink.Range) error {
	doc := offsetDoc{Group: s.cfg.Group, Topic: r.Topic, Partition: r.Partition, Offset: r.Last, UpdatedAt: s.now().UTC()}
	if err := s.client.putOffset(ctx, s.cfg.OffsetsIndex, s.offsetID(r.Topic, r.Partition), doc); err != nil {
		return fmt.Errorf("record offset %d of %s/%d: %w", r.Last, r.Topic, r.Partition, err)
	}
	b := r.Buffer.(*buffer)
	for typ, n := range b.indexedByType() {
		s.count(typ, func(c *Counts) { c.Indexed += int64(n) })
		s.metrics.documents.WithLabelValues(typ, "indexed").Add(float64(n))
	}
	return nil
}

// setup makes, once, the offsets index and the template of every event
// type of b not seen before.
func (s *Search) setup(ctx context.Context, b *buffer) error {
	s.setupMu.Lock()
	defer s.setupMu.Unlock()
	if !s.offsetsOK {
		if err := s.client.createIndex(ctx, s.cfg.OffsetsIndex); err != nil {
			return fmt.Errorf("create offsets index %s: %w", s.cfg.OffsetsIndex, err)
		}
		s.offsetsOK = true
	}
	if !s.cfg.Templates {
		return nil
	}
	types := maps.Clone(b.types)
	if len(s.templates) == 0 && s.schemas != nil {
		// At start, every registered event type's, before its first
		// event.
		for _, k := range s.schemas.Keys() {
			types[indexName(k.EventType)] = true
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(types)) {
		if s.templates[typ] {
			continue
		}
		t := s.template(typ, types[typ])
		if err := s.client.putTemplate(ctx, t.name, t.body); err != nil {
			return fmt.Errorf("index template %s: %w", t.name, err)
		}
		s.templates[typ] = true
		s.logger.Info("index template put", "template", t.name, "indices", t.pattern)
	}
	return nil
}

// errPushedBack is a round that ended with documents the server asked to
// send again later.
var errPushedBack = errors.New("documents pushed back")
