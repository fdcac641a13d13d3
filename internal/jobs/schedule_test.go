package jobs

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// held is a lock always held.
type held struct{}

func (held) Hold(ctx context.Context) (context.Context, error) { return ctx, nil }

type call struct {
	At        string
	Schedule  string
	Selection string
}

// TestSchedulerTimes: cron schedules fire at their times (UTC), every
// schedules at their period from the start, on a fake clock.
func TestSchedulerTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now() // synctest's clock: 2000-01-01 00:00 UTC
		var mu sync.Mutex
		var calls []call
		exec := func(ctx context.Context, s Schedule, selection string) ([]Result, error) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, call{time.Since(start).String(), s.Name, selection})
			return nil, nil
		}
		s, err := NewScheduler([]Schedule{
			{Name: "quarter-past", Cron: "15 * * * *", Select: "a+"},
			{Name: "half-hourly", Every: 30 * time.Minute},
			{Name: "daily", Cron: "@daily"},
		}, held{}, exec, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(2*time.Hour + 20*time.Minute)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		want := []call{
			{"15m0s", "quarter-past", "a+"}, {"30m0s", "half-hourly", ""}, {"1h0m0s", "half-hourly", ""},
			{"1h15m0s", "quarter-past", "a+"}, {"1h30m0s", "half-hourly", ""}, {"2h0m0s", "half-hourly", ""},
			{"2h15m0s", "quarter-past", "a+"},
		}
		if diff := cmp.Diff(want, calls); diff != "" {
			t.Errorf("runs (-want +got):\n%s", diff)
		}
	})
}

// TestSchedulerRetries: a schedule whose models fail runs again what
// failed and what reads it, after a doubling backoff, up to its retries;
// then the scheduler reports the error, and stays ready.
func TestSchedulerRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var calls []call
		fails := 3 // the first hour's run and its two retries fail
		exec := func(ctx context.Context, s Schedule, selection string) ([]Result, error) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, call{time.Since(start).String(), s.Name, selection})
			if fails > 0 {
				fails--
				return []Result{{Model: "a", Status: StatusSuccess}, {Model: "b", Status: StatusError}, {Model: "c", Status: StatusSkipped}}, nil
			}
			return nil, nil
		}
		reg := prometheus.NewRegistry()
		s, err := NewScheduler([]Schedule{{Name: "hourly", Cron: "@hourly", Retries: 2, RetryBackoff: time.Minute}},
			held{}, exec, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(time.Hour + 10*time.Minute)
		synctest.Wait()
		if last := s.Status().LastError; last == nil || !strings.Contains(last.Message, "schedule hourly: models failed: b (after 2 retries)") {
			t.Errorf("after the failed retries, the last error = %+v", last)
		}
		if err := s.Ready(); err != nil {
			t.Errorf("a failed schedule made the scheduler unready: %v", err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		cancel()
		<-done
		want := []call{{"1h0m0s", "hourly", ""}, {"1h1m0s", "hourly", "b+"}, {"1h3m0s", "hourly", "b+"}, {"2h0m0s", "hourly", ""}}
		if diff := cmp.Diff(want, calls); diff != "" {
			t.Errorf("runs (-want +got):\n%s", diff)
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP sluice_jobs_model_runs_total Model runs, by model and status (success, error, skipped).
# TYPE sluice_jobs_model_runs_total counter
sluice_jobs_model_runs_total{model="a",status="success"} 3
sluice_jobs_model_runs_total{model="b",status="error"} 3
sluice_jobs_model_runs_total{model="c",status="skipped"} 3
# HELP sluice_jobs_schedule_runs_total Runs of a schedule, retries included, by schedule and outcome (ok, failed).
# TYPE sluice_jobs_schedule_runs_total counter
sluice_jobs_schedule_runs_total{outcome="failed",schedule="hourly"} 3
sluice_jobs_schedule_runs_total{outcome="ok",schedule="hourly"} 1
`), "sluice_jobs_model_runs_total", "sluice_jobs_schedule_runs_total"); err != nil {
			t.Error(err)
		}
	})
}

func TestScheduleValidate(t *testing.T) {
	for _, tc := range []struct {
		s   Schedule
		err string
	}{
		{Schedule{Name: "a", Cron: "@hourly"}, ""},
		{Schedule{Name: "a", Every: time.Minute}, ""},
		{Schedule{Name: "a"}, "neither cron nor every"},
		{Schedule{Name: "a", Cron: "@hourly", Every: time.Minute}, "both cron and every"},
		{Schedule{Name: "a", Cron: "61 * * * *"}, "cron"},
		{Schedule{Cron: "@daily"}, "name"},
		{Schedule{Name: "a", Cron: "@daily", Upkeep: []Upkeep{"vacuum"}}, `"vacuum": want compact, expire or orphans`},
		{Schedule{Name: "a", Cron: "@daily", Retries: 1}, "retry_backoff"},
	} {
		err := tc.s.Validate()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: Validate = %v, want %q", tc.s, err, tc.err)
		}
	}
}
