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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/enrich"
	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/lake"
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
	RawTopic      string `yaml:"-"`
	EnrichedTopic string `yaml:"-"`
	DLQTopic      string `yaml:"-"`
	Group         string `yaml:"group" flag:"enricher-group" doc:"Consumer group of the enricher; enrichers sharing it share the raw topic's partitions."`
	// TransactionalID must be unique to each running enricher.
	TransactionalID string `yaml:"transactional_id" flag:"transactional-id" doc:"The enricher's Kafka transactional id, unique to each running enricher and kept across its restarts. Default: sluice-enricher-<instance_id>."`
	// UnknownSchema is pass (the default) or reject: what becomes of
	// events whose type and version have no schema.
	UnknownSchema string `yaml:"unknown_schema" flag:"unknown-schema" doc:"What becomes of an event whose type and version have no schema: pass (on, unvalidated) or reject (to the dead-letter topic as unknown_schema)."`
	// Concurrency bounds a poll's API lookups in flight; MaxPollRecords
	// the events of one transaction.
	Concurrency    int `yaml:"concurrency" flag:"enricher-concurrency" doc:"API lookups in flight at once, at most: the distinct URLs of a poll's events, each called once (the API's own limits apply too)."`
	MaxPollRecords int `yaml:"-"`
	// FormsAPI, when set, turns on the bundled form pipeline.
	FormsAPI string `yaml:"forms_api" flag:"forms-api" doc:"URL template of the forms API, such as http://forms:8090/forms/{payload.form_id}; turns on the form_event pipeline, which fetches each form's definition and models it into the form and form_field tables."`
	// Disabled keeps sluice up from running an enricher.
	Disabled bool `yaml:"disabled" flag:"no-enricher" doc:"Run sluice up without the enricher: the lake sink then reads the raw topic."`
	// Pipelines enrich events by type; others are only validated.
	Pipelines map[string]Pipeline `yaml:"-"`
	// InstanceID, when set, makes the enricher a static member of its
	// group (KIP-345): restarted after a crash, it gets its partitions
	// back at once. Without it, a real Kafka cluster held them for the
	// crashed member's session timeout (45 s) before the restarted one
	// read again. Unique to each running enricher: the process's
	// instance id.
	InstanceID string `yaml:"-"`
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
	// event goes on as it is, its payload enriched. With KeepEvent the
	// event goes on too, before its rows.
	Model     *enrich.Model
	KeepEvent bool
}

// ModelConfig is an entry of models: in the config file: the events of one
// type become rows of tables, such as a checkout's items a table of their
// own. The bundled form model (form and form_field) is one such entry.
type ModelConfig struct {
	EventType string `yaml:"event_type" doc:"The event type the model applies to."`
	// API, when set, is called for each event; its answer is in the
	// model's document under APIAs.
	API   string `yaml:"api" doc:"URL template of an HTTP API called for each event, such as http://forms:8090/forms/{payload.form_id}, with the enricher's retries, breaker and caches; its answer is in the document under api_as."`
	APIAs string `yaml:"api_as" doc:"Where the API's answer is in the document."`
	// KeepEvent sends the event on to its own table too.
	KeepEvent    bool `yaml:"keep_event" doc:"Send the event on to its own table as well as its rows (true), or only its rows (false)."`
	enrich.Model `yaml:",inline"`
}

// SetDefaults gives a new models entry the defaults.
func (m *ModelConfig) SetDefaults() { *m = ModelConfig{APIAs: "api", KeepEvent: true} }

// Validate reports a model the enricher cannot use.
func (m ModelConfig) Validate() error {
	var errs []error
	if m.EventType == "" {
		errs = append(errs, config.Field("event_type", "a model needs the event type it applies to"))
	}
	if len(m.Tables) == 0 {
		errs = append(errs, config.Field("tables", "a model needs at least one table"))
	}
	for i, t := range m.Tables {
		if t.Name == "" || lake.TableName(t.Name) != t.Name {
			errs = append(errs, config.Field(fmt.Sprintf("tables[%d].name", i), "%q: want a snake_case table name, such as checkout_item", t.Name))
		}
	}
	if m.API != "" {
		ac := enrich.DefaultAPIConfig()
		ac.URL = m.API
		if _, err := enrich.NewAPI(ac, nil); err != nil {
			errs = append(errs, config.Field("api", "%v", err))
		}
		if m.APIAs == "" {
			errs = append(errs, config.Field("api_as", "the API's answer needs a name"))
		}
	}
	return errors.Join(errs...)
}

// Pipeline adds the model to p, the event type's pipeline (its joins).
func (m ModelConfig) Pipeline(p Pipeline) (Pipeline, error) {
	if m.API != "" {
		ac := enrich.DefaultAPIConfig()
		ac.URL = m.API
		api, err := enrich.NewAPI(ac, nil)
		if err != nil {
			return p, fmt.Errorf("model of %s: %w", m.EventType, err)
		}
		p.API, p.APIKey = api, m.APIAs
	}
	model := m.Model
	p.Model, p.KeepEvent = &model, m.KeepEvent
	return p, nil
}

// Join is a lookup join and what a miss does: nulls (and a metric), or,
// with Reject, a dead letter.
type Join struct {
	enrich.Join
	Reject bool
}

// TaxiZones is the bundled yellow_taxi_trip pipeline: the pickup and
// dropoff borough and zone joined from the TLC zone lookup (keyed by
// LocationID).
func TaxiZones(zones *enrich.Lookup) Pipeline {
	return Pipeline{Joins: []Join{
		{Join: enrich.Join{Lookup: zones, Field: "PULocationID", Columns: []enrich.Rename{{From: "Borough", To: "pickup_borough"}, {From: "Zone", To: "pickup_zone"}}}},
		{Join: enrich.Join{Lookup: zones, Field: "DOLocationID", Columns: []enrich.Rename{{From: "Borough", To: "dropoff_borough"}, {From: "Zone", To: "dropoff_zone"}}}},
	}}
}

// Forms is the bundled form_event model: each form's definition fetched
// from the forms API at url, and the event modelled into form and
// form_field rows (the event itself does not go on).
func Forms(url string) ModelConfig {
	return ModelConfig{EventType: "form_event", API: url, APIAs: "form", Model: enrich.FormModel}
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{RawTopic: "sluice.raw", EnrichedTopic: "sluice.enriched", DLQTopic: "sluice.dlq",
		Group: "sluice-enricher", TransactionalID: "sluice-enricher", UnknownSchema: "pass", Concurrency: 256, MaxPollRecords: 10_000}
}

// Validate reports settings the enricher cannot start with.
func (c Config) Validate() error {
	var errs []error
	if c.UnknownSchema != "pass" && c.UnknownSchema != "reject" {
		errs = append(errs, config.Field("unknown_schema", "%q: want pass or reject", c.UnknownSchema))
	}
	if c.Group == "" {
		errs = append(errs, config.Field("group", "a consumer group is required"))
	}
	if c.Concurrency < 1 {
		errs = append(errs, config.Field("concurrency", "%d: want at least 1", c.Concurrency))
	}
	return errors.Join(errs...)
}

// Enricher is the enricher, a component of its process.
type Enricher struct {
	*health.Reporter
	cfg     Config
	cc      bus.ClientConfig
	schemas *schema.Registry
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time
}

// New builds an enricher reading and writing through transactional
// clients made from cc.
func New(cfg Config, cc bus.ClientConfig, schemas *schema.Registry, logger *slog.Logger, reg prometheus.Registerer) (*Enricher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("enricher: %w", err)
	}
	if cfg.TransactionalID == "" {
		return nil, errors.New("enricher: a transactional id is required")
	}
	if err := cc.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Enricher{Reporter: health.New("enricher", logger), cfg: cfg, cc: cc, schemas: schemas, logger: logger, metrics: m,
		now: time.Now}, nil
}

// Groups is the enricher's consumer group, for the status API's lag.
func (e *Enricher) Groups() []string { return []string{e.cfg.Group} }

// Run enriches until ctx is done. A poll's outputs and offsets commit in
// one transaction; a failure aborts it, and the records are read again.
func (e *Enricher) Run(ctx context.Context) error {
	return bus.Transform{
		Session: func() (*kgo.GroupTransactSession, error) {
			opts := []kgo.Opt{
				kgo.TransactionalID(e.cfg.TransactionalID),
				kgo.ConsumerGroup(e.cfg.Group),
				kgo.ConsumeTopics(e.cfg.RawTopic),
				kgo.FetchIsolationLevel(kgo.ReadCommitted()),
				kgo.RequireStableFetchOffsets(),
			}
			opts = append(opts, bus.FullerFetches()...)
			if e.cfg.InstanceID != "" {
				opts = append(opts, kgo.InstanceID(e.cfg.InstanceID))
			}
			return bus.NewGroupTransactSession(e.cc, e.logger, opts...)
		},
		MaxPollRecords: e.cfg.MaxPollRecords,
		Logger:         e.logger,
		Fn: func(ctx context.Context, in []*kgo.Record, out func(*kgo.Record)) {
			for _, outs := range e.process(ctx, in) {
				for _, r := range outs {
					out(r)
				}
			}
		},
		Committed: func(n int) {
			e.metrics.events.Add(float64(n))
			e.Add(n)
		},
		Aborted:   e.metrics.aborts.Inc,
		Fault:     func(err error) { e.FaultFor("kafka", err, time.Minute) },
		Recovered: func() { e.Clear("kafka") },
	}.Run(ctx)
}
