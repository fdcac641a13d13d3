package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
