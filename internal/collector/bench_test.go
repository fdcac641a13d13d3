package collector

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/loadgen"
)

// ackingProducer acknowledges every record at once: the benchmark times
// the collector's own work on a request, not Kafka's.
type ackingProducer struct{}

func (ackingProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	promise(r, nil)
}
func (ackingProducer) Ping(context.Context) error  { return nil }
func (ackingProducer) Flush(context.Context) error { return nil }

// BenchmarkCollect is one single-event request through the collector's
// whole handler (metrics, routing, reading, parsing, stamping, the answer),
// with Kafka's acknowledgement taken as instant, and the same request to
// the no-op handler that sluicebench measures the collector against, in the
// same run.
func BenchmarkCollect(b *testing.B) {
	cfg := DefaultConfig()
	cfg.ID = "collector-bench"
	c, err := New(cfg, ackingProducer{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	c.SetState(health.Running)
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"collector", c.Handler()}, {"noop", loadgen.Noop()}} {
		b.Run(bc.name, func(b *testing.B) {
			body := strings.NewReader(tripEvent)
			r := httptest.NewRequest(http.MethodPost, "/api/v1/collect", body)
			r.Header.Set("Content-Type", "application/json")
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(tripEvent)
				w := httptest.NewRecorder()
				bc.h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
