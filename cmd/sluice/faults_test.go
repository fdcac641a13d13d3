package main

import (
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/bus"
)

// runFails runs the binary, which must fail to start: exit 1 within a
// bound, one line (sluice CMD: ...) on stderr saying what is wrong, no
// panic.
func runFails(t *testing.T, want string, args ...string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	out := stderr.String()
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "sluice ") {
			lines = append(lines, l)
		}
	}
	switch {
	case cmd.ProcessState.ExitCode() != 1:
		t.Errorf("sluice %v: exit %d (%v), want 1\n%s", args, cmd.ProcessState.ExitCode(), err, out)
	case strings.Contains(out, "panic") || strings.Contains(out, "goroutine "):
		t.Errorf("sluice %v panicked:\n%s", args, out)
	case len(lines) != 1 || !strings.Contains(lines[0], want):
		t.Errorf("sluice %v: want one line with %q, got:\n%s", args, want, out)
	case took > 20*time.Second:
		t.Errorf("sluice %v took %v to fail", args, took)
	}
}

// TestStartupFailures starts each command as a user would get it wrong:
// every failure is one clear line and exit 1, and whatever had started is
// stopped (the directory lock and ports are free again).
func TestStartupFailures(t *testing.T) {
	dir := t.TempDir()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()

	t.Run("http port taken", func(t *testing.T) {
		// The embedded broker starts first: it must be stopped again.
		runFails(t, busy+": bind: address already in use (pass another --http-addr)",
			"up", "--data-dir", dir, "--http-addr", busy, "--broker-addr", "127.0.0.1:0", "--log-format", "json")
	})
	t.Run("broker port taken", func(t *testing.T) {
		runFails(t, "is in use: stop what listens there or pass --broker-addr",
			"up", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--broker-addr", busy, "--log-format", "json")
	})
	t.Run("directory in use", func(t *testing.T) {
		// The first failure released the lock: this one starts.
		p := startUp(t, dir)
		runFails(t, "is in use by another sluice process: stop it or pass another --data-dir",
			"up", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--broker-addr", "127.0.0.1:0", "--log-format", "json")
		if code, _ := postEvent(t, p.httpAddr, `{"event_type":"t","schema_version":"1","payload":{}}`); code != 200 {
			t.Errorf("the first sluice up answers %d after the second failed", code)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "bad.yml")
		os.WriteFile(cfg, []byte("collector:\n  produce_timeout: soon\n"), 0o644)
		runFails(t, `config `+cfg+`: collector.produce_timeout: want a duration such as 5s or 250ms, got "soon" (line 2)`,
			"up", "--config", cfg, "--data-dir", t.TempDir())
	})
	t.Run("invalid setting", func(t *testing.T) {
		runFails(t, "sinks[0].flush_rows: 0: want at least 1", "up", "--flush-rows", "0", "--data-dir", t.TempDir())
	})
	t.Run("broker unreachable", func(t *testing.T) {
		runFails(t, "(is Kafka reachable at 127.0.0.1:1? kafka.start_timeout is 2s)",
			"collector", "--brokers", "127.0.0.1:1", "--kafka-start-timeout", "2s", "--http-addr", "127.0.0.1:0")
	})
	t.Run("ops port taken", func(t *testing.T) {
		b, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: t.TempDir(), Partitions: 1}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		runFails(t, "ops server: listen on "+busy, "loader", "lake", "--brokers", b.Addr(), "--ops-addr", busy, "--data-dir", t.TempDir())
	})
}

// ackedOnce waits until table, in the lake that `sluice query` finds with
// the flags lake, holds every acknowledged event (by root id) once. An event answered 503 was not confirmed,
// but Kafka may still have stored it (the answer says "not confirmed", not
// "not stored"): the lake may hold up to unavailable of those, each once
// too.
func ackedOnce(t *testing.T, lake []string, table string, acked map[string]bool, unavailable int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, code := sluice(t, slices.Concat([]string{"query"}, lake, []string{"--format", "csv", "SELECT root_id FROM " + table})...)
		inLake := map[string]int{}
		if code == 0 {
			for _, id := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
				inLake[id]++
			}
		}
		var missing, twice, unconfirmed int
		for id := range acked {
			if inLake[id] == 0 {
				missing++
			}
		}
		for id, n := range inLake {
			if n > 1 {
				twice++
			}
			if !acked[id] {
				unconfirmed++
			}
		}
		if code == 0 && missing == 0 && twice == 0 && unconfirmed <= unavailable {
			t.Logf("the lake holds the %d acknowledged events once, and %d of the %d answered 503", len(acked), unconfirmed, unavailable)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lake misses %d of the %d acknowledged events, holds %d events twice and %d not acknowledged (%d answered 503)",
				missing, len(acked), twice, unconfirmed, unavailable)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestDiskFullStaysUp runs sluice up on a 40 MB file system and sends
// events until it fills: the collector answers 503 with Retry-After,
// /readyz says why, nothing exits; when space comes back everything
// resumes by itself, and every event answered 200 is in the lake exactly
// once.
func TestDiskFullStaysUp(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", mnt).CombinedOutput(); err != nil {
		// Mounting takes root, and a sandbox that allows it.
		t.Skipf("cannot mount a small file system here (%v: %s); the sink conformance suite and the aggregator's TestFullDiskIsWaitedOut inject ENOSPC instead", err, out)
	}
	p := startUp(t, filepath.Join(mnt, "data"), "--flush-interval", "300ms")
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		exec.Command("umount", "-l", mnt).Run() // lazily: the process may still be going
	})

	var mu sync.Mutex
	acked := map[string]bool{}
	unavailable := 0
	var retryAfter, body503 string
	send := func(until func() bool) {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				pad := make([]byte, 1000)
				for {
					mu.Lock()
					stop := until()
					mu.Unlock()
					if stop {
						return
					}
					crand.Read(pad) // incompressible, as real payloads are
					ev := fmt.Sprintf(`{"event_type":"page_view","schema_version":"1-0-0","payload":{"pad":%q}}`, hex.EncodeToString(pad))
					resp, err := http.Post("http://"+p.httpAddr+"/api/v1/collect", "application/json", strings.NewReader(ev))
					if err != nil {
						t.Errorf("the collector went away: %v", err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					mu.Lock()
					switch resp.StatusCode {
					case 200:
						var r struct {
							RootID string `json:"root_id"`
						}
						json.Unmarshal(b, &r)
						acked[r.RootID] = true
					case 503:
						unavailable++
						retryAfter, body503 = resp.Header.Get("Retry-After"), string(b)
					default:
						t.Errorf("answer %d: %s", resp.StatusCode, b)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	deadline := time.Now().Add(2 * time.Minute)
	send(func() bool { return unavailable >= 50 || time.Now().After(deadline) || t.Failed() })
	if unavailable < 50 {
		t.Fatalf("the disk did not fill: %d acknowledged, %d answered 503", len(acked), unavailable)
	}
	if retryAfter == "" || !strings.Contains(body503, "broker_unavailable") {
		t.Errorf("503 with Retry-After %q: %s", retryAfter, body503)
	}
	resp, err := http.Get("http://" + p.httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(ready), "no space left on device") && !strings.Contains(string(ready), "UNKNOWN_SERVER_ERROR") {
		t.Errorf("readyz on a full disk = %d %s", resp.StatusCode, ready)
	}
	time.Sleep(2 * time.Second) // the stages meet the full disk too
	select {
	case err := <-p.exited:
		t.Fatalf("sluice up exited on a full disk: %v", err)
	default:
	}
	t.Logf("disk full after %d events acknowledged (%d answered 503)", len(acked), unavailable)

	// Space comes back: everything resumes with no restart.
	if out, err := exec.Command("mount", "-o", "remount,size=400m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	more := len(acked) + 200
	send(func() bool { return len(acked) >= more || t.Failed() })
	ackedOnce(t, []string{"--data-dir", filepath.Join(mnt, "data")}, "page_view", acked, unavailable, time.Minute)
	resp, err = http.Get("http://" + p.httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("readyz after space came back = %d", resp.StatusCode)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("sluice up after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("sluice up did not stop within 30s of SIGTERM")
	}
}
