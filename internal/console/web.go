package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/sluicehq/sluice/internal/httpapi"
)

// dist is the console's build (web/, 'npm run build'): the binary serves
// it without Node. TestEmbeddedBuildIsFresh fails when it is older than
// its sources.
//
//go:embed all:dist
var dist embed.FS

var assets = func() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed above guarantees the directory
	}
	return sub
}()

// ui serves the console's pages: index.html at /, and its assets, whose
// names carry their content's hash, cached for good.
func (c *Console) ui(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	if name == "" || name == "index.html" {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:")
		http.ServeFileFS(w, r, assets, "index.html")
		return
	}
	if !strings.HasPrefix(name, "assets/") {
		httpapi.NotFound(w, r)
		return
	}
	if _, err := fs.Stat(assets, name); err != nil {
		httpapi.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeFileFS(w, r, assets, name)
}
