package enricher

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/enrich"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/formsapi"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/schema"
)

// startEnricher runs an enricher until the test ends or stop is called,
// and fails the test if it returns an error.
func startEnricher(t *testing.T, cfg Config, cc bus.ClientConfig, schemas *schema.Registry) (stop func()) {
	t.Helper()
	en, err := New(cfg, cc, schemas, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- en.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

const tlcPayload = `{"VendorID":1,"tpep_pickup_datetime":"2025-01-01T00:18:38","tpep_dropoff_datetime":"2025-01-01T00:26:59","passenger_count":1.0,"trip_distance":1.6,"RatecodeID":1.0,"store_and_fwd_flag":"N","PULocationID":132,"DOLocationID":237,"payment_type":1,"fare_amount":10.0,"extra":3.5,"mta_tax":0.5,"tip_amount":3.0,"tolls_amount":0.0,"improvement_surcharge":1.0,"total_amount":18.0,"congestion_surcharge":2.5,"Airport_fee":0.0,"cbd_congestion_fee":0.0}`

// TestEnrichEveryOutcome sends one raw event of every kind through a real
// enricher on the embedded broker, with the zone join and the form API and
// model, and reads sluice.enriched and sluice.dlq as committed: each event
// ends exactly once, where and how it should.
func TestEnrichEveryOutcome(t *testing.T) {
	cc, prod := startBroker(t)

	forms, _ := fs.Sub(sample.FS(), "forms")
	fa, err := formsapi.New(formsapi.Config{Forms: forms})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(fa)
	defer api.Close()
	apiCfg := enrich.DefaultAPIConfig()
	apiCfg.URL = api.URL + "/forms/{payload.form_id}"
	formAPI, err := enrich.NewAPI(apiCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := sample.WriteTo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	zones, err := enrich.LoadLookup(t.Context(), filepath.Join(dir, sample.TaxiZones), "LocationID")
	if err != nil {
		t.Fatal(err)
	}
	schemas, err := schema.Load(sample.Schemas())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Pipelines = map[string]Pipeline{
		"yellow_taxi_trip": {Joins: []Join{
			{Join: enrich.Join{Lookup: zones, Field: "PULocationID", Columns: []enrich.Rename{{From: "Borough", To: "pickup_borough"}, {From: "Zone", To: "pickup_zone"}}}},
			{Join: enrich.Join{Lookup: zones, Field: "DOLocationID", Columns: []enrich.Rename{{From: "Borough", To: "dropoff_borough"}, {From: "Zone", To: "dropoff_zone"}}}},
		}},
		"form_event": {API: formAPI, APIKey: "form", Model: &enrich.FormModel},
	}

	events := map[string]string{
		"trip":      `{"event_type":"yellow_taxi_trip","schema_version":"1-0-0","payload":` + tlcPayload + `}`,
		"bad-trip":  `{"event_type":"yellow_taxi_trip","schema_version":"1-0-0","payload":{"VendorID":"x"}}`,
		"page-view": `{"event_type":"page_view","schema_version":"1-0-0","payload":{"url":"/"}}`,
		"form":      `{"event_type":"form_event","schema_version":"1-0-0","payload":{"form_id":"WkORBn0g","event_happened_at":"2025-03-01T12:00:00Z","event_type":"form_updated"}}`,
		"no-form":   `{"event_type":"form_event","schema_version":"1-0-0","payload":{"form_id":"nope","event_happened_at":"2025-03-01T12:00:00Z","event_type":"form_updated"}}`,
		"not-json":  `{"event_type":`,
	}
	for id, v := range events {
		r := &kgo.Record{Topic: "sluice.raw", Value: []byte(v), Headers: []kgo.RecordHeader{{Key: event.HeaderRootID, Value: []byte(id)}}}
		if err := prod.ProduceSync(t.Context(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	startEnricher(t, cfg, cc, schemas)

	// 1 trip + 1 page view + the form's 9 rows enriched; 3 dead letters.
	got := consume(t, cc, 11+3)
	outcome := map[string][]string{}
	for _, r := range got {
		id := bus.Header(r, event.HeaderRootID)
		what := r.Topic
		if t := bus.Header(r, "table"); t != "" {
			what += "/" + t
		}
		if reason := bus.Header(r, event.HeaderReason); reason != "" {
			what += "/" + reason
		}
		outcome[id] = append(outcome[id], what)
		if id == "trip" {
			var ev struct {
				Payload map[string]any `json:"payload"`
			}
			json.Unmarshal(r.Value, &ev)
			if ev.Payload["pickup_zone"] != "JFK Airport" || ev.Payload["dropoff_borough"] != "Manhattan" {
				t.Errorf("trip not joined with the zones: %s", r.Value)
			}
		}
	}
	formRows := []string{"sluice.enriched/form"}
	for range 8 {
		formRows = append(formRows, "sluice.enriched/form_field")
	}
	want := map[string][]string{
		"trip":      {"sluice.enriched"},
		"bad-trip":  {"sluice.dlq/schema_violation"},
		"page-view": {"sluice.enriched"},
		"form":      formRows,
		"no-form":   {"sluice.dlq/enrichment_not_found"},
		"not-json":  {"sluice.dlq/invalid_json"},
	}
	if diff := cmp.Diff(want, outcome); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

// startBroker starts an embedded broker with the enricher's topics and
// returns its address and a producer.
func startBroker(t *testing.T) (bus.ClientConfig, *kgo.Client) {
	t.Helper()
	b, err := bus.StartBroker(bus.BrokerConfig{Addr: "127.0.0.1:0", Dir: t.TempDir(), Partitions: 3}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cc := bus.ClientConfig{Brokers: []string{b.Addr()}}
	prod, err := bus.NewProducer(cc, bus.ProducerConfig{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	if err := bus.EnsureTopics(t.Context(), prod, 3, 1, "sluice.raw", "sluice.enriched", "sluice.dlq"); err != nil {
		t.Fatal(err)
	}
	return cc, prod
}

// consume reads n committed records from the enriched and dead-letter
// topics, then checks that no more come.
func consume(t *testing.T, cc bus.ClientConfig, n int) []*kgo.Record {
	t.Helper()
	cl, err := bus.NewClient(cc, testLogger(t), kgo.ConsumeTopics("sluice.enriched", "sluice.dlq"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []*kgo.Record
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, r) })
		cancel()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, r) })
	cancel()
	if len(got) != n {
		var s []string
		for _, r := range got {
			s = append(s, fmt.Sprintf("%s %s %s", r.Topic, bus.Header(r, event.HeaderRootID), bus.Header(r, "table")))
		}
		t.Fatalf("read %d records, want %d: %v", len(got), n, s)
	}
	return got
}

// TestExactlyOnceAcrossRestarts stops enrichers mid-stream, again and
// again, with transactions open, and starts new ones with the same
// transactional id: read as committed, every event is out exactly once.
func TestExactlyOnceAcrossRestarts(t *testing.T) {
	cc, prod := startBroker(t)
	const n = 20_000
	var recs []*kgo.Record
	for i := range n {
		v := fmt.Sprintf(`{"event_type":"tick","schema_version":"1","payload":{"i":%d}}`, i)
		recs = append(recs, &kgo.Record{Topic: "sluice.raw", Value: []byte(v), Headers: []kgo.RecordHeader{{Key: event.HeaderRootID, Value: fmt.Append(nil, i)}}})
	}
	if err := prod.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	schemas, err := schema.Load(sample.Schemas())
	if err != nil {
		t.Fatal(err)
	}
	// An API that takes a moment per event, so that each enricher below is
	// stopped with some transactions committed and one open.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		w.Write([]byte(`{}`))
	}))
	defer slow.Close()
	apiCfg := enrich.DefaultAPIConfig()
	apiCfg.URL = slow.URL + "/{payload.i}"
	api, err := enrich.NewAPI(apiCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Concurrency, cfg.MaxPollRecords = 8, 500
	cfg.Pipelines = map[string]Pipeline{"tick": {API: api}}
	// Each enricher runs a moment, then is stopped wherever it is.
	for round := range 4 {
		en, err := New(cfg, cc, schemas, testLogger(t), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Duration(300+200*round)*time.Millisecond)
		if err := en.Run(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		cancel()
		t.Logf("round %d committed %v aborted %v", round, testutil.ToFloat64(en.metrics.events), testutil.ToFloat64(en.metrics.aborts))
	}
	stop := startEnricher(t, cfg, cc, schemas)
	got := consume(t, cc, n)
	stop()
	seen := map[string]int{}
	for _, r := range got {
		seen[bus.Header(r, event.HeaderRootID)]++
	}
	for i := range n {
		if c := seen[fmt.Sprint(i)]; c != 1 {
			t.Fatalf("event %d out %d times", i, c)
		}
	}
}

// TestModelUnnestsArrays: a models entry turns a checkout's items into rows
// of checkout_item, each with the order's keys, and the checkout goes on to
// its own table too.
func TestModelUnnestsArrays(t *testing.T) {
	cc, prod := startBroker(t)
	var m ModelConfig
	m.SetDefaults()
	if err := config.DecodeYAML([]byte(`
event_type: checkout
tables:
  - name: checkout_item
    from: event.items
    columns: [sku, qty, price]
    include:
      - {path: event.order_id, as: order_id}
      - {path: envelope.root_id, as: checkout_root_id}
      - {path: envelope.collector_tstamp, as: collector_tstamp}
`), &m); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := m.Pipeline(Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Pipelines = map[string]Pipeline{"checkout": p}
	checkout := `{"event_type":"checkout","schema_version":"1-0-0","payload":{"order_id":"o-1","currency":"EUR","items":[{"sku":"a","qty":2,"price":3.5},{"sku":"b","qty":1,"price":10,"gift":true}]},"collector_tstamp":"2025-01-01T10:00:00.000000Z","root_id":"r-1"}`
	if err := prod.ProduceSync(t.Context(), &kgo.Record{Topic: "sluice.raw", Value: []byte(checkout),
		Headers: []kgo.RecordHeader{{Key: event.HeaderRootID, Value: []byte("r-1")}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	schemas, err := schema.Load(fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	startEnricher(t, cfg, cc, schemas)
	var got []string
	for _, r := range consume(t, cc, 3) {
		got = append(got, bus.Header(r, "table")+" "+string(r.Value))
	}
	want := []string{
		" " + checkout,
		`checkout_item {"sku":"a","qty":2,"price":3.5,"order_id":"o-1","checkout_root_id":"r-1","collector_tstamp":"2025-01-01T10:00:00.000000Z"}`,
		`checkout_item {"sku":"b","qty":1,"price":10,"order_id":"o-1","checkout_root_id":"r-1","collector_tstamp":"2025-01-01T10:00:00.000000Z"}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}
}

// TestDocumentedFormModel: the form model written out in docs/models.md is
// the one enricher.forms_api adds, so that copying it gives the same
// tables.
func TestDocumentedFormModel(t *testing.T) {
	doc, err := os.ReadFile("../../docs/models.md")
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		if !strings.Contains(m[1], "form_event") {
			continue
		}
		found = true
		var file struct {
			Models []ModelConfig `yaml:"models"`
		}
		if err := config.DecodeYAML([]byte(m[1]), &file); err != nil {
			t.Fatal(err)
		}
		if len(file.Models) != 1 {
			t.Fatalf("%d models in the form example", len(file.Models))
		}
		want := Forms(file.Models[0].API)
		if diff := cmp.Diff(want, file.Models[0]); diff != "" {
			t.Errorf("docs/models.md's form model is not the bundled one (-bundled +doc):\n%s", diff)
		}
	}
	if !found {
		t.Error("docs/models.md shows no form model")
	}
}
