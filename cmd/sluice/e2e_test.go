package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/catalogtest"
	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/s3test"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/searchtest"
)

// These tests run the built binary as a user would.

var (
	binary string
	// repoDir is the repository root, resolved before any test runs: the
	// in-process S3 server changes the working directory.
	repoDir string
)

func TestMain(m *testing.M) {
	var err error
	if repoDir, err = filepath.Abs("../.."); err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "sluice-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("build sluice: " + err.Error())
	}
	code := kafkatest.Main(searchtest.Wrap(m))
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	cmd        *exec.Cmd
	httpAddr   string
	brokerAddr string
	exited     chan error
	stdout     *lockedBuffer
}

// lockedBuffer is a bytes.Buffer a process writes while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startUp runs `sluice up` on dir and waits until it logs its addresses.
func startUp(t *testing.T, dir string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"up", "--data-dir", dir, "--http-addr", "127.0.0.1:0",
		"--broker-addr", "127.0.0.1:0", "--log-format", "json"}, extra...)
	cmd := exec.Command(binary, args...)
	stdout := &lockedBuffer{}
	cmd.Stdout = stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan error, 1), stdout: stdout}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch line.Msg {
			case "embedded broker started":
				p.brokerAddr = line.Addr
			case "collector listening":
				p.httpAddr = line.Addr
				close(ready)
			}
		}
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	select {
	case <-ready:
	case err := <-p.exited:
		t.Fatalf("sluice up exited early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("sluice up did not start within 30s")
	}
	return p
}

func sluice(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binary, args...).Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// killRandomly starts a process kills times and SIGKILLs it each time
// 0.4 to 1.6 s after its start: somewhere in its work, wherever that is.
func killRandomly(start func() *exec.Cmd, kills int) {
	for range kills {
		cmd := start()
		time.Sleep(time.Duration(400+mrand.IntN(1200)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
}

func postEvent(t *testing.T, addr, body string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/api/v1/collect", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		RootID string `json:"root_id"`
	}
	json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r.RootID
}

func TestUpCollectTailSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	p := startUp(t, dir)
	var ids []string
	for range 3 {
		code, id := postEvent(t, p.httpAddr, `{"event_type":"page_view","schema_version":"1-0-0","payload":{"url":"/"}}`)
		if code != 200 {
			t.Fatalf("collect = %d", code)
		}
		ids = append(ids, id)
	}
	if code, _ := postEvent(t, p.httpAddr, `{"payload":{}}`); code != 400 {
		t.Errorf("invalid event = %d, want 400", code)
	}

	out, code := sluice(t, "tail", "sluice.raw", "-n", "10", "--brokers", p.brokerAddr)
	if code != 0 {
		t.Fatalf("tail exited %d", code)
	}
	for _, id := range ids {
		if !strings.Contains(out, id) {
			t.Errorf("tail output lacks %s:\n%s", id, out)
		}
	}

	// kill -9, then start again on the same directory: nothing is lost.
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p = startUp(t, dir)
	out, _ = sluice(t, "topics", "--json", "--brokers", p.brokerAddr)
	var topics []topicInfo
	if err := json.Unmarshal([]byte(out), &topics); err != nil {
		t.Fatalf("topics --json: %v: %s", err, out)
	}
	records := map[string]int64{}
	for _, tp := range topics {
		if tp.Records != nil {
			records[tp.Topic] = *tp.Records
		}
	}
	if records["sluice.raw"] != 3 || records["sluice.dlq"] != 1 {
		t.Errorf("after kill -9 and restart: %v, want 3 raw and 1 dead letter", records)
	}
	out, _ = sluice(t, "tail", "sluice.raw", "--from-beginning", "--brokers", p.brokerAddr)
	for _, id := range ids {
		if !strings.Contains(out, id) {
			t.Errorf("after restart, tail lacks %s", id)
		}
	}

	// SIGTERM stops it cleanly.
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("sluice up after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sluice up did not stop within 30s of SIGTERM")
	}
}

// TestHintsFindTheRunningUp: the banner's hints carry this process's data
// directory, through which tail, topics and query find it whatever ports it
// was given.
func TestHintsFindTheRunningUp(t *testing.T) {
	dir := t.TempDir()
	p := startUp(t, dir)
	if code, _ := postEvent(t, p.httpAddr, `{"event_type":"hinted","schema_version":"1","payload":{"n":1}}`); code != 200 {
		t.Fatalf("collect = %d", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stdout.String(), "data dir") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	banner := p.stdout.String()
	if !strings.Contains(banner, "sluice tail sluice.raw --follow --data-dir "+dir) || !strings.Contains(banner, p.brokerAddr) {
		t.Errorf("the banner's hints do not find this process (broker %s):\n%s", p.brokerAddr, banner)
	}
	// No --brokers: the broker is found from the data directory, not
	// dialled at the default 127.0.0.1:9092.
	out, code := sluice(t, "tail", "sluice.raw", "-n", "1", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, `"event_type":"hinted"`) {
		t.Errorf("tail --data-dir = %d:\n%s", code, out)
	}
	out, code = sluice(t, "topics", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "sluice.raw") {
		t.Errorf("topics --data-dir = %d:\n%s", code, out)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	if _, err := os.Stat(filepath.Join(dir, "sluice.json")); !os.IsNotExist(err) {
		t.Errorf("a stopped sluice up left its addresses behind: %v", err)
	}
}

func TestHelpAndUsageErrors(t *testing.T) {
	out, code := sluice(t, "--help")
	if code != 0 || !strings.Contains(out, "up ") || !strings.Contains(out, "collector") {
		t.Errorf("sluice --help = %d:\n%s", code, out)
	}
	for _, cmd := range []string{"up", "collector", "broker", "topics", "tail", "query", "loader", "replay", "demo", "forms-api", "schemas", "jobs", "dlq"} {
		c := exec.Command(binary, cmd, "--help")
		outb, err := c.CombinedOutput()
		if err != nil || !strings.Contains(string(outb), "Usage: sluice "+cmd) || !strings.Contains(string(outb), "SLUICE_") ||
			strings.Contains(string(outb), "panic") {
			t.Errorf("sluice %s --help: %v\n%s", cmd, err, outb)
		}
	}
	if out, code := sluice(t, "schemas"); code != 0 || !strings.Contains(out, "yellow_taxi_trip         1-0-0    2020-12  20          yellow_taxi_trip/1-0-0.json") {
		t.Errorf("sluice schemas = %d:\n%s", code, out)
	}
	if _, code := sluice(t, "nope"); code != 2 {
		t.Errorf("unknown command exit %d, want 2", code)
	}
	if _, code := sluice(t, "up", "--no-such-flag"); code != 2 {
		t.Errorf("unknown flag exit %d, want 2", code)
	}
	c := exec.Command(binary, "collector")
	outb, _ := c.CombinedOutput()
	if c.ProcessState.ExitCode() != 1 || !strings.Contains(string(outb), "--brokers") {
		t.Errorf("collector without brokers: exit %d\n%s", c.ProcessState.ExitCode(), outb)
	}
}

// TestKillUnderLoadLosesNoAckedEvent kills `sluice up` with SIGKILL while
// clients are sending; after a restart on the same directory every event
// that was answered 200 is in sluice.raw.
func TestKillUnderLoadLosesNoAckedEvent(t *testing.T) {
	dir := t.TempDir()
	p := startUp(t, dir)
	acked := make(chan string, 1<<16)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post("http://"+p.httpAddr+"/api/v1/collect", "application/json",
					strings.NewReader(`{"event_type":"t","schema_version":"1","payload":{"x":1}}`))
				if err != nil {
					continue
				}
				var r struct {
					RootID string `json:"root_id"`
				}
				json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					acked <- r.RootID
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	close(stop)
	wg.Wait()
	close(acked)
	want := make(map[string]bool)
	for id := range acked {
		want[id] = true
	}
	if len(want) < 100 {
		t.Fatalf("only %d events acknowledged before the kill; the test needs load", len(want))
	}

	p = startUp(t, dir)
	out, code := sluice(t, "tail", "sluice.raw", "--from-beginning", "--brokers", p.brokerAddr)
	if code != 0 {
		t.Fatalf("tail exited %d", code)
	}
	stored := make(map[string]bool)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			Key string `json:"key"`
		}
		json.Unmarshal([]byte(line), &r)
		stored[r.Key] = true
	}
	lost := 0
	for id := range want {
		if !stored[id] {
			lost++
		}
	}
	t.Logf("%d events acknowledged before SIGKILL, %d records stored", len(want), len(stored))
	if lost > 0 {
		t.Errorf("%d of %d acknowledged events are missing after kill -9 and restart", lost, len(want))
	}
}

// TestLakeRoundTrip sends real TLC trips through the running binary and
// reads them back with `sluice query`: counts, sums and extremes equal
// those computed from the source.
func TestLakeRoundTrip(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoDir, "cmd/sluicebench/testdata/tlc_yellow_2025-01_first500.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		n                int
		fare, total, tip float64
		minPickup        string
		maxPickup        string
	}
	for _, line := range strings.Split(strings.TrimSpace(string(src)), "\n") {
		var ev struct {
			Payload struct {
				Fare   float64 `json:"fare_amount"`
				Total  float64 `json:"total_amount"`
				Tip    float64 `json:"tip_amount"`
				Pickup string  `json:"tpep_pickup_datetime"`
			} `json:"payload"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		want.n++
		want.fare += ev.Payload.Fare
		want.total += ev.Payload.Total
		want.tip += ev.Payload.Tip
		if want.minPickup == "" || ev.Payload.Pickup < want.minPickup {
			want.minPickup = ev.Payload.Pickup
		}
		if ev.Payload.Pickup > want.maxPickup {
			want.maxPickup = ev.Payload.Pickup
		}
	}

	dir := t.TempDir()
	p := startUp(t, dir, "--flush-interval", "200ms")
	resp, err := http.Post("http://"+p.httpAddr+"/api/v1/collect/batch", "application/x-ndjson", strings.NewReader(string(src)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("batch = %d", resp.StatusCode)
	}

	type totals struct {
		N         int     `json:"n"`
		Fare      float64 `json:"fare"`
		Total     float64 `json:"total"`
		Tip       float64 `json:"tip"`
		Nulls     int     `json:"nulls"`
		MinPickup string  `json:"min_pickup"`
		MaxPickup string  `json:"max_pickup"`
	}
	var g totals
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := sluice(t, "query", "--data-dir", dir, "--format", "json",
			`SELECT count(*) AS n, sum(fare_amount) AS fare, sum(total_amount) AS total, sum(tip_amount) AS tip,
			 count(*) - count(passenger_count) AS nulls,
			 strftime(min(tpep_pickup_datetime), '%Y-%m-%dT%H:%M:%S') AS min_pickup,
			 strftime(max(tpep_pickup_datetime), '%Y-%m-%dT%H:%M:%S') AS max_pickup FROM yellow_taxi_trip`)
		g = totals{}
		if code == 0 {
			json.Unmarshal([]byte(out), &g) // one JSON line
		}
		if g.N == want.n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lake did not hold %d trips within 30s: %s", want.n, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	near := func(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }
	if !near(g.Fare, want.fare) || !near(g.Total, want.total) || !near(g.Tip, want.tip) || g.Nulls != 0 ||
		g.MinPickup != want.minPickup || g.MaxPickup != want.maxPickup {
		t.Errorf("lake: %+v\nsource: %+v", g, want)
	}
	out, code := sluice(t, "query", "--data-dir", dir, "--tables")
	if code != 0 || !strings.Contains(out, "yellow_taxi_trip") {
		t.Errorf("query --tables = %d:\n%s", code, out)
	}

	// The lake's upkeep, while sluice up runs: the rows are the same after
	// compaction and expiry, and time travel reads the first snapshot.
	history, code := sluice(t, "lake", "history", "--data-dir", dir, "--json", "yellow_taxi_trip")
	var snaps []struct {
		ID        int64  `json:"snapshot_id"`
		Operation string `json:"operation"`
	}
	if err := json.Unmarshal([]byte(history), &snaps); code != 0 || err != nil || len(snaps) == 0 || snaps[0].Operation != "append" {
		t.Fatalf("lake history = %d, %v:\n%s", code, err, history)
	}
	for _, args := range [][]string{{"compact", "--target-size", "64MiB"}, {"orphans", "--dry-run"}} {
		if out, err := exec.Command(binary, append(append([]string{"lake"}, args...), "--data-dir", dir)...).CombinedOutput(); err != nil {
			t.Errorf("lake %s: %v\n%s", args[0], err, out)
		}
	}
	if out, code := sluice(t, "lake", "schema", "--data-dir", dir, "yellow_taxi_trip"); code != 0 || !strings.Contains(out, "fare_amount") ||
		!strings.Contains(out, "double") || !strings.Contains(out, "identity(event_date)") {
		t.Errorf("lake schema = %d:\n%s", code, out)
	}
	for _, asOf := range []string{"", fmt.Sprint(snaps[0].ID)} {
		args := []string{"query", "--data-dir", dir, "--format", "json"}
		if asOf != "" {
			args = append(args, "--as-of", asOf)
		}
		outb, err := exec.Command(binary, append(args, `SELECT count(*) AS n FROM yellow_taxi_trip`)...).CombinedOutput()
		out, code := string(outb), 0
		if err != nil {
			code = 1
		}
		var c struct{ N int }
		json.Unmarshal([]byte(out), &c)
		if code != 0 || c.N == 0 || (asOf == "" && c.N != want.n) {
			t.Errorf("query --as-of %q = %d: %s", asOf, code, out)
		}
	}
	if out, err := exec.Command(binary, "lake", "expire", "--older-than", "0s", "--retain-last", "1", "--data-dir", dir).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "yellow_taxi_trip") {
		t.Errorf("lake expire: %v\n%s", err, out)
	}
	if out, code := sluice(t, "query", "--data-dir", dir, "--format", "csv", `SELECT count(*) FROM yellow_taxi_trip`); code != 0 || !strings.Contains(out, fmt.Sprint(want.n)) {
		t.Errorf("after expire: %d %s", code, out)
	}

	// The status API: every component running and ready, and every
	// consumer group caught up, in records and in time.
	var st struct {
		Ready      bool `json:"ready"`
		Components []struct {
			Name    string `json:"name"`
			State   string `json:"state"`
			Ready   bool   `json:"ready"`
			Records int64  `json:"records"`
		} `json:"components"`
		Groups []struct {
			Group      string `json:"group"`
			Lag        int64  `json:"lag"`
			Partitions []struct {
				LagSeconds float64 `json:"lag_seconds"`
			} `json:"partitions"`
		} `json:"consumer_groups"`
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.httpAddr + "/api/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		st.Groups = nil
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		caughtUp := len(st.Groups) == 2
		for _, g := range st.Groups {
			caughtUp = caughtUp && g.Lag == 0
		}
		if st.Ready && caughtUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status not ready and caught up within 30s: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	records := map[string]int64{}
	for _, c := range st.Components {
		if c.State != "running" || !c.Ready {
			t.Errorf("component %s is %s, ready %v", c.Name, c.State, c.Ready)
		}
		records[c.Name] = c.Records
	}
	if records["collector"] != int64(want.n) || records["enricher"] != int64(want.n) || records["sink.lake"] != int64(want.n) {
		t.Errorf("records by component %v, want %d each", records, want.n)
	}

	// sluice.enriched is transactional: its commit markers take offsets,
	// and topics counts its records by reading them.
	out, _ = sluice(t, "topics", "--json", "--brokers", p.brokerAddr)
	var topics []topicInfo
	if err := json.Unmarshal([]byte(out), &topics); err != nil {
		t.Fatalf("topics --json: %v: %s", err, out)
	}
	for _, tp := range topics {
		if tp.Topic == "sluice.enriched" && (tp.Records == nil || *tp.Records != int64(want.n) || tp.Offsets <= int64(want.n)) {
			t.Errorf("sluice.enriched: %d offsets, records %v; want %d records in more offsets", tp.Offsets, tp.Records, want.n)
		}
	}

	// tail reads the transactional topic as any other: -n ends, and
	// --follow shows what comes next.
	tail := func(args ...string) []string {
		t.Helper()
		cmd := exec.Command(binary, append([]string{"tail", "sluice.enriched", "--brokers", p.brokerAddr}, args...)...)
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("tail %v: %v", args, err)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Errorf("tail %v did not end within 20s", args)
		}
		return strings.Split(strings.TrimSpace(out.String()), "\n")
	}
	if lines := tail("-n", "5"); len(lines) != 5 || !strings.Contains(lines[4], "yellow_taxi_trip") {
		t.Errorf("tail -n 5 of sluice.enriched printed %d lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if lines := tail("--from-beginning"); len(lines) != want.n {
		t.Errorf("tail --from-beginning of sluice.enriched printed %d lines, want %d", len(lines), want.n)
	}
	follow := exec.Command(binary, "tail", "sluice.enriched", "-n", "0", "--follow", "--brokers", p.brokerAddr)
	followed, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Process.Kill()
	seen := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(followed)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "followed-event") {
				seen <- sc.Text()
				return
			}
		}
	}()
	time.Sleep(time.Second) // tail has joined
	if code, _ := postEvent(t, p.httpAddr, `{"event_type":"page_view","schema_version":"1-0-0","payload":{"url":"/followed-event"}}`); code != 200 {
		t.Fatalf("collect = %d", code)
	}
	select {
	case <-seen:
	case <-time.After(20 * time.Second):
		t.Error("tail --follow of sluice.enriched did not show a new event within 20s")
	}
}

// TestS3LakeEndToEnd runs `sluice up` with its lake in a bucket of an
// in-process S3 server, its tables in the embedded catalog or in a real
// Iceberg REST catalog, then queries it with `sluice query --lake s3://`.
func TestS3LakeEndToEnd(t *testing.T) {
	for _, catalog := range []string{"sql", "rest"} {
		t.Run(catalog, func(t *testing.T) {
			endpoint, bucket := s3test.Bucket(t)
			var catFlags []string
			if catalog == "rest" {
				cc := catalogtest.REST(t, endpoint)
				catFlags = []string{"--catalog-uri", cc.URI, "--namespace", cc.Namespace}
			}
			s3LakeEndToEnd(t, endpoint, bucket, catFlags)
		})
	}
}

func s3LakeEndToEnd(t *testing.T, endpoint, bucket string, catFlags []string) {
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	t.Setenv("AWS_REGION", s3test.Region)
	lakeURL := "s3://" + bucket + "/lake"
	dir := t.TempDir()
	lakeFlags := slices.Concat([]string{"--lake", lakeURL, "--s3-endpoint", endpoint, "--s3-path-style"}, catFlags)
	p := startUp(t, dir, slices.Concat(lakeFlags, []string{"--flush-interval", "200ms"})...)
	lakeFlags = slices.Concat([]string{"--data-dir", dir}, lakeFlags)
	for i := range 20 {
		code, _ := postEvent(t, p.httpAddr, fmt.Sprintf(`{"event_type":"page_view","schema_version":"1-0-0","payload":{"n":%d}}`, i))
		if code != 200 {
			t.Fatalf("collect = %d", code)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := sluice(t, slices.Concat([]string{"query"}, lakeFlags, []string{"--format", "csv", "SELECT count(*), sum(n) FROM page_view"})...)
		if code == 0 && strings.TrimSpace(out) == "count_star(),sum(n)\n20,190" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice query over s3 did not see the 20 events: %d %q", code, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The lake commands work through the same catalog.
	out, code := sluice(t, slices.Concat([]string{"lake", "history"}, lakeFlags, []string{"page_view"})...)
	if code != 0 || !strings.Contains(out, "append") {
		t.Errorf("sluice lake history page_view: exit %d\n%s", code, out)
	}
	if len(catFlags) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "catalog.db")); err == nil {
			t.Error("a lake with a REST catalog made an embedded catalog too")
		}
	}
	// The wrong bucket is reported at start, with what to check.
	c := exec.Command(binary, "query", "--lake", "s3://no-such-bucket/x", "--s3-endpoint", endpoint, "--s3-path-style", "SELECT 1")
	out2, _ := c.CombinedOutput()
	if c.ProcessState.ExitCode() != 1 || !strings.Contains(string(out2), "no-such-bucket") {
		t.Errorf("query of a missing bucket: exit %d\n%s", c.ProcessState.ExitCode(), out2)
	}
}

// TestTLCParquetRoundTrip replays the real TLC sample (with its 1,125 rows
// of nulls and its negative amounts) through the collector into the lake.
// DuckDB reading the source file is the oracle: row count, the sum and
// non-null count of every numeric column, and the pickup range must match.
func TestTLCParquetRoundTrip(t *testing.T) {
	src := filepath.Join(repoDir, "internal/sample/data/yellow_tripdata_2025-02_sample5000.parquet")
	dir := t.TempDir()
	p := startUp(t, dir, "--flush-interval", "300ms")
	failed := filepath.Join(t.TempDir(), "failed.ndjson")
	out, code := sluice(t, "replay", "--collector", "http://"+p.httpAddr, "--preset", "tlc-yellow", "--batch", "1000",
		"--failed-out", failed, src)
	if code != 0 || !strings.Contains(out, "5000") {
		t.Fatalf("sluice replay = %d:\n%s", code, out)
	}
	if b, err := os.ReadFile(failed); err != nil || len(b) != 0 {
		t.Errorf("failed-out after a clean replay: %q (%v)", b, err)
	}

	lakeEqualsTLC(t, dir, src, "yellow_taxi_trip")
	// Types: whole-valued double columns stay doubles, integers stay integers.
	out, _ = sluice(t, "query", "--data-dir", dir, "--format", "csv",
		`SELECT column_name, column_type FROM (DESCRIBE yellow_taxi_trip) WHERE column_name IN ('passenger_count', 'VendorID', 'total_amount', 'store_and_fwd_flag', 'tpep_pickup_datetime') ORDER BY 1`)
	// A table the lake does not have: what it has, not DuckDB's guess.
	cmd := exec.Command(binary, "query", "--data-dir", dir, "SELECT * FROM yellow_taxi_trips")
	msg, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "no table yellow_taxi_trips in the lake at") ||
		!strings.Contains(string(msg), "which has tables yellow_taxi_trip") {
		t.Errorf("query of a missing table = %v:\n%s", err, msg)
	}
	// The bundled yellow_taxi_trip schema makes the pickup time a timestamp.
	if want := "column_name,column_type\nVendorID,BIGINT\npassenger_count,DOUBLE\nstore_and_fwd_flag,VARCHAR\ntotal_amount,DOUBLE\ntpep_pickup_datetime,TIMESTAMP WITH TIME ZONE\n"; out != want {
		t.Errorf("lake column types:\n%s\nwant:\n%s", out, want)
	}
}

// lakeEqualsTLC waits until the lake table holds what the TLC Parquet file
// src holds, by DuckDB's reading of both: row count, the sum and non-null
// count of every numeric column, and the pickup and drop-off ranges.
func lakeEqualsTLC(t *testing.T, dir, src, table string) {
	t.Helper()
	numeric := []string{"VendorID", "passenger_count", "trip_distance", "RatecodeID", "PULocationID", "DOLocationID",
		"payment_type", "fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount", "improvement_surcharge",
		"total_amount", "congestion_surcharge", "Airport_fee", "cbd_congestion_fee"}
	aggs := []string{"count(*) AS rows", "count(store_and_fwd_flag) AS n_flag"}
	for _, c := range numeric {
		aggs = append(aggs, fmt.Sprintf(`round(sum("%s"), 6) AS "sum_%s", count("%s") AS "n_%s"`, c, c, c, c))
	}
	aggs = append(aggs, "min(tpep_pickup_datetime::TIMESTAMP) AS first_pickup", "max(tpep_pickup_datetime::TIMESTAMP) AS last_pickup",
		"max(tpep_dropoff_datetime::TIMESTAMP) AS last_dropoff")
	sel := "SELECT " + strings.Join(aggs, ", ")
	query := func(from string) string {
		out, code := sluice(t, "query", "--data-dir", dir, "--format", "json", sel+" FROM "+from)
		if code != 0 {
			return ""
		}
		return strings.TrimSpace(out)
	}
	want := query("read_parquet('" + src + "')")
	if !strings.Contains(want, `"rows":5000`) || !strings.Contains(want, `"n_passenger_count":3875`) {
		t.Fatalf("oracle query of the source: %q", want)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := query(table)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lake and source differ:\n lake: %s\n file: %s", got, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestReplayCSVAndNDJSON replays the MTA turnstile CSV and a gzipped copy as
// two parallel producers, then NDJSON rows, through `sluice replay` and
// `sluice up`, and checks the lake against DuckDB reading the sources.
func TestReplayCSVAndNDJSON(t *testing.T) {
	csvPath := filepath.Join(repoDir, "internal/sample/data/turnstile_230603_classic_first5000.csv")
	raw, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	gzPath := filepath.Join(tmp, "turnstile_copy.csv.gz")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	if err := os.WriteFile(gzPath, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ndPath := filepath.Join(tmp, "readings.ndjson")
	var nd strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&nd, `{"sensor":"s%d","temp":%d.5,"ok":%v,"note":null}`+"\n", i%7, i, i%2 == 0)
	}
	os.WriteFile(ndPath, []byte(nd.String()), 0o644)

	dir := t.TempDir()
	p := startUp(t, dir, "--flush-interval", "300ms")
	collector := "http://" + p.httpAddr
	if out, code := sluice(t, "replay", "--collector", collector, "--preset", "mta-turnstile", csvPath, gzPath); code != 0 {
		t.Fatalf("replay csv = %d:\n%s", code, out)
	}
	if out, code := sluice(t, "replay", "--collector", collector, "--event-type", "reading", "--batch", "1", ndPath); code != 0 {
		t.Fatalf("replay ndjson = %d:\n%s", code, out)
	}
	check := func(table, sel, source string) {
		t.Helper()
		q := func(from string) string {
			out, code := sluice(t, "query", "--data-dir", dir, "--format", "json", sel+" FROM "+from)
			if code != 0 {
				return ""
			}
			return strings.TrimSpace(out)
		}
		want := q(source)
		if want == "" {
			t.Fatalf("oracle query of %s failed", source)
		}
		deadline := time.Now().Add(60 * time.Second)
		for got := q(table); got != want; got = q(table) {
			if time.Now().After(deadline) {
				t.Fatalf("%s and its source differ:\n lake: %s\n file: %s", table, got, want)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	// Both producers' rows: the source twice over.
	names := `names = ['C/A', 'UNIT', 'SCP', 'STATION', 'LINENAME', 'DIVISION', 'DATE', 'TIME', 'DESC', 'ENTRIES', 'EXITS'], header = true, all_varchar = true`
	check("mta_turnstile", `SELECT count(*) AS n, sum("ENTRIES"::BIGINT) AS entries, sum("EXITS"::BIGINT) AS exits, count(DISTINCT "UNIT") AS units,
		min("DATE") AS d0, max("TIME") AS t1, count(DISTINCT "STATION") AS stations`,
		fmt.Sprintf(`(SELECT * FROM read_csv('%s', %s) UNION ALL SELECT * FROM read_csv('%s', %s))`, csvPath, names, csvPath, names))
	check("reading", `SELECT count(*) AS n, sum(temp) AS temp, count(DISTINCT sensor) AS sensors, count(ok) FILTER (WHERE ok) AS oks`,
		fmt.Sprintf(`read_json('%s', format = 'newline_delimited')`, ndPath))
	// note is null in every event: a null never sets a column's type, so
	// the table has no such column until a value arrives.
	if out, err := exec.Command(binary, "query", "--data-dir", dir, `SELECT count(note) FROM reading`).CombinedOutput(); err == nil || !strings.Contains(string(out), `"note" not found`) {
		t.Errorf("a column of nulls only: query = %v:\n%s", err, out)
	}
	out, _ := sluice(t, "query", "--data-dir", dir, "--format", "csv", `SELECT count(DISTINCT event_id) FROM mta_turnstile`)
	if strings.TrimSpace(out) != "count(DISTINCT event_id)\n10000" {
		t.Errorf("distinct event ids: %q, want 10000 (file name:row)", out)
	}
}

// testKafka is the Kafka an exactly-once end-to-end test runs against: a
// broker of its own, embedded, or with SLUICE_TEST_KAFKA the real cluster
// (kafkatest.Env), where its topics and groups have names of their own.
type testKafka struct {
	brokers string
	names   map[string]string
}

// kafkaFor starts the test's Kafka with topics, and a producer to it.
func kafkaFor(t *testing.T, topics ...string) (*testKafka, *kgo.Client) {
	t.Helper()
	brokers, replication := kafkatest.Brokers(t), int16(-1)
	if brokers == nil {
		b, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: t.TempDir(), Partitions: 3}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		brokers, replication = []string{b.Addr()}, 1
	}
	k := &testKafka{brokers: strings.Join(brokers, ","), names: map[string]string{}}
	prod, err := bus.NewProducer(bus.ClientConfig{Brokers: brokers}, bus.ProducerConfig{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	var names []string
	for _, topic := range topics {
		names = append(names, k.name(topic))
	}
	if err := bus.EnsureTopics(t.Context(), prod, 3, replication, names...); err != nil {
		t.Fatal(err)
	}
	return k, prod
}

// name is the test's name for a topic or group.
func (k *testKafka) name(name string) string {
	if k.names[name] == "" {
		k.names[name] = kafkatest.Names(name)
	}
	return k.names[name]
}

// TestLoaderMemoryBounded floods `sluice loader lake` with far more data
// than its --loader-memory: its peak RSS stays under a fixed bound well
// below the data size (buffering it all would take several times the
// data). The bound covers the runtime, the zstd encoder's window, the GC's
// headroom and one flush's Parquet buffers.
func TestLoaderMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the loader with 300 MB")
	}
	k, prod := kafkaFor(t, "sluice.raw", "sluice.dlq")
	raw, dlq := k.name("sluice.raw"), k.name("sluice.dlq")
	const total = 300 << 20
	// The bound is over the binary's own footprint, measured here: its
	// code and the libraries' start-up (Iceberg's alone is tens of MB)
	// are not buffering.
	idle := peakRSS(t, exec.Command(binary, "loader", "lake", "--help"))
	bound := idle + 200<<20
	// Random padding compresses as real payloads do, not a thousandfold.
	rnd := make([]byte, 450)
	var sent int
	var recs []*kgo.Record
	for i := 0; sent < total; i++ {
		crand.Read(rnd)
		v := fmt.Sprintf(`{"event_type":"flood","schema_version":"1","payload":{"i":%d,"pad":"%x"},"collector_tstamp":"2025-01-01T00:00:00.000000Z","root_id":"r%d"}`, i, rnd, i)
		sent += len(v)
		recs = append(recs, &kgo.Record{Topic: raw, Value: []byte(v)})
		if len(recs) == 5000 {
			if err := prod.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	if err := prod.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cmd := exec.Command(binary, "loader", "lake", "--brokers", k.brokers, "--data-dir", dir, "--metrics-addr", "",
		"--topic-dlq", dlq, "--loader-topics", raw+","+dlq, "--loader-group", k.name("sluice-loader-lake"),
		"--loader-memory", "8MiB", "--flush-bytes", "4MiB", "--flush-rows", "1000000", "--flush-interval", "2s", "--log-format", "json")
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	store, _ := lake.NewLocal(filepath.Join(dir, "lake"))
	ends, err := kadm.NewClient(prod).ListEndOffsets(t.Context(), raw)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			p, _ := lake.ReadProgress(t.Context(), store, o.Topic, o.Partition)
			done = done && p.Committed >= o.Offset-1
		})
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the loader did not load the flood within 3 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	peak := vmHWM(t, cmd.Process.Pid)
	t.Logf("loaded %d MB with --loader-memory 8MiB: peak RSS %d MB (%d MB idle)", sent>>20, peak>>20, idle>>20)
	if peak == 0 || peak > bound {
		t.Errorf("peak RSS %d MB for %d MB of data, over the %d MB bound: memory is not bounded", peak>>20, sent>>20, bound>>20)
	}
}

// peakRSS runs cmd to its end and returns its peak resident memory.
func peakRSS(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return int(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) << 10
}

// vmHWM is a running process's peak resident memory, in bytes.
func vmHWM(t *testing.T, pid int) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var kb int
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
		}
	}
	return kb << 10
}

// TestDemo runs `sluice demo --exit` as a new user would, twice on the same
// directory, and checks it refuses a directory it did not make.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	for run := range 2 {
		start := time.Now()
		out, code := sluice(t, "demo", "--exit", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--broker-addr", "127.0.0.1:0")
		if code != 0 {
			t.Fatalf("run %d: sluice demo = %d:\n%s", run, code, out)
		}
		for _, want := range []string{"10000     10000", "5000      5000", "East Village", "34 ST-HERALD SQ", "2025-01-01 00:00:00  5731", "/api/v1/docs/",
			"Test Matrix Question                 8       5", "enrichment_not_found  20",
			// The aggregations: late trips dead-lettered, the trips' windows
			// by zone, the seed's 4-hour windows, the daily deltas.
			"aggregator  late_event", "2025-01-01 00:15:00  Lincoln Square East", "2023-05-27 00:00:00  120         120",
			"34 ST-HERALD SQ  2023-06-01  13278",
			// The batch models and checks.
			"tlc_daily_zone           success", "2025-01-01  East Village           551    12825.15",
			"tlc_borough_daily        success", "view v1",
			"2023-06-01  34 ST-HERALD SQ  13278    25941",
			"not_null_passenger_count: 1125 rows (warn), negative_amounts: 273 rows (warn)",
			"yellow_taxi_trip_sample  not_null_passenger_count        warn      1125"} {
			if !strings.Contains(out, want) {
				t.Errorf("run %d: demo output lacks %q:\n%s", run, want, out)
			}
		}
		if took := time.Since(start); took > time.Minute {
			t.Errorf("run %d: the demo took %v, over a minute", run, took)
		}
	}
	t.Run("pyiceberg", func(t *testing.T) { pyicebergReads(t, dir) })
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "precious.txt"), []byte("keep"), 0o644)
	c := exec.Command(binary, "demo", "--exit", "--data-dir", other, "--http-addr", "127.0.0.1:0", "--broker-addr", "127.0.0.1:0")
	outb, _ := c.CombinedOutput()
	if c.ProcessState.ExitCode() != 1 || !strings.Contains(string(outb), "--data-dir") {
		t.Errorf("demo on a directory it did not make = %d:\n%s", c.ProcessState.ExitCode(), outb)
	}
	if _, err := os.Stat(filepath.Join(other, "precious.txt")); err != nil {
		t.Errorf("the demo touched a directory it did not make: %v", err)
	}
}

// testPython is the Python of the virtualenv that make test-deps fills
// with the tests' Python clients (testenv/python/requirements.txt). The
// test is skipped without it, unless SLUICE_REQUIRE_TOOLS is set.
func testPython(t *testing.T) string {
	t.Helper()
	python := os.Getenv("SLUICE_PYTHON")
	if python == "" {
		python = filepath.Join(os.Getenv("HOME"), ".cache/sluice/python/bin/python")
	}
	if _, err := os.Stat(python); err != nil {
		if os.Getenv("SLUICE_REQUIRE_TOOLS") != "" {
			t.Fatalf("the tests' Python clients are not installed at %s (make test-deps installs them)", python)
		}
		t.Skipf("the tests' Python clients are not installed at %s: run make test-deps", python)
	}
	return python
}

// pyicebergReads opens every table of the lake in dir with PyIceberg,
// through the same SQL catalog, and checks that it reads the rows, and the
// column types and values, that sluice query reads.
func pyicebergReads(t *testing.T, dir string) {
	python := testPython(t)
	cmd := exec.Command(python, filepath.Join(repoDir, "cmd/sluice/testdata/pyiceberg_read.py"), filepath.Join(dir, "lake"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pyiceberg: %v\n%s", err, stderr.String())
	}
	type column struct {
		Type   string `json:"type"`
		Values int64  `json:"values"`
	}
	var py map[string]struct {
		Rows    int64             `json:"rows"`
		Columns map[string]column `json:"columns"`
		Pruning []string          `json:"pruning"`
	}
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatalf("pyiceberg output: %v\n%s", err, out)
	}
	// Iceberg's types as DuckDB and Arrow name them.
	arrow := map[string]string{"BIGINT": "int64", "DOUBLE": "double", "VARCHAR": "string", "JSON": "string",
		"BOOLEAN": "bool", "TIMESTAMP WITH TIME ZONE": "timestamp[us, tz=UTC]", "DATE": "date32[day]"}
	for _, table := range []string{"yellow_taxi_trip", "mta_turnstile", "form", "form_field", "dead_letter", "agg_turnstile_daily", "agg_trips_by_zone_15m"} {
		got, ok := py[table]
		if !ok {
			t.Errorf("PyIceberg does not see table %s (it sees %v)", table, slices.Sorted(maps.Keys(py)))
			continue
		}
		desc, code := sluice(t, "query", "--data-dir", dir, "--format", "json", "SELECT column_name, column_type FROM (DESCRIBE "+table+")")
		if code != 0 {
			t.Fatalf("describe %s = %d", table, code)
		}
		want := map[string]column{}
		var counts []string
		for _, line := range strings.Split(strings.TrimSpace(desc), "\n") {
			var c struct{ ColumnName, ColumnType string }
			json.Unmarshal([]byte(line), &struct {
				Name *string `json:"column_name"`
				Type *string `json:"column_type"`
			}{&c.ColumnName, &c.ColumnType})
			want[c.ColumnName] = column{Type: arrow[c.ColumnType]}
			counts = append(counts, fmt.Sprintf("count(%q) AS %q", c.ColumnName, c.ColumnName))
		}
		vals, code := sluice(t, "query", "--data-dir", dir, "--format", "json", "SELECT count(*) AS _rows, "+strings.Join(counts, ", ")+" FROM "+table)
		if code != 0 {
			t.Fatalf("count %s = %d", table, code)
		}
		var n map[string]int64
		json.Unmarshal([]byte(vals), &n)
		for name, c := range want {
			c.Values = n[name]
			want[name] = c
		}
		if n["_rows"] != got.Rows || got.Rows == 0 {
			t.Errorf("%s: PyIceberg reads %d rows, sluice query %d", table, got.Rows, n["_rows"])
		}
		if diff := cmp.Diff(want, got.Columns); diff != "" {
			t.Errorf("%s: columns as sluice query reads them (-) and PyIceberg (+):\n%s", table, diff)
		}
		for _, p := range got.Pruning {
			t.Errorf("%s: PyIceberg, skipping files by their bounds, reads %s", table, p)
		}
	}
}

// TestReplayToKafka publishes CSV rows straight to a topic of the embedded
// broker, keyed and as CSV lines, as the seeds' Kafka producer does.
func TestReplayToKafka(t *testing.T) {
	b, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: t.TempDir(), Partitions: 3}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	csvPath := filepath.Join(repoDir, "internal/sample/data/turnstile_230603_classic_first5000.csv")
	out, code := sluice(t, "replay", "--to", "kafka", "--brokers", b.Addr(), "--topic", "turnstiles",
		"--preset", "mta-turnstile", "--format", "csv", "--max", "300", csvPath)
	if code != 0 || !strings.Contains(out, "300") {
		t.Fatalf("replay --to kafka = %d:\n%s", code, out)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("turnstiles"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for len(recs) < 300 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	if len(recs) != 300 {
		t.Fatalf("consumed %d records, want 300", len(recs))
	}
	first := map[string]string{}
	for _, r := range recs {
		fields := strings.Split(string(r.Value), ",")
		if len(fields) != 11 || fields[1] != string(r.Key) {
			t.Fatalf("record key %q value %q: want an 11-field CSV line keyed by UNIT", r.Key, r.Value)
		}
		if _, ok := first[string(r.Key)]; !ok {
			first[string(r.Key)] = string(r.Value)
		}
	}
	if !strings.HasPrefix(first["R051"], "A002,R051,02-00-00,59 ST,NQR456W,BMT,05/27/2023,00:00:00,REGULAR,") {
		t.Errorf("first R051 record %q", first["R051"])
	}
}

// TestEnricherKill9ExactlyOnce kills `sluice enricher` with SIGKILL in the
// middle of a stream, twice, with transactions open, and restarts it: read
// as committed, every event's output is in sluice.enriched exactly once.
func TestEnricherKill9ExactlyOnce(t *testing.T) {
	k, prod := kafkaFor(t, "sluice.raw", "sluice.enriched", "sluice.dlq")
	raw, enriched, dlq := k.name("sluice.raw"), k.name("sluice.enriched"), k.name("sluice.dlq")
	cfgPath := filepath.Join(t.TempDir(), "topics.yml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, "topics: {raw: %s, enriched: %s, dlq: %s}\n", raw, enriched, dlq), 0o644); err != nil {
		t.Fatal(err)
	}
	// A forms API that takes a moment, with a form for every id.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		fmt.Fprintf(w, `{"id":%q,"type":"quiz","title":"t","fields":[]}`, strings.TrimPrefix(r.URL.Path, "/forms/"))
	}))
	defer api.Close()
	const n = 20_000
	var recs []*kgo.Record
	for i := range n {
		v := fmt.Sprintf(`{"event_type":"form_event","schema_version":"1-0-0","payload":{"form_id":"f%d","event_happened_at":"2025-03-01T12:00:00Z","event_type":"form_updated"}}`, i)
		recs = append(recs, &kgo.Record{Topic: raw, Value: []byte(v), Headers: []kgo.RecordHeader{{Key: "root_id", Value: fmt.Appendf(nil, "r%d", i)}}})
	}
	if err := prod.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(binary, "enricher", "--config", cfgPath, "--brokers", k.brokers, "--metrics-addr", "", "--log-format", "json",
			"--forms-api", api.URL+"/forms/{payload.form_id}", "--enricher-concurrency", "16",
			"--enricher-group", k.name("sluice-enricher"), "--instance-id", k.name("e2e"))
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(k.brokers, ",")...), kgo.ConsumeTopics(enriched, dlq),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]int{}
	read := func(d time.Duration) {
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if r.Topic == dlq {
				t.Errorf("dead letter: %s", r.Value)
			}
			seen[bus.Header(r, "root_id")]++
		})
	}
	for kill := range 2 {
		cmd := start()
		// Kill it once some of the stream is committed, before the end.
		deadline := time.Now().Add(time.Minute)
		for len(seen) < (kill+1)*n/5 && time.Now().Before(deadline) {
			read(200 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if len(seen) >= n {
			t.Fatalf("kill %d came after the whole stream (%d); the test needs a slower API", kill, len(seen))
		}
	}
	cmd := start()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for len(seen) < n && time.Now().Before(deadline) {
		read(500 * time.Millisecond)
	}
	read(time.Second) // nothing more should come
	for i := range n {
		if c := seen[fmt.Sprintf("r%d", i)]; c != 1 {
			t.Fatalf("event r%d out %d times (%d events seen)", i, c, len(seen))
		}
	}
}

// TestLoaderKill9ExactlyOnce kills `sluice loader lake` with SIGKILL at
// random points while it loads a stream, restarting it each time, with
// flushes small enough that kills land amid writes and catalog commits.
// Every event is then in the lake's tables exactly once, as sluice query
// reads them through the catalog, and no data file is left that no
// snapshot holds.
func TestLoaderKill9ExactlyOnce(t *testing.T) {
	k, prod := kafkaFor(t, "sluice.raw", "sluice.dlq")
	raw, dlq := k.name("sluice.raw"), k.name("sluice.dlq")
	const n = 30_000
	var recs []*kgo.Record
	for i := range n {
		typ := []string{"trip", "page_view", "checkout"}[i%3]
		v := fmt.Sprintf(`{"event_type":%q,"schema_version":"1","payload":{"i":%d,"fare":%d.25,"zone":"Z%d"},"collector_tstamp":"2025-01-0%dT00:00:00.000000Z","root_id":"r%d"}`,
			typ, i, i%100, i%9, 1+i%3, i)
		recs = append(recs, &kgo.Record{Topic: raw, Key: fmt.Appendf(nil, "k%d", i%17), Value: []byte(v),
			Headers: []kgo.RecordHeader{{Key: "root_id", Value: fmt.Appendf(nil, "r%d", i)}, {Key: "event_type", Value: []byte(typ)}}})
	}
	if err := prod.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var logs bytes.Buffer
	// Every start is the same static group member (its instance id): it
	// takes the killed one's partitions back at once, where a new member
	// would wait out the killed one's session, 45 s on real Kafka.
	start := func() *exec.Cmd {
		logs.Reset()
		cmd := exec.Command(binary, "loader", "lake", "--brokers", k.brokers, "--data-dir", dir, "--metrics-addr", "",
			"--topic-dlq", dlq, "--loader-topics", raw+","+dlq, "--loader-group", k.name("kill"), "--instance-id", k.name("loader"),
			"--flush-rows", "300", "--flush-interval", "50ms", "--log-format", "json")
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	const kills = 5
	killRandomly(start, kills)
	cmd := start()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	count := func() string {
		out, _ := exec.Command(binary, "query", "--data-dir", dir, "--format", "csv",
			`SELECT count(*) AS n, count(DISTINCT root_id) AS ids FROM (SELECT root_id FROM trip UNION ALL SELECT root_id FROM page_view UNION ALL SELECT root_id FROM checkout)`).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	want := fmt.Sprintf("n,ids\n%d,%d", n, n)
	deadline := time.Now().Add(2 * time.Minute)
	got := count()
	for ; got != want && time.Now().Before(deadline); got = count() {
		time.Sleep(500 * time.Millisecond)
	}
	if got != want {
		t.Fatalf("after 5 kills: rows and distinct ids\n%s\nwant\n%s\nthe last loader's log:\n%s", got, want, logs.String())
	}
	// Every data file in the lake is in a snapshot: a kill between a
	// file and its commit leaves a file the restart rewrote and committed.
	// (A kill amid a write leaves a hidden temporary file, which no
	// reader lists and orphan removal deletes.)
	var files int
	filepath.WalkDir(filepath.Join(dir, "lake"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, "/data/") && !strings.HasPrefix(d.Name(), ".") {
			files++
		}
		return nil
	})
	out, _ := sluice(t, "query", "--data-dir", dir, "--tables", "--format", "json")
	var tables []struct {
		Files int `json:"files"`
	}
	json.Unmarshal([]byte(out), &tables)
	var inSnapshots int
	for _, tb := range tables {
		inSnapshots += tb.Files
	}
	if files != inSnapshots {
		t.Errorf("%d data files in the lake, %d in the tables' snapshots", files, inSnapshots)
	}
}

// turnstileFiles writes the bundled MTA week in time order, and a config
// of the seed's aggregation of it, turnstile_4h on the topic
// mta-turnstile, with the settings given (YAML lines of the aggregation:
// window, aggregates, output, ...); it returns both paths.
func turnstileFiles(t *testing.T, dir string, settings ...string) (mtaPath, cfgPath string) {
	t.Helper()
	mta, err := sample.TurnstilesInTimeOrder()
	if err != nil {
		t.Fatal(err)
	}
	mtaPath, cfgPath = filepath.Join(dir, "mta.csv"), filepath.Join(dir, "agg.yml")
	cfg := `aggregations:
  - name: turnstile_4h
    topic: mta-turnstile
    format: csv
    columns: [{name: C/A, type: string}, {name: UNIT, type: string}, {name: SCP, type: string},
      {name: STATION, type: string}, {name: LINENAME, type: string}, {name: DIVISION, type: string},
      {name: DATE, type: string}, {name: TIME, type: string}, {name: DESC, type: string},
      {name: ENTRIES, type: int}, {name: EXITS, type: int}]
    time: {fields: [DATE, TIME], layout: "MM/DD/YYYY HH:mm:ss"}
    group_by: [C/A, UNIT, SCP, STATION, LINENAME, DIVISION, DATE, DESC]
    dedupe: [C/A, UNIT, SCP, STATION, DATE, TIME]
    ` + strings.Join(settings, "\n    ") + "\n"
	if err := errors.Join(os.WriteFile(mtaPath, mta, 0o644), os.WriteFile(cfgPath, []byte(cfg), 0o644)); err != nil {
		t.Fatal(err)
	}
	return mtaPath, cfgPath
}

// TestAggregatorKill9SameFiles replays the MTA week to Kafka as CSV lines,
// as the seed's producer did, while `sluice aggregator` is killed with
// SIGKILL at random points and restarted. The lake ends with the same
// files, with the same bytes once unzipped, as an uninterrupted run's.
func TestAggregatorKill9SameFiles(t *testing.T) {
	dir := t.TempDir()
	mtaPath, cfgPath := turnstileFiles(t, dir, "window: {size: 4h, delay: 1h}",
		"aggregates: [{op: count, as: readings}, {op: sum, field: ENTRIES, as: entries}, {op: delta, field: EXITS, as: exits_delta}]",
		"output: {format: csv.gz}", "checkpoint_interval: 100ms")
	seed := time.Now().UnixNano()
	t.Logf("kill points from seed %d", seed)
	rng := mrand.New(mrand.NewPCG(uint64(seed), 0))

	// run replays the week with kills, and returns the table's files, once
	// settled (or, with want, once they are want's).
	run := func(kills int, want map[string]string) map[string]string {
		// Each run has a Kafka of its own, or on a shared cluster an
		// input topic and an aggregation name (its groups and topics) of
		// its own.
		k, _ := kafkaFor(t, "mta-turnstile")
		topic, name := k.name("mta-turnstile"), strings.NewReplacer(".", "_", "-", "_").Replace(k.name("turnstile_4h"))
		cfg, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		runCfg := filepath.Join(t.TempDir(), "agg.yml")
		cfg = []byte(strings.NewReplacer("name: turnstile_4h", "name: "+name, "topic: mta-turnstile", "topic: "+topic).Replace(string(cfg)))
		if err := os.WriteFile(runCfg, cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		lakeDir := t.TempDir()
		start := func() *exec.Cmd {
			cmd := exec.Command(binary, "aggregator", "--config", runCfg, "--brokers", k.brokers, "--lake", lakeDir,
				"--metrics-addr", "", "--instance-id", "e2e", "--log-format", "json")
			cmd.Stderr = io.Discard
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			return cmd
		}
		agg := start()
		defer func() {
			agg.Process.Signal(syscall.SIGTERM)
			agg.Wait()
		}()
		replay := exec.Command(binary, "replay", "--to", "kafka", "--brokers", k.brokers, "--topic", topic,
			"--preset", "mta-turnstile", "--format", "csv", "--rate", "2500", mtaPath)
		var out bytes.Buffer
		replay.Stdout, replay.Stderr = &out, &out
		if err := replay.Start(); err != nil {
			t.Fatal(err)
		}
		for range kills {
			time.Sleep(time.Duration(150+rng.IntN(450)) * time.Millisecond)
			agg.Process.Signal(syscall.SIGKILL)
			agg.Wait()
			agg = start()
		}
		if err := replay.Wait(); err != nil {
			t.Fatalf("replay: %v\n%s", err, out.String())
		}
		if kills > 0 && !strings.Contains(out.String(), "5000") {
			t.Fatalf("replay output:\n%s", out.String())
		}
		// Settled is 2 s without a change; on a real cluster, whose
		// transactions and group joins pause the output longer, 10 s.
		settled := 20
		if os.Getenv(kafkatest.Env) != "" {
			settled = 100
		}
		var files map[string]string
		same, deadline := 0, time.Now().Add(2*time.Minute)
		for ; time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			now := aggFiles(t, filepath.Join(lakeDir, "agg_"+name))
			switch {
			case want != nil && maps.Equal(now, want):
				same++
			case want == nil && len(now) > 0 && maps.Equal(now, files):
				same++
			default:
				same = 0
			}
			files = now
			if same >= settled {
				return files
			}
		}
		return files
	}
	want := run(0, nil)
	if len(want) < 20 {
		t.Fatalf("the uninterrupted run wrote %d files; want dozens", len(want))
	}
	got := run(4, want)
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("files after kills (-got +want):\n%s", diff)
	}
}

// aggFiles reads every csv.gz file under dir, unzipped, by path.
func aggFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".csv.gz") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		return nil
	})
	return out
}
