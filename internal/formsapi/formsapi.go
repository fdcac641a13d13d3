// Package formsapi serves form definitions at GET /forms/{id}, as the
// internal API behind the seed's form enrichment job did, for tests, demos
// and benchmarks. Latency and failures can be injected.
package formsapi

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"path"
	"strings"
	"sync/atomic"
	"time"
)

// Config says what to serve and how badly.
type Config struct {
	// Forms holds Typeform-style form definitions (*.json), served by
	// their "id".
	Forms fs.FS
	// Latency delays every answer, give or take Jitter.
	Latency, Jitter time.Duration
	// FailRate is the share of requests answered with Status instead.
	FailRate float64
	Status   int
}

// Server is the forms API.
type Server struct {
	cfg   Config
	forms map[string][]byte
	// Requests counts the requests served.
	Requests atomic.Int64
}

// New loads the forms.
func New(cfg Config) (*Server, error) {
	if cfg.FailRate < 0 || cfg.FailRate > 1 {
		return nil, fmt.Errorf("fail rate %v: want 0 to 1", cfg.FailRate)
	}
	if cfg.Status == 0 {
		cfg.Status = http.StatusServiceUnavailable
	}
	s := &Server{cfg: cfg, forms: map[string][]byte{}}
	err := fs.WalkDir(cfg.Forms, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".json" {
			return err
		}
		b, err := fs.ReadFile(cfg.Forms, p)
		if err != nil {
			return err
		}
		var form struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(b, &form); err != nil || form.ID == "" {
			return fmt.Errorf("form %s: want a JSON object with an id (%v)", p, err)
		}
		s.forms[form.ID] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load forms: %w", err)
	}
	if len(s.forms) == 0 {
		return nil, fmt.Errorf("no forms (*.json) to serve")
	}
	return s, nil
}

// IDs lists the forms served.
func (s *Server) IDs() []string {
	ids := make([]string, 0, len(s.forms))
	for id := range s.forms {
		ids = append(ids, id)
	}
	return ids
}

// Form returns a form's definition.
func (s *Server) Form(id string) ([]byte, bool) {
	b, ok := s.forms[id]
	return b, ok
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.Requests.Add(1)
	id, ok := strings.CutPrefix(r.URL.Path, "/forms/")
	if !ok || r.Method != http.MethodGet || id == "" || strings.Contains(id, "/") {
		http.Error(w, `{"error":"not_found","message":"GET /forms/{id}"}`, http.StatusNotFound)
		return
	}
	if d := s.cfg.Latency + time.Duration((rand.Float64()*2-1)*float64(s.cfg.Jitter)); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if s.cfg.FailRate > 0 && rand.Float64() < s.cfg.FailRate {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.cfg.Status)
		fmt.Fprintf(w, `{"error":"injected","message":"failure injected at rate %v"}`+"\n", s.cfg.FailRate)
		return
	}
	form, ok := s.forms[id]
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": "not_found", "message": "no form " + id})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(form)
}
