package loader

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	consumed      *prometheus.CounterVec
	assigned      prometheus.Gauge
	rows          *prometheus.CounterVec
	files         prometheus.Counter
	conflicts     *prometheus.CounterVec
	badRecords    prometheus.Counter
	buffered      prometheus.Gauge
	memoryFlushes prometheus.Counter
	flushSeconds  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_loader_records_consumed_total", Help: "Records read from Kafka, by topic.",
		}, []string{"topic"}),
		assigned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_loader_assigned_partitions", Help: "Partitions this loader consumes.",
		}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_loader_rows_total", Help: "Rows written to the lake, by table.",
		}, []string{"table"}),
		files: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_loader_files_total", Help: "Data files written to the lake.",
		}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_loader_type_conflicts_total", Help: "Values written as strings because their column's types conflicted, by table.",
		}, []string{"table"}),
		badRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_loader_bad_records_total", Help: "Records that were not JSON objects, written to dead_letter.",
		}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_loader_buffered_bytes", Help: "Approximate bytes of rows buffered and not yet in the lake.",
		}),
		memoryFlushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_loader_memory_flushes_total", Help: "Flushes forced early by the memory limit.",
		}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_loader_flush_seconds", Help: "Time to write a partition's files and progress.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	for _, c := range []prometheus.Collector{m.consumed, m.assigned, m.rows, m.files, m.conflicts, m.badRecords, m.buffered, m.memoryFlushes, m.flushSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register loader metrics: %w", err)
		}
	}
	return m, nil
}
