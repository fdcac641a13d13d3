package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/health"
)

// stage is a component that runs until stopped, or fails after failAfter.
type stage struct {
	*health.Reporter
	failAfter time.Duration
	events    *events
}

type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, s)
}

func (s *stage) Run(ctx context.Context) error {
	defer s.events.add("stopped " + s.Name())
	if s.failAfter > 0 {
		select {
		case <-time.After(s.failAfter):
			return errors.New("disk on fire")
		case <-ctx.Done():
		}
	}
	<-ctx.Done()
	return nil
}

func newStage(name string, ev *events) *stage {
	return &stage{Reporter: health.New(name, slog.New(slog.DiscardHandler)), events: ev}
}

// TestRunStopsAllThenReleases: a failing component stops the others, and
// what the process holds is released after they have all stopped, last
// first.
func TestRunStopsAllThenReleases(t *testing.T) {
	ev := &events{}
	p := NewProcess(slog.New(slog.DiscardHandler))
	p.Defer(func() { ev.add("closed broker") })
	p.Add(newStage("collector", ev))
	p.Defer(func() { ev.add("closed producer") })
	bad := newStage("sink.lake", ev)
	bad.failAfter = 50 * time.Millisecond
	p.Add(bad)
	err := p.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "sink.lake: disk on fire") {
		t.Fatalf("Run = %v, want the failing component's error", err)
	}
	got := ev.list
	if len(got) != 4 || !slices.Contains(got[:2], "stopped collector") || !slices.Contains(got[:2], "stopped sink.lake") {
		t.Fatalf("events %v", got)
	}
	if diff := cmp.Diff([]string{"closed producer", "closed broker"}, got[2:]); diff != "" {
		t.Errorf("release order (-want +got):\n%s", diff)
	}
	if s := bad.State(); s != health.Failed {
		t.Errorf("failed component's state = %s", s)
	}
}

// TestRunStopsOnContext: a stop is clean, every component stopped, nil.
func TestRunStopsOnContext(t *testing.T) {
	ev := &events{}
	p := NewProcess(slog.New(slog.DiscardHandler))
	a, b := newStage("a", ev), newStage("b", ev)
	p.Add(a)
	p.Add(b)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if a.State() != health.Stopped || b.State() != health.Stopped {
		t.Errorf("states %s %s, want stopped", a.State(), b.State())
	}
}

type grouped struct{ *stage }

func (grouped) Groups() []string { return []string{"sluice-loader-lake"} }

func TestOpsReadyAndStatus(t *testing.T) {
	ev := &events{}
	p := NewProcess(slog.New(slog.DiscardHandler))
	col, lake := newStage("collector", ev), grouped{newStage("sink.lake", ev)}
	p.Add(col)
	p.Add(lake)
	var asked []string
	lag := func(_ context.Context, groups []string) ([]bus.GroupLag, error) {
		asked = groups
		return []bus.GroupLag{{Group: "sluice-loader-lake", State: "Stable", Lag: 7,
			Partitions: []bus.PartitionLag{{Topic: "sluice.enriched", Partition: 0, Committed: 3, End: 10, Lag: 7, LagSeconds: 1.5}}}}, nil
	}
	srv := httptest.NewServer(NewOps(OpsConfig{}, p, prometheus.NewRegistry(), "pod-0", lag))
	defer srv.Close()
	get := func(path string) (int, string, http.Header) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	if code, body, h := get("/readyz"); code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, "collector is starting") {
		t.Errorf("readyz before running = %d %s", code, body)
	}
	col.SetState(health.Running)
	lake.SetState(health.Running)
	lake.Fault("destination", errors.New("write x: no space left on device"))
	code, body, _ := get("/readyz")
	if code != 503 || !strings.Contains(body, `"error":"not_ready"`) || !strings.Contains(body, "no space left on device") || strings.Contains(body, "collector") {
		t.Errorf("readyz with a full disk = %d %s", code, body)
	}
	lake.Clear("destination")
	if code, body, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz = %d %s", code, body)
	}
	code, body, _ = get("/api/v1/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
		t.Fatalf("status = %d %v: %s", code, err, body)
	}
	if st.InstanceID != "pod-0" || !st.Ready || len(st.Components) != 2 || st.Components[1].Name != "sink.lake" ||
		st.Components[1].LastError == nil || !slices.Equal(st.Components[1].Groups, []string{"sluice-loader-lake"}) {
		t.Errorf("status %+v", st)
	}
	if len(st.ConsumerGroups) != 1 || st.ConsumerGroups[0].Partitions[0].LagSeconds != 1.5 || !slices.Equal(asked, []string{"sluice-loader-lake"}) {
		t.Errorf("consumer groups %+v (asked for %v)", st.ConsumerGroups, asked)
	}
	if code, _, h := get("/readyz"); code != 200 || h.Get("Content-Type") != "application/json" {
		t.Errorf("readyz = %d %v", code, h)
	}
	if code, body, _ := get("/debug/pprof/"); code != 404 || !strings.Contains(body, "not_found") {
		t.Errorf("pprof without ops.pprof = %d", code)
	}
	if code, _, h := get("/metrics"); code != 200 || !strings.Contains(h.Get("Content-Type"), "text/plain") {
		t.Errorf("metrics = %d", code)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewOps(OpsConfig{}, p, reg, "pod-0", lag).LagCollector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	if got["sluice_consumer_group_lag"] != 7 || got["sluice_consumer_group_lag_seconds"] != 1.5 {
		t.Errorf("lag metrics %v", got)
	}
}
