package jobs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/jobs"
	"github.com/sluicehq/sluice/internal/lake/laketest"
)

// TestChecks runs each check type on a model's output, passing and
// failing: a failing check of severity error keeps the table as it was
// and skips what reads the model; warn publishes; every failing row is in
// dq_failures with its check, model and run. A source table's checks run
// on the table.
func TestChecks(t *testing.T) {
	store, cat := laketest.Open(t, t.TempDir())
	laketest.Commit(t, store, cat, "trip", "2025-02-01", 1,
		`{"id":1,"zone":"JFK","fare":10,"pay":1,"ts":"2025-02-01T10:00:00Z"}`,
		`{"id":2,"zone":"SoHo","fare":-5,"pay":2,"ts":"2025-02-01T11:00:00Z"}`,
		`{"id":2,"zone":null,"fare":7,"pay":9,"ts":"2025-02-01T12:00:00Z"}`)
	laketest.Commit(t, store, cat, "zones", "2025-02-01", 2, `{"name":"JFK"}`, `{"name":"SoHo"}`)
	now := func() time.Time { return time.Date(2025, 2, 2, 0, 0, 0, 0, time.UTC) }

	// Every check passes on the first two trips and fails on the third,
	// but row_count and freshness, which fail by their bounds.
	checks := map[string]struct {
		yml    string
		failed int64
	}{
		"not_null_zone":       {"type: not_null\n    columns: [zone]", 1},
		"unique_id":           {"type: unique\n    columns: [id]", 2},
		"accepted_values_pay": {"type: accepted_values\n    column: pay\n    values: [1, 2]", 1},
		"relationships_zone":  {"type: relationships\n    column: zone\n    to: zones\n    field: name", 0},
		"few_rows":            {"name: few_rows\n    type: row_count\n    max: 2", 1},
		"many_rows":           {"name: many_rows\n    type: row_count\n    min: 1", 0},
		"freshness_ts":        {"type: freshness\n    column: ts\n    max_age: 6h", 1},
		"fresh_enough":        {"name: fresh_enough\n    type: freshness\n    column: ts\n    max_age: 24h", 0},
		"negative_fare":       {"name: negative_fare\n    type: expression\n    sql: SELECT * FROM {{ this }} WHERE fare < 0", 1},
	}
	for name, c := range checks {
		for _, severity := range []string{"warn", "error"} {
			t.Run(name+"/"+severity, func(t *testing.T) {
				dir := writeModels(t, map[string]string{
					"clean":      "SELECT id, zone, fare, pay, CAST(ts AS TIMESTAMP) AS ts FROM trip",
					"downstream": "SELECT count(*) AS n FROM clean",
				})
				yml := "checks:\n  - " + c.yml + "\n    severity: " + severity + "\n"
				if err := os.WriteFile(filepath.Join(dir, "clean.yml"), []byte(yml), 0o644); err != nil {
					t.Fatal(err)
				}
				// A first run without the check publishes the table.
				before := map[string]int64{}
				if c.failed > 0 && severity == "error" {
					dir0 := writeModels(t, map[string]string{"clean": "SELECT id, zone, fare, pay, CAST(ts AS TIMESTAMP) AS ts FROM trip"})
					runWith(t, store, cat, dir0, "setup-"+name, jobs.Options{}, now)
					tbl, err := cat.Load(t.Context(), "clean")
					if err != nil {
						t.Fatal(err)
					}
					before["clean"] = tbl.CurrentSnapshot().SnapshotID
				}
				runID := "run-" + name + "-" + severity
				res := runWith(t, store, cat, dir, runID, jobs.Options{}, now)
				got := res[0].Checks
				if diff := cmp.Diff([]jobs.CheckResult{{Check: name, Severity: jobs.Severity(severity), Failed: c.failed}}, got); diff != "" {
					t.Fatalf("checks (-want +got):\n%s\n%+v", diff, res)
				}
				n := rows(t, store, cat, "SELECT count(*) FROM dq_failures WHERE run_id = '"+runID+"' AND model = 'clean' AND \"check\" = '"+name+"'")
				if want := min(c.failed, 1); (c.failed == 0) != (n[0][0] == int64(0)) {
					t.Errorf("dq_failures rows of the run = %v, want %d or more", n, want)
				}
				failing := c.failed > 0 && severity == "error"
				wantStatus := []jobs.Status{jobs.StatusSuccess, jobs.StatusSuccess}
				if failing {
					wantStatus = []jobs.Status{jobs.StatusError, jobs.StatusSkipped}
				}
				if diff := cmp.Diff(wantStatus, []jobs.Status{res[0].Status, res[1].Status}); diff != "" {
					t.Errorf("statuses of clean and downstream (-want +got):\n%s\n%+v", diff, res)
				}
				if failing {
					tbl, err := cat.Load(t.Context(), "clean")
					if err != nil {
						t.Fatal(err)
					}
					if got := tbl.CurrentSnapshot().SnapshotID; got != before["clean"] {
						t.Errorf("a failed error check published snapshot %d over %d", got, before["clean"])
					}
					if !strings.Contains(res[0].Error, "check "+name+" failed") {
						t.Errorf("error = %q", res[0].Error)
					}
				}
			})
		}
	}

	// A source table's checks, and job_runs.
	dir := writeModels(t, map[string]string{})
	if err := os.WriteFile(filepath.Join(dir, "trip.yml"), []byte("checks:\n  - type: not_null\n    columns: [zone]\n    severity: warn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runWith(t, store, cat, dir, "source-run", jobs.Options{}, now)
	if diff := cmp.Diff([]jobs.CheckResult{{Check: "not_null_zone", Severity: jobs.SeverityWarn, Failed: 1}}, res[0].Checks); diff != "" {
		t.Errorf("the source's checks (-want +got):\n%s", diff)
	}
	got := rows(t, store, cat, "SELECT model, materialized, status, checks_failed FROM job_runs WHERE run_id = 'source-run'")
	if diff := cmp.Diff([][]any{{"trip", "source", "success", int64(1)}}, got); diff != "" {
		t.Errorf("job_runs (-want +got):\n%s", diff)
	}
}

// TestSpecErrors: a model's checks file is strict, every problem with its
// place.
func TestSpecErrors(t *testing.T) {
	dir := writeModels(t, map[string]string{"m": "SELECT 1 AS x"})
	yml := "checks:\n  - type: not_nul\n  - type: unique\n  - type: row_count\n    severity: fatal\n  - type: freshness\n    colum: at\n"
	if err := os.WriteFile(filepath.Join(dir, "m.yml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := jobs.Load(dir)
	for _, want := range []string{`checks[0].type: "not_nul"`, "checks[1].columns", "checks[2].severity", "colum"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load error = %v, want one with %q", err, want)
		}
	}
}
