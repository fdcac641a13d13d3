package formsapi

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/sample"
)

func TestServesBundledForms(t *testing.T) {
	forms, _ := fs.Sub(sample.FS(), "forms")
	s, err := New(Config{Forms: forms, Latency: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	if len(s.IDs()) != 5 {
		t.Fatalf("ids %v, want the 5 bundled forms", s.IDs())
	}
	for _, id := range s.IDs() {
		start := time.Now()
		resp, err := http.Get(srv.URL + "/forms/" + id)
		if err != nil {
			t.Fatal(err)
		}
		var form struct {
			ID     string `json:"id"`
			Fields []any  `json:"fields"`
		}
		json.NewDecoder(resp.Body).Decode(&form)
		resp.Body.Close()
		if resp.StatusCode != 200 || form.ID != id || len(form.Fields) == 0 {
			t.Errorf("GET %s: %d, id %q", id, resp.StatusCode, form.ID)
		}
		if time.Since(start) < 20*time.Millisecond {
			t.Errorf("GET %s answered before the latency", id)
		}
	}
	resp, _ := http.Get(srv.URL + "/forms/nope")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !json.Valid(b) {
		t.Errorf("unknown form: %d %s", resp.StatusCode, b)
	}
}

func TestInjectedFailures(t *testing.T) {
	forms, _ := fs.Sub(sample.FS(), "forms")
	s, err := New(Config{Forms: forms, FailRate: 1, Status: 429})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/forms/" + s.IDs()[0])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 {
		t.Errorf("status %d, want the injected 429", resp.StatusCode)
	}
	if _, err := New(Config{Forms: forms, FailRate: 2}); err == nil {
		t.Error("a fail rate of 2 was accepted")
	}
}
