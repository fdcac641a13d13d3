package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// TestConsoleInBrowser opens the console of a running `sluice demo` in
// Chromium, driven by playwright-core (web/tests/console.test.mjs): every
// screen opens; a query runs and is drawn as a chart, kept in the URL; a
// live event arrives, and one sent while the tail is paused arrives once
// it resumes; a dead letter is fixed in the editor, replayed, and found in
// the lake. Screenshots of each screen go to test-artifacts/console (or
// $SLUICE_ARTIFACTS/console). make test-deps installs Chromium (Debian's)
// and the console's npm packages.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo and a browser")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	node, err := exec.LookPath("node")
	missing := ""
	switch {
	case err != nil:
		missing = "node"
	case fileMissing(chromium):
		missing = chromium + " (Debian's chromium)"
	case fileMissing(filepath.Join(repoDir, "web/node_modules/playwright-core")):
		missing = "web/node_modules (npm ci in web/)"
	}
	if missing != "" {
		if os.Getenv("SLUICE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s is missing: make test-deps installs it", missing)
		}
		t.Skipf("%s is missing: run make test-deps", missing)
	}
	artifacts := filepath.Join(repoDir, "test-artifacts", "console")
	if dir := os.Getenv("SLUICE_ARTIFACTS"); dir != "" {
		artifacts = filepath.Join(dir, "console")
	}

	demo := exec.Command(binary, "demo", "--data-dir", filepath.Join(t.TempDir(), "demo"), "--http-addr", "127.0.0.1:0",
		"--broker-addr", "127.0.0.1:0", "--log-format", "json")
	var logs bytes.Buffer
	demo.Stderr = &logs
	out, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		demo.Process.Signal(syscall.SIGTERM)
		demo.Wait()
	}()
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`open the console at (http://[^/]+)/`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		close(addr)
	}()
	var base string
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatalf("the demo ended before serving:\n%s", logs.String())
		}
		base = a
	case <-time.After(3 * time.Minute):
		t.Fatalf("the demo did not start serving in 3 minutes:\n%s", logs.String())
	}

	cmd := exec.Command(node, "tests/console.test.mjs", base, artifacts)
	cmd.Dir = filepath.Join(repoDir, "web")
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	res, err := cmd.CombinedOutput()
	t.Logf("browser test (screenshots in %s):\n%s", artifacts, res)
	if err != nil {
		t.Fatalf("the console failed in the browser: %v", err)
	}
}

func fileMissing(path string) bool {
	_, err := os.Stat(path)
	return err != nil
}
