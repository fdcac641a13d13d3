package collector

import (
	_ "embed"
	"net/http"
)

// openAPI documents every route the collector serves; a test keeps the two
// in step.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
