package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/aggregator"
	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/enrich"
	"github.com/sluicehq/sluice/internal/formsapi"
	"github.com/sluicehq/sluice/internal/jobs"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/loader"
	"github.com/sluicehq/sluice/internal/pipeline"
	"github.com/sluicehq/sluice/internal/query"
	"github.com/sluicehq/sluice/internal/replay"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/source"
)

const demoUsage = `Usage: sluice demo [--data-dir DIR] [--exit]

Runs the whole pipeline (as 'sluice up') on a fresh data directory, with a
forms API beside it, replays the bundled real data through the HTTP
collector (10,000 NYC taxi trips of January 2025, 5,000 MTA turnstile
audits, form events, and 5,000 trips of February 2025 with the nulls and
refunds of real data), waits until every accepted event is in the lake,
and prints a few SQL queries over it with their results: trips joined to
their taxi zones, forms modelled from the definitions the enricher fetched,
dead letters. It then builds the batch models of cmd/sluice/demo-models
(written to <data-dir>/models) and runs their data-quality checks, as
'sluice jobs run' does, and prints what they made and found. The turnstile audits also go to Kafka as CSV lines, as in the
seed, for the windowed aggregations of cmd/sluice/demo-aggregations.yml
(per turnstile and 4 hours, per turnstile and day, taxi trips per pickup
zone and 15 minutes), whose tables are queried too. It then keeps serving
until Ctrl-C, or exits with --exit.
`

// demoAggregations are the aggregations the demo runs, unless --config
// names others.
//
//go:embed demo-aggregations.yml
var demoAggregations []byte

// demoTurnstileTopic is where the demo sends the turnstile audits as CSV
// lines, as the seed's producer did.
const demoTurnstileTopic = "mta-turnstile"

// demoMarker marks a data directory as the demo's own, which a later demo
// may empty.
const demoMarker = ".sluice-demo"

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pipeline.NewFlagSet("demo", demoUsage, stderr)
	fs.SetDefaults(func(c *pipeline.Config) {
		c.Process.DataDir = "./sluice-demo"
		// Small files, soon: the demo shows data landing, not file sizes.
		c.LakeSink().FlushInterval = time.Second
		// The demo's own output tells the story; logs say only what is wrong.
		c.Process.LogLevel = "warn"
	})
	exit := false
	pipeline.ProcessFlags(fs, "data-dir")
	pipeline.BrokerFlags(fs, "broker-addr")
	pipeline.CollectorFlags(fs, "http-addr")
	fs.Bool(&exit, "exit", "exit once the queries are printed instead of serving until Ctrl-C")
	logFlags(fs)
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	if err := freshDemoDir(cfg.Process.DataDir); err != nil {
		return err
	}
	lakeSink := cfg.LakeSink()
	if lakeSink.Tables == nil {
		lakeSink.Tables = map[string]loader.Table{}
	}
	// Trips are dated by their pickup; the bundled schemas type the columns.
	lakeSink.Tables["yellow_taxi_trip"] = loader.Table{TimeField: "tpep_pickup_datetime"}
	if len(cfg.Aggregations) == 0 {
		if err := cfg.LoadYAML(demoAggregations); err != nil {
			return fmt.Errorf("demo-aggregations.yml: %w", err)
		}
	}

	// The forms API the enricher calls for form events, with the bundled
	// forms and a little latency, as an internal API has.
	forms, err := iofs.Sub(sample.FS(), sample.FormsFolder)
	if err != nil {
		return err
	}
	fapi, err := formsapi.New(formsapi.Config{Forms: forms, Latency: 5 * time.Millisecond, Jitter: 3 * time.Millisecond})
	if err != nil {
		return err
	}
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fsrv := &http.Server{Handler: fapi, ReadHeaderTimeout: 10 * time.Second}
	go fsrv.Serve(fln)
	defer fsrv.Close()
	cfg.Enricher.FormsAPI = "http://" + fln.Addr().String() + "/forms/{payload.form_id}"

	p, err := pipeline.Build(ctx, cfg, upShape, logger)
	if err != nil {
		return err
	}
	// The aggregators' input exists before they look for it.
	kafka, err := bus.NewProducer(p.Config.Client("sluice-demo"), bus.ProducerConfig{}, logger)
	if err != nil {
		p.Close()
		return err
	}
	defer kafka.Close()
	if err := bus.EnsureTopics(ctx, kafka, p.Config.Topics.Partitions, p.Config.Topics.Replication, demoTurnstileTopic); err != nil {
		p.Close()
		return err
	}
	remove, err := pipeline.WriteRunning(p)
	if err != nil {
		p.Close()
		return err
	}
	defer remove()
	g, gctx := errgroup.WithContext(ctx)
	runCtx, stopPipeline := context.WithCancel(gctx)
	defer stopPipeline()
	g.Go(func() error { return p.Run(runCtx) })
	g.Go(func() error {
		defer stopPipeline()
		if err := demo(gctx, p, fapi, kafka, stdout, stderr); err != nil {
			return err
		}
		if exit {
			return nil
		}
		fmt.Fprintf(stdout, "\nSluice keeps running: open the console at http://%s/, send your own events, query the lake. Press Ctrl-C to stop.\n", p.CollectorAddr)
		<-gctx.Done()
		return nil
	})
	return g.Wait()
}

// freshDemoDir makes dir empty and marks it: a directory that a demo made
// is emptied, any other that holds files is refused.
func freshDemoDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(entries) == 0:
	default:
		if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
			return fmt.Errorf("%s holds files that a demo did not make; pass --data-dir with a new directory", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("empty the previous demo's %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, demoMarker), []byte("made by sluice demo; the next demo empties this directory\n"), 0o644)
}

func demo(ctx context.Context, p *pipeline.Process, fapi *formsapi.Server, kafka *kgo.Client, stdout, stderr io.Writer) error {
	printURLs(stdout, p)
	dir, err := sample.WriteTo(filepath.Join(p.Config.Process.DataDir, "sample"))
	if err != nil {
		return err
	}
	formRows, err := writeFormEvents(filepath.Join(dir, "form_events.ndjson"), fapi)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nReplaying the bundled data through http://%s (samples copied to %s):\n", p.CollectorAddr, dir)
	collector := "http://" + p.CollectorAddr.String()
	type job struct {
		file, eventType, preset string
		topic                   string // to Kafka as CSV lines, not to the collector
	}
	jobs := []job{
		{file: sample.TLCTrips, eventType: "yellow_taxi_trip", preset: "tlc-yellow"},
		{file: sample.Turnstiles, eventType: "mta_turnstile", preset: "mta-turnstile"},
		{file: "form_events.ndjson", eventType: "form_event"},
		// In time order, as a live feed: the weekly file is by turnstile.
		{file: sample.TurnstilesByTime, preset: "mta-turnstile", topic: demoTurnstileTopic},
		// A table of its own, for the data-quality checks: in
		// yellow_taxi_trip, February's trips would be late to January's
		// windows.
		{file: sample.TLCTripsSample, eventType: "yellow_taxi_trip_sample", preset: "tlc-yellow"},
	}
	var sources []*source.Source
	var stats []*replay.Stats
	for _, j := range jobs {
		src, err := source.New(filepath.Join(dir, j.file), "")
		if err != nil {
			return err
		}
		src.Columns = replay.Presets[j.preset].Columns
		sources, stats = append(sources, src), append(stats, new(replay.Stats))
	}
	start := time.Now()
	// One replay a dataset, in parallel.
	err = withProgress(stderr, sources, stats, func() error {
		g, gctx := errgroup.WithContext(ctx)
		for i, src := range sources {
			rc := replay.DefaultConfig()
			rc.Collector, rc.EventType = collector, jobs[i].eventType
			if jobs[i].topic != "" {
				rc.Kafka, rc.Topic, rc.KafkaFormat = kafka, jobs[i].topic, "csv"
				rc.KeyField = replay.Presets[jobs[i].preset].KeyField
			}
			g.Go(func() error { return replay.Run(gctx, rc, []*source.Source{src}, []*replay.Stats{stats[i]}) })
		}
		return g.Wait()
	})
	if err != nil {
		return err
	}
	if bad := summarize(stdout, sources, stats, time.Since(start), ""); bad > 0 {
		return fmt.Errorf("%d events were not accepted", bad)
	}

	fmt.Fprint(stdout, "\nWaiting for every accepted event to be in the lake, and the windows they closed...")
	want := map[string]int64{"yellow_taxi_trip": stats[0].Accepted.Load(), "mta_turnstile": stats[1].Accepted.Load(),
		"yellow_taxi_trip_sample": stats[4].Accepted.Load()}
	for t, n := range formRows {
		want[t] = n
	}
	turnstiles := stats[3].Accepted.Load()
	status := "http://" + p.CollectorAddr.String() + "/api/v1/status"
	dead, err := waitForAggregations(ctx, status, map[string]int64{
		"turnstile_4h": turnstiles, "turnstile_daily": turnstiles, "trips_by_zone_15m": stats[0].Accepted.Load()})
	if err != nil {
		return err
	}
	want[lake.DeadLetterTable] += dead
	if err := waitForRows(ctx, status, want); err != nil {
		return err
	}
	fmt.Fprintf(stdout, " done, %v after the replay began.\n", time.Since(start).Round(100*time.Millisecond))

	local, err := lake.NewLocal(p.Config.LakeURL())
	if err != nil {
		return err
	}
	cat, err := lake.OpenCatalog(ctx, p.Config.LakeURL(), p.Config.Catalog(), p.Config.Lake.S3)
	if err != nil {
		return err
	}
	defer cat.Close()
	eng, err := query.Open(ctx, local, cat, query.Options{})
	if err != nil {
		return err
	}
	defer eng.Close()
	if err := printQueries(ctx, eng, stdout, []demoQuery{
		{"Trips and revenue per hour of pickup", `SELECT date_trunc('hour', tpep_pickup_datetime) AS hour, count(*) AS trips,
	round(sum(total_amount), 2) AS revenue, round(avg(trip_distance), 2) AS avg_miles
FROM yellow_taxi_trip GROUP BY 1 ORDER BY 1`},
		{"Busiest pickup zones (zones joined to each trip by the enricher)", `SELECT pickup_zone AS zone, pickup_borough AS borough,
	count(*) AS trips, round(avg(tip_amount), 2) AS avg_tip
FROM yellow_taxi_trip GROUP BY ALL ORDER BY trips DESC LIMIT 5`},
		{"Forms, modelled from their definitions fetched by the enricher", `SELECT form_title AS form, count(*) AS fields,
	count(*) FILTER (WHERE parent_id IS NOT NULL) AS nested, string_agg(DISTINCT type, ', ' ORDER BY type) AS field_types
FROM (SELECT DISTINCT ON (id, form_id) * FROM form_field) GROUP BY 1 ORDER BY 2 DESC`},
		{"Dead letters by stage and reason (form events for a form the API does not have, trips later than the aggregator's hour)", `SELECT stage, reason, count(*) AS events FROM dead_letter GROUP BY ALL ORDER BY 3 DESC`},
		{"Busiest 15 minutes of a pickup zone (the aggregator's windows of the enriched trips)", `SELECT window_start, pickup_zone AS zone,
	trips, round(revenue, 2) AS revenue, round(avg_distance, 2) AS avg_miles
FROM agg_trips_by_zone_15m ORDER BY trips DESC, window_start LIMIT 5`},
		{"The seed's 4-hour turnstile windows (sums, as the seed; deltas are 0 with one reading a window)", `SELECT window_start, count(*) AS turnstiles,
	sum(readings) AS readings, sum(entries) AS entries_sum, sum(entries_delta) AS entries_delta
FROM agg_turnstile_4h GROUP BY 1 ORDER BY 1 LIMIT 6`},
		{"Busiest stations a day (the aggregator's daily windows: deltas of each turnstile's counter)", `SELECT "STATION" AS station, window_start::DATE AS day,
	sum(entries) AS entries, sum(exits) AS exits
FROM agg_turnstile_daily WHERE entries BETWEEN 0 AND 100000 -- a counter reset is not traffic
GROUP BY ALL ORDER BY entries DESC LIMIT 5`},
		{"Busiest stations (entries over the week, from each turnstile's cumulative counter)", `SELECT "STATION" AS station, sum(entries) AS entries FROM (
	SELECT "STATION", "C/A", "UNIT", "SCP", max("ENTRIES") - min("ENTRIES") AS entries
	FROM mta_turnstile GROUP BY ALL HAVING entries < 1000000 -- a counter reset is not traffic
) GROUP BY 1 ORDER BY 2 DESC LIMIT 5`},
	}); err != nil {
		return err
	}
	if err := demoJobs(ctx, p, eng, cat, local, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nYour own queries: sluice query --data-dir %s --tables, then sluice query --data-dir %s 'SELECT ...'\n",
		p.Config.Process.DataDir, p.Config.Process.DataDir)
	return nil
}

// demoModels are the batch models and checks the demo runs over its lake.
//
//go:embed demo-models
var demoModels embed.FS

// demoJobs writes the demo's models into the data directory, builds them
// as 'sluice jobs run' does, and prints what they made and what their
// checks found.
func demoJobs(ctx context.Context, p *pipeline.Process, eng *query.Engine, cat *lake.Catalog, local *lake.Local, stdout io.Writer) error {
	dir := filepath.Join(p.Config.Process.DataDir, "models")
	sub, err := iofs.Sub(demoModels, "demo-models")
	if err != nil {
		return err
	}
	if err := os.CopyFS(dir, sub); err != nil {
		return fmt.Errorf("write the demo's models: %w", err)
	}
	models, err := jobs.Load(dir)
	if err != nil {
		return err
	}
	staging := filepath.Join(p.Config.Process.DataDir, "cache", "jobs")
	runID := jobs.NewRunID(time.Now())
	runner := jobs.NewRunner(eng, cat, local, local, staging, slog.New(slog.DiscardHandler))
	results, err := runner.Run(ctx, models, runID, jobs.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nBatch models and data-quality checks (%s, as 'sluice jobs run --models %s' runs them):\n\n", dir, dir)
	if err := writeJobResults(stdout, runID, results); err != nil {
		return err
	}
	return printQueries(ctx, eng, stdout, []demoQuery{
		{"Daily trips per pickup zone (the model tlc_daily_zone)", `SELECT event_date, zone, trips, revenue, avg_distance
FROM tlc_daily_zone ORDER BY trips DESC LIMIT 5`},
		{"Daily trips per borough (the view tlc_borough_daily over tlc_daily_zone)", `SELECT event_date, borough, trips, revenue
FROM tlc_borough_daily ORDER BY trips DESC LIMIT 3`},
		{"Daily entries and exits per station (the model mta_station_daily, from the aggregator's windows)", `SELECT event_date, station, entries, exits
FROM mta_station_daily WHERE entries BETWEEN 0 AND 100000 ORDER BY entries DESC LIMIT 5`},
		{"What the checks found (the dq_failures table: every failing row, with its check, model and run)", `SELECT model, "check", severity, count(*) AS "rows"
FROM dq_failures WHERE run_id = '` + runID + `' GROUP BY ALL ORDER BY 1, 2`},
		{"Some of the refunds the check negative_amounts found", `SELECT "row"->>'tpep_pickup_datetime' AS pickup, "row"->>'payment_type' AS payment_type,
	"row"->>'fare_amount' AS fare, "row"->>'total_amount' AS total
FROM dq_failures WHERE run_id = '` + runID + `' AND "check" = 'negative_amounts' ORDER BY 1 LIMIT 5`},
	})
}

// demoQuery is a query the demo prints with its result.
type demoQuery struct{ title, sql string }

// printQueries runs each query and prints its title, its SQL on one line
// and its result.
func printQueries(ctx context.Context, eng *query.Engine, stdout io.Writer, queries []demoQuery) error {
	for _, q := range queries {
		res, err := eng.Query(ctx, q.sql)
		if err != nil {
			return fmt.Errorf("query %q: %w", q.title, err)
		}
		fmt.Fprintf(stdout, "\n%s:\n  %s\n\n", q.title, oneLine(q.sql))
		if err := query.Write(stdout, res, "table"); err != nil {
			return err
		}
	}
	return nil
}

// writeFormEvents writes form events for the forms the API serves, each
// several times, and a few for a form it does not have, and returns how
// many rows of each table the enricher and the loader should make of
// them.
func writeFormEvents(path string, fapi *formsapi.Server) (map[string]int64, error) {
	ids := append(fapi.IDs(), "no-such-form")
	sort.Strings(ids)
	var b strings.Builder
	rows := map[string]int64{}
	n := 0
	base := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	for round := range 20 {
		for _, id := range ids {
			at := base.Add(time.Duration(n) * 97 * time.Second).Format(time.RFC3339)
			kind := []string{"form_created", "form_updated", "form_submitted"}[round%3]
			fmt.Fprintf(&b, `{"form_id":%q,"event_happened_at":%q,"event_type":%q}`+"\n", id, at, kind)
			n++
			def, ok := fapi.Form(id)
			if !ok {
				rows[lake.DeadLetterTable]++
				continue
			}
			doc := fmt.Appendf(nil, `{"event":{},"form":%s,"retrieved_timestamp":""}`, def)
			modelled, err := enrich.FormModel.Rows(doc)
			if err != nil {
				return nil, err
			}
			for _, r := range modelled {
				rows[r.Table]++
			}
		}
	}
	return rows, os.WriteFile(path, []byte(b.String()), 0o644)
}

// demoStatus is what the demo reads of the status API.
type demoStatus struct {
	Components []struct {
		Name    string          `json:"name"`
		Details json.RawMessage `json:"details"`
	} `json:"components"`
}

// getStatus reads the status API at url.
func getStatus(ctx context.Context, url string) (demoStatus, error) {
	var st demoStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitForRows waits until the lake sink has written the wanted rows per
// table, as the status API reports them.
func waitForRows(ctx context.Context, status string, want map[string]int64) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := getStatus(ctx, status)
		if err != nil {
			return err
		}
		got := map[string]int64{}
		for _, c := range st.Components {
			if c.Name != "sink.lake" {
				continue
			}
			var d struct {
				Sink struct {
					Rows map[string]int64 `json:"rows"`
				} `json:"sink"`
			}
			if err := json.Unmarshal(c.Details, &d); err != nil {
				return fmt.Errorf("status of %s: %w", c.Name, err)
			}
			got = d.Sink.Rows
		}
		ready := true
		for t, n := range want {
			ready = ready && got[t] >= n
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the lake holds %v rows after 2 minutes, want %v; see the logs", got, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitForAggregations waits until each aggregation has taken its events
// (counted, late or duplicate) and its window count stopped moving: the
// windows the last events closed are written. It returns how many dead
// letters the aggregators sent.
func waitForAggregations(ctx context.Context, status string, want map[string]int64) (int64, error) {
	deadline := time.Now().Add(2 * time.Minute)
	last, steady := map[string]int64{}, 0
	for {
		st, err := getStatus(ctx, status)
		if err != nil {
			return 0, err
		}
		taken, windows, dead := map[string]int64{}, map[string]int64{}, int64(0)
		for _, c := range st.Components {
			name, ok := strings.CutPrefix(c.Name, "aggregator.")
			if !ok {
				continue
			}
			var d aggregator.Details
			if err := json.Unmarshal(c.Details, &d); err != nil {
				return 0, fmt.Errorf("status of %s: %w", c.Name, err)
			}
			taken[name] = d.Events["counted"] + d.Events["late"] + d.Events["duplicate"]
			dead += d.Events["late"] + d.Events["invalid"]
			windows[name] = d.Windows
		}
		ready := true
		for name, n := range want {
			ready = ready && taken[name] >= n
		}
		if ready && maps.Equal(windows, last) {
			steady++
		} else {
			steady = 0
		}
		if steady >= 5 {
			return dead, nil
		}
		last = windows
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the aggregators took %v events after 2 minutes, want %v; see the logs", taken, want)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func oneLine(sql string) string {
	out := make([]byte, 0, len(sql))
	space := false
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		if c == '-' && i+1 < len(sql) && sql[i+1] == '-' { // drop comments
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
			c = ' '
		}
		if c == '\n' || c == '\t' || c == ' ' {
			space = true
			continue
		}
		if space && len(out) > 0 {
			out = append(out, ' ')
		}
		space = false
		out = append(out, c)
	}
	return string(out)
}
