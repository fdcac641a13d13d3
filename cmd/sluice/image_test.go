package main

import (
	"debug/elf"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// debianLibs is what each Debian release's glibc and libstdc++ provide:
// the newest GLIBC_, GLIBCXX_ and CXXABI_ symbol versions.
var debianLibs = map[string]map[string]string{
	"bookworm": {"GLIBC": "2.36", "GLIBCXX": "3.4.30", "CXXABI": "1.3.13"}, // glibc 2.36, libstdc++6 12.2
	"trixie":   {"GLIBC": "2.41", "GLIBCXX": "3.4.33", "CXXABI": "1.3.15"}, // glibc 2.41, libstdc++6 14.2
}

// TestDockerfile checks what can be checked of the image without a Docker
// engine: a multi-stage build whose runtime base is the build's Debian
// release, on the Go of go.mod, run as a non-root user with a health
// check; and that the binary, as built on that release, needs no newer
// glibc or libstdc++ than the runtime base has (DuckDB is linked in with
// cgo against both).
func TestDockerfile(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]string{}
	var froms []string
	var user, entrypoint string
	health := false
	for line := range strings.SplitSeq(strings.ReplaceAll(string(src), "\\\n", " "), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "ARG":
			if k, v, ok := strings.Cut(f[1], "="); ok {
				args[k] = v
			}
		case "FROM":
			froms = append(froms, os.Expand(f[1], func(k string) string { return args[k] }))
		case "USER":
			user = f[1]
		case "HEALTHCHECK":
			health = true
		case "ENTRYPOINT":
			entrypoint = strings.Join(f[1:], " ")
		}
	}
	release := args["DEBIAN"]
	if len(froms) != 2 || froms[0] != "golang:"+args["GO_VERSION"]+"-"+release || froms[1] != "debian:"+release+"-slim" {
		t.Fatalf("FROM %v: want golang:<go.mod's Go>-<release> to build and debian:<release>-slim to run", froms)
	}
	mod, err := os.ReadFile(filepath.Join(repoDir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if goVersion := regexp.MustCompile(`(?m)^go (\S+)`).FindSubmatch(mod); goVersion == nil || string(goVersion[1]) != args["GO_VERSION"] {
		t.Errorf("the image builds with Go %s, go.mod says %s", args["GO_VERSION"], goVersion)
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("USER %q: the image must not run as root", user)
	}
	if !health {
		t.Error("no HEALTHCHECK")
	}
	if entrypoint != `["sluice"]` {
		t.Errorf("ENTRYPOINT %s, want [\"sluice\"]", entrypoint)
	}

	provides, ok := debianLibs[release]
	if !ok {
		t.Fatalf("Debian %s: add what its glibc and libstdc++ provide to debianLibs", release)
	}
	if host := hostRelease(t); host != release {
		// The versions a binary needs depend on the headers it was built
		// with: only a build on the image's release says what the image's
		// build needs.
		t.Skipf("this machine runs Debian %q, the image builds on %q", host, release)
	}
	f, err := elf.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.ImportedSymbols()
	if err != nil {
		t.Fatal(err)
	}
	needs := map[string]string{}
	for _, s := range syms {
		lib, v, ok := strings.Cut(s.Version, "_")
		if !ok || provides[lib] == "" {
			continue
		}
		if newer(v, needs[lib]) {
			needs[lib] = v
		}
	}
	if needs["GLIBC"] == "" || needs["GLIBCXX"] == "" {
		t.Fatalf("the binary names no GLIBC_ or GLIBCXX_ versions (%v): is DuckDB still linked in with cgo?", needs)
	}
	for lib, v := range needs {
		if newer(v, provides[lib]) {
			t.Errorf("the binary needs %s_%s; debian:%s-slim has %s_%s", lib, v, release, lib, provides[lib])
		}
	}
	t.Logf("the binary needs %v; debian:%s-slim provides %v", needs, release, provides)
}

// newer reports whether dotted version a is newer than b ("" is oldest).
func newer(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	if b == "" {
		return a != ""
	}
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x > y
		}
	}
	return false
}

func hostRelease(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return ""
	}
	if m := regexp.MustCompile(`(?m)^VERSION_CODENAME=(\S+)`).FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}
