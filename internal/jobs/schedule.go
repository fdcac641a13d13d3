package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/health"
	"github.com/sluicehq/sluice/internal/retry"
)

// Config is the batch layer of a process: the models and when they run.
type Config struct {
	Models string `yaml:"models" flag:"models" doc:"The directory of the batch models (<name>.sql) and their checks (<name>.yml); empty: no batch layer. sluice up and sluice jobs run its schedules."`
	// Group names the schedulers that share the schedules: one of them
	// is active at a time.
	Group     string     `yaml:"group" doc:"Schedulers of one group share its schedules: one at a time runs them (a Kafka consumer group elects it); another takes over when it stops."`
	Schedules []Schedule `yaml:"schedules" doc:"When the models run, and the lake's upkeep; without any, models run every hour."`
}

// DefaultConfig is the batch layer off.
func DefaultConfig() Config { return Config{Group: "sluice-jobs"} }

// Validate reports a configuration the scheduler cannot run.
func (c Config) Validate() error {
	var errs []error
	if c.Group == "" {
		errs = append(errs, config.Field("group", "empty: want a name, such as sluice-jobs"))
	}
	names := map[string]bool{}
	for i, s := range c.Schedules {
		if err := s.Validate(); err != nil {
			errs = append(errs, config.Prefix(fmt.Sprintf("schedules[%d]", i), err))
		}
		if names[s.Name] {
			errs = append(errs, config.Field(fmt.Sprintf("schedules[%d].name", i), "two schedules are named %q", s.Name))
		}
		names[s.Name] = true
	}
	return errors.Join(errs...)
}

// Upkeep is a lake upkeep task a schedule may run after its models.
type Upkeep string

// The upkeep tasks: 'sluice lake compact', 'expire' and 'orphans' on
// every table of the lake.
const (
	UpkeepCompact Upkeep = "compact"
	UpkeepExpire  Upkeep = "expire"
	UpkeepOrphans Upkeep = "orphans"
)

// Schedule is when some models run.
type Schedule struct {
	Name string `yaml:"name" doc:"The schedule's name, in logs, metrics and job_runs."`
	// Cron or Every say when.
	Cron  string        `yaml:"cron" doc:"When it runs: a cron expression (minute hour day month weekday, in UTC, such as '15 * * * *') or @hourly, @daily, @weekly."`
	Every time.Duration `yaml:"every" doc:"When it runs, instead of cron: every so long from the scheduler's start, such as 30m."`
	// Select is the models it builds, as --select takes them.
	Select string `yaml:"select" doc:"The models it builds, as 'sluice jobs run --select' takes them (name, name+, +name; comma-separated); empty: all; 'none': only upkeep."`
	// Upkeep follows the models.
	Upkeep       []Upkeep      `yaml:"upkeep" doc:"Lake upkeep after the models, on every table: compact, expire (snapshots older than 7 days, keeping 10), orphans (files no snapshot references, older than a day)."`
	Retries      int           `yaml:"retries" doc:"Runs again the models that failed (and what reads them) this many times, with a doubling backoff."`
	RetryBackoff time.Duration `yaml:"retry_backoff" doc:"The wait before the first retry; each next one waits twice as long."`
}

// SetDefaults gives a new schedules entry the defaults.
func (s *Schedule) SetDefaults() { *s = Schedule{Retries: 2, RetryBackoff: time.Minute} }

// Validate reports a schedule that cannot run.
func (s Schedule) Validate() error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, config.Field("name", "empty: name the schedule"))
	}
	switch {
	case s.Cron != "" && s.Every != 0:
		errs = append(errs, config.Field("cron", "both cron and every: give one"))
	case s.Cron == "" && s.Every <= 0:
		errs = append(errs, config.Field("cron", "neither cron nor every: give one, such as cron: '@hourly' or every: 30m"))
	case s.Cron != "":
		if _, err := cron.ParseStandard(s.Cron); err != nil {
			errs = append(errs, config.Field("cron", "%q: %v", s.Cron, err))
		}
	}
	for _, u := range s.Upkeep {
		if !slices.Contains([]Upkeep{UpkeepCompact, UpkeepExpire, UpkeepOrphans}, u) {
			errs = append(errs, config.Field("upkeep", "%q: want compact, expire or orphans", u))
		}
	}
	if s.Retries < 0 {
		errs = append(errs, config.Field("retries", "%d: want 0 or more", s.Retries))
	}
	if s.Retries > 0 && s.RetryBackoff <= 0 {
		errs = append(errs, config.Field("retry_backoff", "%v: want a positive duration", s.RetryBackoff))
	}
	return errors.Join(errs...)
}

// next is when the schedule runs next after t.
func (s Schedule) next(t time.Time, start time.Time) time.Time {
	if s.Every > 0 {
		n := t.Sub(start)/s.Every + 1
		return start.Add(n * s.Every)
	}
	sched, err := cron.ParseStandard(s.Cron)
	if err != nil {
		return time.Time{} // Validate refused it
	}
	return sched.Next(t.UTC())
}

// DefaultSchedules is every model every hour, when the config gives none.
func DefaultSchedules() []Schedule {
	return []Schedule{{Name: "hourly", Cron: "@hourly", Retries: 2, RetryBackoff: time.Minute}}
}

// Execute runs a schedule's work once: its models (those of selection)
// and its upkeep, and returns what the models did, for a retry of those
// that failed.
type Execute func(ctx context.Context, s Schedule, selection string) ([]Result, error)

// Lock elects the active scheduler of a group: Hold returns once this one
// is, with a context that ends when it no longer is (or ctx ends).
type Lock interface {
	Hold(ctx context.Context) (context.Context, error)
}

// Scheduler runs schedules at their times, while it holds the group's
// lock: the component that 'sluice up' and 'sluice jobs' run.
type Scheduler struct {
	*health.Reporter
	schedules []Schedule
	lock      Lock
	execute   Execute
	logger    *slog.Logger
	metrics   *metrics
	now       func() time.Time
}

// NewScheduler runs schedules with execute while it holds lock.
func NewScheduler(schedules []Schedule, lock Lock, execute Execute, logger *slog.Logger, reg prometheus.Registerer) (*Scheduler, error) {
	if len(schedules) == 0 {
		schedules = DefaultSchedules()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Scheduler{Reporter: health.New("jobs", logger), schedules: schedules, lock: lock, execute: execute, logger: logger, metrics: m, now: time.Now}, nil
}

// Run waits to be the group's active scheduler, then runs the schedules at
// their times until ctx ends or another scheduler takes over, and waits
// again.
func (s *Scheduler) Run(ctx context.Context) error {
	s.SetState(health.Running)
	defer s.SetState(health.Stopped)
	wait := retry.Backoff{Min: time.Second, Max: 30 * time.Second}
	for ctx.Err() == nil {
		held, err := s.lock.Hold(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.Fault("lock", err)
			if err := wait.Wait(ctx, 0); err != nil {
				break
			}
			continue
		}
		s.Clear("lock")
		s.logger.Info("active scheduler of the group: running the schedules", "schedules", len(s.schedules))
		s.metrics.active.Set(1)
		s.loop(held)
		s.metrics.active.Set(0)
		if ctx.Err() == nil {
			s.logger.Warn("another scheduler of the group took over")
		}
	}
	return nil
}

// loop runs the schedules at their times until ctx ends.
func (s *Scheduler) loop(ctx context.Context) {
	start := s.now()
	next := make([]time.Time, len(s.schedules))
	for i, sc := range s.schedules {
		next[i] = sc.next(start, start)
	}
	for {
		i := 0
		for j := range next {
			if next[j].Before(next[i]) {
				i = j
			}
		}
		timer := time.NewTimer(next[i].Sub(s.now()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		s.fire(ctx, s.schedules[i])
		// Times missed while it ran are skipped, not run in a burst.
		after := s.now()
		if after.Before(next[i]) {
			after = next[i]
		}
		next[i] = s.schedules[i].next(after, start)
	}
}

// fire runs a schedule, retrying what failed with a doubling backoff.
func (s *Scheduler) fire(ctx context.Context, sc Schedule) {
	selection := sc.Select
	backoff := sc.RetryBackoff
	for attempt := 0; ; attempt++ {
		results, err := s.execute(ctx, sc, selection)
		s.metrics.observe(results)
		failed := Failed(results)
		if err == nil && len(failed) == 0 {
			s.metrics.runs.WithLabelValues(sc.Name, "ok").Inc()
			s.Add(1)
			return
		}
		s.metrics.runs.WithLabelValues(sc.Name, "failed").Inc()
		if err == nil {
			err = fmt.Errorf("models failed: %s", strings.Join(failed, ", "))
		}
		if ctx.Err() != nil {
			return
		}
		if attempt >= sc.Retries {
			// The last error, not a fault: a model that fails keeps its
			// table, and the process (a collector beside it in sluice up)
			// stays ready.
			err = fmt.Errorf("schedule %s: %w (after %d retries)", sc.Name, err, sc.Retries)
			s.Err(err)
			s.logger.Error("schedule failed", "schedule", sc.Name, "err", err)
			return
		}
		s.logger.Warn("schedule failed: retrying", "schedule", sc.Name, "err", err, "in", backoff, "retry", attempt+1)
		if len(failed) > 0 {
			// Only what failed, and what reads it: the rest is built.
			retryOf := make([]string, len(failed))
			for i, m := range failed {
				retryOf[i] = m + "+"
			}
			selection = strings.Join(retryOf, ",")
		}
		if err := retry.Sleep(ctx, backoff); err != nil {
			return
		}
		backoff *= 2
	}
}
