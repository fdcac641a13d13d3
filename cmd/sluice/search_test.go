package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/searchtest"
)

// searchGet posts body (or GETs, without one) to a path of the OpenSearch
// node and decodes the JSON answer into v. A 503 is asked again for up to
// 30 s: a search that reaches an index created a moment ago, whose shards
// have not started yet, fails with "all shards failed" until they have.
func searchGet(t *testing.T, base, path string, body, v any) {
	t.Helper()
	method, payload := http.MethodGet, []byte(nil)
	if body != nil {
		method = http.MethodPost
		payload, _ = json.Marshal(body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, base+path, rd)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v: %s", path, err, b)
		}
		return
	}
}

// TestSearchEndToEnd runs sluice up with an OpenSearch sink beside the
// lake: 5,000 real TLC trips go through the collector and the enricher
// into an index per day, where _count and _search find every one, with
// the types of the bundled schema, and the same sums as DuckDB reading
// the source file.
func TestSearchEndToEnd(t *testing.T) {
	srv := searchtest.Shared(t)
	prefix := searchtest.Prefix(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sluice.yaml")
	cfg := fmt.Sprintf(`sinks:
  - type: lake
    flush_interval: 300ms
  - type: opensearch
    name: search
    urls: [%s]
    index: "%s{event_type}-{yyyy.MM.dd}"
    offsets_index: %soffsets
    replicas: 0
    flush_interval: 300ms
`, srv.URL, prefix, prefix)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startUp(t, dir, "--config", cfgPath)
	src := filepath.Join(repoDir, "internal/sample/data/yellow_tripdata_2025-02_sample5000.parquet")
	out, code := sluice(t, "replay", "--collector", "http://"+p.httpAddr, "--preset", "tlc-yellow", "--batch", "500", src)
	if code != 0 || !strings.Contains(out, "5000") {
		t.Fatalf("sluice replay = %d:\n%s", code, out)
	}

	pattern := prefix + "yellow_taxi_trip-*"
	deadline := time.Now().Add(60 * time.Second)
	for {
		var refreshed, c struct {
			Count int `json:"count"`
		}
		searchGet(t, srv.URL, "/"+pattern+"/_refresh?allow_no_indices=true", map[string]any{}, &refreshed)
		searchGet(t, srv.URL, "/"+pattern+"/_count?allow_no_indices=true", nil, &c)
		if c.Count == 5000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("_count = %d within 60s, want 5000", c.Count)
		}
		time.Sleep(300 * time.Millisecond)
	}

	// The schema's types, not the first document's guesses: passenger_count
	// holds whole numbers in February 2025, and is a double.
	type fieldType struct {
		Type string `json:"type"`
	}
	var mapping map[string]struct {
		Mappings map[string]struct {
			Mapping map[string]fieldType `json:"mapping"`
		} `json:"mappings"`
	}
	searchGet(t, srv.URL, "/"+pattern+"/_mapping/field/payload.*,collector_tstamp,root_id", nil, &mapping)
	want := map[string]string{"payload.VendorID": "long", "payload.passenger_count": "double", "payload.total_amount": "double",
		"payload.tpep_pickup_datetime": "date", "payload.store_and_fwd_flag": "keyword", "collector_tstamp": "date", "root_id": "keyword"}
	for index, m := range mapping {
		for field, w := range want {
			got := m.Mappings[field].Mapping
			typ := ""
			for _, f := range got {
				typ = f.Type
			}
			if len(got) != 1 || typ != w {
				t.Errorf("%s: %s is mapped as %v, want %s", index, field, got, w)
			}
		}
	}

	// _search's aggregations equal DuckDB's over the source file.
	var res struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
		} `json:"hits"`
		Aggregations map[string]struct {
			Value float64 `json:"value"`
		} `json:"aggregations"`
	}
	searchGet(t, srv.URL, "/"+pattern+"/_search", map[string]any{
		"size": 0, "track_total_hits": true,
		"query": map[string]any{"bool": map[string]any{"filter": []any{
			map[string]any{"term": map[string]any{"payload.store_and_fwd_flag": "N"}},
			map[string]any{"range": map[string]any{"payload.tpep_pickup_datetime": map[string]any{"gte": "2025-02-01T12:00:00Z"}}},
		}}},
		"aggs": map[string]any{
			"total":      map[string]any{"sum": map[string]any{"field": "payload.total_amount"}},
			"passengers": map[string]any{"sum": map[string]any{"field": "payload.passenger_count"}},
			"ids":        map[string]any{"cardinality": map[string]any{"field": "root_id", "precision_threshold": 10000}},
		},
	}, &res)
	duck, code := sluice(t, "query", "--data-dir", dir, "--format", "json", `SELECT count(*) AS n, round(sum(total_amount), 2) AS total,
		sum(passenger_count) AS passengers FROM read_parquet('`+src+`')
		WHERE store_and_fwd_flag = 'N' AND tpep_pickup_datetime >= TIMESTAMP '2025-02-01 12:00:00'`)
	var o struct {
		N          int     `json:"n"`
		Total      float64 `json:"total"`
		Passengers float64 `json:"passengers"`
	}
	if code != 0 || json.Unmarshal([]byte(duck), &o) != nil {
		t.Fatalf("DuckDB oracle = %d: %s", code, duck)
	}
	if res.Hits.Total.Value != o.N || fmt.Sprintf("%.2f", res.Aggregations["total"].Value) != fmt.Sprintf("%.2f", o.Total) ||
		res.Aggregations["passengers"].Value != o.Passengers {
		t.Errorf("_search: %d trips, total %.2f, %v passengers; DuckDB over the file: %+v",
			res.Hits.Total.Value, res.Aggregations["total"].Value, res.Aggregations["passengers"].Value, o)
	}
	if o.N < 1000 {
		t.Errorf("the filter matches only %d trips: the check is too weak", o.N)
	}

	// The status API shows the sink, its documents and its group's lag.
	var st struct {
		Components []struct {
			Name    string          `json:"name"`
			Details json.RawMessage `json:"details"`
		} `json:"components"`
	}
	searchGet(t, "http://"+p.httpAddr, "/api/v1/status", nil, &st)
	found := false
	for _, c := range st.Components {
		if c.Name == "sink.search" {
			found = strings.Contains(string(c.Details), `"yellow_taxi_trip":{"indexed":5000`)
			if !found {
				t.Errorf("sink.search details: %s", c.Details)
			}
		}
	}
	if !found {
		t.Errorf("no sink.search with its 5000 documents in the status: %+v", st)
	}
}

// TestSearchLoaderKill9ExactlyOnce loads 30,000 events of three types with
// `sluice loader search` while killing it with SIGKILL at random points,
// five times: in the end each index holds each of its events once, no
// more, no fewer, since every document's id is its root_id and every
// restart resumes from the offsets recorded in the cluster.
func TestSearchLoaderKill9ExactlyOnce(t *testing.T) {
	srv := searchtest.Shared(t)
	prefix := searchtest.Prefix(t)
	k, prod := kafkaFor(t, "sluice.enriched", "sluice.dlq")
	topic, dlq := k.name("sluice.enriched"), k.name("sluice.dlq")
	const n = 30_000
	var recs []*kgo.Record
	for i := range n {
		typ := []string{"trip", "page_view", "checkout"}[i%3]
		v := fmt.Sprintf(`{"event_type":%q,"schema_version":"1","payload":{"i":%d,"fare":%d.25,"zone":"Z%d"},"collector_tstamp":"2025-01-0%dT00:00:00.000000Z","root_id":"r%d"}`,
			typ, i, i%100, i%9, 1+(i/3)%3, i)
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%17), Value: []byte(v),
			Headers: []kgo.RecordHeader{{Key: "root_id", Value: fmt.Appendf(nil, "r%d", i)}, {Key: "event_type", Value: []byte(typ)}}})
	}
	if err := prod.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sluice.yaml")
	cfg := fmt.Sprintf(`sinks:
  - type: opensearch
    name: search
    urls: [%s]
    index: "%s{event_type}-{yyyy.MM.dd}"
    offsets_index: %soffsets
    replicas: 0
    flush_rows: 300
    flush_interval: 50ms
`, srv.URL, prefix, prefix)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	start := func() *exec.Cmd {
		logs.Reset()
		cmd := exec.Command(binary, "loader", "search", "--config", cfgPath, "--brokers", k.brokers, "--data-dir", dir,
			"--ops-addr", "", "--topic-dlq", dlq, "--loader-topics", topic, "--loader-group", k.name("kill"),
			"--instance-id", k.name("search"), "--log-format", "json")
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	killRandomly(start, 5)
	cmd := start()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	indices := prefix + "trip-*," + prefix + "page_view-*," + prefix + "checkout-*"
	count := func() int {
		var c struct {
			Count int `json:"count"`
		}
		searchGet(t, srv.URL, "/"+indices+"/_refresh?allow_no_indices=true", map[string]any{}, &struct{}{})
		searchGet(t, srv.URL, "/"+indices+"/_count?allow_no_indices=true", nil, &c)
		return c.Count
	}
	deadline := time.Now().Add(2 * time.Minute)
	got := count()
	for ; got < n && time.Now().Before(deadline); got = count() {
		time.Sleep(500 * time.Millisecond)
	}
	// Each event has one index (its type and date) and one id there: a
	// count of n is every event once.
	if got != n {
		t.Fatalf("after 5 kills: %d documents, want %d; the last loader's log:\n%s", got, n, logs.String())
	}
	var agg struct {
		Aggregations struct {
			Days struct {
				Buckets []struct {
					Key   string `json:"key"`
					Count int    `json:"doc_count"`
				} `json:"buckets"`
			} `json:"days"`
		} `json:"aggregations"`
	}
	searchGet(t, srv.URL, "/"+indices+"/_search", map[string]any{"size": 0,
		"aggs": map[string]any{"days": map[string]any{"terms": map[string]any{"field": "_index", "size": 20}}}}, &agg)
	if b := agg.Aggregations.Days.Buckets; len(b) != 9 {
		t.Errorf("indices %+v, want one per type and day: 9 of %d each", b, n/9)
	}
}
