// Package app runs one Sluice process: the components its configuration
// gives it (the embedded broker, stages, sinks, jobs), each with a name,
// Run(ctx), a health report and a clean stop.
//
// Components are built one after another into a Process; a failure while
// building releases, last first, whatever was built, and is one error for
// main to print. Built, they run together as execute/interrupt pairs
// (oklog/run): the first to return, with or without an error, interrupts
// the others, and Run returns once all have stopped and what they held is
// released. A component that meets a transient fault (a full disk, a broker
// or an API that is down) reports it through its health and keeps trying;
// only what it cannot go on from is an error.
//
// Each process has one ops HTTP handler (ops.go): /metrics, /healthz,
// /readyz aggregated over every component, and the status API.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/oklog/run"

	"github.com/sluicehq/sluice/internal/health"
)

// Component is a stage, sink or job of a process.
type Component interface {
	// Name names the component in logs and in the status API, such as
	// collector, enricher, sink.lake or aggregator.turnstile_4h.
	Name() string
	// Run does the component's work until ctx is done, then stops it
	// cleanly (in-flight work finished or left for the next run to redo)
	// and returns nil. An error means it could not go on.
	Run(ctx context.Context) error
	// Health is how the component reports its state, faults and
	// throughput; components embed a *health.Reporter for it.
	Health() *health.Reporter
}

// Grouped is a component that consumes through Kafka consumer groups,
// whose lag the status API reports.
type Grouped interface {
	Groups() []string
}

// Process is the components of one process and what they hold.
type Process struct {
	logger     *slog.Logger
	components []Component
	closers    []func()
}

// NewProcess starts an empty process.
func NewProcess(logger *slog.Logger) *Process {
	return &Process{logger: logger}
}

// Add adds a built component.
func (p *Process) Add(c Component) { p.components = append(p.components, c) }

// Defer adds f to what Close releases, after every component has stopped
// and in the reverse order of Defer: what was built first (the embedded
// broker, say) outlives what uses it.
func (p *Process) Defer(f func()) { p.closers = append(p.closers, f) }

// Components are the process's components, in the order they were added.
func (p *Process) Components() []Component { return slices.Clone(p.components) }

// Close releases what Defer was given, last first. It is safe to call more
// than once, and is what a failed build calls.
func (p *Process) Close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	p.closers = nil
}

// Run runs every component until ctx is done or one of them returns, then
// stops the rest, releases what the process holds and returns the first
// error.
func (p *Process) Run(ctx context.Context) error {
	defer p.Close()
	var g run.Group
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	g.Add(func() error {
		<-stop.Done()
		return nil
	}, func(error) { cancel() })
	for _, c := range p.components {
		h := c.Health()
		cctx, ccancel := context.WithCancel(context.WithoutCancel(ctx))
		g.Add(func() error {
			h.SetState(health.Running)
			err := c.Run(cctx)
			if err != nil {
				h.Err(err)
				h.SetState(health.Failed)
				p.logger.Error("component failed; stopping the process", "component", c.Name(), "err", err)
				return fmt.Errorf("%s: %w", c.Name(), err)
			}
			h.SetState(health.Stopped)
			return nil
		}, func(error) {
			if h.State() == health.Running {
				h.SetState(health.Stopping)
			}
			ccancel()
		})
	}
	return g.Run()
}
