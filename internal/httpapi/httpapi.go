// Package httpapi is how Sluice's HTTP endpoints answer: JSON bodies, errors
// as JSON with a stable code and a message that says what to do, and 405s
// that name the methods allowed. The collector's API and the ops endpoints
// (/metrics, /healthz, /readyz, the status API) answer alike.
package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// Error is the body of every error answer.
type Error struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

// WriteJSON answers code with v as JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"error":"internal","message":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// WriteError answers code with an Error.
func WriteError(w http.ResponseWriter, code int, errCode, msg string) {
	WriteJSON(w, code, Error{Error: errCode, Message: msg})
}

// NotFound answers 404 not_found, pointing at the API docs.
func NotFound(w http.ResponseWriter, _ *http.Request) {
	WriteError(w, http.StatusNotFound, "not_found", "no such route; see /api/v1/docs/")
}

// Methods answers 405 method_not_allowed, with Allow, for methods h does not
// take.
func Methods(h http.Handler, allowed ...string) http.Handler {
	allow := strings.Join(allowed, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range allowed {
			if r.Method == m {
				h.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("Allow", allow)
		WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use "+allow)
	})
}
