package loader

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	rows        *prometheus.CounterVec
	files       prometheus.Counter
	conflicts   *prometheus.CounterVec
	unconverted *prometheus.CounterVec
	badRecords  prometheus.Counter
	mismatches  *prometheus.CounterVec
	// commitSeconds is from a range's data files written to its snapshot
	// visible in the catalog.
	commitSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_loader_rows_total", Help: "Rows written to the lake, by table.",
		}, []string{"table"}),
		files: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_loader_files_total", Help: "Data files written to the lake.",
		}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_loader_type_conflicts_total", Help: "Values written as strings because their column's types conflicted (export files), or as null because they did not fit their column (catalog tables), by table.",
		}, []string{"table"}),
		unconverted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_loader_unconverted_values_total",
			Help: "Values that did not convert to the type their schema or table settings declare, kept as text, by table and column.",
		}, []string{"table", "column"}),
		badRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_loader_bad_records_total", Help: "Records that were not JSON objects, written to dead_letter.",
		}),
		mismatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_loader_type_mismatches_total",
			Help: "Events sent to the dead-letter topic because a value did not fit its column's type, by table.",
		}, []string{"table"}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_loader_commit_seconds",
			Help:    "Time from a range's data files written to its snapshot committed to the catalog.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
	}
	for _, c := range []prometheus.Collector{m.rows, m.files, m.conflicts, m.unconverted, m.badRecords, m.mismatches, m.commitSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register loader metrics: %w", err)
		}
	}
	return m, nil
}
