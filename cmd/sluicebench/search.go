package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/search"
	"github.com/sluicehq/sluice/internal/searchtest"
	"github.com/sluicehq/sluice/internal/sink"
)

// benchSearch measures the search sink indexing N TLC trip events from
// Kafka into a local OpenSearch node, against the limit: a minimal bulk
// client sending the same documents, with the same ids, batch size and
// requests in flight, to the same node, in the same run.
func benchSearch(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("search", flag.ContinueOnError)
	n := fs.Int("docs", 200_000, "TLC trip events to index (the 500-row sample, repeated)")
	runs := fs.Int("runs", 3, "runs of each writer; the median is reported")
	bulkDocs := fs.Int("bulk-docs", search.DefaultConfig().BulkDocs, "documents per _bulk request, for both")
	inFlight := fs.Int("in-flight", search.DefaultConfig().InFlight, "_bulk requests in flight, for both")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the sink's runs (this process only, not the node) to this file")
	flushRows := fs.Int("flush-rows", search.DefaultConfig().FlushRows, "the sink's documents per range (flush_rows)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := os.MkdirTemp("", "sluicebench-search")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(os.Stderr, "starting OpenSearch (testenv/opensearch)...")
	node, err := searchtest.StartNode(filepath.Join(dir, "opensearch"))
	if err != nil {
		return fmt.Errorf("opensearch: %w (make test-deps fetches it)", err)
	}
	defer node.Stop()
	// One template for both writers' indices: strings as keywords, as the
	// sink's own templates map them, and no replica on one node.
	if err := osDo(ctx, http.MethodPut, node.URL+"/_index_template/sluicebench", `{"index_patterns":["sb-*"],"priority":500,
		"template":{"settings":{"number_of_shards":1,"number_of_replicas":0},"mappings":{"dynamic_templates":[{"strings":
		{"match_mapping_type":"string","mapping":{"type":"keyword","ignore_above":8191}}}]}}}`); err != nil {
		return err
	}

	values := stampedTLC(*n)
	cc, prod, stop, err := benchBroker(ctx, dir, 3, logger, "sluice.enriched", "sluice.dlq")
	if err != nil {
		return err
	}
	defer stop()
	if err := produceAll(ctx, prod, "sluice.enriched", "yellow_taxi_trip", values); err != nil {
		return err
	}
	ends, err := kadm.NewClient(prod).ListEndOffsets(ctx, "sluice.enriched")
	if err != nil {
		return err
	}

	// A fresh node's JVM compiles its indexing path as it goes: the
	// first writer would meet a node slower than the second. One unmeasured
	// pass warms it.
	fmt.Fprintln(os.Stderr, "warming the node up...")
	if _, err := indexWithBulk(ctx, node.URL, "sb-warmup", values, *bulkDocs, *inFlight); err != nil {
		return err
	}
	if err := osDo(ctx, http.MethodDelete, node.URL+"/sb-warmup", ""); err != nil {
		return err
	}
	if err := osDo(ctx, http.MethodPut, node.URL+"/sb-offsets", ""); err != nil {
		return err
	}
	var sinkTimes, bulkTimes []time.Duration
	for run := range *runs {
		prefix := fmt.Sprintf("sb-%d-", run)
		// Which writer goes first alternates, so neither always meets a
		// node warmed (or filled) by the other.
		writers := []func() error{
			func() error {
				if *cpuProfile != "" {
					stop, err := profileCPU(fmt.Sprintf("%s.%d", *cpuProfile, run))
					if err != nil {
						return err
					}
					defer stop()
				}
				took, err := indexWithSink(ctx, cc, node.URL, prefix+"sink-", *bulkDocs, *inFlight, *flushRows, ends, logger)
				sinkTimes = append(sinkTimes, took)
				return err
			},
			func() error {
				took, err := indexWithBulk(ctx, node.URL, prefix+"bulk-yellow_taxi_trip-2025.01.01", values, *bulkDocs, *inFlight)
				bulkTimes = append(bulkTimes, took)
				return err
			},
		}
		if run%2 == 1 {
			writers[0], writers[1] = writers[1], writers[0]
		}
		for _, w := range writers {
			if err := w(); err != nil {
				return err
			}
		}
		// Each writer must have indexed every document, once.
		for _, pattern := range []string{prefix + "sink-yellow_taxi_trip-*", prefix + "bulk-*"} {
			if got, err := osCount(ctx, node.URL, pattern); err != nil || got != *n {
				return fmt.Errorf("%s holds %d documents, want %d (%v)", pattern, got, *n, err)
			}
		}
		if err := osDo(ctx, http.MethodDelete, node.URL+"/"+prefix+"*", ""); err != nil {
			return err
		}
	}
	sinkTime, bulkTime := median(sinkTimes), median(bulkTimes)
	fmt.Fprintf(out, "search benchmark: %d TLC trip events (%d MB of JSON) into a local OpenSearch 2.19 node, %d documents a request, %d in flight, median of %d runs\n\n",
		*n, int64(len(values))*int64(len(values[0]))>>20, *bulkDocs, *inFlight, *runs)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "writer\tdocs/s\ttime\t")
	fmt.Fprintf(tw, "sluice search sink (Kafka → _bulk, per-document outcomes, offsets recorded)\t%.0f\t%v\t\n",
		float64(*n)/sinkTime.Seconds(), sinkTime.Round(time.Millisecond))
	fmt.Fprintf(tw, "minimal bulk client (prepared bodies → _bulk)\t%.0f\t%v\t\n",
		float64(*n)/bulkTime.Seconds(), bulkTime.Round(time.Millisecond))
	fmt.Fprintf(tw, "sink / bulk client\t%.2f\t\t\n", bulkTime.Seconds()/sinkTime.Seconds())
	return tw.Flush()
}

// indexWithSink runs the search sink until it has recorded every
// partition's end, and returns how long that took from its partitions'
// assignment.
func indexWithSink(ctx context.Context, cc bus.ClientConfig, url, prefix string, bulkDocs, inFlight, flushRows int, ends kadm.ListedOffsets, logger *slog.Logger) (time.Duration, error) {
	cfg := search.DefaultConfig()
	// The offsets index is made once per cluster: the runs share it (with
	// a group each), so that none pays for creating it.
	cfg.URLs, cfg.Index, cfg.OffsetsIndex = []string{url}, prefix+"{event_type}-{yyyy.MM.dd}", "sb-offsets"
	cfg.Group, cfg.Templates = prefix+"group", false // the bench's template applies
	cfg.BulkDocs, cfg.InFlight, cfg.FlushRows = bulkDocs, inFlight, flushRows
	reg := prometheus.NewRegistry()
	s, err := search.New(cfg, "sluice.dlq", nil, logger, reg)
	if err != nil {
		return 0, err
	}
	r, err := sink.New("search", cfg.Config, s, sink.Env{Logger: logger, Metrics: reg, Kafka: cc, DLQTopic: "sluice.dlq"})
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() {
		cancel()
		<-done
	}()
	for !assigned(reg) {
		select {
		case err := <-done:
			done <- err
			return 0, fmt.Errorf("search sink stopped: %w", err)
		case <-time.After(time.Millisecond):
		}
	}
	start := time.Now()
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	for {
		// The documents indexed and committed, from the sink's metrics:
		// asking the server would load the node being measured.
		if int64(metricValue(reg, "sluice_search_documents_total")) >= want {
			return time.Since(start), nil
		}
		select {
		case err := <-done:
			done <- err
			return 0, fmt.Errorf("search sink stopped: %w", err)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// indexWithBulk is the limit: the documents' _bulk bodies made before the
// clock starts, then sent inFlight at a time, each answer checked for
// errors.
func indexWithBulk(ctx context.Context, url, index string, values [][]byte, bulkDocs, inFlight int) (time.Duration, error) {
	var bodies [][]byte
	var body []byte
	for i, v := range values {
		body = append(body, `{"index":{"_index":"`+index+`","_id":"r`+strconv.Itoa(i)+`"}}`+"\n"...)
		body = append(append(body, v...), '\n')
		if (i+1)%bulkDocs == 0 || i == len(values)-1 {
			bodies = append(bodies, body)
			body = nil
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan []byte)
	for range inFlight {
		wg.Go(func() {
			for b := range next {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/_bulk?filter_path=errors", bytes.NewReader(b))
				req.Header.Set("Content-Type", "application/x-ndjson")
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					answer, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || !bytes.Contains(answer, []byte(`"errors":false`)) {
						err = fmt.Errorf("_bulk: %d %.200s", resp.StatusCode, answer)
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, b := range bodies {
		next <- b
	}
	close(next)
	wg.Wait()
	return time.Since(start), firstErr
}

// osDo sends a request with a JSON body to the node, failing on an error
// status.
func osDo(ctx context.Context, method, url, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, answer)
	}
	return nil
}

// osCount counts the documents of the indices matching pattern, refreshed.
func osCount(ctx context.Context, url, pattern string) (int, error) {
	if err := osDo(ctx, http.MethodPost, url+"/"+pattern+"/_refresh", ""); err != nil {
		return 0, err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/"+pattern+"/_count", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var c struct {
		Count int `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return 0, err
	}
	return c.Count, nil
}
