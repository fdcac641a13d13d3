// Package replay turns files of real data into Sluice events: each row of a
// Parquet, CSV or NDJSON file (package source) becomes one event's payload,
// sent to the collector or straight to a Kafka topic.
package replay

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/retry"
	"github.com/sluicehq/sluice/internal/row"
	"github.com/sluicehq/sluice/internal/source"
)

// Config is one replay: every source is a producer of its own, run in
// parallel, sending its rows as events to the collector.
type Config struct {
	// Collector is the collector's base URL, such as http://127.0.0.1:8080.
	Collector string
	APIKey    string
	// EventType and SchemaVersion are every event's.
	EventType, SchemaVersion string
	// Batch is how many events a request carries: 1 uses the single-event
	// endpoint, more the batch endpoint (as NDJSON).
	Batch int
	// Concurrency is each producer's requests in flight. They keep the
	// file's order (ordered pipelining: each request is numbered, and the
	// collector hands a request's events to Kafka only after the one
	// before), unless Unordered.
	Concurrency int
	Unordered   bool
	// Rate caps each producer's events per second (0: as fast as
	// possible); Sleep waits after each row instead, as the seeds' producers
	// do.
	Rate  float64
	Sleep time.Duration
	// Max stops each producer after that many rows (0: all).
	Max int64
	// Retries is how many times a request is retried on connection
	// errors, 429 and 5xx, with exponential backoff from Backoff up to
	// MaxBackoff, jittered, and never sooner than a Retry-After.
	Retries             int
	Backoff, MaxBackoff time.Duration
	// FailedOut receives, as NDJSON, every event that was rejected or
	// never accepted, with the reason.
	FailedOut io.Writer
	Client    *http.Client
	Logger    *slog.Logger

	// Kafka, when set, receives the rows straight into Topic instead of
	// the collector, as the seeds' Kafka producer did: each row's value
	// is the row as JSON, or as a CSV line with KafkaFormat csv, keyed by
	// the row's KeyField when set.
	Kafka       *kgo.Client
	Topic       string
	KeyField    string
	KafkaFormat string

	// TimeWarp, when positive, replays at the pace of the rows' TimeField,
	// sped up that many times: a row an hour after the first is sent
	// 3600/TimeWarp seconds after it.
	TimeWarp  float64
	TimeField string
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Batch: 500, Concurrency: 4, Retries: 8, Backoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second,
		SchemaVersion: "1-0-0"}
}

// Stats counts one producer's events. Fields are read while it runs.
type Stats struct {
	Rows     atomic.Int64 // rows read
	Sent     atomic.Int64 // events sent at least once
	Accepted atomic.Int64
	Rejected atomic.Int64 // answered 4xx, by reason in Reasons
	Retried  atomic.Int64 // requests retried
	Failed   atomic.Int64 // never accepted after the retries
	Progress atomic.Pointer[source.Progress]

	mu        sync.Mutex
	reasons   map[string]int64
	latencies []time.Duration // of accepted requests, a bounded sample
}

func (s *Stats) reject(reason string, n int64) {
	s.Rejected.Add(n)
	s.mu.Lock()
	if s.reasons == nil {
		s.reasons = map[string]int64{}
	}
	s.reasons[reason] += n
	s.mu.Unlock()
}

const maxLatencySamples = 1 << 16

func (s *Stats) latency(d time.Duration) {
	s.mu.Lock()
	if len(s.latencies) < maxLatencySamples {
		s.latencies = append(s.latencies, d)
	} else {
		s.latencies[rand.IntN(maxLatencySamples)] = d
	}
	s.mu.Unlock()
}

// Reasons returns the rejections by reason.
func (s *Stats) Reasons() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.reasons))
	for k, v := range s.reasons {
		out[k] = v
	}
	return out
}

// Latency returns the p50 and p99 of request latencies.
func (s *Stats) Latency() (p50, p99 time.Duration) {
	s.mu.Lock()
	l := slices.Clone(s.latencies)
	s.mu.Unlock()
	if len(l) == 0 {
		return 0, 0
	}
	slices.Sort(l)
	return l[len(l)/2], l[min(len(l)-1, len(l)*99/100)]
}

// Run replays each source on a producer of its own, filling stats[i] for
// sources[i], and returns when all are done. Rows that cannot be read stop
// their producer with an error; events that are rejected or never accepted
// are counted and written to FailedOut, not errors.
func Run(ctx context.Context, cfg Config, sources []*source.Source, stats []*Stats) error {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Batch, cfg.Concurrency = max(cfg.Batch, 1), max(cfg.Concurrency, 1)
	switch {
	case cfg.Kafka == nil && cfg.EventType == "":
		return errors.New("replay: an event type is required")
	case cfg.Kafka != nil && cfg.Topic == "":
		return errors.New("replay: a topic is required")
	case cfg.TimeWarp > 0 && cfg.TimeField == "":
		return errors.New("replay: time warp needs the time field to pace by")
	}
	f := &failures{w: cfg.FailedOut}
	g, ctx := errgroup.WithContext(ctx)
	for i, src := range sources {
		p := &producer{cfg: cfg, src: src, stats: stats[i], failed: f}
		src.BadRow = func(line int64, raw string, err error) {
			// Counted and kept, not sent: the collector would refuse it.
			p.stats.Rows.Add(1)
			p.stats.reject("unreadable_row", 1)
			f.writeRow(raw, err.Error())
		}
		g.Go(func() error {
			if err := p.run(ctx); err != nil {
				return fmt.Errorf("%s: %w", src.Location, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return f.err
}

type producer struct {
	cfg    Config
	stream string // the requests' stream, for ordered pipelining
	src    *source.Source
	stats  *Stats
	failed *failures
	first  time.Time // the first row's time, for TimeWarp
}

// rowTime reads a row's time field: a time string, or epoch seconds or
// milliseconds.
func rowTime(value []byte, field string) (time.Time, bool) {
	top, _, err := event.ObjectMembers(value, "", nil, nil)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range top {
		if !m.Is(field) {
			continue
		}
		if m.Value[0] == '"' {
			return row.ParseTime(event.Unquote(m.Value))
		}
		f, err := strconv.ParseFloat(string(m.Value), 64)
		if err != nil {
			return time.Time{}, false
		}
		if f > 1e11 { // milliseconds
			return time.UnixMilli(int64(f)).UTC(), true
		}
		return time.Unix(int64(f), 0).UTC(), true
	}
	return time.Time{}, false
}

// runKafka publishes the rows to a topic, paced and counted as for the
// collector.
func (p *producer) runKafka(ctx context.Context) error {
	start := time.Now()
	errStop := errors.New("max rows reached")
	var inflight sync.WaitGroup
	err := p.src.Rows(ctx, func(pr source.Progress) { p.stats.Progress.Store(&pr) }, func(n int64, row []byte) error {
		if p.cfg.Max > 0 && n > p.cfg.Max {
			return errStop
		}
		p.stats.Rows.Add(1)
		rec := &kgo.Record{Topic: p.cfg.Topic}
		var err error
		if rec.Key, rec.Value, err = kafkaRecord(row, p.cfg.KeyField, p.cfg.KafkaFormat); err != nil {
			return fmt.Errorf("row %d: %w", n, err)
		}
		p.stats.Sent.Add(1)
		began := time.Now()
		inflight.Add(1)
		p.cfg.Kafka.Produce(ctx, rec, func(r *kgo.Record, err error) {
			defer inflight.Done()
			if err != nil {
				p.fail([][]byte{r.Value}, "produce_failed", err.Error())
				return
			}
			p.stats.Accepted.Add(1)
			p.stats.latency(time.Since(began))
		})
		return p.pace(ctx, start, n, row)
	})
	inflight.Wait()
	if errors.Is(err, errStop) {
		err = nil
	}
	return err
}

// kafkaRecord makes a row a record's key and value.
func kafkaRecord(row []byte, keyField, format string) (key, value []byte, err error) {
	if keyField == "" && format != "csv" {
		return nil, bytes.Clone(row), nil
	}
	top, _, err := event.ObjectMembers(row, "", nil, nil)
	if err != nil {
		return nil, nil, err
	}
	text := func(v []byte) string {
		switch v[0] {
		case '"':
			return event.Unquote(v)
		case 'n':
			return ""
		}
		return string(v)
	}
	var fields []string
	for _, m := range top {
		if keyField != "" && key == nil && m.Is(keyField) {
			key = []byte(text(m.Value))
		}
		fields = append(fields, text(m.Value))
	}
	if keyField != "" && key == nil {
		return nil, nil, fmt.Errorf("no key field %q", keyField)
	}
	if format != "csv" {
		return key, bytes.Clone(row), nil
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(fields) //nolint:errcheck // a bytes.Buffer does not fail
	w.Flush()
	return key, bytes.TrimRight(b.Bytes(), "\n"), nil
}

func (p *producer) run(ctx context.Context) error {
	if p.cfg.Kafka != nil {
		return p.runKafka(ctx)
	}
	// The producer's requests are one stream, numbered in file order; the
	// first goes alone, so that the collector knows the stream before the
	// rest overlap.
	if !p.cfg.Unordered && p.cfg.Concurrency > 1 {
		p.stream = newStreamID()
	}
	reqs := make(chan request, p.cfg.Concurrency)
	var senders sync.WaitGroup
	started := false
	startSenders := func() {
		started = true
		for range p.cfg.Concurrency {
			senders.Go(func() {
				for r := range reqs {
					p.send(ctx, r)
				}
			})
		}
	}
	seq := uint64(0)
	next := func(events [][]byte) request {
		seq++
		return request{events: events, seq: seq}
	}
	prefix := event.AppendString(nil, p.cfg.EventType)
	head := fmt.Appendf(nil, `{"event_type":%s,"schema_version":%s,"event_id":`, prefix, event.AppendString(nil, p.cfg.SchemaVersion))
	var batch [][]byte
	start := time.Now()
	errStop := errors.New("max rows reached")
	err := p.src.Rows(ctx, func(pr source.Progress) { p.stats.Progress.Store(&pr) }, func(n int64, row []byte) error {
		if p.cfg.Max > 0 && n > p.cfg.Max {
			return errStop
		}
		p.stats.Rows.Add(1)
		ev := append(bytes.Clone(head), event.AppendString(nil, p.src.Name+":"+strconv.FormatInt(n, 10))...)
		ev = append(append(append(ev, `,"payload":`...), row...), '}')
		batch = append(batch, ev)
		if len(batch) == p.cfg.Batch {
			if !started {
				p.send(ctx, next(batch))
				startSenders()
				batch = nil
				return p.pace(ctx, start, n, row)
			}
			select {
			case reqs <- next(batch):
			case <-ctx.Done():
				return ctx.Err()
			}
			batch = nil
		}
		return p.pace(ctx, start, n, row)
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	if !started {
		startSenders()
	}
	if len(batch) > 0 && ctx.Err() == nil {
		reqs <- next(batch) // rows read before an error are still sent
	}
	close(reqs)
	senders.Wait()
	return err
}

// request is one request's events and its number in the producer's
// stream.
type request struct {
	events [][]byte
	seq    uint64
}

// newStreamID names a producer's stream of requests.
func newStreamID() string {
	b := make([]byte, 8)
	crand.Read(b)
	return "replay-" + hex.EncodeToString(b)
}

// pace waits as Rate, Sleep or TimeWarp ask after row n.
func (p *producer) pace(ctx context.Context, start time.Time, n int64, row []byte) error {
	var wait time.Duration
	switch {
	case p.cfg.TimeWarp > 0:
		t, ok := rowTime(row, p.cfg.TimeField)
		if !ok {
			return nil // a row without a time is sent at once
		}
		if p.first.IsZero() {
			p.first = t
		}
		// Rows earlier than the first (stray records) go at once.
		wait = time.Until(start.Add(time.Duration(float64(t.Sub(p.first)) / p.cfg.TimeWarp)))
	case p.cfg.Sleep > 0:
		wait = p.cfg.Sleep
	case p.cfg.Rate > 0:
		wait = time.Until(start.Add(time.Duration(float64(n) / p.cfg.Rate * float64(time.Second))))
	}
	if wait <= 0 {
		return nil
	}
	return retry.Sleep(ctx, wait)
}

// send delivers one request's events, retrying what may succeed later.
func (p *producer) send(ctx context.Context, r request) {
	events := r.events
	p.stats.Sent.Add(int64(len(events)))
	url, ct := strings.TrimSuffix(p.cfg.Collector, "/")+"/api/v1/collect", "application/json"
	body := events[0]
	if p.cfg.Batch > 1 {
		url, ct = url+"/batch", "application/x-ndjson"
		body = bytes.Join(events, []byte("\n"))
	}
	backoff := retry.Backoff{Min: p.cfg.Backoff, Max: p.cfg.MaxBackoff}
	var lastErr string
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			p.stats.Retried.Add(1)
		}
		began := time.Now()
		res, retryAfter, err := p.post(ctx, url, ct, body, r.seq)
		switch {
		case ctx.Err() != nil:
			p.fail(events, "canceled", "the replay was stopped before the collector answered")
			return
		case err != nil:
			lastErr = err.Error()
		case res.status == http.StatusOK || res.status == http.StatusAccepted:
			p.stats.latency(time.Since(began))
			p.accepted(events, res)
			return
		case res.status == http.StatusTooManyRequests || res.status >= 500:
			lastErr = fmt.Sprintf("%d %s: %s", res.status, res.Error, res.Message)
		default: // 4xx: the same request would fail again
			p.stats.reject(res.Error, int64(len(events)))
			p.failed.write(events, res.Error, res.Message)
			return
		}
		if attempt >= p.cfg.Retries {
			p.fail(events, "gave_up", fmt.Sprintf("no success after %d attempts; last: %s", attempt+1, lastErr))
			return
		}
		// Never sooner than the collector asked; a stop is seen at the
		// top of the loop.
		_ = backoff.Wait(ctx, retryAfter)
	}
}

func (p *producer) fail(events [][]byte, reason, msg string) {
	p.stats.Failed.Add(int64(len(events)))
	p.failed.write(events, reason, msg)
}

// accepted counts a 2xx answer: for a batch, the events it lists as
// rejected are rejected, the rest accepted.
func (p *producer) accepted(events [][]byte, res answer) {
	if p.cfg.Batch == 1 || len(res.Errors) == 0 {
		p.stats.Accepted.Add(int64(len(events)))
		return
	}
	bad := make(map[int]bool, len(res.Errors))
	for _, e := range res.Errors {
		if e.Index >= 0 && e.Index < len(events) && !bad[e.Index] {
			bad[e.Index] = true
			p.stats.reject(e.Reason, 1)
			p.failed.write(events[e.Index:e.Index+1], e.Reason, e.Message)
		}
	}
	p.stats.Accepted.Add(int64(len(events) - len(bad)))
}

// answer is the collector's JSON answer, success or error.
type answer struct {
	status  int
	Error   string `json:"error"`
	Message string `json:"message"`
	Errors  []struct {
		Index   int    `json:"index"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"errors"`
}

func (p *producer) post(ctx context.Context, url, ct string, body []byte, seq uint64) (answer, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return answer{}, 0, err
	}
	req.Header.Set("Content-Type", ct)
	if p.stream != "" {
		req.Header.Set("Sluice-Stream", p.stream)
		req.Header.Set("Sluice-Sequence", strconv.FormatUint(seq, 10))
	}
	if p.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.APIKey)
	}
	resp, err := p.cfg.Client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return answer{}, 0, fmt.Errorf("connection: %w", err)
		}
		return answer{}, 0, err
	}
	defer resp.Body.Close()
	res := answer{status: resp.StatusCode}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return answer{}, 0, fmt.Errorf("read answer: %w", err)
	}
	if len(b) > 0 && json.Unmarshal(b, &res) != nil && resp.StatusCode < 500 {
		res.Error, res.Message = "unreadable_answer", strings.TrimSpace(string(b))
	}
	res.status = resp.StatusCode
	if res.Error == "" && resp.StatusCode >= 400 {
		res.Error = strings.ReplaceAll(strings.ToLower(http.StatusText(resp.StatusCode)), " ", "_")
	}
	var retryAfter time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		retryAfter = time.Duration(s) * time.Second
	}
	return res, retryAfter, nil
}

// failures writes failed events as NDJSON, one writer for every producer.
type failures struct {
	mu  sync.Mutex
	w   io.Writer
	err error // the first write error: failed events must not vanish quietly
}

// writeRow keeps a row that could not be read, as text.
func (f *failures) writeRow(raw, msg string) {
	if f.w == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	line := fmt.Appendf(nil, `{"reason":"unreadable_row","message":%s,"row":%s}`+"\n", event.AppendString(nil, msg), event.AppendString(nil, raw))
	if _, err := f.w.Write(line); err != nil && f.err == nil {
		f.err = fmt.Errorf("write failed events: %w", err)
	}
}

func (f *failures) write(events [][]byte, reason, msg string) {
	if f.w == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range events {
		line := fmt.Appendf(nil, `{"reason":%s,"message":%s,"event":%s}`+"\n",
			event.AppendString(nil, reason), event.AppendString(nil, msg), ev)
		if _, err := f.w.Write(line); err != nil && f.err == nil {
			f.err = fmt.Errorf("write failed events: %w", err)
		}
	}
}
