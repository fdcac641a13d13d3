package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/loadgen"
	"github.com/sluicehq/sluice/internal/nginx"
)

// benchBalance measures collectors behind the load balancer as the Compose
// setup runs them, each its own process: `sluice broker`, one or two
// `sluice collector`, and nginx (testenv/nginx) with
// deploy/compose/nginx.conf, loaded from this process. It reports the rate
// through the balancer to two collectors ÷ to one, and the cores each
// process kept busy, which say where the machine's capacity went.
func benchBalance(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("balance", flag.ContinueOnError)
	conns := fs.Int("conns", 64, "concurrent keep-alive connections for single events")
	duration := fs.Duration("duration", 10*time.Second, "measured time of each run")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time before each run")
	batch := fs.Int("batch", 500, "events per batch request")
	batchConns := fs.Int("batch-conns", 8, "connections for batch runs")
	bin := fs.String("sluice", "", "the sluice binary to run (default: built from ./cmd/sluice)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nginxBin, err := nginx.Find()
	if err != nil {
		return err
	}
	conf, err := os.ReadFile(filepath.Join("deploy", "compose", "nginx.conf"))
	if err != nil {
		return fmt.Errorf("%w (run sluicebench from the repository's root)", err)
	}
	dir, err := os.MkdirTemp("", "sluicebench-balance")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *bin, err = buildSluice(dir, *bin); err != nil {
		return err
	}
	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	brokerAddr, col1, col2 := addr(0), addr(1), addr(2)

	ps := &processes{dir: dir}
	defer ps.stopAll()
	broker, err := ps.start("broker", *bin, "broker", "--broker-addr", brokerAddr, "--data-dir", filepath.Join(dir, "broker"), "--log-level", "warn")
	if err != nil {
		return err
	}
	if err := waitFor(func() error { return dial(brokerAddr) }); err != nil {
		return fmt.Errorf("the broker does not listen: %w", err)
	}
	var collectors []*exec.Cmd
	for i, a := range []string{col1, col2} {
		c, err := ps.start(fmt.Sprintf("collector-%d", i+1), *bin, "collector", "--brokers", brokerAddr, "--http-addr", a,
			"--instance-id", fmt.Sprintf("collector-%d", i+1), "--log-level", "warn")
		if err != nil {
			return err
		}
		collectors = append(collectors, c)
		if err := waitFor(func() error { return ready("http://" + a + "/readyz") }); err != nil {
			return fmt.Errorf("collector-%d: %w", i+1, err)
		}
	}
	one, err := nginx.Start(nginxBin, string(conf), filepath.Join(dir, "lb-1"), addr(3), []string{col1})
	if err != nil {
		return err
	}
	defer one.Stop()
	two, err := nginx.Start(nginxBin, string(conf), filepath.Join(dir, "lb-2"), addr(4), []string{col1, col2})
	if err != nil {
		return err
	}
	defer two.Stop()

	modes, err := loadModes(*conns, *batch, *batchConns)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "balance benchmark: TLC trip events through nginx (deploy/compose/nginx.conf, one worker) to one collector,\n"+
		"then to two, each a process of its own on `sluice broker`; load from this process, %v after %v warm-up.\n"+
		"cores: each process's CPU time over the run's wall time; the machine has %d.\n\n", *duration, *warmup, runtime.NumCPU())
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\ttarget\tevents/s\tp50\tp99\tfailed\tcores: nginx\tcollectors\tbroker\tload\tmachine\t")
	for _, m := range modes {
		var rates [2]float64
		for i, lb := range []*nginx.Server{one, two} {
			pids := []int{lb.Pid(), collectors[0].Process.Pid, collectors[1].Process.Pid, broker.Process.Pid, os.Getpid()}
			before, busyBefore, wallBefore := cpuTimes(pids), machineBusy(), time.Now()
			res, err := loadgen.Run(ctx, loadgen.Config{
				URL: "http://" + lb.Addr + m.path, ContentType: "application/json",
				Bodies: m.bodies, EventsPerBody: m.per, Connections: m.conns,
				Duration: *duration, Warmup: *warmup,
			})
			if err != nil {
				return err
			}
			after, busyAfter, wall := cpuTimes(pids), machineBusy(), time.Since(wallBefore).Seconds()
			used := make([]float64, len(pids))
			for j := range pids {
				used[j] = (after[j] - before[j]) / wall
			}
			failed := 0
			for _, n := range res.Failures {
				failed += n
			}
			rates[i] = res.EventsPerSec()
			fmt.Fprintf(tw, "%s\tnginx → %d collector(s)\t%.0f\t%v\t%v\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", m.name, i+1,
				res.EventsPerSec(), res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), failed,
				used[0], used[1]+used[2], used[3], used[4], (busyAfter-busyBefore)/wall)
		}
		fmt.Fprintf(tw, "%s\t2 collectors ÷ 1\t%.2f\t\t\t\t\t\t\t\t\t\n", m.name, rates[1]/rates[0])
	}
	return tw.Flush()
}

// waitFor retries check for 30 seconds.
func waitFor(check func() error) error {
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = check(); err == nil {
			return nil
		}
	}
	return err
}

func ready(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// clockTicks is Linux's USER_HZ, the unit of /proc's CPU times, 100 on
// every architecture Go builds for.
const clockTicks = 100

// cpuTimes is the CPU seconds (user and system) each process has used, from
// /proc/<pid>/stat; 0 for one that cannot be read.
func cpuTimes(pids []int) []float64 {
	out := make([]float64, len(pids))
	for i, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name, in parentheses, may hold spaces: the fields
		// after it start with the state, field 3; utime and stime are 14
		// and 15.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		utime, err1 := strconv.ParseFloat(f[11], 64)
		stime, err2 := strconv.ParseFloat(f[12], 64)
		if errors.Join(err1, err2) == nil {
			out[i] = (utime + stime) / clockTicks
		}
	}
	return out
}

// machineBusy is the CPU seconds all cores have spent not idle, from
// /proc/stat.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	// cpu user nice system idle iowait irq softirq steal guest guest_nice;
	// guest time is in user's already.
	f := strings.Fields(line)
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7} {
		if i < len(f) {
			n, _ := strconv.ParseFloat(f[i], 64)
			busy += n
		}
	}
	return busy / clockTicks
}
