// Package loadgen drives an HTTP endpoint with a fixed set of request
// bodies over keep-alive connections and reports throughput and latency.
// Benchmarks run it against Sluice and against a no-op handler in the same
// process, so that their ratio says how close Sluice is to the machine's
// limit whatever the machine.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Config is one load run.
type Config struct {
	URL         string
	ContentType string
	// Bodies are sent in turn; EventsPerBody says how many events each holds.
	Bodies        [][]byte
	EventsPerBody int
	Connections   int
	Duration      time.Duration
	// Warmup runs before measuring, to fill pools and caches.
	Warmup time.Duration
}

// Result is what a run measured.
type Result struct {
	Requests int
	Events   int
	Elapsed  time.Duration
	P50, P99 time.Duration
	// Failures counts answers other than 200, by status (0: transport error).
	Failures map[int]int
}

// EventsPerSec is the measured event rate.
func (r Result) EventsPerSec() float64 { return float64(r.Events) / r.Elapsed.Seconds() }

// Run drives cfg.URL for cfg.Duration after a warm-up.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if len(cfg.Bodies) == 0 || cfg.Connections < 1 || cfg.Duration <= 0 {
		return Result{}, errors.New("loadgen: need bodies, connections and a duration")
	}
	tr := &http.Transport{
		MaxIdleConns:        cfg.Connections,
		MaxIdleConnsPerHost: cfg.Connections,
		MaxConnsPerHost:     cfg.Connections,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	if cfg.Warmup > 0 {
		if _, err := drive(ctx, client, cfg, cfg.Warmup); err != nil {
			return Result{}, err
		}
	}
	return drive(ctx, client, cfg, cfg.Duration)
}

func drive(ctx context.Context, client *http.Client, cfg Config, d time.Duration) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type worker struct {
		lat      []time.Duration
		failures map[int]int
		err      error
	}
	workers := make([]worker, cfg.Connections)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func(w *worker, offset int) {
			defer wg.Done()
			w.failures = make(map[int]int)
			for i := offset; ctx.Err() == nil; i++ {
				body := cfg.Bodies[i%len(cfg.Bodies)]
				t0 := time.Now()
				code, err := send(ctx, client, cfg, body)
				if ctx.Err() != nil {
					return // the run ended mid-request: not counted
				}
				if err != nil || code != http.StatusOK {
					w.failures[code]++
					if w.failures[0] > 100 {
						w.err = err // the server is not answering at all
						return
					}
					continue
				}
				w.lat = append(w.lat, time.Since(t0))
			}
		}(&workers[w], w*7)
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := Result{Elapsed: elapsed, Failures: make(map[int]int)}
	var all []time.Duration
	for _, w := range workers {
		if w.err != nil {
			return Result{}, fmt.Errorf("loadgen: %s: %w", cfg.URL, w.err)
		}
		all = append(all, w.lat...)
		for k, v := range w.failures {
			res.Failures[k] += v
		}
	}
	slices.Sort(all)
	res.Requests = len(all)
	res.Events = len(all) * max(cfg.EventsPerBody, 1)
	if len(all) > 0 {
		res.P50 = all[len(all)/2]
		res.P99 = all[len(all)*99/100]
	}
	return res, nil
}

func send(ctx context.Context, client *http.Client, cfg Config, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", cfg.ContentType)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// Noop is the baseline handler: it reads the body and answers 200, as the
// cheapest possible collector would.
func Noop() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}\n"))
	})
}

// Validate is a second baseline: it reads the body and checks it with
// encoding/json.Valid, the least any collector that looks at its input
// must do.
func Validate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil || !json.Valid(b) {
			http.Error(w, "invalid", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}\n"))
	})
}
