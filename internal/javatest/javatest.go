// Package javatest finds the Java programs the tests run against Sluice:
// a directory testenv/NAME of the repository holds a pom.xml, whose jars
// testenv/fetch NAME caches from Maven Central (make test-deps runs it),
// and single-file Java sources, which Java's source launcher runs without
// a build.
package javatest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir is testenv/NAME in the repository, found from this file rather than
// the working directory, which package s3test's server changes.
func Dir(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testenv", name)
}

// Lib is the directory of testenv/NAME's cached jars.
func Lib(name string) string {
	cache := os.Getenv("SLUICE_TESTENV_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "sluice")
	}
	return filepath.Join(cache, name, "lib")
}

// Check reports why testenv/NAME cannot run: no Java, or its jars not
// fetched.
func Check(name string) error {
	if _, err := exec.LookPath("java"); err != nil {
		return errors.New("java is not on PATH")
	}
	if jars, _ := filepath.Glob(filepath.Join(Lib(name), "*.jar")); len(jars) == 0 {
		return fmt.Errorf("the jars of testenv/%s are not in %s: run testenv/fetch %s (make test-deps)", name, Lib(name), name)
	}
	return nil
}

// Need skips the test when testenv/NAME cannot run, unless
// SLUICE_REQUIRE_TOOLS is set (as make test sets it), when it fails.
func Need(t testing.TB, name string, err error) {
	t.Helper()
	if os.Getenv("SLUICE_REQUIRE_TOOLS") != "" {
		t.Fatalf("testenv/%s: %v", name, err)
	}
	t.Skipf("testenv/%s: %v", name, err)
}

// Command runs class (a main class of the jars, or a .java file of
// testenv/NAME) with args, its jars on the class path. Programs that log
// through slf4j-simple log warnings and errors only.
func Command(name, class string, args ...string) *exec.Cmd {
	if filepath.Ext(class) == ".java" {
		class = filepath.Join(Dir(name), class)
	}
	return exec.Command("java", append([]string{"-Xmx512m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"-cp", filepath.Join(Lib(name), "*"), class}, args...)...)
}
