package search

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/config"
)

// client speaks the REST API that OpenSearch and Elasticsearch share,
// going round its servers.
type client struct {
	urls    []string
	http    *http.Client
	auth    string // the Authorization header, or empty
	gzip    bool
	timeout time.Duration
	metrics *metrics
	next    atomic.Uint32
	bodies  sync.Pool // *bytes.Buffer for gzip
}

func newClient(cfg Config, m *metrics) (*client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.InFlight + 2
	if cfg.CAFile != "" || cfg.InsecureSkipVerify {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // the user's explicit choice, for test clusters
		if cfg.CAFile != "" {
			pool, err := config.CAPool(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("search: %w", err)
			}
			tc.RootCAs = pool
		}
		tr.TLSClientConfig = tc
	}
	c := &client{http: &http.Client{Transport: tr}, gzip: cfg.Gzip, timeout: cfg.Timeout, metrics: m}
	for _, u := range cfg.URLs {
		c.urls = append(c.urls, strings.TrimRight(u, "/"))
	}
	switch {
	case cfg.APIKey != "":
		c.auth = "ApiKey " + cfg.APIKey
	case cfg.Username != "":
		c.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Username+":"+cfg.Password))
	}
	return c, nil
}

// statusError is an answer of the server that is not a success, with what
// it said.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("status %d", e.status)
	}
	return fmt.Sprintf("status %d: %s", e.status, e.body)
}

// reason is the server's error type and reason, from an error answer's
// body, or the body itself.
func reason(body []byte) string {
	var e struct {
		Error struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Type != "" {
		return e.Error.Type + ": " + e.Error.Reason
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return strings.TrimSpace(string(body))
}

// do sends one request to the next server and returns its status and
// body. An error is the request's own failure (a server down, a timeout),
// after which the next request goes to the next server.
func (c *client) do(ctx context.Context, method, path string, body []byte, contentType string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	i := c.next.Load()
	base := c.urls[int(i)%len(c.urls)]
	var rd io.Reader
	encoding := ""
	if body != nil {
		rd = bytes.NewReader(body)
		if c.gzip && len(body) > 1024 {
			buf, _ := c.bodies.Get().(*bytes.Buffer)
			if buf == nil {
				buf = new(bytes.Buffer)
			}
			buf.Reset()
			defer c.bodies.Put(buf)
			zw, _ := gzip.NewWriterLevel(buf, gzip.BestSpeed)
			zw.Write(body)
			zw.Close()
			rd, encoding = bytes.NewReader(buf.Bytes()), "gzip"
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	req.Header.Set("Accept", "application/json")
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.next.CompareAndSwap(i, i+1)
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, nil, fmt.Errorf("%w (is the search server up at %s? urls, or --search-urls, say where)", err, redacted(base))
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.next.CompareAndSwap(i, i+1)
		return 0, nil, fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return 0, nil, fmt.Errorf("%w (%s)", errAuth, reason(b))
	}
	return resp.StatusCode, b, nil
}

// bulkPath asks for the least of each item's answer that says its outcome.
const bulkPath = "/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason," +
	"items.*.error.caused_by.type,items.*.error.caused_by.reason"

// bulk sends a _bulk body.
func (c *client) bulk(ctx context.Context, body []byte) (int, []byte, error) {
	start := time.Now()
	status, b, err := c.do(ctx, http.MethodPost, bulkPath, body, "application/x-ndjson")
	c.metrics.bulkSeconds.Observe(time.Since(start).Seconds())
	label := strconv.Itoa(status)
	if err != nil {
		label = "error"
	}
	c.metrics.bulkRequests.WithLabelValues(label).Inc()
	return status, b, err
}

// offsetDoc is a partition's record in the offsets index.
type offsetDoc struct {
	Group     string    `json:"group"`
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	UpdatedAt time.Time `json:"updated_at"`
}

// getOffset reads a partition's record from the offsets index.
func (c *client) getOffset(ctx context.Context, index, id string) (offset int64, found bool, err error) {
	status, body, err := c.do(ctx, http.MethodGet, "/"+index+"/_doc/"+url.PathEscape(id), nil, "")
	switch {
	case err != nil:
		return 0, false, err
	case status == http.StatusNotFound:
		return 0, false, nil // no such document, or no offsets index yet
	case status != http.StatusOK:
		return 0, false, &statusError{status, reason(body)}
	}
	var got struct {
		Found  bool      `json:"found"`
		Source offsetDoc `json:"_source"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return 0, false, fmt.Errorf("offset document %s: %w", id, err)
	}
	return got.Source.Offset, got.Found, nil
}

// putOffset records a partition's offset, versioned by it: the server
// refuses an older one (409), which means a later one is there.
func (c *client) putOffset(ctx context.Context, index, id string, doc offsetDoc) error {
	body, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	path := "/" + index + "/_doc/" + url.PathEscape(id) + "?version_type=external&version=" + strconv.FormatInt(doc.Offset+1, 10)
	status, answer, err := c.do(ctx, http.MethodPut, path, body, "application/json")
	switch {
	case err != nil:
		return err
	case status == http.StatusOK, status == http.StatusCreated, status == http.StatusConflict:
		return nil
	}
	return &statusError{status, reason(answer)}
}

// createIndex makes the offsets index, one shard with a replica where the
// cluster has room, unless it exists.
func (c *client) createIndex(ctx context.Context, index string) error {
	body := []byte(`{"settings":{"index":{"number_of_shards":1,"auto_expand_replicas":"0-1"}},` +
		`"mappings":{"properties":{"group":{"type":"keyword"},"topic":{"type":"keyword"},"partition":{"type":"integer"},` +
		`"offset":{"type":"long"},"updated_at":{"type":"date"}}}}`)
	status, answer, err := c.do(ctx, http.MethodPut, "/"+index, body, "application/json")
	switch {
	case err != nil:
		return err
	case status == http.StatusOK:
		return nil
	case status == http.StatusBadRequest && bytes.Contains(answer, []byte("resource_already_exists_exception")):
		return nil
	case status == http.StatusForbidden:
		// A user who may write but not create indices: fine if it exists.
		if head, _, err := c.do(ctx, http.MethodHead, "/"+index, nil, ""); err == nil && head == http.StatusOK {
			return nil
		}
	}
	return &statusError{status, reason(answer)}
}

// putTemplate creates or replaces a composable index template.
func (c *client) putTemplate(ctx context.Context, name string, body []byte) error {
	status, answer, err := c.do(ctx, http.MethodPut, "/_index_template/"+url.PathEscape(name), body, "application/json")
	switch {
	case err != nil:
		return err
	case status == http.StatusOK:
		return nil
	}
	return &statusError{status, reason(answer)}
}

// errAuth is an answer that says the sink's credentials are wrong.
var errAuth = errors.New("the server refused the sink's credentials: check username and password, or api_key")
