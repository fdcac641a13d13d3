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
// the lake. Then, on a sluice up with keys, the console asks for one,
// refuses a wrong one, lets a read key look but not replay, and an admin
// key replay. Screenshots of each screen go to test-artifacts/console (or
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

	browse := func(t *testing.T, script string, args ...string) {
		cmd := exec.Command(node, append([]string{"tests/" + script}, args...)...)
		cmd.Dir = filepath.Join(repoDir, "web")
		cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
		res, err := cmd.CombinedOutput()
		t.Logf("%s (screenshots in %s):\n%s", script, artifacts, res)
		if err != nil {
			t.Fatalf("the console failed in the browser: %v", err)
		}
	}
	t.Run("demo", func(t *testing.T) {
		base := serveConsole(t, `open the console at (http://[^/]+)/`, "demo", "--data-dir", filepath.Join(t.TempDir(), "demo"))
		browse(t, "console.test.mjs", base, artifacts)
	})
	t.Run("keys", func(t *testing.T) {
		base := serveConsole(t, `console +(http://[^/]+)/`, "up", "--data-dir", filepath.Join(t.TempDir(), "up"),
			"--console-read-key", "look-only", "--console-admin-key", "may-fix")
		browse(t, "keys.test.mjs", base, artifacts, "look-only", "may-fix")
	})
}

// serveConsole starts sluice with args on free ports and returns the base
// URL its output names (the first group of pattern), stopping it when the
// test ends.
func serveConsole(t *testing.T, pattern string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--http-addr", "127.0.0.1:0", "--broker-addr", "127.0.0.1:0", "--log-format", "json")...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(pattern)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatalf("sluice %s ended before serving:\n%s", args[0], logs.String())
		}
		return a
	case <-time.After(3 * time.Minute):
		t.Fatalf("sluice %s did not serve in 3 minutes:\n%s", args[0], logs.String())
	}
	return ""
}

func fileMissing(path string) bool {
	_, err := os.Stat(path)
	return err != nil
}
