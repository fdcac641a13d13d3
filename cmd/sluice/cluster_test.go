package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

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

	ackedOnce(t, dir, acked, unavailable, 2*time.Minute)
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
	ackedOnce(t, dir, acked, 0, time.Minute)
}
