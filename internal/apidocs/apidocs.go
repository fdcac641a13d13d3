// Package apidocs serves interactive API documentation (Swagger UI) for an
// OpenAPI document. The UI's files are embedded in the binary, so the docs
// work on machines with no route to a CDN.
//
// The assets come from the npm package swagger-ui-dist, at the version in
// assets/VERSION; `make swagger-ui` refreshes them.
package apidocs

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed assets
var assets embed.FS

var page = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<link rel="icon" type="image/png" href="{{.Prefix}}favicon-32x32.png">
<link rel="stylesheet" href="{{.Prefix}}swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{{.Prefix}}swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({
  url: {{.SpecURL}},
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: true,
});
</script>
</body>
</html>
`))

// Handler serves the docs page at prefix and its assets below it, for the
// OpenAPI document at specURL. prefix ends with a slash, such as
// "/api/v1/docs/".
func Handler(prefix, specURL, title string) http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		// The embedded tree is fixed at build time; Sub cannot fail on it.
		panic(err)
	}
	files := http.StripPrefix(prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == strings.TrimSuffix(prefix, "/") || r.URL.Path == prefix || r.URL.Path == prefix+"index.html" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = page.Execute(w, struct{ Title, Prefix, SpecURL string }{title, prefix, specURL})
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	})
}
