package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
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
	runs := fs.Int("runs", 1, "runs of each target; the median is reported")
	bin := fs.String("sluice", "", "the sluice binary to run (default: built from ./cmd/sluice)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of sluice up, from its /debug/pprof/profile, to this file, and one of the collector alone to this file with .alone added")
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
	fmt.Fprintf(out, "up benchmark: single TLC trip events over %d connections, %v after %v warm-up, to each target in processes\n"+
		"of its own, loaded from this process; cores: each target's CPU time over the run's wall time (the machine has %d)\n\n",
		*conns, *duration, *warmup, runtime.NumCPU())
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tevents/s\tp50\tp99\tfailed\tcores: target\tload\t÷ no-op\t")
	var noop float64
	for _, tg := range targets {
		var results []loadgen.Result
		var cores, load []float64
		for range *runs {
			ps := &processes{dir: dir}
			err := tg.start(ps)
			if err == nil {
				err = waitFor(func() error { return ready("http://" + tg.addr + "/readyz") })
			}
			if err != nil {
				ps.stopAll()
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			pids := append(ps.pids(), os.Getpid())
			profiled := make(chan error, 1)
			if *profile != "" && tg.name != "no-op handler" {
				path := *profile
				if tg.name == "collector and broker alone" {
					path += ".alone"
				}
				go func() {
					time.Sleep(*warmup)
					profiled <- fetchProfile("http://"+tg.addr, *duration, path)
				}()
			} else {
				profiled <- nil
			}
			before, wallBefore := cpuTimes(pids), time.Now()
			res, err := loadgen.Run(ctx, loadgen.Config{
				URL: "http://" + tg.addr + single.path, ContentType: "application/json",
				Bodies: single.bodies, EventsPerBody: 1, Connections: *conns,
				Duration: *duration, Warmup: *warmup,
			})
			after, wall := cpuTimes(pids), time.Since(wallBefore).Seconds()
			if perr := <-profiled; perr != nil {
				fmt.Fprintln(os.Stderr, "profile:", perr)
			}
			ps.stopAll()
			os.RemoveAll(filepath.Join(dir, "up"))
			os.RemoveAll(filepath.Join(dir, "broker"))
			if err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			used := 0.0
			for j := range len(pids) - 1 {
				used += (after[j] - before[j]) / wall
			}
			results = append(results, res)
			cores = append(cores, used)
			load = append(load, (after[len(pids)-1]-before[len(pids)-1])/wall)
		}
		res := medianBy(results, loadgen.Result.EventsPerSec)
		if noop == 0 {
			noop = res.EventsPerSec()
		}
		failed := 0
		for _, n := range res.Failures {
			failed += n
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%v\t%v\t%d\t%.2f\t%.2f\t%.2f\t\n", tg.name, res.EventsPerSec(),
			res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), failed, median(cores), median(load), res.EventsPerSec()/noop)
	}
	return tw.Flush()
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
	dir  string
	list []*exec.Cmd
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
	ps.list = nil
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
