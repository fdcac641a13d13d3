package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/query"
	"github.com/sluicehq/sluice/internal/replay"
	"github.com/sluicehq/sluice/internal/sample"
)

const demoUsage = `Usage: sluice demo [--data-dir DIR] [--exit]

Runs the whole pipeline (as 'sluice up') on a fresh data directory, replays
the bundled real data through the HTTP collector (10,000 NYC taxi trips of
January 2025 and 5,000 MTA turnstile audits), waits until every accepted
event is in the lake, and prints a few SQL queries over it with their
results. It then keeps serving until Ctrl-C, or exits with --exit.
`

// demoMarker marks a data directory as the demo's own, which a later demo
// may empty.
const demoMarker = ".sluice-demo"

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := config.NewFlagSet("demo", demoUsage, stderr)
	fs.SetDefaults(func(c *config.Config) {
		c.DataDir = "./sluice-demo"
		// Small files, soon: the demo shows data landing, not file sizes.
		c.Loader.FlushInterval = time.Second
		// The demo's own output tells the story; logs say only what is wrong.
		c.LogLevel = "warn"
	})
	c := fs.Config()
	exit := false
	fs.String(&c.DataDir, "data-dir", "a fresh directory for the demo (a previous demo's is emptied)")
	fs.String(&c.Broker.Addr, "broker-addr", "address the embedded broker listens on")
	fs.String(&c.Collector.HTTPAddr, "http-addr", "address the collector listens on")
	fs.Bool(&exit, "exit", "exit once the queries are printed instead of serving until Ctrl-C")
	logFlags(fs)
	cfg, logger, err := setup(fs, args, stderr)
	if err != nil {
		return err
	}
	if err := freshDemoDir(cfg.DataDir); err != nil {
		return err
	}
	if cfg.Loader.Tables == nil {
		cfg.Loader.Tables = map[string]config.LoaderTable{}
	}
	// Trips are dated by their pickup; the bundled schemas type the columns.
	cfg.Loader.Tables["yellow_taxi_trip"] = config.LoaderTable{TimeField: "tpep_pickup_datetime"}

	p, err := startPipeline(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer p.close()
	g, gctx := errgroup.WithContext(ctx)
	runCtx, stopPipeline := context.WithCancel(gctx)
	defer stopPipeline()
	g.Go(func() error { return p.run(runCtx) })
	g.Go(func() error {
		defer stopPipeline()
		if err := demo(gctx, p, stdout, stderr); err != nil {
			return err
		}
		if exit {
			return nil
		}
		fmt.Fprintln(stdout, "\nSluice keeps running: send your own events, query the lake. Press Ctrl-C to stop.")
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

func demo(ctx context.Context, p *pipeline, stdout, stderr io.Writer) error {
	p.printURLs(stdout)
	dir, err := sample.WriteTo(filepath.Join(p.cfg.DataDir, "sample"))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nReplaying the bundled data through http://%s (samples copied to %s):\n", p.addr, dir)
	collector := "http://" + p.addr.String()
	type job struct {
		file, eventType, preset string
	}
	var sources []*replay.Source
	var stats []*replay.Stats
	var eventTypes []string
	for _, j := range []job{
		{sample.TLCTrips, "yellow_taxi_trip", "tlc-yellow"},
		{sample.Turnstiles, "mta_turnstile", "mta-turnstile"},
	} {
		src, err := replay.NewSource(filepath.Join(dir, j.file), "")
		if err != nil {
			return err
		}
		src.Columns = replay.Presets[j.preset].Columns
		sources, stats = append(sources, src), append(stats, new(replay.Stats))
		eventTypes = append(eventTypes, j.eventType)
	}
	start := time.Now()
	// The two datasets are two event types: one replay each, in parallel.
	err = withProgress(stderr, sources, stats, func() error {
		g, gctx := errgroup.WithContext(ctx)
		for i, src := range sources {
			rc := replay.DefaultConfig()
			rc.Collector, rc.EventType = collector, eventTypes[i]
			g.Go(func() error { return replay.Run(gctx, rc, []*replay.Source{src}, []*replay.Stats{stats[i]}) })
		}
		return g.Wait()
	})
	if err != nil {
		return err
	}
	if bad := summarize(stdout, sources, stats, time.Since(start), ""); bad > 0 {
		return fmt.Errorf("%d events were not accepted", bad)
	}

	fmt.Fprint(stdout, "\nWaiting for every accepted event to be in the lake...")
	want := map[string]int64{"yellow_taxi_trip": stats[0].Accepted.Load(), "mta_turnstile": stats[1].Accepted.Load()}
	if err := waitForRows(ctx, p, want); err != nil {
		return err
	}
	fmt.Fprintf(stdout, " done, %v after the replay began.\n", time.Since(start).Round(100*time.Millisecond))

	local, err := lake.NewLocal(lakeURL(p.cfg))
	if err != nil {
		return err
	}
	eng, err := query.Open(ctx, local)
	if err != nil {
		return err
	}
	defer eng.Close()
	zones := filepath.Join(dir, sample.TaxiZones)
	for _, q := range []struct{ title, sql string }{
		{"Trips and revenue per hour of pickup", `SELECT date_trunc('hour', tpep_pickup_datetime) AS hour, count(*) AS trips,
	round(sum(total_amount), 2) AS revenue, round(avg(trip_distance), 2) AS avg_miles
FROM yellow_taxi_trip GROUP BY 1 ORDER BY 1`},
		{"Busiest pickup zones", `SELECT z.Zone AS zone, z.Borough AS borough, count(*) AS trips, round(avg(t.tip_amount), 2) AS avg_tip
FROM yellow_taxi_trip t JOIN read_csv('` + zones + `') z ON t.PULocationID = z.LocationID
GROUP BY ALL ORDER BY trips DESC LIMIT 5`},
		{"Busiest stations (entries over the week, from each turnstile's cumulative counter)", `SELECT "STATION" AS station, sum(entries) AS entries FROM (
	SELECT "STATION", "C/A", "UNIT", "SCP", max("ENTRIES") - min("ENTRIES") AS entries
	FROM mta_turnstile GROUP BY ALL HAVING entries < 1000000 -- a counter reset is not traffic
) GROUP BY 1 ORDER BY 2 DESC LIMIT 5`},
	} {
		res, err := eng.Query(ctx, q.sql)
		if err != nil {
			return fmt.Errorf("query %q: %w", q.title, err)
		}
		fmt.Fprintf(stdout, "\n%s:\n  %s\n\n", q.title, oneLine(q.sql))
		if err := query.Write(stdout, res, "table"); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "\nYour own queries: sluice query --data-dir %s --tables, then sluice query --data-dir %s 'SELECT ...'\n",
		p.cfg.DataDir, p.cfg.DataDir)
	return nil
}

// waitForRows waits until the loader has written the wanted rows per table.
func waitForRows(ctx context.Context, p *pipeline, want map[string]int64) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mfs, err := p.reg.Gather()
		if err != nil {
			return err
		}
		got := map[string]int64{}
		for _, mf := range mfs {
			if mf.GetName() != "sluice_loader_rows_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "table" {
						got[l.GetValue()] = int64(m.GetCounter().GetValue())
					}
				}
			}
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
