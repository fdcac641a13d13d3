// Package health is how a component tells its process how it is: its
// state, whether it is ready and if not why, its last error, and how much
// it has done. The app reads it for /readyz and the status API.
//
// A fault is transient by design (a full disk, a broker or an API that is
// down): the component reports it with Fault and keeps trying, and reports
// its end with Clear. While any fault stands the component is not ready.
// The log says so when a fault starts, once a period while it lasts (with
// how many times it was seen), and when it ends; never once per record.
package health

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// State is where a component is in its life.
type State string

// States, in the order a component goes through them.
const (
	Starting State = "starting" // built, not yet running
	Running  State = "running"
	Stopping State = "stopping" // asked to stop, finishing its work
	Stopped  State = "stopped"  // stopped cleanly
	Failed   State = "failed"   // stopped by an error it could not go on from
)

// LogEvery is how often a standing fault is logged again.
const LogEvery = 30 * time.Second

// Reporter is one component's health. Components embed it, which gives
// them Name, Health and Ready; every method is safe for concurrent use.
type Reporter struct {
	name   string
	logger *slog.Logger
	now    func() time.Time
	done   atomic.Int64
	// faulted and sampled spare the lock on hot paths: Clear with no
	// fault, Add within a second of the last sample.
	faulted atomic.Int32
	sampled atomic.Int64

	mu     sync.Mutex
	state  State
	faults map[string]*fault
	// logged is when each kind of fault was last logged, kept after it
	// clears, so that a fault that comes and goes many times a second
	// (some writes failing, some not) is logged once a period too.
	logged  map[string]time.Time
	last    *Error
	samples []sample // of done, a second or more apart, for the rate
	details func() any
}

type fault struct {
	err    error
	since  time.Time
	seenAt time.Time // last reported
	logged bool      // its start was logged
	seen   int       // since it was last logged
	// expire, when positive, clears the fault once it has not been
	// reported for that long.
	expire time.Duration
}

type sample struct {
	at time.Time
	n  int64
}

// Error is an error with when it happened, as the status API shows it.
type Error struct {
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// New is the health of the component name, logging to logger.
func New(name string, logger *slog.Logger) *Reporter {
	return &Reporter{name: name, logger: logger, now: time.Now, state: Starting, faults: map[string]*fault{}, logged: map[string]time.Time{}}
}

// Name is the component's name.
func (r *Reporter) Name() string { return r.name }

// Health is the reporter itself, so that a component that embeds it hands
// it to the app.
func (r *Reporter) Health() *Reporter { return r }

// SetState moves the component to s.
func (r *Reporter) SetState(s State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state = s
}

// State is where the component is.
func (r *Reporter) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// Fault says the component cannot do its work because of what (a short
// noun: kafka, storage, api) failing with err. It stays unready until
// Clear(what); the fault is logged when it starts and once a LogEvery while
// it lasts.
func (r *Reporter) Fault(what string, err error) { r.FaultFor(what, err, 0) }

// FaultFor is Fault for a fault that only requests reveal, such as Kafka
// not taking writes: with no request to fail, nothing would clear it, so it
// clears by itself once not reported for expire.
func (r *Reporter) FaultFor(what string, err error, expire time.Duration) {
	now := r.now()
	r.mu.Lock()
	r.last = &Error{Message: what + ": " + err.Error(), At: now}
	f := r.faults[what]
	if f == nil {
		f = &fault{since: now}
		r.faults[what] = f
		r.faulted.Add(1)
	}
	f.err, f.seenAt, f.expire = err, now, expire
	f.seen++
	last := r.logged[what]
	log := last.IsZero() || now.Sub(last) >= LogEvery
	var seen int
	first := !f.logged
	if log {
		seen, f.seen, f.logged = f.seen, 0, true
		r.logged[what] = now
	}
	since := f.since
	r.mu.Unlock()
	switch {
	case log && first:
		r.logger.Warn(what+" failing; will retry", "err", err)
	case log:
		r.logger.Warn(what+" still failing; retrying", "err", err,
			"for", now.Sub(since).Round(time.Second).String(), "times", seen)
	}
}

// Clear says what works again, logging the end of its fault.
func (r *Reporter) Clear(what string) {
	if r.faulted.Load() == 0 {
		return
	}
	r.mu.Lock()
	f := r.faults[what]
	if f != nil {
		delete(r.faults, what)
		r.faulted.Add(-1)
	}
	r.mu.Unlock()
	if f != nil && f.logged {
		r.logger.Info(what+" recovered", "after", r.now().Sub(f.since).Round(time.Millisecond).String())
	}
}

// Err records an error the component went on from, or stopped with, as its
// last error, without making it unready.
func (r *Reporter) Err(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = &Error{Message: err.Error(), At: r.now()}
}

// Add counts n records (or events, requests) done.
func (r *Reporter) Add(n int) {
	total := r.done.Add(int64(n))
	now := r.now()
	if now.UnixNano()-r.sampled.Load() < int64(time.Second) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 || now.Sub(r.samples[len(r.samples)-1].at) >= time.Second {
		r.sampled.Store(now.UnixNano())
		if len(r.samples) == maxSamples {
			r.samples = append(r.samples[:0], r.samples[1:]...)
		}
		r.samples = append(r.samples, sample{now, total})
	}
}

// maxSamples at a second apart or more cover rateWindow.
const (
	maxSamples = 16
	rateWindow = 10 * time.Second
)

// SetDetails sets what the status API shows of the component beyond the
// common fields: rows by table, windows written, and so on.
func (r *Reporter) SetDetails(f func() any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.details = f
}

// Ready is nil when the component runs with no fault, or an error saying
// why it is not ready.
func (r *Reporter) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readyLocked()
}

func (r *Reporter) readyLocked() error {
	if r.state != Running {
		return fmt.Errorf("%s is %s", r.name, r.state)
	}
	now := r.now()
	for what, f := range r.faults {
		if f.expire > 0 && now.Sub(f.seenAt) >= f.expire {
			delete(r.faults, what)
			r.faulted.Add(-1)
		}
	}
	if len(r.faults) == 0 {
		return nil
	}
	whats := make([]string, 0, len(r.faults))
	for w := range r.faults {
		whats = append(whats, w)
	}
	sort.Strings(whats)
	errs := make([]error, len(whats))
	for i, w := range whats {
		errs[i] = fmt.Errorf("%s: %s failing since %s: %w", r.name, w, r.faults[w].since.UTC().Format(time.RFC3339), r.faults[w].err)
	}
	return errors.Join(errs...)
}

// Status is a component's health as the status API shows it.
type Status struct {
	Name  string `json:"name"`
	State State  `json:"state"`
	Ready bool   `json:"ready"`
	// Reasons say why it is not ready.
	Reasons   []string `json:"reasons,omitempty"`
	LastError *Error   `json:"last_error,omitempty"`
	// Records is how many it has done; RecordsPerSecond its recent rate.
	Records          int64   `json:"records"`
	RecordsPerSecond float64 `json:"records_per_second"`
	Details          any     `json:"details,omitempty"`
}

// Status reports the component's health now.
func (r *Reporter) Status() Status {
	now := r.now()
	total := r.done.Load()
	r.mu.Lock()
	st := Status{Name: r.name, State: r.state, Records: total, LastError: r.last}
	if err := r.readyLocked(); err != nil {
		for _, e := range unjoin(err) {
			st.Reasons = append(st.Reasons, e.Error())
		}
	} else {
		st.Ready = true
	}
	st.RecordsPerSecond = rate(r.samples, total, now)
	details := r.details
	r.mu.Unlock()
	if details != nil {
		st.Details = details()
	}
	return st
}

// rate is the records a second over the last rateWindow. Records added
// since the newest sample came within a second of it (a later Add would
// have sampled), so long after it the rate is 0.
func rate(samples []sample, total int64, now time.Time) float64 {
	if len(samples) == 0 || now.Sub(samples[len(samples)-1].at) > rateWindow+time.Second {
		return 0
	}
	base := samples[0]
	for _, s := range samples {
		if now.Sub(s.at) >= rateWindow {
			base = s
		}
	}
	d := now.Sub(base.at).Seconds()
	if d < 1 {
		return 0
	}
	return float64(total-base.n) / d
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
