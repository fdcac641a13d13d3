// Package catalogtest runs a real Iceberg REST catalog for the tests:
// Apache Iceberg's own REST catalog servlet, from Maven Central, over a
// JDBC catalog on SQLite, writing table metadata to the in-process S3
// server of package s3test. testenv/fetch iceberg-rest (run by make
// test-deps) caches its jars; each test process starts one server, on a
// loopback port, and each test gets a namespace of its own in it.
package catalogtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/javatest"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/s3test"
)

var (
	once     sync.Once
	shared   *Server
	startErr error
)

// Server is a REST catalog process. Its database outlives a Kill, so a
// Restart is the same catalog, on the same port, as after a crash.
type Server struct {
	URL  string
	dir  string
	port string
	s3   string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func launch(dir, port, s3Endpoint string) (*Server, error) {
	if err := javatest.Check("iceberg-rest"); err != nil {
		return nil, err
	}
	cmd := javatest.Command("iceberg-rest", "RestCatalog.java",
		port, filepath.Join(dir, "catalog.db"), "s3://warehouse/",
		"s3.endpoint="+s3Endpoint, "s3.path-style-access=true", "client.region="+s3test.Region,
		"s3.access-key-id="+s3test.AccessKey, "s3.secret-access-key="+s3test.SecretKey)
	// The server lives as long as the test process, and no longer; it
	// removes its database when it stops on a signal other than KILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Dir = dir
	log := new(bytes.Buffer)
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the REST catalog: %w", err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				ready <- u
			}
		}
		close(ready)
	}()
	select {
	case u, ok := <-ready:
		if ok {
			return &Server{URL: u, dir: dir, port: u[strings.LastIndex(u, ":")+1:], s3: s3Endpoint, cmd: cmd, log: log}, nil
		}
	case <-time.After(2 * time.Minute):
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, fmt.Errorf("the REST catalog did not start; its log:\n%s", tail(log.String(), 3000))
}

// Kill stops the server at once, as a crash or a lost machine would.
func (s *Server) Kill() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// Restart starts the killed server again, on its port, with its database.
func (s *Server) Restart() error {
	n, err := launch(s.dir, s.port, s.s3)
	if err != nil {
		return err
	}
	s.cmd, s.log = n.cmd, n.log
	return nil
}

// Config is the settings of a lake whose tables this catalog holds, in a
// namespace of the test's own.
func (s *Server) Config(t testing.TB) lake.CatalogConfig {
	ns := strings.ToLower(strings.NewReplacer("/", "_", "-", "_", " ", "_").Replace(t.Name()))
	return lake.CatalogConfig{URI: s.URL, Namespace: fmt.Sprintf("%s_%d", ns, time.Now().UnixNano()%1e9)}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// REST returns the settings of the test process's REST catalog for a lake
// on the in-process S3 server at s3Endpoint (from s3test.Bucket), with a
// namespace of the test's own.
func REST(t testing.TB, s3Endpoint string) lake.CatalogConfig {
	t.Helper()
	once.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-iceberg-rest")
		if err != nil {
			startErr = err
			return
		}
		if shared, startErr = launch(dir, "0", s3Endpoint); startErr != nil {
			os.RemoveAll(dir)
		}
	})
	if startErr != nil {
		javatest.Need(t, "iceberg-rest", startErr)
	}
	return shared.Config(t)
}

// Start runs a REST catalog of the test's own, for tests that kill it;
// it is removed when the test ends.
func Start(t testing.TB, s3Endpoint string) *Server {
	t.Helper()
	dir := t.TempDir()
	s, err := launch(dir, "0", s3Endpoint)
	if err != nil {
		javatest.Need(t, "iceberg-rest", err)
	}
	t.Cleanup(s.Kill)
	return s
}
