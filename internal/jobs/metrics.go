package jobs

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the scheduler's, of the runs it makes.
type metrics struct {
	models   *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	rows     *prometheus.GaugeVec
	failures *prometheus.CounterVec
	runs     *prometheus.CounterVec
	active   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		models: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_jobs_model_runs_total", Help: "Model runs, by model and status (success, error, skipped).",
		}, []string{"model", "status"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_jobs_model_seconds", Help: "How long a model's run took, checks and publishing included.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}, []string{"model"}),
		rows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_jobs_model_rows", Help: "Rows of a model's table as its last successful run published it.",
		}, []string{"model"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_jobs_check_failed_rows_total", Help: "Rows that failed a data-quality check, by model, check and severity.",
		}, []string{"model", "check", "severity"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_jobs_schedule_runs_total", Help: "Runs of a schedule, retries included, by schedule and outcome (ok, failed).",
		}, []string{"schedule", "outcome"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_jobs_active", Help: "1 while this process is the active scheduler of its group.",
		}),
	}
	for _, c := range []prometheus.Collector{m.models, m.seconds, m.rows, m.failures, m.runs, m.active} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register jobs metrics: %w", err)
		}
	}
	return m, nil
}

// observe records a run's results.
func (m *metrics) observe(results []Result) {
	for _, r := range results {
		m.models.WithLabelValues(r.Model, string(r.Status)).Inc()
		if r.Status == StatusSkipped {
			continue
		}
		m.seconds.WithLabelValues(r.Model).Observe(r.Took.Seconds())
		if r.Status == StatusSuccess && r.Snapshot != 0 {
			m.rows.WithLabelValues(r.Model).Set(float64(r.Rows))
		}
		for _, c := range r.Checks {
			if c.Failed > 0 {
				m.failures.WithLabelValues(r.Model, c.Check, string(c.Severity)).Add(float64(c.Failed))
			}
		}
	}
}
