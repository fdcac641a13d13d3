package jobs_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/jobs"
	"github.com/sluicehq/sluice/internal/lake/laketest"
)

// pageView is a page_view event as the collector stores it.
func pageView(id, root, at, url string) string {
	idField := ""
	if id != "" {
		idField = fmt.Sprintf(`"event_id":%q,`, id)
	}
	return fmt.Sprintf(`{"event_type":"page_view",%s"root_id":%q,"collector_tstamp":"2025-02-%sZ","payload":{"url":%q}}`, idField, root, at, url)
}

// TestDedupe: a dedupe model keeps the first copy of events sent twice
// (a replay), leaves out and reports events whose copies differ, keeps
// events without an id, and an incremental run of a later day finds the
// copies of events of the days before, within its lookback.
func TestDedupe(t *testing.T) {
	store, cat := laketest.Open(t, t.TempDir())
	laketest.Commit(t, store, cat, "page_view", "2025-02-01", 1,
		pageView("e1", "r1", "01T10:00:00", "/a"), pageView("e2", "r2", "01T10:01:00", "/b"), pageView("e3", "r3", "01T10:02:00", "/c"),
		pageView("", "r8", "01T10:03:00", "/x"))
	laketest.Commit(t, store, cat, "page_view", "2025-02-02", 2,
		pageView("e1", "r5", "02T09:00:00", "/a"), // sent again: the same event
		pageView("e2", "r6", "02T09:01:00", "/B"), // another event with e2's id
		pageView("e4", "r7", "02T09:02:00", "/d"),
		pageView("", "r9", "02T09:03:00", "/x"))
	dir := writeModels(t, map[string]string{
		"page_view_unique": "{{ config(materialized='incremental', lookback='1d') }}\nSELECT * FROM {{ dedupe('page_view', lookback='3d') }}",
	})
	kept := func() [][]any {
		return rows(t, store, cat, "SELECT event_id, root_id, url FROM page_view_unique ORDER BY root_id")
	}
	want := [][]any{{"e1", "r1", "/a"}, {"e3", "r3", "/c"}, {"e4", "r7", "/d"}, {nil, "r8", "/x"}, {nil, "r9", "/x"}}

	res := run(t, store, cat, dir, "whole")
	if diff := cmp.Diff(want, kept()); diff != "" {
		t.Errorf("built whole (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]jobs.CheckResult{{Check: "synthetic_duplicates", Severity: jobs.SeverityWarn, Failed: 2}}, res[0].Checks); diff != "" {
		t.Errorf("reported (-want +got):\n%s", diff)
	}
	got := rows(t, store, cat, `SELECT "row"->>'root_id' FROM dq_failures WHERE run_id = 'whole' ORDER BY 1`)
	if diff := cmp.Diff([][]any{{"r2"}, {"r6"}}, got); diff != "" {
		t.Errorf("dq_failures (-want +got):\n%s", diff)
	}

	// The second day alone: its copy of e1 is found on the first day, so
	// it stays out, as in the whole build.
	res = runWith(t, store, cat, dir, "day2", jobs.Options{From: day(2), To: day(3)}, time.Now)
	if res[0].Status != jobs.StatusSuccess {
		t.Fatalf("day 2: %+v", res[0])
	}
	if diff := cmp.Diff(want, kept()); diff != "" {
		t.Errorf("after day 2 rebuilt (-want +got):\n%s", diff)
	}
}
