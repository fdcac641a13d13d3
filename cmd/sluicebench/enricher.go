package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"testing/fstest"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/enrich"
	"github.com/sluicehq/sluice/internal/enricher"
	"github.com/sluicehq/sluice/internal/formsapi"
	"github.com/sluicehq/sluice/internal/pipeline"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/schema"
)

// benchEnricher measures the enricher on form events whose definitions
// come from a forms API with a fixed latency, cold cache then warm, and on
// TLC trips with the zone lookup join alone.
//
// With a cold cache the API bounds the rate: at most PerHost calls are in
// flight to the one host, each taking the latency, so the calls for the
// distinct ids cannot finish sooner than ids × latency ÷ PerHost. The
// benchmark times the calls from the API's side (first request in to last
// answer out) and reports the rate reached against that bound, and against
// its baseline, timed the same way in the same run: a bare net/http client
// making the same calls, PerHost at a time. On a 2-core machine where the
// API shares the cores, the baseline itself stays short of the bound.
func benchEnricher(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("enricher", flag.ContinueOnError)
	n := fs.Int("events", 100_000, "form events (and TLC trips for the lookup run)")
	ids := fs.Int("forms", 1_000, "distinct form ids the events refer to")
	latency := fs.Duration("latency", 20*time.Millisecond, "forms API latency per request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := os.MkdirTemp("", "sluicebench-enricher")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The forms API serves ids distinct forms, each a bundled definition
	// under a new id, from a process of its own, as a real API is: in this
	// one its handlers and timers would take turns with the enricher's
	// goroutines, and its answers wait for them.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	ps := &processes{dir: dir}
	defer ps.stopAll()
	if _, err := ps.start("forms-api", self, "forms-api-server", "-addr", apiAddr, "-forms", strconv.Itoa(*ids),
		"-latency", latency.String()); err != nil {
		return err
	}
	if err := waitFor(func() error { return ready("http://" + apiAddr + "/stats") }); err != nil {
		return fmt.Errorf("forms API: %w", err)
	}

	cc, prod, stop, err := benchBroker(ctx, dir, 3, logger, "bench.trips", "bench.enriched", "bench.dlq")
	if err != nil {
		return err
	}
	defer stop()
	// One partition for the form events, so that the first poll (one
	// fetch, a few thousand events) asks for every form: a poll is one
	// transaction, and the next waits for it to commit.
	if err := bus.EnsureTopics(ctx, prod, 1, 1, "bench.forms"); err != nil {
		return err
	}

	// Form events cycle through the ids, so that any poll of ids events
	// or more asks for every form: the calls, not the polls, pace the run.
	stamp := `"collector_tstamp":"2025-01-01T00:00:00.000000Z","collector_id":"bench"`
	var formValues, tripValues [][]byte
	for i := range *n {
		formValues = append(formValues, fmt.Appendf(nil,
			`{"event_type":"form_event","schema_version":"1-0-0","payload":{"form_id":"bench-%04d","event_happened_at":"2025-01-01T00:00:00Z","event_type":"form_submitted"},%s,"root_id":"f%d"}`,
			i%*ids, stamp, i))
	}
	trips := bytes.Split(bytes.TrimSpace(tlcEvents), []byte("\n"))
	for i := range *n {
		t := trips[i%len(trips)]
		tripValues = append(tripValues, fmt.Appendf(nil, `%s,%s,"root_id":"t%d"}`, t[:len(t)-1], stamp, i))
	}
	if err := produceAll(ctx, prod, "bench.forms", "form_event", formValues); err != nil {
		return err
	}
	if err := produceAll(ctx, prod, "bench.trips", "yellow_taxi_trip", tripValues); err != nil {
		return err
	}

	schemas, err := schema.Load(sample.Schemas())
	if err != nil {
		return err
	}
	zones, err := pipeline.TaxiZones(ctx)
	if err != nil {
		return err
	}
	formPipeline, err := enricher.Forms("http://" + apiAddr + "/forms/{payload.form_id}").Pipeline(enricher.Pipeline{})
	if err != nil {
		return err
	}
	tripPipeline := enricher.TaxiZones(zones)
	run := func(name, topic, eventType string, p enricher.Pipeline) (time.Duration, error) {
		cfg := enricher.DefaultConfig()
		cfg.RawTopic, cfg.EnrichedTopic, cfg.DLQTopic = topic, "bench.enriched", "bench.dlq"
		cfg.Group, cfg.TransactionalID = "bench-"+name, "bench-"+name
		cfg.Pipelines = map[string]enricher.Pipeline{eventType: p}
		reg := prometheus.NewRegistry()
		e, err := enricher.New(cfg, cc, schemas, logger, reg)
		if err != nil {
			return 0, err
		}
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- e.Run(rctx) }()
		defer func() {
			stop()
			<-done
		}()
		for metricValue(reg, "sluice_enricher_events_total") < float64(*n) {
			select {
			case err := <-done:
				return 0, fmt.Errorf("enricher stopped: %w", err)
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		if dead := metricValue(reg, "sluice_enricher_dead_letters_total"); dead > 0 {
			return 0, fmt.Errorf("%s: %v events were dead-lettered; the benchmark expects none", name, dead)
		}
		return time.Since(start), nil
	}

	// The baseline, in the same run: the same calls from a bare client.
	ac := enrich.DefaultAPIConfig() // the forms model's API settings
	if _, err := apiStats("http://"+apiAddr+"/stats", true); err != nil {
		return err
	}
	if err := plainCalls(ctx, "http://"+apiAddr, *ids, ac.PerHost); err != nil {
		return fmt.Errorf("baseline calls: %w", err)
	}
	st, err := apiStats("http://"+apiAddr+"/stats", true)
	if err != nil {
		return err
	}
	plainWindow, plainLatency := time.Duration(st.Last-st.First), st.latency()

	cold, err := run("cold", "bench.forms", "form_event", formPipeline)
	if err != nil {
		return err
	}
	st, err = apiStats("http://"+apiAddr+"/stats", false)
	if err != nil {
		return err
	}
	calls, window, coldLatency := st.Calls, time.Duration(st.Last-st.First), st.latency()
	warm, err := run("warm", "bench.forms", "form_event", formPipeline)
	if err != nil {
		return err
	}
	st, err = apiStats("http://"+apiAddr+"/stats", false)
	if err != nil {
		return err
	}
	warmCalls := st.Calls - calls
	lookup, err := run("lookup", "bench.trips", "yellow_taxi_trip", tripPipeline)
	if err != nil {
		return err
	}

	bound := float64(ac.PerHost) / latency.Seconds() // calls/s
	reached := float64(calls) / window.Seconds()
	plain := float64(*ids) / plainWindow.Seconds()
	fmt.Fprintf(out, "enricher benchmark: %d form events over %d form ids, forms API latency %v, API concurrency %d (per host %d);\n"+
		"each run from the enricher's start (group join included) until every event's outputs are committed\n\n",
		*n, *ids, *latency, ac.Concurrency, ac.PerHost)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tevents/s\ttime\tAPI calls\t")
	fmt.Fprintf(tw, "forms, cold cache (validate, fetch, model into form + form_field)\t%.0f\t%v\t%d\t\n",
		float64(*n)/cold.Seconds(), cold.Round(time.Millisecond), calls)
	fmt.Fprintf(tw, "forms, warm cache\t%.0f\t%v\t%d\t\n", float64(*n)/warm.Seconds(), warm.Round(time.Millisecond), warmCalls)
	fmt.Fprintf(tw, "TLC trips, zone lookup join only\t%.0f\t%v\t0\t\n", float64(*n)/lookup.Seconds(), lookup.Round(time.Millisecond))
	fmt.Fprintln(tw, "\t\t\t\t")
	fmt.Fprintf(tw, "cold-cache API calls: %d in %v (first request to last answer)\t%.0f calls/s\t\t\t\n", calls, window.Round(time.Millisecond), reached)
	fmt.Fprintf(tw, "bound: per-host concurrency ÷ latency = %d ÷ %v\t%.0f calls/s\t\t\t\n", ac.PerHost, *latency, bound)
	fmt.Fprintf(tw, "baseline: a bare net/http client, %d at a time, the same %d calls in %v\t%.0f calls/s\t\t\t\n",
		ac.PerHost, *ids, plainWindow.Round(time.Millisecond), plain)
	fmt.Fprintf(tw, "the API's answers, request in to answer out (mean): cold cache, baseline\t%v\t%v\t\t\n",
		coldLatency.Round(time.Microsecond), plainLatency.Round(time.Microsecond))
	fmt.Fprintf(tw, "reached ÷ bound\t%.2f\t\t\t\n", reached/bound)
	fmt.Fprintf(tw, "baseline ÷ bound (what this machine allows)\t%.2f\t\t\t\n", plain/bound)
	fmt.Fprintf(tw, "reached ÷ baseline\t%.2f\t\t\t\n", reached/plain)
	fmt.Fprintf(tw, "cold ÷ warm events/s (what the API costs the whole run)\t%.2f\t\t\t\n", warm.Seconds()/cold.Seconds())
	return tw.Flush()
}

// benchForms makes n form definitions from the bundled ones, each under the
// id bench-NNNN.
func benchForms(n int) (iofs.FS, error) {
	dir, err := iofs.Sub(sample.FS(), sample.FormsFolder)
	if err != nil {
		return nil, err
	}
	names, err := iofs.Glob(dir, "*.json")
	if err != nil || len(names) == 0 {
		return nil, fmt.Errorf("bundled forms: %v", err)
	}
	defs := make([]map[string]any, len(names))
	for i, name := range names {
		b, err := iofs.ReadFile(dir, name)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &defs[i]); err != nil {
			return nil, fmt.Errorf("form %s: %w", name, err)
		}
	}
	out := fstest.MapFS{}
	for i := range n {
		def := defs[i%len(defs)]
		def["id"] = fmt.Sprintf("bench-%04d", i)
		b, err := json.Marshal(def)
		if err != nil {
			return nil, err
		}
		out[fmt.Sprintf("bench-%04d.json", i)] = &fstest.MapFile{Data: b}
	}
	return out, nil
}

// timedHandler delays every answer by latency, counts requests, and keeps
// the time the first began and the last ended and the time each took,
// which /stats tells.
//
// It waits on a timerfd rather than a Go timer: the runtime's netpoller
// sleeps in whole milliseconds, so a 20 ms timer in an otherwise idle
// process fires 0.5–1 ms late, and the API answered in about 20.7 ms, not
// the 20 ms the bound is computed from.
type timedHandler struct {
	next        http.Handler
	latency     time.Duration
	calls       atomic.Int64
	first, last atomic.Int64 // unix nanoseconds
	took        atomic.Int64 // nanoseconds, summed over the calls
}

func (h *timedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		json.NewEncoder(w).Encode(stats{Calls: h.calls.Load(), First: h.first.Load(), Last: h.last.Load(), Took: h.took.Load()})
		if r.Method == http.MethodDelete {
			h.calls.Store(0)
			h.first.Store(0)
			h.last.Store(0)
			h.took.Store(0)
		}
		return
	}
	in := time.Now()
	h.first.CompareAndSwap(0, in.UnixNano())
	if err := sleepUntil(in.Add(h.latency)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h.next.ServeHTTP(w, r)
	out := time.Now()
	h.calls.Add(1)
	h.took.Add(int64(out.Sub(in)))
	h.last.Store(out.UnixNano())
}

// sleepUntil waits until t on a timerfd, which wakes the netpoller at the
// time set, to within the kernel's timer slack (50 µs by default).
func sleepUntil(t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("timerfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "timerfd")
	defer f.Close()
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}, nil); err != nil {
		return fmt.Errorf("timerfd: %w", err)
	}
	var expirations [8]byte
	if _, err := f.Read(expirations[:]); err != nil {
		return fmt.Errorf("timerfd: %w", err)
	}
	return nil
}

// plainCalls is the enricher benchmark's baseline: what a bare net/http
// client gets from the forms API on this machine, perHost calls at a time
// over a fresh transport (its connections dialled, as the enricher's
// are), one call for each of the ids forms.
func plainCalls(ctx context.Context, base string, ids, perHost int) error {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = perHost
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(perHost)
	for i := range ids {
		g.Go(func() error {
			req, err := http.NewRequestWithContext(gctx, http.MethodGet, fmt.Sprintf("%s/forms/bench-%04d", base, i), nil)
			if err != nil {
				return err
			}
			resp, err := cl.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: status %d", req.URL, resp.StatusCode)
			}
			return nil
		})
	}
	return g.Wait()
}

// stats are a timedHandler's figures.
type stats struct {
	Calls       int64
	First, Last int64 // unix nanoseconds
	Took        int64 // nanoseconds from request in to answer out, summed over the calls
}

// latency is the mean time the API took to answer.
func (st stats) latency() time.Duration {
	return time.Duration(st.Took / max(st.Calls, 1))
}

// apiStats reads a timedHandler's figures, and with reset starts them
// over.
func apiStats(url string, reset bool) (stats, error) {
	var st stats
	method := http.MethodGet
	if reset {
		method = http.MethodDelete
	}
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// formsAPIServer serves benchEnricher's forms API, timed, on -addr until
// stopped: a process of its own.
func formsAPIServer(ctx context.Context, args []string, _ io.Writer) error {
	fs := flag.NewFlagSet("forms-api-server", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	ids := fs.Int("forms", 1_000, "distinct form ids")
	latency := fs.Duration("latency", 20*time.Millisecond, "latency per request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	forms, err := benchForms(*ids)
	if err != nil {
		return err
	}
	fapi, err := formsapi.New(formsapi.Config{Forms: forms})
	if err != nil {
		return err
	}
	return serveUntilStopped(ctx, *addr, &timedHandler{next: fapi, latency: *latency})
}
