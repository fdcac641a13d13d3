package console

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sourceFiles are the files the console's build depends on, as
// web/vite.config.js lists them.
func sourceFiles(t *testing.T, root string) []string {
	t.Helper()
	out := []string{"index.html", "package-lock.json", "tsconfig.json", "vite.config.js"}
	err := filepath.WalkDir(filepath.Join(root, "src"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		out = append(out, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestEmbeddedBuildIsFresh fails when the console's sources changed since
// the embedded build was made: run 'npm ci && npm run build' in web/ and
// commit internal/console/dist.
func TestEmbeddedBuildIsFresh(t *testing.T) {
	root := filepath.Join("..", "..", "web")
	h := sha256.New()
	for _, f := range sourceFiles(t, root) {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte(f + "\n"))
		h.Write(b)
		h.Write([]byte("\n"))
	}
	built, err := fs.ReadFile(assets, "SOURCES")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(h.Sum(nil)), strings.TrimSpace(string(built)); got != want {
		t.Fatalf("the embedded console (internal/console/dist) was built from other sources than web/ holds now "+
			"(hash %s, built from %s): run 'cd web && npm ci && npm run build' and commit internal/console/dist", got, want)
	}
	if _, err := fs.Stat(assets, "index.html"); err != nil {
		t.Fatal(err)
	}
}
