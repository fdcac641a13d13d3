package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/catalogtest"
	"github.com/sluicehq/sluice/internal/javatest"
	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/internal/nginx"
	"github.com/sluicehq/sluice/internal/s3test"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/source"
)

// TestDistributed runs the pipeline as production runs it, on one machine:
// separate processes against a 3-broker Apache Kafka cluster
// (testenv/kafka), with the lake on S3 (the in-process server) and an
// Iceberg REST catalog (testenv/iceberg-rest): two collectors behind nginx
// on port 8095 (testenv/nginx, with deploy/compose/nginx.conf), two
// enrichers, two lake loaders and two aggregator instances, each with an
// instance id of its own. A client posts 9,982 TLC trips of the sample
// through the load balancer, in pickup order, at 300 a second, retrying what
// is answered 503 as any client would; the aggregators count them per
// borough and 15 minutes, deduplicated by event id.
//
// An uninterrupted run gives the aggregates. Then, while the client posts:
// one Kafka broker is killed with SIGKILL and brought back; one instance of
// each stage is killed with SIGKILL and restarted; the collectors are
// restarted one after the other behind the load balancer. After each, every
// event answered 200 is in the lake exactly once, the aggregates equal the
// uninterrupted run's, and the client saw no answer but 200 and 503 with
// Retry-After. The random kill points come from SLUICE_TEST_SEED, or the
// clock (logged).
func TestDistributed(t *testing.T) {
	if os.Getenv(kafkatest.Env) == "" {
		t.Skipf("the multi-instance run belongs to the real-cluster suite: %s=cluster (make unit runs it)", kafkatest.Env)
	}
	lb, err := nginx.Find()
	if err != nil {
		javatest.Need(t, "nginx", err)
	}
	cluster := kafkatest.Start(t)
	endpoint, bucket := s3test.Bucket(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	t.Setenv("AWS_REGION", s3test.Region)
	trips := tripEvents(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SLUICE_TEST_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SLUICE_TEST_SEED=%q: %v", s, err)
		}
	}
	t.Logf("random kill points from SLUICE_TEST_SEED=%d", seed)
	// Each fault draws from its own stream, so that a seed replays one
	// subtest alone (-run TestDistributed/uninterrupted|instances) too.
	var rng *mrand.Rand
	env := distributedEnv{nginx: lb, brokers: strings.Join(cluster.Brokers(), ","), endpoint: endpoint, bucket: bucket, trips: trips}

	var want string
	t.Run("uninterrupted", func(t *testing.T) {
		want = env.run(t, "base", nil)
	})
	if want == "" {
		t.Fatal("no aggregates from the uninterrupted run")
	}
	pause := func(min, spread int) { time.Sleep(time.Duration(min*1000+rng.IntN(spread*1000)) * time.Millisecond) }
	faults := []struct {
		name  string
		fault func(t *testing.T, p *stages)
	}{
		{"broker", func(t *testing.T, p *stages) {
			pause(4, 5)
			n := rng.IntN(kafkatest.Nodes)
			t.Logf("kill -9 Kafka node %d", n+1)
			cluster.Kill(n)
			pause(4, 5)
			t.Logf("restart Kafka node %d", n+1)
			cluster.Restart(n)
		}},
		{"instances", func(t *testing.T, p *stages) {
			var killed []string
			for _, stage := range []string{"collector", "enricher", "loader", "aggregator"} {
				pause(2, 3)
				name := fmt.Sprintf("%s-%d", stage, 1+rng.IntN(2))
				t.Logf("kill -9 %s", name)
				p.kill(name)
				killed = append(killed, name)
			}
			pause(2, 3)
			for _, name := range killed {
				t.Logf("restart %s", name)
				p.start(name)
			}
		}},
		{"rolling", func(t *testing.T, p *stages) {
			pause(3, 3)
			for _, name := range []string{"collector-1", "collector-2"} {
				t.Logf("restart %s (SIGTERM, then start it when it has stopped)", name)
				p.stop(name)
				p.start(name)
				p.waitReady(name)
			}
		}},
	}
	for i, f := range faults {
		rng = mrand.New(mrand.NewPCG(seed, uint64(i)))
		t.Run(f.name, func(t *testing.T) {
			got := env.run(t, fmt.Sprintf("r%d", i), f.fault)
			if diff := gocmp.Diff(want, got); diff != "" {
				t.Errorf("aggregates after the faults differ from the uninterrupted run's (-want +got):\n%s", diff)
			}
		})
	}
}

// distributedEnv is what every run of TestDistributed shares: the cluster,
// the bucket and the events.
type distributedEnv struct {
	nginx, brokers, endpoint, bucket string
	trips                            [][]byte
}

// run starts a pipeline of its own (topics, groups, lake and namespace
// named after name), posts the trips through its load balancer while
// fault, if any, runs, checks the lake holds every acknowledged event
// once, and returns the aggregates once they count every trip.
func (e distributedEnv) run(t *testing.T, name string, fault func(*testing.T, *stages)) string {
	cc := catalogtest.REST(t, e.endpoint)
	dir := t.TempDir()
	agg := "trips_" + name
	cfg := fmt.Sprintf(`topics: {raw: %[1]s.raw, enriched: %[1]s.enriched, dlq: %[1]s.dlq}
enricher: {group: %[1]s-enricher}
lake: {url: "s3://%[2]s/%[1]s", s3_endpoint: %[3]q, s3_path_style: true, catalog_uri: %[4]q, namespace: %[5]s}
sinks:
  - {type: lake, topics: [%[1]s.enriched, %[1]s.dlq], group: %[1]s-loader, flush_interval: 500ms}
aggregations:
  - name: %[6]s
    topic: %[1]s.enriched
    event_type: yellow_taxi_trip
    time: {fields: [tpep_pickup_datetime]}
    window: {size: 15m, delay: 1h, idle_timeout: 20s}
    group_by: [pickup_borough]
    dedupe: [event_id]
    aggregates:
      - {op: count, as: trips}
      - {op: sum, field: fare_amount, as: fares}
      - {op: avg, field: trip_distance, as: avg_distance}
`, name, e.bucket, e.endpoint, cc.URI, cc.Namespace, agg)
	cfgPath := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newStages(t, dir, cfgPath, e.brokers, e.nginx)

	c := &tripClient{url: "http://" + p.lb.Addr + "/api/v1/collect/batch", acked: map[string]bool{}}
	var faultDone sync.WaitGroup
	if fault != nil {
		faultDone.Go(func() { fault(t, p) })
	}
	c.post(t, e.trips, 10, 300)
	faultDone.Wait()
	// Windows within the delay of the latest event stay open until later
	// events come: trips two hours after the last close them all.
	c.post(t, closingTrips(t, e.trips[0], 12), 12, 300)
	if len(c.errors) > 0 {
		t.Errorf("answers other than 200 and 503 with Retry-After: %d, such as %q", len(c.errors), c.errors[:min(3, len(c.errors))])
	}
	t.Logf("%d events acknowledged, %d of them after a 503 (%d events answered 503)", len(c.acked), c.retried, c.unavailable)
	p.checkRunning()

	// Every acknowledged event is in the lake once; the events of 503
	// answers may be there too (a collector may have stored a request it
	// could not answer), under root ids of their own. The queries' data
	// dir holds their cache of the S3 lake.
	lake := []string{"--config", cfgPath, "--data-dir", filepath.Join(dir, "query")}
	ackedOnce(t, lake, "yellow_taxi_trip", c.acked, c.unavailable, 3*time.Minute)
	query := func(sql string) (string, error) {
		var stderr bytes.Buffer
		cmd := exec.Command(binary, slices.Concat([]string{"query"}, lake, []string{"--format", "csv", sql})...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return stderr.String(), err
		}
		return strings.TrimSpace(string(out)), nil
	}

	// The aggregates, once they count every trip (idle_timeout after the
	// last one, the watermark passes the last windows).
	var out string
	for deadline := time.Now().Add(3 * time.Minute); ; {
		var err error
		out, err = query("SELECT coalesce(sum(trips), 0) AS n FROM agg_" + agg)
		if err == nil && out == fmt.Sprintf("n\n%d", len(e.trips)) { // the closing trips' window stays open
			break
		}
		if time.Now().After(deadline) {
			late, _ := query("SELECT reason, count(*) FROM dead_letter GROUP BY reason")
			t.Fatalf("the aggregates count %q trips of %d; dead letters:\n%s", out, len(e.trips), late)
		}
		time.Sleep(time.Second)
	}
	out, err := query(`SELECT pickup_borough, window_start, window_end, trips, round(fares, 6) AS fares, round(avg_distance, 6) AS avg_distance
		FROM agg_` + agg + ` ORDER BY window_start, pickup_borough`)
	if err != nil {
		t.Fatalf("query the aggregates: %v\n%s", err, out)
	}
	if n := strings.Count(out, "\n"); n < 20 {
		t.Fatalf("%d aggregate rows; want dozens:\n%s", n, out)
	}
	return out
}

// tripEvents is the TLC sample's trips of 00:00 to 02:00 on 1 January
// 2025 (9,982) as collector events, event_id trip-<row>, in pickup order
// (as the trips happened, where the file has them by drop-off).
func tripEvents(t *testing.T) [][]byte {
	t.Helper()
	data, err := fs.ReadFile(sample.FS(), "yellow_tripdata_2025-01_first10000.parquet")
	if err != nil {
		t.Fatal(err)
	}
	type trip struct {
		pickup string
		row    []byte
	}
	var trips []trip
	err = source.ParquetRows(bytes.NewReader(data), int64(len(data)), source.DefaultTimeLayout, func(row []byte) error {
		var r struct {
			Pickup string `json:"tpep_pickup_datetime"`
		}
		if err := json.Unmarshal(row, &r); err != nil {
			return err
		}
		trips = append(trips, trip{r.Pickup, bytes.Clone(row)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The sample's first hours are a handful of trips of the evening
	// before: three hours of event time in ten events, which any
	// reordering makes late. Its two dense hours (pickups at about 80 a
	// minute) tolerate a stall of a partition for the delay, 1h, or 15 s
	// of the client's pace.
	trips = slices.DeleteFunc(trips, func(tr trip) bool {
		return tr.pickup < "2025-01-01T00:00:00" || tr.pickup >= "2025-01-01T02:00:00"
	})
	slices.SortStableFunc(trips, func(a, b trip) int { return cmp.Compare(a.pickup, b.pickup) })
	events := make([][]byte, len(trips))
	for i, tr := range trips {
		events[i] = fmt.Appendf(nil, `{"event_type":"yellow_taxi_trip","schema_version":"1-0-0","event_id":"trip-%d","payload":%s}`, i, tr.row)
	}
	return events
}

// closingTrips are n copies of a trip of the sample moved to 04:00, two
// hours after the sample's last.
func closingTrips(t *testing.T, trip []byte, n int) [][]byte {
	var ev struct {
		Payload map[string]json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(trip, &ev); err != nil {
		t.Fatal(err)
	}
	ev.Payload["tpep_pickup_datetime"] = json.RawMessage(`"2025-01-01T04:00:00"`)
	ev.Payload["tpep_dropoff_datetime"] = json.RawMessage(`"2025-01-01T04:10:00"`)
	payload, err := json.Marshal(ev.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var events [][]byte
	for i := range n {
		events = append(events, fmt.Appendf(nil, `{"event_type":"yellow_taxi_trip","schema_version":"1-0-0","event_id":"closing-%d","payload":%s}`, i, payload))
	}
	return events
}

// tripClient posts events in batches as a client of the collectors does:
// a 503 with Retry-After is retried after that delay (the events get new
// root ids), anything else is an error the test reports (and retried, so
// that no event is given up).
type tripClient struct {
	url string

	mu          sync.Mutex
	acked       map[string]bool // root ids of events answered 200
	unavailable int             // events of 503 answers
	retried     int             // events answered 200 after a 503
	errors      []string
}

// post sends events in batches of size, perSecond events a second at
// most, with 8 requests in flight at most.
func (c *tripClient) post(t *testing.T, events [][]byte, size, perSecond int) {
	batches := make(chan [][]byte)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for b := range batches {
				c.send(t, b)
			}
		})
	}
	tick := time.NewTicker(time.Second * time.Duration(size) / time.Duration(perSecond))
	for i := 0; i < len(events); i += size {
		<-tick.C
		batches <- events[i:min(i+size, len(events))]
	}
	tick.Stop()
	close(batches)
	wg.Wait()
}

func (c *tripClient) send(t *testing.T, batch [][]byte) {
	body := append(append([]byte("["), bytes.Join(batch, []byte(","))...), ']')
	after503 := false
	for attempt := 0; ; attempt++ {
		if attempt == 200 {
			t.Errorf("a batch was not accepted in 200 attempts")
			return
		}
		resp, err := http.Post(c.url, "application/json", bytes.NewReader(body))
		if err != nil {
			c.fail(err.Error())
			time.Sleep(time.Second)
			continue
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			var r struct {
				Accepted int      `json:"accepted"`
				RootIDs  []string `json:"root_ids"`
			}
			if err := json.Unmarshal(answer, &r); err != nil || r.Accepted != len(batch) || len(r.RootIDs) != len(batch) {
				c.fail(fmt.Sprintf("200 that does not accept the %d events: %.300s", len(batch), answer))
				return
			}
			c.mu.Lock()
			for _, id := range r.RootIDs {
				c.acked[id] = true
			}
			if after503 {
				c.retried += len(batch)
			}
			c.mu.Unlock()
			return
		case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
			c.mu.Lock()
			c.unavailable += len(batch)
			c.mu.Unlock()
			after503 = true
			wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			time.Sleep(time.Duration(max(wait, 1)) * time.Second)
		default:
			c.fail(fmt.Sprintf("%d %.300s", resp.StatusCode, answer))
			time.Sleep(time.Second)
		}
	}
}

func (c *tripClient) fail(what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errors = append(c.errors, what)
}

// stages is the processes of one run: nginx and two instances of each
// stage, each logging to a file of its own.
type stages struct {
	t         *testing.T
	dir       string
	lb        *nginx.Server
	instances map[string]*instance
}

type instance struct {
	name string
	args []string
	addr string // a collector's
	log  *os.File
	cmd  *exec.Cmd
	done chan struct{}
}

func newStages(t *testing.T, dir, cfgPath, brokers, nginxBin string) *stages {
	t.Helper()
	p := &stages{t: t, dir: dir, instances: map[string]*instance{}}
	t.Cleanup(func() {
		if t.Failed() {
			p.logTails()
		}
		p.close()
	})
	common := []string{"--config", cfgPath, "--brokers", brokers, "--log-format", "json"}
	ports := freeLoopbackPorts(t, 2)
	for i := 1; i <= 2; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[i-1])
		p.add(fmt.Sprintf("collector-%d", i), addr, slices.Concat([]string{"collector"}, common, []string{"--http-addr", addr}))
		for _, stage := range [][]string{{"enricher"}, {"loader", "lake"}, {"aggregator"}} {
			p.add(fmt.Sprintf("%s-%d", stage[0], i), "", slices.Concat(stage, common, []string{"--ops-addr", ""}))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(p.instances)) {
		p.start(n)
	}
	if !p.waitReady("collector-1") || !p.waitReady("collector-2") {
		t.FailNow()
	}
	p.startNginx(nginxBin, p.instances["collector-1"].addr, p.instances["collector-2"].addr)
	return p
}

func (p *stages) add(name, addr string, args []string) {
	log, err := os.Create(filepath.Join(p.dir, name+".log"))
	if err != nil {
		p.t.Fatal(err)
	}
	p.instances[name] = &instance{name: name, addr: addr, log: log, args: append(args, "--instance-id", name)}
}

// start starts an instance that is not running (again, after a kill).
func (p *stages) start(name string) {
	in := p.instances[name]
	in.cmd = exec.Command(binary, in.args...)
	in.cmd.Stdout, in.cmd.Stderr = in.log, in.log
	in.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // when the test is killed
	if err := in.cmd.Start(); err != nil {
		// Errorf, not Fatalf: faults start instances from a goroutine
		// of their own.
		p.t.Errorf("start %s: %v", name, err)
		return
	}
	done := make(chan struct{})
	in.done = done
	go func() {
		in.cmd.Wait()
		close(done)
	}()
}

// kill ends an instance with SIGKILL, stop with SIGTERM; both wait for it.
func (p *stages) kill(name string) { p.signal(name, syscall.SIGKILL) }
func (p *stages) stop(name string) { p.signal(name, syscall.SIGTERM) }

func (p *stages) signal(name string, sig os.Signal) {
	in := p.instances[name]
	in.cmd.Process.Signal(sig)
	select {
	case <-in.done:
	case <-time.After(time.Minute):
		p.t.Errorf("%s did not stop within a minute of %v", name, sig)
		in.cmd.Process.Kill()
		<-in.done
	}
}

// waitReady waits until a collector answers /readyz with 200, and says
// whether it did within a minute.
func (p *stages) waitReady(name string) bool {
	in := p.instances[name]
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + in.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
	}
	p.t.Errorf("%s is not ready after a minute; its log:\n%s", name, tailFile(in.log.Name(), 20))
	return false
}

// checkRunning fails the test for an instance that exited by itself.
func (p *stages) checkRunning() {
	for name, in := range p.instances {
		select {
		case <-in.done:
			p.t.Errorf("%s exited by itself: %v; its log:\n%s", name, in.cmd.ProcessState, tailFile(in.log.Name(), 30))
		default:
		}
	}
}

// close stops every process of the pipeline.
func (p *stages) close() {
	var wg sync.WaitGroup
	for name, in := range p.instances {
		if in.done == nil {
			continue
		}
		select {
		case <-in.done:
		default:
			wg.Go(func() { p.stop(name) })
		}
	}
	wg.Wait()
	if p.lb != nil {
		p.lb.Stop()
	}
	for _, in := range p.instances {
		in.log.Close()
	}
}

// logTails logs the end of every instance's log.
func (p *stages) logTails() {
	for _, name := range slices.Sorted(maps.Keys(p.instances)) {
		p.t.Logf("the end of %s's log:\n%s", name, tailFile(p.instances[name].log.Name(), 15))
	}
}

func tailFile(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// startNginx runs nginx with the load balancer's configuration of the
// Compose setup, its upstreams the two collectors, on 127.0.0.1:8095, or
// another port when 8095 is taken.
func (p *stages) startNginx(bin, upstream1, upstream2 string) {
	t := p.t
	conf, err := os.ReadFile(filepath.Join(repoDir, "deploy", "compose", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:8095"
	if l, err := net.Listen("tcp", addr); err != nil {
		addr = fmt.Sprintf("127.0.0.1:%d", freeLoopbackPorts(t, 1)[0])
		t.Logf("port 8095 is taken (%v): the load balancer listens on %s", err, addr)
	} else {
		l.Close()
	}
	if p.lb, err = nginx.Start(bin, string(conf), filepath.Join(p.dir, "nginx"), addr, []string{upstream1, upstream2}); err != nil {
		t.Fatal(err)
	}
}

// freeLoopbackPorts returns n ports free on 127.0.0.1 now.
func freeLoopbackPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
