package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/loadgen"
)

// benchUp measures the collector where users first meet it, inside
// `sluice up` beside the enricher and the lake loader, against the same
// collector with only its broker (`sluice broker` and `sluice collector`),
// and a no-op HTTP handler: each its own process, one set at a time, loaded
// from this process with single events. The stages behind the collector
// share its cores; the ratio says how much of the HTTP path they take.
func benchUp(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	conns := fs.Int("conns", 64, "concurrent keep-alive connections")
	duration := fs.Duration("duration", 10*time.Second, "measured time of each run")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time before each run")
	runs := fs.Int("runs", 1, "runs, each loading the three targets in turn; medians are reported, and ratios to the no-op handler of the same run")
	bin := fs.String("sluice", "", "the sluice binary to run (default: built from ./cmd/sluice)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of sluice up, from its /debug/pprof/profile, to this file, and one of the collector alone to this file with .alone added")
	only := fs.String("only", "", "load only the no-op handler and this target: alone (the collector and broker alone) or up (the collector inside sluice up)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sluicebench-up")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *bin, err = buildSluice(dir, *bin); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	modes, err := loadModes(*conns, 1, 1)
	if err != nil {
		return err
	}
	single := modes[0]

	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	type target struct {
		name  string
		addr  string
		start func(ps *processes) error
	}
	targets := []target{
		{"no-op handler", addr(0), func(ps *processes) error {
			_, err := ps.start("noop", self, "noop-server", "-addr", addr(0))
			return err
		}},
		{"collector and broker alone", addr(1), func(ps *processes) error {
			if _, err := ps.start("broker", *bin, "broker", "--broker-addr", addr(2), "--data-dir", filepath.Join(dir, "broker"), "--log-level", "warn"); err != nil {
				return err
			}
			if err := waitFor(func() error { return dial(addr(2)) }); err != nil {
				return fmt.Errorf("the broker does not listen: %w", err)
			}
			_, err := ps.start("collector", *bin, "collector", "--brokers", addr(2), "--http-addr", addr(1), "--log-level", "warn", "--pprof")
			return err
		}},
		{"collector inside sluice up", addr(1), func(ps *processes) error {
			_, err := ps.start("up", *bin, "up", "--data-dir", filepath.Join(dir, "up"), "--http-addr", addr(1),
				"--broker-addr", addr(2), "--log-level", "warn", "--pprof")
			return err
		}},
	}
	switch *only {
	case "":
	case "alone":
		targets = targets[:2]
	case "up":
		targets = []target{targets[0], targets[2]}
	default:
		return fmt.Errorf("-only %q: want alone or up", *only)
	}
	fmt.Fprintf(out, "up benchmark: single TLC trip events over %d connections, %v after %v warm-up, to each target in processes\n"+
		"of its own, loaded from this process; cores: each target's CPU time over the run's wall time (the machine has %d)\n\n",
		*conns, *duration, *warmup, runtime.NumCPU())
	// A run loads the three targets one after the other, and each ratio is
	// to the no-op handler of the same run: this machine's speed drifts by
	// half within minutes, and a no-op run minutes before or after another
	// target's made ratios of 0.4 and 0.7 for the same binary.
	type measured struct {
		results           []loadgen.Result
		cores, load, vsNo []float64
		byProcess         map[string][]float64 // CPU µs/event of each of the target's processes
	}
	got := make([]measured, len(targets))
	for range *runs {
		for i, tg := range targets {
			res, used, load, err := loadTarget(ctx, tg.name, tg.addr, tg.start, dir, single, *conns, *duration, *warmup, *profile)
			if err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			m := &got[i]
			m.results = append(m.results, res)
			total := 0.0
			for name, c := range used {
				if m.byProcess == nil {
					m.byProcess = map[string][]float64{}
				}
				m.byProcess[name] = append(m.byProcess[name], c/res.EventsPerSec()*1e6)
				total += c
			}
			m.cores = append(m.cores, total)
			m.load = append(m.load, load)
			m.vsNo = append(m.vsNo, res.EventsPerSec()/got[0].results[len(got[0].results)-1].EventsPerSec())
		}
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tevents/s\tp50\tp99\tfailed\tcores: target\tload\ttarget's CPU µs/event\tby process\t÷ no-op (each run)\t")
	for i, tg := range targets {
		m := got[i]
		res := medianBy(m.results, loadgen.Result.EventsPerSec)
		failed := 0
		for _, n := range res.Failures {
			failed += n
		}
		each := make([]string, len(m.vsNo))
		for j, r := range m.vsNo {
			each[j] = fmt.Sprintf("%.2f", r)
		}
		perEvent := make([]float64, len(m.results))
		for j, r := range m.results {
			perEvent[j] = m.cores[j] / r.EventsPerSec() * 1e6
		}
		var procs []string
		for _, name := range slices.Sorted(maps.Keys(m.byProcess)) {
			procs = append(procs, fmt.Sprintf("%s %.0f", name, median(m.byProcess[name])))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%v\t%v\t%d\t%.2f\t%.2f\t%.0f\t%s\t%.2f (%s)\t\n", tg.name, res.EventsPerSec(),
			res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), failed, median(m.cores), median(m.load),
			median(perEvent), strings.Join(procs, ", "), median(m.vsNo), strings.Join(each, ", "))
	}
	return tw.Flush()
}

// loadTarget starts a target's processes, loads it, stops them, and returns
// the load's result with the cores each of the target's processes, by
// name, and this one (the load generator) kept busy.
func loadTarget(ctx context.Context, name, addr string, start func(*processes) error, dir string, single loadMode,
	conns int, duration, warmup time.Duration, profile string) (loadgen.Result, map[string]float64, float64, error) {
	ps := &processes{dir: dir}
	defer func() {
		ps.stopAll()
		os.RemoveAll(filepath.Join(dir, "up"))
		os.RemoveAll(filepath.Join(dir, "broker"))
	}()
	err := start(ps)
	if err == nil {
		err = waitFor(func() error { return ready("http://" + addr + "/readyz") })
	}
	if err != nil {
		return loadgen.Result{}, nil, 0, err
	}
	pids := append(ps.pids(), os.Getpid())
	profiled := make(chan error, 1)
	if profile != "" && name != "no-op handler" {
		path := profile
		if name == "collector and broker alone" {
			path += ".alone"
		}
		go func() {
			time.Sleep(warmup)
			profiled <- fetchProfile("http://"+addr, duration, path)
		}()
	} else {
		profiled <- nil
	}
	before, wallBefore := cpuTimes(pids), time.Now()
	res, err := loadgen.Run(ctx, loadgen.Config{
		URL: "http://" + addr + single.path, ContentType: "application/json",
		Bodies: single.bodies, EventsPerBody: 1, Connections: conns,
		Duration: duration, Warmup: warmup,
	})
	after, wall := cpuTimes(pids), time.Since(wallBefore).Seconds()
	if perr := <-profiled; perr != nil {
		fmt.Fprintln(os.Stderr, "profile:", perr)
	}
	if err != nil {
		return loadgen.Result{}, nil, 0, err
	}
	used := map[string]float64{}
	for j, name := range ps.names {
		used[name] = (after[j] - before[j]) / wall
	}
	return res, used, (after[len(pids)-1] - before[len(pids)-1]) / wall, nil
}

// fetchProfile writes the CPU profile of the process serving base, over d,
// to path.
func fetchProfile(base string, d time.Duration, path string) error {
	resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Request.URL, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// noopServer serves the no-op handler on -addr until interrupted: the
// baseline of benchUp, in a process of its own as the targets are.
func noopServer(ctx context.Context, args []string, _ io.Writer) error {
	fs := flag.NewFlagSet("noop-server", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/collect", loadgen.Noop())
	mux.HandleFunc("/readyz", func(http.ResponseWriter, *http.Request) {})
	return serveUntilStopped(ctx, *addr, mux)
}

// serveUntilStopped serves h on addr until ctx is done or SIGTERM comes:
// the benchmark's servers of their own processes.
func serveUntilStopped(ctx context.Context, addr string, h http.Handler) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: addr, Handler: h}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// processes are a benchmark's child processes, each logging to a file in
// dir, killed with this process.
type processes struct {
	dir   string
	list  []*exec.Cmd
	names []string
}

func (ps *processes) start(name, bin string, args ...string) (*exec.Cmd, error) {
	log, err := os.Create(filepath.Join(ps.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ps.list = append(ps.list, cmd)
	ps.names = append(ps.names, name)
	return cmd, nil
}

func (ps *processes) pids() []int {
	var out []int
	for _, c := range ps.list {
		out = append(out, c.Process.Pid)
	}
	return out
}

// stopAll stops the processes, last started first.
func (ps *processes) stopAll() {
	for i := len(ps.list) - 1; i >= 0; i-- {
		ps.list[i].Process.Signal(syscall.SIGTERM)
		ps.list[i].Wait()
	}
	ps.list, ps.names = nil, nil
}

// buildSluice is bin, or else a sluice binary built from ./cmd/sluice in
// dir.
func buildSluice(dir, bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	bin = filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build sluice: %w", err)
	}
	return bin, nil
}

func dial(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
	}
	return err
}
