// Package searchtest runs a real OpenSearch node for the search sink's
// tests: OpenSearch 2.19's server jar and netty4 HTTP module from Maven
// Central (testenv/fetch opensearch caches them), started in a JVM of its
// own on a loopback port by testenv/opensearch/OpenSearch.java. A node
// lives as long as its test process, and no longer.
package searchtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/javatest"
)

// Server is a running OpenSearch node.
type Server struct {
	// URL is its HTTP base URL, http://127.0.0.1:PORT.
	URL      string
	dir      string
	port     int
	settings []string

	mu    sync.Mutex
	proc  *os.Process
	stdin io.WriteCloser
	exit  chan struct{}
}

// Start starts a node of its own for t, with extra node settings
// (thread_pool.write.queue_size=2, say), stopped when t ends.
func Start(t testing.TB, settings ...string) *Server {
	t.Helper()
	if err := javatest.Check("opensearch"); err != nil {
		javatest.Need(t, "opensearch", err)
	}
	s, err := start(t.TempDir(), settings)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

var shared struct {
	once sync.Once
	s    *Server
	dir  string
	err  error
}

// Shared returns the node the package's tests share, started by the first
// that asks; Main stops it. Tests keep apart by their own index names
// (Prefix).
func Shared(t testing.TB) *Server {
	t.Helper()
	if err := javatest.Check("opensearch"); err != nil {
		javatest.Need(t, "opensearch", err)
	}
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "sluice-searchtest"); shared.err != nil {
			return
		}
		shared.s, shared.err = start(shared.dir, nil)
	})
	if shared.err != nil {
		t.Fatalf("start the shared OpenSearch node: %v", shared.err)
	}
	return shared.s
}

// Main runs a package's tests, then stops the shared node.
func Main(m interface{ Run() int }) int {
	code := m.Run()
	if shared.s != nil {
		shared.s.Stop()
		os.RemoveAll(shared.dir)
	}
	return code
}

// Wrap is m with the shared node stopped after its tests: for a TestMain
// that hands m to another package's Main too (kafkatest.Main).
func Wrap(m interface{ Run() int }) interface{ Run() int } {
	return runner(func() int { return Main(m) })
}

type runner func() int

func (r runner) Run() int { return r() }

var prefixes atomic.Int64

// Prefix is an index-name prefix of a test's own, lower case.
func Prefix(t testing.TB) string {
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, name)
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return fmt.Sprintf("t%d-%s-", prefixes.Add(1), strings.Trim(name, "-"))
}

// StartNode starts a node with its data in dir, outside a test (the
// benchmarks): the caller stops it. It needs the jars of testenv/fetch
// opensearch.
func StartNode(dir string, settings ...string) (*Server, error) {
	if err := javatest.Check("opensearch"); err != nil {
		return nil, err
	}
	return start(dir, settings)
}

func start(dir string, settings []string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir, port: port, settings: settings}
	return s, s.Start()
}

// Start starts the node again after Stop or Kill, on the same port and
// data.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(s.dir, "opensearch.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	args := append([]string{filepath.Join(s.dir, "node"), fmt.Sprint(s.port)}, s.settings...)
	cmd := javatest.Command("opensearch", "OpenSearch.java", args...)
	// The node's heap: enough for the tests' indices, small enough for
	// two nodes and Kafka on the machine.
	cmd.Args = append([]string{cmd.Args[0], "-Xms512m"}, cmd.Args[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start opensearch: %w", err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			fmt.Fprintln(log, sc.Text())
			if !said && strings.HasPrefix(sc.Text(), "ready ") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	exit := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exit)
	}()
	s.proc, s.stdin, s.exit = cmd.Process, stdin, exit
	select {
	case ok := <-ready:
		if !ok {
			return fmt.Errorf("opensearch exited before it was ready; see %s", filepath.Join(s.dir, "opensearch.log"))
		}
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		return fmt.Errorf("opensearch was not ready within 3 minutes; see %s", filepath.Join(s.dir, "opensearch.log"))
	}
	return s.waitHealthy()
}

// waitHealthy waits until the cluster can take writes (yellow or green).
func (s *Server) waitHealthy() error {
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(s.URL + "/_cluster/health?wait_for_status=yellow&timeout=5s")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("opensearch did not become healthy within a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops the node cleanly (its standard input closes) and waits for
// it.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.stdin.Close()
	select {
	case <-s.exit:
	case <-time.After(30 * time.Second):
		s.proc.Kill()
		<-s.exit
	}
	s.proc = nil
}

// Kill stops the node as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.Kill()
	<-s.exit
	s.proc = nil
}
