package jobs_test

import (
	"fmt"
	"io"
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

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, file, text string
		want             jobs.Model
		err              string
	}{
		{name: "ref and config", file: "daily", text: "{{ config(materialized='table') }}\nSELECT * FROM {{ ref('trip') }};\n",
			want: jobs.Model{Name: "daily", SQL: `SELECT * FROM "trip"`, Materialized: jobs.MaterializeTable, Lookback: 3}},
		{name: "plain", file: "daily", text: "select 1 as x", want: jobs.Model{Name: "daily", SQL: "select 1 as x", Materialized: jobs.MaterializeTable, Lookback: 3}},
		{name: "incremental", file: "daily", text: "{{ config(materialized='incremental', lookback='7d') }} SELECT * FROM t WHERE d >= {{ start }} AND d < {{end}}",
			want: jobs.Model{Name: "daily", SQL: "SELECT * FROM t WHERE d >= {{ start }} AND d < {{end}}", Materialized: jobs.MaterializeIncremental, Lookback: 7}},
		{name: "merge", file: "users", text: "{{ config(materialized='merge', unique_key='id|region') }} SELECT * FROM t",
			want: jobs.Model{Name: "users", SQL: "SELECT * FROM t", Materialized: jobs.MaterializeMerge, UniqueKey: []string{"id", "region"}, Lookback: 3}},
		{name: "merge without key", file: "users", text: "{{ config(materialized='merge') }} SELECT * FROM t", err: "needs unique_key"},
		{name: "bad lookback", file: "d", text: "{{ config(materialized='incremental', lookback='5m') }} SELECT 1", err: "number of days"},
		{name: "bad name", file: "Daily-Trips", text: "select 1", err: `model name "Daily-Trips"`},
		{name: "unknown key", file: "d", text: "{{ config(schedule='daily') }} select 1", err: `unknown key "schedule"`},
		{name: "unknown materialization", file: "d", text: "{{ config(materialized='ephemeral') }} select 1", err: `materialized="ephemeral": want table, incremental, merge or view`},
		{name: "unknown tag", file: "d", text: "select {{ var('x') }}", err: "only {{ ref('name') }}"},
		{name: "empty", file: "d", text: "-- nothing\n", want: jobs.Model{}, err: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := jobs.Parse(tc.file, tc.text)
			if tc.name == "empty" {
				// A comment alone is SQL DuckDB rejects at run time; Parse
				// keeps it.
				if err != nil || got.SQL != "-- nothing" {
					t.Fatalf("Parse = %+v, %v", got, err)
				}
				return
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse error = %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

// writeModels writes models, by name, as the .sql files of a directory.
func writeModels(t *testing.T, models map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, sql := range models {
		if err := os.WriteFile(filepath.Join(dir, name+".sql"), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func waveNames(waves [][]jobs.Model) [][]string {
	var out [][]string
	for _, w := range waves {
		var names []string
		for _, m := range w {
			names = append(names, m.Name)
		}
		out = append(out, names)
	}
	return out
}

func modelNames(models []jobs.Model) []string {
	var out []string
	for _, m := range models {
		out = append(out, m.Name)
	}
	return out
}

func TestGraph(t *testing.T) {
	dir := writeModels(t, map[string]string{
		"a": "SELECT * FROM trip",
		// 'a' in a string and a comment are no references.
		"b": "SELECT * FROM {{ ref('a') }} WHERE x <> 'c' -- from d",
		"c": "SELECT * FROM a JOIN trip USING (id)",
		"d": "/* b and c */ SELECT * FROM b UNION ALL SELECT * FROM \"c\"",
	})
	models, err := jobs.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string][]string{}
	for _, m := range models {
		refs[m.Name] = m.Refs
	}
	if diff := cmp.Diff(map[string][]string{"a": nil, "b": {"a"}, "c": {"a"}, "d": {"b", "c"}}, refs); diff != "" {
		t.Errorf("refs (-want +got):\n%s", diff)
	}
	waves, err := jobs.Order(models)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]string{{"a"}, {"b", "c"}, {"d"}}, waveNames(waves)); diff != "" {
		t.Errorf("waves (-want +got):\n%s", diff)
	}
	for sel, want := range map[string][]string{
		"":      {"a", "b", "c", "d"},
		"b":     {"b"},
		"b+":    {"b", "d"},
		"+b":    {"a", "b"},
		"a+":    {"a", "b", "c", "d"},
		"+d":    {"a", "b", "c", "d"},
		"c, b+": {"b", "c", "d"},
	} {
		got, err := jobs.Select(models, sel)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, modelNames(got)); diff != "" {
			t.Errorf("Select(%q) (-want +got):\n%s", sel, diff)
		}
	}
	if _, err := jobs.Select(models, "e+"); err == nil || !strings.Contains(err.Error(), "no model e") {
		t.Errorf("Select(e+) error = %v", err)
	}

	cyclic := writeModels(t, map[string]string{"x": "SELECT * FROM y", "y": "SELECT * FROM z", "z": "SELECT * FROM y", "w": "SELECT 1"})
	if _, err := jobs.Load(cyclic); err == nil || !strings.Contains(err.Error(), "y → z → y") {
		t.Errorf("Load of a cycle: error = %v, want one naming y → z → y", err)
	}
}

// newLake makes a lake on disk with a trip table of events on two dates.
func newLake(t *testing.T) (*lake.Local, *lake.Catalog) {
	t.Helper()
	store, cat := laketest.Open(t, t.TempDir())
	laketest.Commit(t, store, cat, "trip", "2025-02-01", 3, `{"zone":"JFK","fare":10.5}`, `{"zone":"JFK","fare":20}`, `{"zone":"SoHo","fare":7.25}`)
	laketest.Commit(t, store, cat, "trip", "2025-02-02", 5, `{"zone":"JFK","fare":30}`, `{"zone":"SoHo","fare":null}`)
	return store, cat
}

// run builds the models of dir over the lake, with an engine of its own.
func run(t *testing.T, store *lake.Local, cat *lake.Catalog, dir, runID string) []jobs.Result {
	t.Helper()
	return runWith(t, store, cat, dir, runID, jobs.Options{}, time.Now)
}

// runWith runs the models of dir with opts, at the times now gives.
func runWith(t *testing.T, store *lake.Local, cat *lake.Catalog, dir, runID string, opts jobs.Options, now func() time.Time) []jobs.Result {
	t.Helper()
	models, err := jobs.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := query.Open(t.Context(), store, cat, query.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	r := jobs.NewRunner(eng, cat, store, store, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.SetClock(now)
	res, err := r.Run(t.Context(), models, runID, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// rows reads a query's rows through a new engine, as sluice query would.
func rows(t *testing.T, store *lake.Local, cat *lake.Catalog, q string) [][]any {
	t.Helper()
	eng, err := query.Open(t.Context(), store, cat, query.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	res, err := eng.Query(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	return res.Rows
}

type summary struct {
	Model  string
	Status jobs.Status
	Rows   int64
	Files  int
	Error  string
}

func summaries(res []jobs.Result) []summary {
	var out []summary
	for _, r := range res {
		out = append(out, summary{r.Model, r.Status, r.Rows, r.Files, r.Error})
	}
	return out
}

// TestRunPublishes builds a daily model over the trip table and a model
// over it (a plain reference), reads them back as sluice query does, and
// runs them again: the same rows, in a new snapshot of each table.
func TestRunPublishes(t *testing.T) {
	store, cat := newLake(t)
	dir := writeModels(t, map[string]string{
		"daily_zone": `{{ config(materialized='table') }}
			SELECT event_date, zone, count(*) AS trips, sum(fare) AS revenue, max(fare) > 15 AS big
			FROM {{ ref('trip') }} GROUP BY ALL`,
		"zone_total": `SELECT zone, sum(trips) AS trips, list(event_date ORDER BY event_date) AS days, min(event_date) AS first_day FROM daily_zone GROUP BY zone`,
	})
	want := []summary{{"daily_zone", jobs.StatusSuccess, 4, 2, ""}, {"zone_total", jobs.StatusSuccess, 2, 1, ""}}
	for i, runID := range []string{"run-1", "run-2"} {
		if diff := cmp.Diff(want, summaries(run(t, store, cat, dir, runID))); diff != "" {
			t.Fatalf("run %d (-want +got):\n%s", i+1, diff)
		}
		got := rows(t, store, cat, `SELECT CAST(event_date AS VARCHAR), zone, trips, revenue, big FROM daily_zone ORDER BY 1, 2`)
		if diff := cmp.Diff([][]any{
			{"2025-02-01", "JFK", int64(2), 30.5, true}, {"2025-02-01", "SoHo", int64(1), 7.25, false},
			{"2025-02-02", "JFK", int64(1), 30.0, true}, {"2025-02-02", "SoHo", int64(1), nil, nil},
		}, got); diff != "" {
			t.Errorf("run %d: daily_zone (-want +got):\n%s", i+1, diff)
		}
		got = rows(t, store, cat, `SELECT zone, trips, days FROM zone_total ORDER BY 1`)
		if diff := cmp.Diff([][]any{{"JFK", int64(3), `["2025-02-01","2025-02-02"]`}, {"SoHo", int64(2), `["2025-02-01","2025-02-02"]`}}, got); diff != "" {
			t.Errorf("run %d: zone_total (-want +got):\n%s", i+1, diff)
		}
		tbl, err := cat.Load(t.Context(), "daily_zone")
		if err != nil {
			t.Fatal(err)
		}
		if got := tbl.CurrentSnapshot().Summary.Properties[jobs.RunKey]; got != runID {
			t.Errorf("run %d: the snapshot's run is %q, want %q", i+1, got, runID)
		}
		if spec := tbl.Spec(); spec.NumFields() != 1 {
			t.Errorf("daily_zone has %d partition fields, want 1 (event_date)", spec.NumFields())
		}
	}
	// A model's table has a date: compaction, which writes the loader's
	// types, leaves it alone rather than change it.
	res, err := cat.Compact(t.Context(), store, "zone_total", 128<<20)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped == "" {
		t.Errorf("compaction of zone_total: not skipped")
	}
}

// TestFailedModel: a model that fails keeps its table as it was, and the
// models downstream of it are skipped, with their tables kept too.
func TestFailedModel(t *testing.T) {
	store, cat := newLake(t)
	good := map[string]string{
		"daily_zone": `SELECT event_date, zone, count(*) AS trips FROM trip GROUP BY ALL`,
		"zone_total": `SELECT zone, sum(trips) AS trips FROM daily_zone GROUP BY zone`,
		"other":      `SELECT count(*) AS n FROM trip`,
	}
	run(t, store, cat, writeModels(t, good), "run-1")
	before := map[string]int64{}
	for _, name := range []string{"daily_zone", "zone_total"} {
		tbl, err := cat.Load(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		before[name] = tbl.CurrentSnapshot().SnapshotID
	}
	bad := map[string]string{
		"daily_zone": `SELECT event_date, zone, count(*) AS trips, CAST(zone AS INTEGER) AS broken FROM trip GROUP BY ALL`,
		"zone_total": good["zone_total"],
		"other":      good["other"],
	}
	res := summaries(run(t, store, cat, writeModels(t, bad), "run-2"))
	if len(res) != 3 || res[0].Status != jobs.StatusError || !strings.Contains(res[0].Error, "daily_zone") {
		t.Fatalf("results = %+v, want daily_zone failed first", res)
	}
	if diff := cmp.Diff(summary{"other", jobs.StatusSuccess, 1, 1, ""}, res[1]); diff != "" {
		t.Errorf("the independent model (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(summary{"zone_total", jobs.StatusSkipped, 0, 0, "upstream model daily_zone failed"}, res[2]); diff != "" {
		t.Errorf("the downstream model (-want +got):\n%s", diff)
	}
	for name, id := range before {
		tbl, err := cat.Load(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if got := tbl.CurrentSnapshot().SnapshotID; got != id {
			t.Errorf("%s: snapshot %d after the failed run, want %d (unchanged)", name, got, id)
		}
	}
	if got := rows(t, store, cat, `SELECT CAST(sum(trips) AS BIGINT) FROM zone_total`); !cmp.Equal(got, [][]any{{int64(5)}}) {
		t.Errorf("zone_total after the failed run = %v, want its 5 trips", got)
	}
}

// TestCleanFirstRun: a first run whose checks all pass leaves an empty
// dq_failures table to query, as well as job_runs.
func TestCleanFirstRun(t *testing.T) {
	store, cat := newLake(t)
	dir := writeModels(t, map[string]string{"zones": "SELECT DISTINCT zone FROM trip"})
	if err := os.WriteFile(filepath.Join(dir, "zones.yml"), []byte("checks:\n  - type: unique\n    columns: [zone]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, store, cat, dir, "clean")
	if got := rows(t, store, cat, "SELECT count(*) FROM dq_failures"); !cmp.Equal(got, [][]any{{int64(0)}}) {
		t.Errorf("dq_failures after a clean run = %v, want an empty table", got)
	}
	if got := rows(t, store, cat, "SELECT count(*) FROM job_runs"); !cmp.Equal(got, [][]any{{int64(1)}}) {
		t.Errorf("job_runs after the run = %v, want its one row", got)
	}
}

// TestModelNamedAsEventTable: a model named as a table the loader fills
// fails, and the table keeps its events; a model named as a table every
// run writes does not load.
func TestModelNamedAsEventTable(t *testing.T) {
	store, cat := newLake(t)
	res := run(t, store, cat, writeModels(t, map[string]string{"trip": "SELECT 1 AS n"}), "clash")
	if res[0].Status != jobs.StatusError || !strings.Contains(res[0].Error, "rename the model") {
		t.Errorf("a model named as the loader's table: %+v", res[0])
	}
	if got := rows(t, store, cat, "SELECT count(*) FROM trip"); !cmp.Equal(got, [][]any{{int64(5)}}) {
		t.Errorf("the loader's table after the model = %v, want its 5 events", got)
	}
	if _, err := jobs.Load(writeModels(t, map[string]string{"job_runs": "SELECT 1 AS n"})); err == nil || !strings.Contains(err.Error(), "every run writes") {
		t.Errorf("a model named job_runs loads: %v", err)
	}
}

// TestParallelWave: models that do not read each other are built side by
// side; the one that reads both after them. job_runs has when each ran.
func TestParallelWave(t *testing.T) {
	store, cat := newLake(t)
	slow := "SELECT count(*) AS n FROM range(40000000) AS r(i) WHERE i %% 7 = %d"
	dir := writeModels(t, map[string]string{
		"a":      fmt.Sprintf(slow, 1),
		"b":      fmt.Sprintf(slow, 2),
		"sum_ab": "SELECT a.n + b.n AS n FROM a, b",
	})
	res := run(t, store, cat, dir, "parallel")
	if len(res) != 3 || res[2].Model != "sum_ab" || res[2].Status != jobs.StatusSuccess {
		t.Fatalf("results: %+v", res)
	}
	got := rows(t, store, cat, `SELECT model, started_at, ended_at FROM job_runs WHERE run_id = 'parallel' ORDER BY model`)
	span := map[string][2]time.Time{}
	for _, r := range got {
		span[r[0].(string)] = [2]time.Time{r[1].(time.Time), r[2].(time.Time)}
	}
	a, b, sum := span["a"], span["b"], span["sum_ab"]
	if !a[0].Before(b[1]) || !b[0].Before(a[1]) {
		t.Errorf("a ran %v–%v and b %v–%v: one after the other", a[0], a[1], b[0], b[1])
	}
	if sum[0].Before(a[1]) || sum[0].Before(b[1]) {
		t.Errorf("sum_ab started at %v, before a (%v) or b (%v) ended", sum[0], a[1], b[1])
	}
	// Of 0 to 39,999,999: 5,714,286 leave 1 divided by 7, and 5,714,286 leave 2.
	if got := rows(t, store, cat, "SELECT n FROM sum_ab"); !cmp.Equal(got, [][]any{{int64(11428572)}}) {
		t.Errorf("sum_ab = %v", got)
	}
}
