package search

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/searchtest"
	"github.com/sluicehq/sluice/internal/sink"
)

// ndjsonLines decodes each line of an NDJSON body.
func ndjsonLines(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	if len(body) == 0 || body[len(body)-1] != '\n' {
		t.Fatalf("a _bulk body ends with a newline: %q", body)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// Elasticsearch cannot be fetched on the test machines: the sink's
// requests are checked against its bulk API reference (testdata/
// elasticsearch), sent to a server that answers as the reference does.
func TestElasticsearchFormat(t *testing.T) {
	doc, err := os.ReadFile("testdata/elasticsearch/bulk-request.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	documented := ndjsonLines(t, doc)
	for _, tc := range []struct {
		name   string
		cfg    func(*Config)
		action map[string]any // the documented action line it must equal
		source map[string]any
	}{
		{"index", func(c *Config) {}, documented[0], documented[1]},
		{"create", func(c *Config) { c.DataStreams = true }, documented[3], nil},
		{"external version", func(c *Config) { c.Versioning = "external" }, map[string]any{"index": map[string]any{
			// The index API's ?version=N&version_type=external, as action
			// metadata, as the reference gives it.
			"_index": "test", "_id": "1", "version": 7.0, "version_type": "external",
		}}, documented[1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got struct {
				sync.Mutex
				method, path, contentType string
				body                      []byte
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				got.Lock()
				defer got.Unlock()
				if r.URL.Path == "/_bulk" {
					got.method, got.path, got.contentType, got.body = r.Method, r.URL.Path, r.Header.Get("Content-Type"), body
					w.Write([]byte(`{"errors":false,"items":[{"index":{"status":201}}]}`))
					return
				}
				w.Write([]byte(`{"acknowledged":true}`))
			}))
			defer srv.Close()
			cfg := DefaultConfig()
			cfg.URLs, cfg.Index = []string{srv.URL}, "test"
			tc.cfg(&cfg)
			s := newSearch(t, cfg, nil)
			buf := s.NewBuffer("events", 0)
			value := `{ "field1" : "value1" }`
			if _, err := buf.Add(&kgo.Record{Topic: "events", Offset: 7, Value: []byte(value), Timestamp: time.Unix(0, 0),
				Headers: []kgo.RecordHeader{{Key: event.HeaderRootID, Value: []byte("1")}}}); err != nil {
				t.Fatal(err)
			}
			if err := s.Write(t.Context(), &sink.Range{Topic: "events", Last: 7, Buffer: buf}); err != nil {
				t.Fatal(err)
			}
			got.Lock()
			defer got.Unlock()
			if got.method != http.MethodPost || got.path != "/_bulk" || got.contentType != "application/x-ndjson" {
				t.Errorf("request %s %s (Content-Type %s), want POST /_bulk with application/x-ndjson", got.method, got.path, got.contentType)
			}
			lines := ndjsonLines(t, got.body)
			if len(lines) != 2 {
				t.Fatalf("%d lines, want an action and a source", len(lines))
			}
			want := tc.action
			if tc.name == "create" {
				// The documented create, of this document's id.
				want = map[string]any{"create": map[string]any{"_index": "test", "_id": "3"}}
				if d := cmp.Diff(documented[3], want); d != "" {
					t.Fatalf("the documented create changed:\n%s", d)
				}
				want["create"].(map[string]any)["_id"] = "1"
			}
			if d := cmp.Diff(want, lines[0]); d != "" {
				t.Errorf("action line (-documented +sent):\n%s", d)
			}
			wantSource := tc.source
			if wantSource == nil {
				wantSource = map[string]any{"field1": "value1", "@timestamp": "1970-01-01T00:00:00.000000Z"}
			}
			if d := cmp.Diff(wantSource, lines[1]); d != "" {
				t.Errorf("source line (-documented +sent):\n%s", d)
			}
		})
	}
}

// The documented answers, read document by document.
func TestElasticsearchAnswers(t *testing.T) {
	for _, tc := range []struct {
		file         string
		conflictDone bool
		want         []uint8
	}{
		// Updates of missing documents: 404, which the sink takes as a
		// fault of the server's settings (an index it may not create).
		{"bulk-errors.json", false, []uint8{pending, pending, indexed}},
		{"bulk-rejected.json", false, []uint8{pending, rejected, rejected}},
		{"bulk-rejected.json", true, []uint8{pending, rejected, indexed}},
	} {
		answer, err := os.ReadFile(filepath.Join("testdata", "elasticsearch", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		items, err := readItems(answer, len(tc.want))
		if err != nil {
			t.Fatal(err)
		}
		var got []uint8
		for _, item := range items {
			got = append(got, outcome(item, tc.conflictDone))
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (409 done: %v): outcomes (-want +got):\n%s", tc.file, tc.conflictDone, d)
		}
		if _, err := readItems(answer, len(tc.want)+1); err == nil {
			t.Errorf("%s: an answer with fewer items than documents was taken", tc.file)
		}
	}
	// Elasticsearch 8's mapping failure names its field as OpenSearch's
	// does: the dead letter's path.
	answer, _ := os.ReadFile("testdata/elasticsearch/bulk-rejected.json")
	items, _ := readItems(answer, 3)
	if m := fieldPath.FindStringSubmatch(items[1].Error.String()); m == nil || m[1] != "my_number" {
		t.Errorf("field of %q = %v, want my_number", items[1].Error, m)
	}
}

// Over TLS, with a CA file and basic authentication, through a proxy that
// checks the credentials, to the real node: the sink indexes, and its
// secrets appear neither in its logs nor in its status.
func TestTLSAndAuth(t *testing.T) {
	srv := searchtest.Shared(t)
	prefix := searchtest.Prefix(t)
	var authorized, refused int
	var mu sync.Mutex
	proxy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		mu.Lock()
		apiKey := r.Header.Get("Authorization") == "ApiKey a2V5LWlkOmtleQ=="
		if !apiKey && (!ok || user != "sluice" || pass != "s3cret-pa55") {
			refused++
			mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"type":"security_exception","reason":"missing authentication credentials"},"status":401}`))
			return
		}
		authorized++
		mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		relay(w, r, srv.URL, body, nil)
	}))
	defer proxy.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	cert := proxy.TLS.Certificates[0].Certificate[0]
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(proxy.URL, prefix)
	cfg.CAFile, cfg.Username, cfg.Password, cfg.Gzip = caFile, "sluice", "s3cret-pa55", true
	p := newPipe(t)
	p.start(cfg, nil)
	p.produce(300, func(i int) string { return fmt.Sprintf(`{"n":%d,"note":%q}`, i, strings.Repeat("x", i)) })
	p.waitCaughtUp(30 * time.Second)
	p.checkOnce(node{t: t, url: srv.URL}, prefix+"trip-*", nil)
	if authorized == 0 {
		t.Error("no request went through the proxy")
	}
	status, _ := json.Marshal(p.search.Details())
	if bytes.Contains(status, []byte("s3cret")) || strings.Contains(p.logs.String(), "s3cret") {
		t.Errorf("the password is shown: %s", status)
	}

	// An API key instead.
	keyed := testConfig(proxy.URL, prefix+"key-")
	keyed.CAFile, keyed.APIKey = caFile, "a2V5LWlkOmtleQ=="
	s := newSearch(t, keyed, nil)
	buf := s.NewBuffer("events", 0)
	buf.Add(&kgo.Record{Value: []byte(`{"event_type":"trip","payload":{},"root_id":"keyed"}`)})
	if err := s.Write(t.Context(), &sink.Range{Topic: "events", Buffer: buf}); err != nil {
		t.Errorf("Write with an API key: %v", err)
	}

	// Wrong credentials: the sink says so, and indexes nothing.
	bad := testConfig(proxy.URL, prefix)
	bad.CAFile, bad.Username, bad.Password = caFile, "sluice", "wrong"
	s = newSearch(t, bad, nil)
	buf = s.NewBuffer("events", 0)
	buf.Add(&kgo.Record{Value: []byte(`{"event_type":"trip","payload":{}}`)})
	err := s.Write(t.Context(), &sink.Range{Topic: "events", Buffer: buf})
	if err == nil || !strings.Contains(err.Error(), "credentials") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("Write with a wrong password = %v, want an error about the credentials that does not show them", err)
	}

	// Without the CA, the certificate is not trusted.
	untrusted := testConfig(proxy.URL, prefix)
	s = newSearch(t, untrusted, nil)
	buf = s.NewBuffer("events", 0)
	buf.Add(&kgo.Record{Value: []byte(`{"event_type":"trip","payload":{}}`)})
	if err := s.Write(t.Context(), &sink.Range{Topic: "events", Buffer: buf}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Write without the CA = %v, want a certificate error", err)
	}
}
