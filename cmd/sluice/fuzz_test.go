package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestMakeFuzzesEveryTarget: every go test -fuzz target of the repository
// is in the Makefile's FUZZ_TARGETS, which make test runs; one left out
// would never run in CI.
func TestMakeFuzzesEveryTarget(t *testing.T) {
	// From this file, not the working directory, which other tests of the
	// package change (s3test's server).
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(\./[\w/]+):(Fuzz\w+):\d+`).FindAllStringSubmatch(string(makefile), -1) {
		listed[m[1]+":"+m[2]] = true
	}
	fuzz := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)
	found := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		pkg := "./" + filepath.ToSlash(rel)
		for _, m := range fuzz.FindAllSubmatch(b, -1) {
			found++
			if !listed[pkg+":"+string(m[1])] {
				t.Errorf("%s in %s is not in the Makefile's FUZZ_TARGETS: add %s:%s:N", m[1], p, pkg, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 15 {
		t.Fatalf("found %d fuzz targets; the walk missed the repository", found)
	}
}
