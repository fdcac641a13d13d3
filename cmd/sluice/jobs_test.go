package main

import (
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/lake/laketest"
)

// TestJobsRun builds two models with the binary over a lake, reads them
// with sluice query, and checks what a failing model does to the exit
// status, the output and the tables.
func TestJobsRun(t *testing.T) {
	dir := t.TempDir()
	lakeDir := filepath.Join(dir, "lake")
	store, cat := laketest.Open(t, lakeDir)
	laketest.Commit(t, store, cat, "trip", "2025-02-01", 2, `{"zone":"JFK","fare":10.5}`, `{"zone":"SoHo","fare":20}`)
	laketest.Commit(t, store, cat, "trip", "2025-02-02", 3, `{"zone":"JFK","fare":30}`)
	cat.Close() // before the binary opens the catalog

	models := filepath.Join(dir, "models")
	if err := os.Mkdir(models, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, sql string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(models, name+".sql"), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("daily", "SELECT event_date, zone, count(*) AS trips FROM {{ ref('trip') }} GROUP BY ALL")
	write("by_zone", "SELECT zone, sum(trips) AS trips FROM daily GROUP BY zone")
	common := []string{"--data-dir", filepath.Join(dir, "data"), "--lake", lakeDir, "--log-level", "error"}

	out, code := sluice(t, append([]string{"jobs", "run", "--models", models}, common...)...)
	if code != 0 || !strings.Contains(out, "daily ") || strings.Count(out, "success") != 2 {
		t.Fatalf("sluice jobs run = %d:\n%s", code, out)
	}
	got, code := sluice(t, append([]string{"query", "--format", "csv", "SELECT zone, trips FROM by_zone ORDER BY zone"}, common...)...)
	if diff := cmp.Diff("zone,trips\nJFK,2\nSoHo,1\n", got); code != 0 || diff != "" {
		t.Fatalf("sluice query = %d (-want +got):\n%s", code, diff)
	}

	// daily fails now: it keeps its table, by_zone is skipped, and the
	// exit status says so.
	write("daily", "SELECT event_date, zone, count(*) AS trips, CAST(zone AS INTEGER) AS n FROM trip GROUP BY ALL")
	cmd := exec.Command(binary, append([]string{"jobs", "run", "--models", models}, common...)...)
	b, err := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(b), "1 of 2 models failed (daily)") ||
		!strings.Contains(string(b), "upstream model daily failed") {
		t.Fatalf("sluice jobs run with a failing model = %v:\n%s", err, b)
	}
	got, _ = sluice(t, append([]string{"query", "--format", "csv", "SELECT zone, trips FROM by_zone ORDER BY zone"}, common...)...)
	if got != "zone,trips\nJFK,2\nSoHo,1\n" {
		t.Errorf("by_zone after the failed run:\n%s", got)
	}

	out, code = sluice(t, append([]string{"jobs", "run", "--models", models, "--select", "nope+"}, common...)...)
	if code != 1 {
		t.Errorf("--select of no model = %d:\n%s", code, out)
	}
}

// TestJobsScheduledInUp: sluice up with jobs.models and a schedule runs the
// models by itself, as the group's active scheduler, after events come:
// the model's table appears with every replayed trip counted, and the
// status API shows the scheduler.
func TestJobsScheduledInUp(t *testing.T) {
	dir := t.TempDir()
	models := filepath.Join(dir, "models")
	if err := os.Mkdir(models, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(models, "zone_trips.sql"),
		[]byte(`SELECT "PULocationID" AS zone, count(*) AS trips FROM yellow_taxi_trip GROUP BY ALL`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "sluice.yaml")
	cfg := "sinks:\n  - type: lake\n    flush_interval: 300ms\njobs:\n  models: " + models + "\n  schedules:\n    - name: often\n      every: 2s\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startUp(t, filepath.Join(dir, "data"), "--config", cfgPath)
	src := filepath.Join(repoDir, "internal/sample/data/yellow_tripdata_2025-02_sample5000.parquet")
	if out, code := sluice(t, "replay", "--collector", "http://"+p.httpAddr, "--preset", "tlc-yellow", "--batch", "500", src); code != 0 {
		t.Fatalf("sluice replay = %d:\n%s", code, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, code := sluice(t, "query", "--data-dir", filepath.Join(dir, "data"), "--format", "csv", "SELECT sum(trips) FROM zone_trips")
		if code == 0 && strings.TrimSpace(out) == "sum(trips)\n5000" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zone_trips within 60s: %d %q", code, out)
		}
		time.Sleep(time.Second)
	}
	var st struct {
		Components []struct {
			Name    string `json:"name"`
			Ready   bool   `json:"ready"`
			Records int64  `json:"records"`
		} `json:"components"`
	}
	searchGet(t, "http://"+p.httpAddr, "/api/v1/status", nil, &st)
	found := false
	for _, c := range st.Components {
		if c.Name == "jobs" {
			found = c.Ready && c.Records > 0
		}
	}
	if !found {
		t.Errorf("the status API shows no ready jobs component with runs: %+v", st.Components)
	}
}

// TestJobsKill9: sluice jobs run killed with SIGKILL at random points of
// building a table: every reader sees the table of the run before or of
// the run after, whole, never part of one; a run after the kills builds
// it again, and orphan removal finds the files the killed runs left.
func TestJobsKill9(t *testing.T) {
	dir := t.TempDir()
	lakeDir := filepath.Join(dir, "lake")
	store, cat := laketest.Open(t, lakeDir)
	for d := 1; d <= 5; d++ {
		var events []string
		for i := range 200 {
			events = append(events, fmt.Sprintf(`{"zone":"z%d","fare":%d}`, i%7, i))
		}
		laketest.Commit(t, store, cat, "trip", fmt.Sprintf("2025-02-%02d", d), int64(d), events...)
	}
	cat.Close() // before the binary opens the catalog
	models := filepath.Join(dir, "models")
	if err := os.Mkdir(models, 0o755); err != nil {
		t.Fatal(err)
	}
	// Each run's rows carry the run's time: a table of two runs would
	// show two.
	if err := os.WriteFile(filepath.Join(models, "daily.sql"),
		[]byte("SELECT event_date, zone, count(*) AS trips, sum(fare) AS fares, now() AS built FROM trip GROUP BY ALL"), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--data-dir", filepath.Join(dir, "data"), "--lake", lakeDir, "--log-level", "error"}
	check := func(when string) {
		t.Helper()
		out, code := sluice(t, append([]string{"query", "--format", "csv",
			"SELECT count(*), count(DISTINCT built), sum(trips), sum(fares) FROM daily"}, common...)...)
		if code != 0 {
			t.Fatalf("%s: sluice query = %d:\n%s", when, code, out)
		}
		if got := strings.TrimSpace(out); got != "count_star(),count(DISTINCT built),sum(trips),sum(fares)\n35,1,1000,99500" {
			t.Fatalf("%s: the table holds %q, not one run's 35 rows", when, got)
		}
	}
	out, code := sluice(t, append([]string{"jobs", "run", "--models", models}, common...)...)
	if code != 0 {
		t.Fatalf("first run = %d:\n%s", code, out)
	}
	check("after the first run")
	for i := range 8 {
		cmd := exec.Command(binary, append([]string{"jobs", "run", "--models", models}, common...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+mrand.IntN(250)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		check(fmt.Sprintf("after kill %d", i+1))
	}
	if out, code := sluice(t, append([]string{"jobs", "run", "--models", models}, common...)...); code != 0 {
		t.Fatalf("the run after the kills = %d:\n%s", code, out)
	}
	check("after the run after the kills")
	if out, code := sluice(t, append([]string{"lake", "orphans", "--older-than", "0s", "daily"}, common...)...); code != 0 {
		t.Fatalf("sluice lake orphans = %d:\n%s", code, out)
	}
	check("after orphan removal")
}
