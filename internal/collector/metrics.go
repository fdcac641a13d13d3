package collector

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/event"
)

type metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	served          sync.Map // routeCode: *servedSeries, requests' and duration's series for it
	inFlight        prometheus.Gauge
	inflightBytes   prometheus.Gauge
	accepted        prometheus.Counter
	rejected        *prometheus.CounterVec
	requestErrors   *prometheus.CounterVec
	produceLatency  prometheus.Histogram
	produceFailures *prometheus.CounterVec
	nonFinite       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_collector_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_collector_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_collector_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
		inflightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_collector_inflight_body_bytes",
			Help: "Request-body bytes reserved in memory, bounded by max_inflight_bytes.",
		}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_collector_events_accepted_total",
			Help: "Events acknowledged by Kafka on the raw topic.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_collector_events_rejected_total",
			Help: "Invalid events written to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_collector_requests_rejected_total",
			Help: "Requests refused before any event was read (size, media type, encoding, auth), by error.",
		}, []string{"error"}),
		produceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_collector_produce_latency_seconds",
			Help:    "Time from handing a request's records to Kafka until all are acknowledged.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		produceFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_collector_produce_failures_total",
			Help: "Requests answered 503 because Kafka did not acknowledge, by kind (timeout, error, client_gone).",
		}, []string{"kind"}),
		nonFinite: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_collector_non_finite_numbers_total",
			Help: "NaN, Infinity and -Infinity values in accepted events, stored as null.",
		}),
	}
	// Every reason is there from the start, at 0, so that alerts and
	// dashboards find it before the first rejection of its kind.
	for _, r := range []string{event.ReasonInvalidJSON, event.ReasonMissingField, event.ReasonWrongType, event.ReasonEmptyField, errEventTooLarge,
		reasonSchemaViolation, reasonUnknownSchema, event.ReasonNonFinite} {
		m.rejected.WithLabelValues(r)
	}
	for _, k := range []string{"timeout", "error", "client_gone"} {
		m.produceFailures.WithLabelValues(k)
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight, m.inflightBytes, m.accepted, m.rejected, m.requestErrors, m.produceLatency, m.produceFailures, m.nonFinite} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register collector metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) requestRejected(code string) { m.requestErrors.WithLabelValues(code).Inc() }

type routeCode struct {
	route string
	code  int
}

type servedSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// served counts a request and its time. Each route and code's series are
// looked up by label values once, not at every request; routes are the
// mux's patterns and codes are few, so the map stays small.
func (m *metrics) servedRequest(route string, code int, took time.Duration) {
	k := routeCode{route, code}
	v, ok := m.served.Load(k)
	if !ok {
		v, _ = m.served.LoadOrStore(k, &servedSeries{
			requests: m.requests.WithLabelValues(route, strconv.Itoa(code)),
			duration: m.duration.WithLabelValues(route),
		})
	}
	s := v.(*servedSeries)
	s.requests.Inc()
	s.duration.Observe(took.Seconds())
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument counts requests by the route pattern that served them, so that
// label values stay bounded whatever paths clients send.
func (c *Collector) instrument(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c.metrics.inFlight.Inc()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			c.metrics.inFlight.Dec()
			route := r.Pattern
			if route == "" || route == "/" {
				route = "other"
			}
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			c.metrics.servedRequest(route, code, time.Since(start))
		}()
		mux.ServeHTTP(sw, r)
	})
}
