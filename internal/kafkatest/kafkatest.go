// Package kafkatest runs a real Apache Kafka cluster for the tests: three
// KRaft nodes (each broker and controller), Apache Kafka from Maven Central
// (testenv/kafka, cached by testenv/fetch kafka), on loopback ports, with
// replication factor 3, min.insync.replicas 2 and topic auto-creation off,
// as a production cluster is set. A test can kill a node (SIGKILL) and
// start it again.
package kafkatest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/javatest"
)

// Nodes is the cluster's size.
const Nodes = 3

// Cluster is a running Kafka cluster.
type Cluster struct {
	t     testing.TB
	dir   string
	addrs []string // each node's client address
	nodes []*exec.Cmd
}

// Start formats and starts a cluster in a directory of the test's, and
// stops it when the test ends. The test is skipped when Java or Kafka's
// jars are missing, unless SLUICE_REQUIRE_TOOLS is set.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if err := javatest.Check("kafka"); err != nil {
		javatest.Need(t, "kafka", err)
	}
	c := &Cluster{t: t, dir: t.TempDir(), nodes: make([]*exec.Cmd, Nodes)}
	ports := freePorts(t, 2*Nodes)
	var voters []string
	for n := range Nodes {
		c.addrs = append(c.addrs, fmt.Sprintf("127.0.0.1:%d", ports[n]))
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", n+1, ports[Nodes+n]))
	}
	for n := range Nodes {
		props := strings.Join([]string{
			"process.roles=broker,controller",
			fmt.Sprintf("node.id=%d", n+1),
			"controller.quorum.voters=" + strings.Join(voters, ","),
			fmt.Sprintf("listeners=PLAINTEXT://%s,CONTROLLER://127.0.0.1:%d", c.addrs[n], ports[Nodes+n]),
			"advertised.listeners=PLAINTEXT://" + c.addrs[n],
			"controller.listener.names=CONTROLLER",
			"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"inter.broker.listener.name=PLAINTEXT",
			"log.dirs=" + filepath.Join(c.dir, fmt.Sprint(n+1), "data"),
			"num.partitions=3",
			"default.replication.factor=3",
			"min.insync.replicas=2",
			"offsets.topic.replication.factor=3",
			"transaction.state.log.replication.factor=3",
			"transaction.state.log.min.isr=2",
			"auto.create.topics.enable=false",
			"group.initial.rebalance.delay.ms=0",
		}, "\n") + "\n"
		if err := os.MkdirAll(filepath.Join(c.dir, fmt.Sprint(n+1)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c.config(n), []byte(props), 0o644); err != nil {
			t.Fatal(err)
		}
		format := javatest.Command("kafka", "kafka.tools.StorageTool", "format", "-t", "c2x1aWNlLXRlc3QtY2x1cw", "-c", c.config(n))
		if out, err := format.CombinedOutput(); err != nil {
			t.Fatalf("format kafka node %d: %v\n%s", n+1, err, out)
		}
	}
	t.Cleanup(func() {
		for n := range Nodes {
			c.Kill(n)
		}
	})
	for n := range Nodes {
		c.start(n)
	}
	c.waitReady()
	return c
}

func (c *Cluster) config(n int) string {
	return filepath.Join(c.dir, fmt.Sprint(n+1), "server.properties")
}

// Brokers are the nodes' client addresses.
func (c *Cluster) Brokers() []string { return c.addrs }

// Kill stops node n (0-based) at once, as a crash would.
func (c *Cluster) Kill(n int) {
	if cmd := c.nodes[n]; cmd != nil {
		cmd.Process.Kill()
		cmd.Wait()
		c.nodes[n] = nil
	}
}

// Restart starts node n (0-based), which must not be running, on its
// data, and waits until every running node answers and is in the
// cluster's metadata.
func (c *Cluster) Restart(n int) {
	c.t.Helper()
	c.start(n)
	c.waitReady()
}

func (c *Cluster) start(n int) {
	c.t.Helper()
	log, err := os.Create(filepath.Join(c.dir, fmt.Sprint(n+1), "out.log"))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := javatest.Command("kafka", "kafka.Kafka", c.config(n))
	cmd.Stdout, cmd.Stderr = log, log
	// The node lives as long as the test process, and no longer.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start kafka node %d: %v", n+1, err)
	}
	c.nodes[n] = cmd
}

// waitReady waits until every running node answers and is in the
// cluster's metadata.
func (c *Cluster) waitReady() {
	c.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.addrs...))
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		brokers, err := adm.ListBrokers(ctx)
		cancel()
		want, ready := 0, 0
		for n, cmd := range c.nodes {
			if cmd == nil {
				continue
			}
			want++
			conn, derr := net.DialTimeout("tcp", c.addrs[n], time.Second)
			if derr != nil {
				continue
			}
			conn.Close()
			if slices.ContainsFunc(brokers, func(b kadm.BrokerDetail) bool { return b.NodeID == int32(n+1) }) {
				ready++
			}
		}
		if err == nil && ready == want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the kafka cluster did not have its %d running brokers within 90s (%v, %d ready, %v); logs in %s", want, brokers, ready, err, c.dir)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freePorts finds n free loopback ports.
func freePorts(t testing.TB, n int) []int {
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
