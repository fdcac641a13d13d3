package jobs_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/jobs"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/lake/laketest"
	"github.com/sluicehq/sluice/internal/query"
)

// day is a date of February 2025.
func day(d int) time.Time { return time.Date(2025, 2, d, 0, 0, 0, 0, time.UTC) }

// rides commits n rides on each day of days to the rides table, as one
// data file per day, their times in the day's hours; batch tells batches
// apart (in fares and offsets).
func rides(t *testing.T, store *lake.Local, cat *lake.Catalog, batch int, days ...int) {
	t.Helper()
	for _, d := range days {
		var events []string
		for i := range 3 {
			events = append(events, fmt.Sprintf(`{"zone":"%s","fare":%d,"pickup":"2025-02-%02dT%02d:00:00Z"}`, []string{"JFK", "SoHo", "JFK"}[i], batch*100+d*10+i, d, i+1))
		}
		laketest.Commit(t, store, cat, "rides", fmt.Sprintf("2025-02-%02d", d), int64(batch*100+d), events...)
	}
}

const dailySQL = `SELECT CAST(CAST(pickup AS TIMESTAMP) AS DATE) AS event_date, zone, count(*) AS trips, sum(fare) AS revenue
	FROM rides WHERE CAST(CAST(pickup AS TIMESTAMP) AS DATE) >= {{ start }} AND CAST(CAST(pickup AS TIMESTAMP) AS DATE) < {{ end }} GROUP BY ALL`

// TestIncremental: an incremental model run a day at a time equals the
// same SQL built whole; running a finished day again changes nothing; a
// backfill of a past day replaces only it; a run without a range rebuilds
// the lookback's days before now.
func TestIncremental(t *testing.T) {
	store, cat := newLake(t)
	rides(t, store, cat, 1, 1, 2, 3, 4)
	dir := writeModels(t, map[string]string{
		"daily_inc":  "{{ config(materialized='incremental', lookback='2d') }}\n" + dailySQL,
		"daily_full": dailySQL,
	})
	table := func(name string) [][]any {
		return rows(t, store, cat, "SELECT CAST(event_date AS VARCHAR), zone, trips, revenue FROM "+name+" ORDER BY 1, 2")
	}
	now := func() time.Time { return day(4).Add(12 * time.Hour) }
	for d := 1; d <= 4; d++ {
		res := runWith(t, store, cat, dir, fmt.Sprintf("step-%d", d), jobs.Options{From: day(d), To: day(d + 1)}, now)
		if res[0].Status != jobs.StatusSuccess || res[1].Status != jobs.StatusSuccess {
			t.Fatalf("step %d: %+v", d, res)
		}
	}
	full := table("daily_full")
	if len(full) != 8 {
		t.Fatalf("daily_full has %d rows, want 8 (4 days × 2 zones)", len(full))
	}
	if diff := cmp.Diff(full, table("daily_inc")); diff != "" {
		t.Fatalf("incremental in daily steps ≠ built whole (-full +incremental):\n%s", diff)
	}

	// Day 2 again: the same rows.
	runWith(t, store, cat, dir, "again", jobs.Options{From: day(2), To: day(3)}, now)
	if diff := cmp.Diff(full, table("daily_inc")); diff != "" {
		t.Fatalf("a rerun of day 2 changed the table (-before +after):\n%s", diff)
	}

	// Late rides of days 2 and 4; a backfill of day 2 takes them in, and
	// leaves day 4 as it was.
	rides(t, store, cat, 2, 2, 4)
	runWith(t, store, cat, dir, "backfill", jobs.Options{From: day(2), To: day(3)}, now)
	got, fullNow := table("daily_inc"), table("daily_full")
	for i, r := range got {
		want := full[i] // days 1, 3 and 4: as before
		if r[0] == "2025-02-02" {
			want = fullNow[i] // day 2: with the late rides
		}
		if diff := cmp.Diff(want, r); diff != "" {
			t.Errorf("after the backfill of day 2, row %d (-want +got):\n%s", i, diff)
		}
	}

	// No range: the lookback's two days before now, 3 and 4, so day 4's
	// late rides are in, and the table equals the whole build.
	res := runWith(t, store, cat, dir, "lookback", jobs.Options{}, now)
	if res[1].Model != "daily_inc" || res[1].Range != "2025-02-03/2025-02-05" {
		t.Errorf("%s: range of a run without one = %q, want the lookback's 2025-02-03/2025-02-05", res[1].Model, res[1].Range)
	}
	if diff := cmp.Diff(table("daily_full"), table("daily_inc")); diff != "" {
		t.Errorf("after the lookback run (-full +incremental):\n%s", diff)
	}

	// Checks see the table as the run would publish it, not only the
	// run's rows: a day without rides passes row_count.
	checks := "checks:\n  - type: row_count\n    min: 1\n  - type: unique\n    columns: [event_date, zone]\n"
	if err := os.WriteFile(filepath.Join(dir, "daily_inc.yml"), []byte(checks), 0o644); err != nil {
		t.Fatal(err)
	}
	res = runWith(t, store, cat, dir, "empty-day", jobs.Options{From: day(20), To: day(21)}, now)
	if res[1].Status != jobs.StatusSuccess {
		t.Errorf("a run of a day without rides: %+v", res[1])
	}
	if diff := cmp.Diff(table("daily_full"), table("daily_inc")); diff != "" {
		t.Errorf("after a run of a day without rides (-full +incremental):\n%s", diff)
	}
}

// TestMerge: a merge model's rows replace the table's rows with their key
// and keep the others; rows with a null key are left out and recorded;
// rows that repeat a key fail the run, and the table stays.
func TestMerge(t *testing.T) {
	store, cat := newLake(t)
	laketest.Commit(t, store, cat, "users", "2025-02-01", 1,
		`{"id":1,"name":"ann","v":1}`, `{"id":2,"name":"bob","v":1}`)
	dir := writeModels(t, map[string]string{
		"user_latest": "{{ config(materialized='merge', unique_key='id') }}\nSELECT id, arg_max(name, v) AS name, max(v) AS v FROM users GROUP BY id",
	})
	table := func() [][]any {
		return rows(t, store, cat, "SELECT id, name, v FROM user_latest ORDER BY id NULLS LAST")
	}
	run(t, store, cat, dir, "m1")
	if diff := cmp.Diff([][]any{{int64(1), "ann", int64(1)}, {int64(2), "bob", int64(1)}}, table()); diff != "" {
		t.Fatalf("first merge (-want +got):\n%s", diff)
	}

	// bob renamed, cy new, and a row without an id.
	laketest.Commit(t, store, cat, "users", "2025-02-02", 2,
		`{"id":2,"name":"bobby","v":2}`, `{"id":3,"name":"cy","v":1}`, `{"name":"nobody","v":9}`)
	res := run(t, store, cat, dir, "m2")
	if res[0].Status != jobs.StatusSuccess {
		t.Fatalf("second merge: %+v", res[0])
	}
	if diff := cmp.Diff([][]any{{int64(1), "ann", int64(1)}, {int64(2), "bobby", int64(2)}, {int64(3), "cy", int64(1)}}, table()); diff != "" {
		t.Fatalf("second merge (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]jobs.CheckResult{{Check: "unique_key_not_null", Severity: jobs.SeverityWarn, Failed: 1}}, res[0].Checks); diff != "" {
		t.Errorf("null keys (-want +got):\n%s", diff)
	}
	got := rows(t, store, cat, `SELECT model, "check", severity, json_extract_string("row", '$.name') FROM dq_failures WHERE run_id = 'm2'`)
	if diff := cmp.Diff([][]any{{"user_latest", "unique_key_not_null", "warn", "nobody"}}, got); diff != "" {
		t.Errorf("dq_failures of the null key (-want +got):\n%s", diff)
	}

	// A model whose rows repeat a key fails, and the table stays.
	dup := writeModels(t, map[string]string{
		"user_latest": "{{ config(materialized='merge', unique_key='id') }}\nSELECT id, name, v FROM users WHERE id IS NOT NULL",
	})
	res = run(t, store, cat, dup, "m3")
	if res[0].Status != jobs.StatusError || !strings.Contains(res[0].Error, "more than one of its rows") {
		t.Errorf("merge of repeated keys: %+v", res[0])
	}
	if got := table(); len(got) != 3 || got[1][1] != "bobby" {
		t.Errorf("the table after a failed merge: %v", got)
	}
}

// TestMergeLeavesNoScratch: a merge's new rows are the run's alone; the
// engine holds no table of them after the model, built or failed.
func TestMergeLeavesNoScratch(t *testing.T) {
	store, cat := newLake(t)
	eng, err := query.Open(t.Context(), store, cat, query.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	for _, sql := range []string{"SELECT zone, max(fare) AS fare FROM trip GROUP BY zone", "SELECT zone, fare FROM trip"} {
		models, err := jobs.Load(writeModels(t, map[string]string{"zone_fare": "{{ config(materialized='merge', unique_key='zone') }}\n" + sql}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jobs.NewRunner(eng, cat, store, store, t.TempDir(), slog.New(slog.DiscardHandler)).Run(t.Context(), models, "scratch", jobs.Options{}); err != nil {
			t.Fatal(err)
		}
		var n int64
		if err := eng.QueryRow(t.Context(), "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'merge_new__%'", &n); err != nil || n != 0 {
			t.Errorf("%s: %d scratch tables after the run, %v", sql, n, err)
		}
		// The run's records read through the same engine, as the demo
		// reads them after its run.
		if err := eng.QueryRow(t.Context(), "SELECT count(*) FROM job_runs WHERE run_id = 'scratch'", &n); err != nil || n == 0 {
			t.Errorf("%s: job_runs through the run's engine: %d rows, %v", sql, n, err)
		}
	}
}

// TestView: a view model is published as a view of the catalog, read by
// the models after it in the same run and by any later query, and is never
// stale; new SQL is a new version, the same SQL none; a failing check of
// severity error keeps the view as it was; a view model made a table
// model drops the view for the table.
func TestView(t *testing.T) {
	store, cat := newLake(t)
	view := "{{ config(materialized='view') }}\nSELECT zone, fare FROM trip WHERE zone = 'JFK'"
	dir := writeModels(t, map[string]string{
		"jfk":       view,
		"jfk_total": "SELECT count(*) AS trips, sum(fare) AS revenue FROM {{ ref('jfk') }}",
	})
	res := run(t, store, cat, dir, "v1")
	if res[0].Status != jobs.StatusSuccess || res[0].Version != 1 || res[0].Snapshot != 0 {
		t.Fatalf("view model: %+v, want success as version 1 of a view", res[0])
	}
	if diff := cmp.Diff([][]any{{int64(3), 60.5}}, rows(t, store, cat, "SELECT trips, revenue FROM jfk_total")); diff != "" {
		t.Errorf("the table over the view, in the same run (-want +got):\n%s", diff)
	}
	if _, err := cat.Load(t.Context(), "jfk"); err == nil {
		t.Errorf("a view model made a table")
	}

	// New trips: the view reads them without a run.
	laketest.Commit(t, store, cat, "trip", "2025-02-03", 7, `{"zone":"JFK","fare":1}`)
	if diff := cmp.Diff([][]any{{int64(4)}}, rows(t, store, cat, "SELECT count(*) FROM jfk")); diff != "" {
		t.Errorf("the view after new trips (-want +got):\n%s", diff)
	}
	if res := run(t, store, cat, dir, "v2"); res[0].Version != 1 {
		t.Errorf("the same SQL again: version %d, want 1", res[0].Version)
	}
	if err := os.WriteFile(filepath.Join(dir, "jfk.sql"), []byte(view+" AND fare > 5"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := run(t, store, cat, dir, "v3"); res[0].Version != 2 {
		t.Errorf("new SQL: version %d, want 2", res[0].Version)
	}
	if diff := cmp.Diff([][]any{{int64(3)}}, rows(t, store, cat, "SELECT count(*) FROM jfk")); diff != "" {
		t.Errorf("the view's new SQL (-want +got):\n%s", diff)
	}

	// A check of severity error that fails keeps version 2.
	if err := os.WriteFile(filepath.Join(dir, "jfk.sql"), []byte(view), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jfk.yml"), []byte("checks:\n  - type: row_count\n    max: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res = run(t, store, cat, dir, "v4")
	if res[0].Status != jobs.StatusError || res[1].Status != jobs.StatusSkipped {
		t.Fatalf("a failing check: %+v", summaries(res))
	}
	if v, err := cat.LoadView(t.Context(), "jfk"); err != nil || v.Version != 2 {
		t.Errorf("the view after a failing check: version %d, %v; want 2", v.Version, err)
	}

	// The model made a table: the view goes, the table comes.
	os.Remove(filepath.Join(dir, "jfk.yml"))
	if err := os.WriteFile(filepath.Join(dir, "jfk.sql"), []byte("SELECT zone, fare FROM trip WHERE zone = 'JFK'"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := run(t, store, cat, dir, "v5"); res[0].Status != jobs.StatusSuccess || res[0].Rows != 4 {
		t.Fatalf("view made table: %+v", res[0])
	}
	if names, err := cat.ViewNames(t.Context()); err != nil || len(names) != 0 {
		t.Errorf("views after the model became a table: %v, %v", names, err)
	}
}
