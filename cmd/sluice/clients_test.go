package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/javatest"
	"github.com/sluicehq/sluice/internal/kafkatest"
)

// runScript runs a Python script (a name in testdata, or a path) and
// returns what it printed, failing the test with its errors if it fails.
func runScript(t *testing.T, python, script string, args ...string) []byte {
	t.Helper()
	if !filepath.IsAbs(script) {
		script = filepath.Join(repoDir, "cmd/sluice/testdata", script)
	}
	cmd := exec.Command(python, append([]string{script}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	return out
}

// postPageViews posts n page_view events, one request each.
func postPageViews(t *testing.T, addr string, n int) {
	t.Helper()
	for i := range n {
		if code, body := postEvent(t, addr, fmt.Sprintf(`{"event_type":"page_view","schema_version":"1-0-0","payload":{"n":%d}}`, i)); code != 200 {
			t.Fatalf("collect = %d %s", code, body)
		}
	}
}

// TestPythonProducer runs a producer written as the seed's was (pandas
// reads the TLC Parquet sample, json.dumps each row, requests posts it)
// against sluice up. Python writes the sample's missing floats as NaN: the
// collector takes every row, stores null there, and the lake then equals
// the source file, row count, sums and non-null counts, with DuckDB
// reading the source as the oracle.
func TestPythonProducer(t *testing.T) {
	python := testPython(t)
	src := filepath.Join(repoDir, "internal/sample/data/yellow_tripdata_2025-02_sample5000.parquet")
	dir := t.TempDir()
	p := startUp(t, dir, "--flush-interval", "300ms")
	out := runScript(t, python, "tlc_producer.py", "http://"+p.httpAddr, src)
	var res struct {
		Sent      int            `json:"sent"`
		Status    map[string]int `json:"status"`
		NonFinite int            `json:"non_finite"`
		Errors    []string       `json:"errors"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("producer output %q: %v", out, err)
	}
	// 1,125 rows lack passenger_count, RatecodeID, congestion_surcharge,
	// Airport_fee and store_and_fwd_flag, which pandas 3 holds as NaN too
	// (its string dtype's missing value).
	if res.Sent != 5000 || res.Status["200"] != 5000 || res.NonFinite != 5*1125 {
		t.Fatalf("the Python producer sent %d rows, answered %v, %d NaN stored as null (want 5000 rows, all 200, 5625); errors: %v",
			res.Sent, res.Status, res.NonFinite, res.Errors)
	}

	lakeEqualsTLC(t, dir, src, "yellow_taxi_trip_records")
}

// TestPythonKafkaClient runs librdkafka's Python client (confluent-kafka
// from PyPI) against the embedded broker of sluice up: admin calls, an
// idempotent producer, a consumer group that commits and resumes, and
// read-committed consumers of sluice.raw and of the enricher's
// transactional sluice.enriched.
func TestPythonKafkaClient(t *testing.T) {
	python := testPython(t)
	t.Run("embedded", func(t *testing.T) {
		p := startUp(t, t.TempDir())
		pythonClientChecks(t, python, p, p.brokerAddr)
	})
	// The same checks against Apache Kafka itself.
	t.Run("kafka", func(t *testing.T) {
		brokers := strings.Join(kafkatest.Start(t).Brokers(), ",")
		pythonClientChecks(t, python, startUp(t, t.TempDir(), "--brokers", brokers), brokers)
	})
}

// pythonClientChecks runs kafka_client.py against brokers, which the
// sluice up of p uses.
func pythonClientChecks(t *testing.T, python string, p *proc, brokers string) {
	const events = 50
	postPageViews(t, p.httpAddr, events)
	out := runScript(t, python, "kafka_client.py", brokers, "py.clients", "300", fmt.Sprint(events))
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	want := map[string]any{"delivered": 300.0, "delivery_errors": 0.0, "consumed": 300.0, "consumed_in_order": true,
		"keys": 300.0, "committed": 300.0, "consumed_again": 0.0, "raw": float64(events), "raw_root_ids": float64(events),
		"enriched": float64(events)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %s)", k, got[k], v, out)
		}
	}
	if errs, ok := got["consume_errors"]; ok {
		t.Errorf("consume errors: %v", errs)
	}
	topics := fmt.Sprint(got["topics"])
	for _, want := range []string{"py.clients", "sluice.raw", "sluice.enriched", "sluice.dlq"} {
		if !strings.Contains(topics, want) {
			t.Errorf("the admin client lists %s, without %s", topics, want)
		}
	}
}

// TestJavaKafkaClient runs Apache Kafka's Java client and its command-line
// tools (kafka-clients and kafka-tools from Maven Central) against the
// embedded broker of sluice up: admin calls, a committed and an aborted
// transaction, a zombie producer fenced by its successor, consumer groups
// reading committed and uncommitted records, and kafka-console-consumer,
// kafka-consumer-groups and kafka-topics on Sluice's own topics.
func TestJavaKafkaClient(t *testing.T) {
	if err := javatest.Check("kafka-java"); err != nil {
		javatest.Need(t, "kafka-java", err)
	}
	t.Run("embedded", func(t *testing.T) {
		p := startUp(t, t.TempDir())
		javaClientChecks(t, p, p.brokerAddr)
	})
	// The same checks against Apache Kafka itself: what the embedded
	// broker answers is what Kafka answers.
	t.Run("kafka", func(t *testing.T) {
		cluster := kafkatest.Start(t)
		brokers := strings.Join(cluster.Brokers(), ",")
		javaClientChecks(t, startUp(t, t.TempDir(), "--brokers", brokers), brokers)
	})
}

// javaClientChecks runs KafkaClientCheck.java and Kafka's tools against
// brokers, which the sluice up of p uses.
func javaClientChecks(t *testing.T, p *proc, brokers string) {
	const events = 30
	postPageViews(t, p.httpAddr, events)
	java := func(class string, args ...string) string {
		t.Helper()
		cmd := javatest.Command("kafka-java", class, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", class, args, err, stderr.String())
		}
		return string(out)
	}

	out := java("KafkaClientCheck.java", brokers, "java.clients")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("KafkaClientCheck output %q: %v", out, err)
	}
	want := map[string]any{"partitions": 3.0, "zombie": "fenced", "read_committed": 110.0, "read_committed_aborted": 0.0,
		"read_uncommitted": 160.0, "group_partitions": 3.0, "group_lag": 0.0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %s)", k, got[k], v, out)
		}
	}
	for key, names := range map[string][]string{"topics": {"java.clients", "sluice.raw", "sluice.enriched"}, "groups": {"java-committed", "java-uncommitted"}} {
		for _, n := range names {
			if !strings.Contains(fmt.Sprint(got[key]), n) {
				t.Errorf("%s = %v, without %s", key, got[key], n)
			}
		}
	}

	// The command-line tools, on Sluice's own topics.
	lines := strings.Split(strings.TrimSpace(java("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", brokers,
		"--topic", "sluice.enriched", "--from-beginning", "--isolation-level", "read_committed",
		"--max-messages", fmt.Sprint(events), "--timeout-ms", "30000", "--group", "java-console")), "\n")
	if len(lines) != events || !strings.Contains(lines[0], `"root_id"`) {
		t.Errorf("kafka-console-consumer read %d events of sluice.enriched, want %d:\n%s", len(lines), events, strings.Join(lines, "\n"))
	}
	groups := java("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server", brokers, "--describe", "--group", "java-console")
	if !strings.Contains(groups, "sluice.enriched") {
		t.Errorf("kafka-consumer-groups --describe:\n%s", groups)
	}
	topics := java("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", brokers, "--list")
	for _, n := range []string{"java.clients", "sluice.dlq", "sluice.enriched", "sluice.raw"} {
		if !strings.Contains(topics, n) {
			t.Errorf("kafka-topics --list lacks %s:\n%s", n, topics)
		}
	}
}

// TestSparkStructuredStreaming runs the seed's MTA job in Spark Structured
// Streaming (pyspark from PyPI, Spark's Kafka source from Maven Central,
// local[2]) on the topic that sluice replay fed, and sluice up's
// aggregator on the same topic: every window Sluice wrote, Spark computed
// the same, and Spark has no window that Sluice should have written and
// did not.
func TestSparkStructuredStreaming(t *testing.T) {
	python := testPython(t)
	if err := javatest.Check("spark-kafka"); err != nil {
		javatest.Need(t, "spark-kafka", err)
	}
	dir := t.TempDir()
	mtaPath, cfgPath := turnstileFiles(t, dir, "window: {size: 4h, delay: 1h, idle_timeout: 2s}",
		"aggregates: [{op: count, as: readings}, {op: sum, field: ENTRIES, as: entries}]")
	p := startUp(t, dir, "--config", cfgPath)
	if out, code := sluice(t, "replay", "--to", "kafka", "--brokers", p.brokerAddr, "--topic", "mta-turnstile",
		"--preset", "mta-turnstile", "--format", "csv", mtaPath); code != 0 {
		t.Fatalf("sluice replay --to kafka = %d:\n%s", code, out)
	}

	// Sluice's windows, once the aggregator has written what the
	// watermark allows and stopped adding.
	type window struct{ Readings, Entries int64 }
	sluiceWindows := func() map[string]window {
		out, code := sluice(t, "query", "--data-dir", dir, "--format", "json",
			`SELECT to_json([strftime(window_start, '%Y-%m-%dT%H:%M:%S'), "C/A", "UNIT", "SCP", "STATION", "LINENAME", "DIVISION", "DATE", "DESC"]) AS key,
			        readings, entries FROM agg_turnstile_4h`)
		got := map[string]window{}
		if code != 0 {
			return got
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r struct {
				Key               json.RawMessage
				Readings, Entries int64
			}
			if json.Unmarshal([]byte(line), &r) == nil {
				var key []string
				json.Unmarshal(r.Key, &key)
				k, _ := json.Marshal(key)
				got[string(k)] = window{r.Readings, r.Entries}
			}
		}
		return got
	}
	var fromSluice map[string]window
	deadline := time.Now().Add(90 * time.Second)
	for stable := 0; stable < 3; time.Sleep(time.Second) {
		now := sluiceWindows()
		if len(now) > 0 && len(now) == len(fromSluice) {
			stable++
		} else {
			stable = 0
		}
		fromSluice = now
		if time.Now().After(deadline) {
			t.Fatalf("sluice's windows did not settle within 90s (%d so far)", len(fromSluice))
		}
	}

	outFile := filepath.Join(dir, "spark.jsonl")
	runScript(t, python, filepath.Join(javatest.Dir("spark-kafka"), "turnstile.py"), p.brokerAddr, "mta-turnstile", javatest.Lib("spark-kafka"), outFile)
	b, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	fromSpark := map[string]window{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct {
			Key               []string
			Readings, Entries int64
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("spark output %q: %v", line, err)
		}
		k, _ := json.Marshal(r.Key)
		fromSpark[string(k)] = window{r.Readings, r.Entries}
	}

	// Sluice writes a window once the watermark (the latest reading less
	// the hour's delay) is past its end; Spark, in complete mode, has all.
	var lastStart string
	for k := range fromSluice {
		var key []string
		json.Unmarshal([]byte(k), &key)
		lastStart = max(lastStart, key[0])
	}
	compared := 0
	for k, s := range fromSpark {
		var key []string
		json.Unmarshal([]byte(k), &key)
		if key[0] > lastStart {
			continue // a window the watermark has not closed
		}
		compared++
		if got, ok := fromSluice[k]; !ok {
			t.Errorf("window %s: Spark %+v, Sluice has none", k, s)
		} else if got != s {
			t.Errorf("window %s: Spark %+v, Sluice %+v", k, s, got)
		}
	}
	for k := range fromSluice {
		if _, ok := fromSpark[k]; !ok {
			t.Errorf("window %s: Sluice has it, Spark not", k)
		}
	}
	if compared < 1000 {
		t.Errorf("only %d windows compared (Sluice %d, Spark %d)", compared, len(fromSluice), len(fromSpark))
	}
	t.Logf("%d windows equal in Spark and Sluice (Spark has %d more the watermark has not closed)", compared, len(fromSpark)-compared)
}
