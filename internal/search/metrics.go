package search

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	documents    *prometheus.CounterVec
	bulkRequests *prometheus.CounterVec
	bulkSeconds  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		// By event type rather than by index: dated indices would add
		// series every day.
		documents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_search_documents_total",
			Help: "Documents by event type and outcome: indexed, retried (the server pushed them back) or dead_lettered (it refused them).",
		}, []string{"event_type", "outcome"}),
		bulkRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_search_bulk_requests_total", Help: "_bulk requests by HTTP status (error: no answer).",
		}, []string{"status"}),
		bulkSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_search_bulk_seconds", Help: "Time of a _bulk request, sent to answered.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	for _, c := range []prometheus.Collector{m.documents, m.bulkRequests, m.bulkSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register search metrics: %w", err)
		}
	}
	return m, nil
}
