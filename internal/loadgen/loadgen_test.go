package loadgen

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestRunCountsEventsAndFailures(t *testing.T) {
	ok := httptest.NewServer(Noop())
	defer ok.Close()
	res, err := Run(t.Context(), Config{
		URL: ok.URL, ContentType: "application/json", Bodies: [][]byte{[]byte(`{}`)},
		EventsPerBody: 3, Connections: 4, Duration: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Events != 3*res.Requests || len(res.Failures) != 0 || res.P50 <= 0 || res.P99 < res.P50 {
		t.Errorf("against a no-op handler: %+v", res)
	}

	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	res, err = Run(t.Context(), Config{
		URL: busy.URL, ContentType: "application/json", Bodies: [][]byte{[]byte(`{}`)},
		Connections: 2, Duration: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Failures[503] == 0 {
		t.Errorf("against a 503 handler: %+v, want only failures", res)
	}
}
