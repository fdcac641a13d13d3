package aggregator

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type metrics struct {
	events      *prometheus.CounterVec
	windows     prometheus.Counter
	checkpoints *prometheus.CounterVec
	// checkpointBytes are the checkpoints' sizes, by kind as checkpoints.
	checkpointBytes *prometheus.CounterVec
	forced          prometheus.Counter
	openWindows     prometheus.Gauge
	tasks           prometheus.Gauge
	watermark       prometheus.Gauge
	// taskWatermark is each task's, by partition of the tasks' topic.
	taskWatermark *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, name string) (*metrics, error) {
	labels := prometheus.Labels{"aggregation": name}
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregator_events_total", ConstLabels: labels,
			Help: "Input records by outcome: counted, duplicate, late (dead-lettered), invalid (dead-lettered), skipped (header lines, other event types).",
		}, []string{"outcome"}),
		windows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_aggregator_windows_emitted_total", ConstLabels: labels, Help: "Windows written, each with all its groups.",
		}),
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregator_checkpoints_total", ConstLabels: labels,
			Help: "Checkpoints of state and offsets written, by kind: whole (the state) or changes (since the checkpoint before).",
		}, []string{"kind"}),
		checkpointBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_aggregator_checkpoint_bytes_total", ConstLabels: labels,
			Help: "Bytes of the checkpoints written, by kind: whole (the state) or changes (since the checkpoint before).",
		}, []string{"kind"}),
		forced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_aggregator_windows_forced_total", ConstLabels: labels,
			Help: "Window-groups written before the watermark passed them, because the state limit (max_open_windows) was reached.",
		}),
		openWindows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_aggregator_open_windows", ConstLabels: labels, Help: "Window-groups held in memory.",
		}),
		tasks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_aggregator_tasks", ConstLabels: labels, Help: "Partitions this instance aggregates, as the consumer group shares them.",
		}),
		watermark: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_aggregator_watermark_seconds", ConstLabels: labels, Help: "The least watermark of this instance's tasks, in Unix seconds of event time.",
		}),
		taskWatermark: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_aggregator_task_watermark_seconds", ConstLabels: labels,
			Help: "Each task's watermark, in Unix seconds of event time, by task (a partition of the tasks' topic).",
		}, []string{"task"}),
	}
	// Every outcome is there from the start, at 0, so that alerts and
	// dashboards find it before the first event of its kind.
	for _, o := range []string{"counted", "duplicate", "late", "invalid", "skipped"} {
		m.events.WithLabelValues(o)
	}
	for _, k := range []string{"whole", "changes"} {
		m.checkpoints.WithLabelValues(k)
		m.checkpointBytes.WithLabelValues(k)
	}
	for _, c := range []prometheus.Collector{m.events, m.windows, m.checkpoints, m.checkpointBytes, m.forced, m.openWindows, m.tasks, m.watermark, m.taskWatermark} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register aggregator metrics: %w", err)
		}
	}
	return m, nil
}

// counterValue and gaugeValue read a metric of this process, for the
// status API.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return 0
	}
	return m.GetGauge().GetValue()
}
