// Package catalogtest runs a real Iceberg REST catalog for the tests:
// Apache Iceberg's own REST catalog servlet, from Maven Central, over a
// JDBC catalog on SQLite, writing table metadata to the in-process S3
// server of package s3test. testenv/iceberg-rest/fetch (run by make
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
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/s3test"
)

var (
	once      sync.Once
	serverURL string
	startErr  error
)

// LibDir is where testenv/iceberg-rest/fetch puts the server's jars.
func LibDir() string {
	if d := os.Getenv("SLUICE_ICEBERG_REST_LIB"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "sluice", "iceberg-rest", "lib")
}

// source is RestCatalog.java in the repository, found from this file
// rather than the working directory, which s3test's server changes.
func source() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testenv", "iceberg-rest", "RestCatalog.java")
}

func start(s3Endpoint string) (string, error) {
	java, err := exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("java is not on PATH: %w", err)
	}
	lib := LibDir()
	if jars, _ := filepath.Glob(filepath.Join(lib, "iceberg-core-*-tests.jar")); len(jars) == 0 {
		return "", fmt.Errorf("the REST catalog's jars are not in %s: run testenv/iceberg-rest/fetch (make test-deps)", lib)
	}
	dir, err := os.MkdirTemp("", "sluice-iceberg-rest")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(java, "-Xmx512m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", filepath.Join(lib, "*"), source(),
		"0", filepath.Join(dir, "catalog.db"), "s3://warehouse/",
		"s3.endpoint="+s3Endpoint, "s3.path-style-access=true", "client.region="+s3test.Region,
		"s3.access-key-id="+s3test.AccessKey, "s3.secret-access-key="+s3test.SecretKey)
	// The server lives as long as the test process, and no longer; it
	// removes its database when it stops.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Dir = dir
	var log bytes.Buffer
	cmd.Stderr = &log
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start the REST catalog: %w", err)
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
			return u, nil
		}
	case <-time.After(2 * time.Minute):
	}
	cmd.Process.Kill()
	cmd.Wait()
	os.RemoveAll(dir)
	return "", fmt.Errorf("the REST catalog did not start; its log:\n%s", tail(log.String(), 3000))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// REST returns the settings of a REST catalog for a lake on the
// in-process S3 server at s3Endpoint (from s3test.Bucket), with a
// namespace of the test's own. The test is skipped when the server's jars
// or Java are missing, unless SLUICE_REQUIRE_TOOLS is set (as make test
// sets it), when it fails.
func REST(t testing.TB, s3Endpoint string) lake.CatalogConfig {
	t.Helper()
	endpoint := s3Endpoint
	once.Do(func() { serverURL, startErr = start(endpoint) })
	if startErr != nil {
		if os.Getenv("SLUICE_REQUIRE_TOOLS") != "" {
			t.Fatalf("Iceberg REST catalog: %v", startErr)
		}
		t.Skipf("Iceberg REST catalog: %v", startErr)
	}
	ns := strings.ToLower(strings.NewReplacer("/", "_", "-", "_", " ", "_").Replace(t.Name()))
	return lake.CatalogConfig{URI: serverURL, Namespace: fmt.Sprintf("%s_%d", ns, time.Now().UnixNano()%1e9)}
}
