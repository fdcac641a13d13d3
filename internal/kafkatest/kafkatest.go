// Package kafkatest runs a real Apache Kafka cluster for the tests: three
// KRaft nodes (each broker and controller), Apache Kafka from Maven Central
// (testenv/kafka, cached by testenv/fetch kafka), on loopback ports, with
// replication factor 3, min.insync.replicas 2 and topic auto-creation off,
// as a production cluster is set. A test can kill a node (SIGKILL) and
// start it again.
//
// The same switch runs every exactly-once end-to-end test against real
// Kafka instead of the embedded broker: SLUICE_TEST_KAFKA=cluster starts
// one such cluster per test process, shared by its tests (Brokers), and
// SLUICE_TEST_KAFKA=host:port,... names a cluster already running. Tests
// that share a cluster name their topics and groups apart (Names).
package kafkatest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/javatest"
)

// Nodes is the cluster's size.
const Nodes = 3

// Cluster is a running Kafka cluster. Each node has two client
// listeners: plaintext (Brokers), and SASL/SCRAM-SHA-512 over TLS
// (SecureBrokers), as managed clusters are set, for the user User with
// Password and a certificate of the cluster's own CA (CAFile).
type Cluster struct {
	t      fataler
	dir    string
	addrs  []string // each node's plaintext client address
	secure []string // each node's SASL_SSL client address
	nodes  []*exec.Cmd
}

// The SCRAM-SHA-512 user of the secure listeners.
const (
	User     = "sluice"
	Password = "sluice-secret"
)

// Start formats and starts a cluster in a directory of the test's, and
// stops it when the test ends. The test is skipped when Java or Kafka's
// jars are missing, unless SLUICE_REQUIRE_TOOLS is set.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if err := javatest.Check("kafka"); err != nil {
		javatest.Need(t, "kafka", err)
	}
	c := start(t, t.TempDir())
	t.Cleanup(c.stop)
	return c
}

// fataler is what a cluster needs of a test: a shared cluster, which
// outlives its tests, has a stand-in (processT).
type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// start formats and starts a cluster in dir.
func start(t fataler, dir string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, dir: dir, nodes: make([]*exec.Cmd, Nodes)}
	ports := freePorts(t, 3*Nodes)
	var voters []string
	for n := range Nodes {
		c.addrs = append(c.addrs, fmt.Sprintf("127.0.0.1:%d", ports[n]))
		c.secure = append(c.secure, fmt.Sprintf("127.0.0.1:%d", ports[2*Nodes+n]))
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", n+1, ports[Nodes+n]))
	}
	keystore, err := writeCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	for n := range Nodes {
		props := strings.Join([]string{
			"process.roles=broker,controller",
			fmt.Sprintf("node.id=%d", n+1),
			"controller.quorum.voters=" + strings.Join(voters, ","),
			fmt.Sprintf("listeners=PLAINTEXT://%s,CONTROLLER://127.0.0.1:%d,SASL_SSL://%s", c.addrs[n], ports[Nodes+n], c.secure[n]),
			"advertised.listeners=PLAINTEXT://" + c.addrs[n] + ",SASL_SSL://" + c.secure[n],
			"controller.listener.names=CONTROLLER",
			"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
			"sasl.enabled.mechanisms=SCRAM-SHA-512",
			"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
			"listener.name.sasl_ssl.ssl.keystore.type=PEM",
			"listener.name.sasl_ssl.ssl.keystore.location=" + keystore,
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
		format := javatest.Command("kafka", "kafka.tools.StorageTool", "format", "-t", "c2x1aWNlLXRlc3QtY2x1cw", "-c", c.config(n),
			"--add-scram", "SCRAM-SHA-512=[name="+User+",password="+Password+"]")
		if out, err := format.CombinedOutput(); err != nil {
			t.Fatalf("format kafka node %d: %v\n%s", n+1, err, out)
		}
	}
	for n := range Nodes {
		c.start(n)
	}
	c.waitReady()
	return c
}

func (c *Cluster) stop() {
	for n := range Nodes {
		c.Kill(n)
	}
}

// Env is the switch: unset, tests use the embedded broker; "cluster"
// starts a cluster shared by the test process; host:port,... names one.
const Env = "SLUICE_TEST_KAFKA"

var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

// Brokers returns the real Kafka cluster's brokers when SLUICE_TEST_KAFKA
// asks for one, starting the process's shared cluster the first time, or
// nil when the tests are to use the embedded broker.
func Brokers(t testing.TB) []string {
	t.Helper()
	switch v := os.Getenv(Env); v {
	case "":
		return nil
	case "cluster":
		if err := javatest.Check("kafka"); err != nil {
			t.Fatalf("%s=cluster: testenv/kafka: %v", Env, err)
		}
		shared.once.Do(func() {
			dir, err := os.MkdirTemp("", "sluice-kafkatest")
			if err != nil {
				shared.err = err
				return
			}
			shared.c, shared.err = Run(dir)
		})
		if shared.err != nil {
			t.Fatalf("start the shared kafka cluster: %v", shared.err)
		}
		return shared.c.Brokers()
	default:
		return strings.Split(v, ",")
	}
}

// Run formats and starts a cluster in dir for a program that is not a
// test (the benchmark), or for the tests' shared cluster, which outlives
// any one test. Stop ends it.
func Run(dir string) (c *Cluster, err error) {
	if err := javatest.Check("kafka"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			failed, ok := r.(processFailure)
			if !ok {
				panic(r)
			}
			c, err = nil, errors.New(string(failed))
		}
	}()
	return start(processT{}, dir), nil
}

// Stop kills every node. The data stays in the cluster's directory.
func (c *Cluster) Stop() { c.stop() }

// Main runs a package's tests, then stops its shared cluster, if one was
// started, and removes its data: the TestMain of a package whose tests
// call Brokers.
func Main(m interface{ Run() int }) int {
	code := m.Run()
	if c := shared.c; c != nil {
		c.stop()
		os.RemoveAll(c.dir)
	}
	return code
}

// Names returns a test's topic, or group, name: name itself on the
// embedded broker, which each test starts for itself; on a real cluster,
// which tests share, name with a suffix of its own for each call.
func Names(name string) string {
	if os.Getenv(Env) == "" {
		return name
	}
	return fmt.Sprintf("%s.%d-%d", name, os.Getpid(), names.Add(1))
}

var names atomic.Int64

// processT stands in for a test while a cluster starts outside one: a
// failure panics, and Run recovers it as the start's error.
type processT struct{}

type processFailure string

func (processT) Helper()           {}
func (processT) Fatal(args ...any) { panic(processFailure(fmt.Sprint(args...))) }
func (processT) Fatalf(format string, args ...any) {
	panic(processFailure(fmt.Sprintf(format, args...)))
}

func (c *Cluster) config(n int) string {
	return filepath.Join(c.dir, fmt.Sprint(n+1), "server.properties")
}

// Brokers are the nodes' plaintext client addresses.
func (c *Cluster) Brokers() []string { return c.addrs }

// SecureBrokers are the nodes' SASL_SSL client addresses.
func (c *Cluster) SecureBrokers() []string { return c.secure }

// CAFile is the PEM file of the CA that signed the nodes' certificate.
func (c *Cluster) CAFile() string { return filepath.Join(c.dir, "ca.pem") }

// writeCerts makes a CA and a certificate it signs for 127.0.0.1 and
// localhost, writes the CA to ca.pem and the certificate with its key to
// keystore.pem (a PEM keystore, as Kafka reads one) in dir, and returns
// the keystore's path.
func writeCerts(dir string) (string, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kafka"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	keystore := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})...)
	path := filepath.Join(dir, "keystore.pem")
	return path, errors.Join(os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o644), os.WriteFile(path, keystore, 0o600))
}

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
func freePorts(t fataler, n int) []int {
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
