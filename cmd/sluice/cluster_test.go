package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kafkatest"
)

// TestUpAgainstKafkaCluster runs sluice up against a real Apache Kafka
// cluster (3 KRaft brokers, replication factor 3, min.insync.replicas 2)
// instead of its embedded broker, and kills one broker with SIGKILL while
// events are posted, then brings it back; then two, below
// min.insync.replicas, where nothing may be acknowledged. Every event the
// collector acknowledged is in the lake exactly once, and a client sees no
// error other than 503 with Retry-After.
func TestUpAgainstKafkaCluster(t *testing.T) {
	cluster := kafkatest.Start(t)
	dir := t.TempDir()
	p := startUp(t, dir, "--brokers", strings.Join(cluster.Brokers(), ","), "--flush-interval", "500ms")

	var (
		mu          sync.Mutex
		acked       = map[string]bool{}
		unavailable int
	)
	post := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			body := fmt.Sprintf(`{"event_type":"page_view","schema_version":"1-0-0","event_id":"e%d","payload":{"n":%d}}`, i, i)
			resp, err := http.Post("http://"+p.httpAddr+"/api/v1/collect", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			switch {
			case resp.StatusCode == 200:
				var r struct {
					RootID string `json:"root_id"`
				}
				json.Unmarshal(b, &r)
				acked[r.RootID] = true
			case resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "":
				unavailable++
			default:
				t.Errorf("answer %d: %s", resp.StatusCode, b)
			}
			mu.Unlock()
		}
	}
	post(0, 200)
	cluster.Kill(1)
	post(200, 200) // two of three replicas: still min.insync.replicas
	cluster.Restart(1)
	post(400, 200)

	// One replica of three is below min.insync.replicas: Kafka refuses
	// the writes, and the collector must not acknowledge any.
	cluster.Kill(1)
	cluster.Kill(2)
	before := len(acked)
	post(600, 4)
	if len(acked) != before {
		t.Errorf("%d events acknowledged with one broker of three", len(acked)-before)
	}
	cluster.Restart(1)
	cluster.Restart(2)
	post(604, 100)

	ackedOnce(t, []string{"--data-dir", dir}, "page_view", acked, unavailable, 2*time.Minute)
}

// TestUpOverSASLAndTLS runs sluice up against the real cluster's SASL_SSL
// listeners (SCRAM-SHA-512 over TLS, a certificate of the cluster's own
// CA), as managed clusters are reached: every event posted is in the lake
// once. A wrong password, or no CA to trust, is one line saying so, and
// exit 1, within kafka.start_timeout.
func TestUpOverSASLAndTLS(t *testing.T) {
	cluster := kafkatest.Start(t)
	brokers := strings.Join(cluster.SecureBrokers(), ",")
	secure := func(password string, withCA bool) []string {
		args := []string{"--brokers", brokers, "--kafka-tls", "--kafka-sasl-mechanism", "SCRAM-SHA-512",
			"--kafka-sasl-user", kafkatest.User, "--kafka-sasl-password", password, "--kafka-start-timeout", "10s"}
		if withCA {
			args = append(args, "--kafka-tls-ca-file", cluster.CAFile())
		}
		return args
	}
	runFails(t, "SASL", append([]string{"up", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0"}, secure("wrong", true)...)...)
	runFails(t, "certificate", append([]string{"up", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0"}, secure(kafkatest.Password, false)...)...)

	dir := t.TempDir()
	p := startUp(t, dir, append(secure(kafkatest.Password, true), "--flush-interval", "500ms")...)
	acked := map[string]bool{}
	for i := range 100 {
		code, rootID := postEvent(t, p.httpAddr, fmt.Sprintf(`{"event_type":"page_view","schema_version":"1-0-0","payload":{"n":%d}}`, i))
		if code != 200 {
			t.Fatalf("collect = %d", code)
		}
		acked[rootID] = true
	}
	ackedOnce(t, []string{"--data-dir", dir}, "page_view", acked, 0, time.Minute)
}

// TestLoaderReadsCompactedTopic loads a compacted topic once Kafka's log
// cleaner has removed the older values of its keys, so that the offsets
// the loader reads have gaps (which a broker without compaction never
// shows): every key's latest event is in the lake once, with nothing the
// topic no longer holds; a restarted loader resumes at its snapshot's
// offsets and loads nothing twice. Real Kafka only: the embedded broker
// does not compact.
func TestLoaderReadsCompactedTopic(t *testing.T) {
	if os.Getenv(kafkatest.Env) == "" {
		t.Skipf("the embedded broker does not compact: %s=cluster runs this on real Kafka", kafkatest.Env)
	}
	k, prod := kafkaFor(t)
	topic := k.name("accounts")
	adm := kadm.NewClient(prod)
	// Segments roll every 100 ms of writes, and the cleaner takes any
	// segment but the active one: compaction starts within the cleaner's
	// backoff (15 s) of the last roll.
	res, err := adm.CreateTopic(t.Context(), 3, -1, map[string]*string{
		"cleanup.policy": kadm.StringPtr("compact"), "segment.ms": kadm.StringPtr("100"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.001"), "min.compaction.lag.ms": kadm.StringPtr("0"),
	}, topic)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	const keys, versions = 40, 15
	for v := range versions {
		var recs []*kgo.Record
		for key := range keys {
			value := fmt.Sprintf(`{"event_type":"account","schema_version":"1","event_id":"a%d-%d","payload":{"account":"a%d","version":%d},"root_id":"r%d-%d"}`,
				key, v, key, v, key, v)
			recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "a%d", key), Value: []byte(value),
				Headers: []kgo.RecordHeader{{Key: "root_id", Value: fmt.Appendf(nil, "r%d-%d", key, v)}, {Key: "event_type", Value: []byte("account")}}})
		}
		if err := prod.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	// Wait for the cleaner: fewer records from the start than were written.
	var left int
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(2 * time.Second) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(k.brokers, ",")...), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		left = 0
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			n := cl.PollFetches(ctx).NumRecords()
			cancel()
			if left += n; n == 0 {
				break
			}
		}
		cl.Close()
		if left < keys*versions {
			t.Logf("the cleaner left %d of the %d records", left, keys*versions)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Kafka did not compact %s within 90 s: %d records", topic, left)
		}
	}

	dir := t.TempDir()
	load := func() {
		cmd := exec.Command(binary, "loader", "lake", "--brokers", k.brokers, "--data-dir", dir, "--metrics-addr", "",
			"--loader-topics", topic, "--loader-group", k.name("compacted"), "--instance-id", k.name("loader"),
			"--flush-interval", "200ms", "--log-format", "json")
		var logs bytes.Buffer
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}()
		want := fmt.Sprintf("n,latest,ids\n%d,%d,%d", keys, keys, keys)
		var got string
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			// Each key once at its latest version, and rows only of
			// records the topic still holds (a few keys' older values may
			// wait for the next cleaning).
			out, _ := sluice(t, "query", "--data-dir", dir, "--format", "csv",
				fmt.Sprintf(`SELECT count(DISTINCT account) AS n, count(*) FILTER (WHERE version = %d) AS latest, count(DISTINCT root_id) AS ids FROM account WHERE version = %d`, versions-1, versions-1))
			if got = strings.TrimSpace(out); got == want {
				break
			}
		}
		if got != want {
			t.Fatalf("the lake's accounts\n%s\nwant\n%s\nthe loader's log:\n%s", got, want, logs.String())
		}
		out, _ := sluice(t, "query", "--data-dir", dir, "--format", "csv", `SELECT count(*) - count(DISTINCT root_id) AS twice, count(*) AS n FROM account`)
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "0,") {
			t.Fatalf("rows loaded twice:\n%s", out)
		} else if n, _ := strconv.Atoi(strings.TrimPrefix(lines[1], "0,")); n > left {
			t.Errorf("the lake holds %d rows; the topic held %d records", n, left)
		}
	}
	load()
	load() // a restart finds its offsets in the snapshot, and adds nothing
}
