package aggregator

import (
	"bytes"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/window"
)

// BenchmarkWriteResults is the CPU work of writing a task's windows of the
// bundled MTA week (about one result per reading), per result: rows into
// columns, those as a Parquet file, and the results topic's records.
func BenchmarkWriteResults(b *testing.B) {
	a, err := New(mtaConfig(), bus.ClientConfig{}, nil, nil, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	results := mtaResults(b, a)
	b.Run("rows", func(b *testing.B) {
		for b.Loop() {
			a.windowBuffer(results).Reset()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(results)), "ns/result")
	})
	b.Run("parquet", func(b *testing.B) {
		buf := a.windowBuffer(results)
		defer buf.Reset()
		for b.Loop() {
			if _, err := buf.Write(io.Discard, "parquet"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(results)), "ns/result")
	})
	b.Run("records", func(b *testing.B) {
		for b.Loop() {
			a.resultRecords(results)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(results)), "ns/result")
	})
}

// mtaResults are the windows of the bundled MTA week, as one task emits
// them.
func mtaResults(tb testing.TB, a *Aggregator) []window.Result {
	lines, err := sample.TurnstilesInTimeOrder()
	if err != nil {
		tb.Fatal(err)
	}
	op, err := window.New(a.cfg.windowConfig(), time.Now)
	if err != nil {
		tb.Fatal(err)
	}
	f := make(fields, len(a.slots))
	var e window.Event
	var results []window.Result
	for _, l := range bytes.Split(bytes.TrimRight(lines, "\n"), []byte("\n")) {
		f, at, _ := a.read(&kgo.Record{Value: l}, f)
		if f == nil {
			continue
		}
		a.event(&e, f, at, 0)
		op.Add(e)
		results = op.AdvanceTo(results)
	}
	return results
}
