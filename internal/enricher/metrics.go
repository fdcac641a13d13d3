package enricher

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/event"
)

type metrics struct {
	events       prometheus.Counter
	aborts       prometheus.Counter
	dead         *prometheus.CounterVec
	unknown      *prometheus.CounterVec
	lookupMisses *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_enricher_events_total", Help: "Raw events whose outputs were committed.",
		}),
		aborts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_enricher_aborted_transactions_total", Help: "Transactions aborted; their events are read again.",
		}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_enricher_dead_letters_total", Help: "Events sent to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_enricher_unknown_schema_total", Help: "Events with no schema for their type and version, by event type.",
		}, []string{"event_type"}),
		lookupMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_enricher_lookup_misses_total", Help: "Lookup joins that found no row, by event type and field.",
		}, []string{"event_type", "field"}),
	}
	// Every reason is there from the start, at 0, so that alerts and
	// dashboards find it before the first dead letter of its kind.
	for _, r := range []string{event.ReasonInvalidJSON, event.ReasonMissingField, ReasonSchemaViolation, ReasonUnknownSchema,
		ReasonLookupMiss, ReasonNotFound, ReasonFailed} {
		m.dead.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.events, m.aborts, m.dead, m.unknown, m.lookupMisses} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register enricher metrics: %w", err)
		}
	}
	return m, nil
}
