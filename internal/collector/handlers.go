package collector

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/httpapi"
	"github.com/sluicehq/sluice/internal/schema"
)

// Request-level error codes. Event-level rejections use the event package's
// reasons instead, and are dead-lettered; these are not, because no event
// could be read from the request.
const (
	errBodyTooLarge        = "body_too_large"
	errTooManyEvents       = "too_many_events"
	errUnsupportedMedia    = "unsupported_media_type"
	errUnsupportedEncoding = "unsupported_encoding"
	errInvalidEncoding     = "invalid_encoding"
	errUnauthorized        = "unauthorized"
	errBrokerUnavailable   = "broker_unavailable"
	errEventTooLarge       = "event_too_large"
)

// produceFaultExpiry is how long a collector stays unready after Kafka last
// failed a write: with no traffic (a load balancer that stopped sending it
// any), no write would show it works again.
const produceFaultExpiry = 5 * time.Second

// jsonContentType is the Content-Type of an accepted event's answer, set
// without Header.Set's copy: net/http copies header values before it
// writes them, and nothing changes this one.
var jsonContentType = []string{"application/json"}

// retryAfter is what a 503 tells clients to wait, in seconds.
const retryAfter = "1"

type errorBody struct {
	Error   string             `json:"error"`
	Message string             `json:"message,omitempty"`
	Details []event.FieldError `json:"details,omitempty"`
	RootID  string             `json:"root_id,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) { httpapi.WriteJSON(w, code, v) }

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	httpapi.WriteError(w, code, errCode, msg)
}

func (c *Collector) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away; there is nobody to answer
	}
	// While the broker is down every request fails: the fault is logged
	// once a period, and the collector is not ready until a write succeeds.
	c.FaultFor("produce", fmt.Errorf("kafka did not acknowledge; answering 503: %w", err), produceFaultExpiry)
	w.Header().Set("Retry-After", retryAfter)
	writeError(w, http.StatusServiceUnavailable, errBrokerUnavailable,
		"the event store did not acknowledge the write in time; nothing in this request is confirmed stored; retry after the Retry-After delay")
}

// collect handles POST /api/v1/collect: one envelope.
func (c *Collector) collect(w http.ResponseWriter, r *http.Request) {
	t := c.seq.turnOf(r)
	defer t.done() // whatever the answer, the next request of its stream may go
	if !jsonMedia(r.Header.Get("Content-Type")) {
		c.metrics.requestRejected(errUnsupportedMedia)
		writeError(w, http.StatusUnsupportedMediaType, errUnsupportedMedia, "send Content-Type: application/json")
		return
	}
	b, ok := c.readBody(w, r, int64(c.cfg.MaxBodyBytes))
	if !ok {
		return
	}
	defer b.release()
	body := b.Bytes()

	now := c.now()
	env, nonFinite, inv := c.parse(body)
	if inv == nil {
		inv = c.checkSchema(env)
	}
	if inv != nil {
		c.reject(w, r, t, inv, body, now, "the event")
		return
	}
	rb := c.newRecordBuilder(1, len(body), now)
	defer rb.release()
	err := rb.raw(env)
	if err == nil {
		err = c.produce(r.Context(), t, rb)
	}
	if err != nil {
		if isTooLarge(err) {
			writeError(w, http.StatusRequestEntityTooLarge, errEventTooLarge, "the stamped event is larger than the broker accepts: "+err.Error())
			return
		}
		c.unavailable(w, r, err)
		return
	}
	c.metrics.accepted.Inc()
	c.metrics.nonFinite.Add(float64(nonFinite))
	c.Add(1)
	w.Header()["Content-Type"] = jsonContentType
	resp := append(append(make([]byte, 0, 64), `{"root_id":"`...), rb.rootIDs[0]...)
	resp = append(resp, '"')
	if nonFinite > 0 {
		resp = strconv.AppendInt(append(resp, `,"non_finite":`...), int64(nonFinite), 10)
	}
	_, _ = w.Write(append(resp, "}\n"...))
}

// parse reads one event. An event the parser refuses only for NaN or
// ±Infinity is read with null in their place, and their number returned,
// or refused as non_finite_number, as configured.
func (c *Collector) parse(b []byte) (*event.Envelope, int, *event.Invalid) {
	env, inv := event.Parse(b)
	if inv == nil || inv.Reason != event.ReasonInvalidJSON {
		return env, 0, inv
	}
	fixed, found := event.ReplaceNonFinite(b)
	if len(found) == 0 {
		return nil, 0, inv
	}
	if c.cfg.NonFinite == NonFiniteReject {
		return nil, 0, nonFiniteInvalid(found, "")
	}
	if env, inv = event.Parse(fixed); inv != nil {
		// Wrong for another reason too; byte offsets count each of them
		// as the null that replaced it.
		for i := range inv.Errors {
			inv.Errors[i].Message += " (reading NaN and ±Infinity as null)"
		}
		return nil, 0, inv
	}
	return env, len(found), nil
}

// nonFiniteInvalid is the rejection of an event holding found, whose
// paths start with prefix (a batch element's index).
func nonFiniteInvalid(found []event.NonFinite, prefix string) *event.Invalid {
	inv := &event.Invalid{Reason: event.ReasonNonFinite}
	for _, f := range found[:min(len(found), 10)] {
		inv.Errors = append(inv.Errors, event.FieldError{Path: strings.TrimPrefix(f.Path, prefix),
			Message: f.Token + " is not a JSON number: send null for a missing value (pandas: df.astype(object).where(df.notna(), None) before posting; Python's json.dumps(..., allow_nan=False) finds them)"})
	}
	return inv
}

// Reasons of the collector's schema checks, the enricher's own.
const (
	reasonSchemaViolation = "schema_violation"
	reasonUnknownSchema   = "unknown_schema"
)

// checkSchema validates the payload of a valid envelope against its
// schema, when the collector validates at the edge.
func (c *Collector) checkSchema(env *event.Envelope) *event.Invalid {
	if c.edge == nil {
		return nil
	}
	key := schema.Key{EventType: env.EventType, Version: env.SchemaVersion}
	errs, err := c.edge.Schemas.Validate(key, env.Payload())
	switch {
	case errors.Is(err, schema.ErrNoSchema):
		if c.edge.RejectUnknown {
			return &event.Invalid{Reason: reasonUnknownSchema, Errors: []event.FieldError{{Path: "/" + event.FieldSchemaVersion,
				Message: fmt.Sprintf("no schema for %s; add schemas/%s/%s.json", key, env.EventType, env.SchemaVersion)}}}
		}
	case err != nil:
		return &event.Invalid{Reason: reasonSchemaViolation, Errors: []event.FieldError{{Path: "/" + event.FieldPayload, Message: err.Error()}}}
	case len(errs) > 0:
		return &event.Invalid{Reason: reasonSchemaViolation, Errors: errs}
	}
	return nil
}

// reject dead-letters a whole body that is not a valid event (or batch) and
// answers 400; if the dead letter cannot be confirmed, it answers 503 so
// that the client retries and the failure is recorded.
func (c *Collector) reject(w http.ResponseWriter, r *http.Request, t *turn, inv *event.Invalid, body []byte, now time.Time, what string) {
	rb := c.newRecordBuilder(1, len(body), now)
	defer rb.release()
	rootID, err := rb.failed(inv.Reason, inv.Errors, body, now)
	if err == nil {
		err = c.produce(r.Context(), t, rb)
	}
	if err != nil {
		c.unavailable(w, r, err)
		return
	}
	c.metrics.rejected.WithLabelValues(inv.Reason).Inc()
	writeJSON(w, http.StatusBadRequest, errorBody{
		Error:   inv.Reason,
		Message: inv.Error() + "; " + what + " was recorded in the dead-letter topic",
		Details: inv.Errors,
		RootID:  string(rootID),
	})
}

type batchError struct {
	Index   int    `json:"index"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// collectBatch handles POST /api/v1/collect/batch: a JSON array or NDJSON.
// Each event stands alone: valid ones go to the raw topic and invalid ones to
// the dead-letter topic, and the answer waits for every write.
func (c *Collector) collectBatch(w http.ResponseWriter, r *http.Request) {
	t := c.seq.turnOf(r)
	defer t.done() // whatever the answer, the next request of its stream may go
	ct := r.Header.Get("Content-Type")
	ndjson := ndjsonMedia(ct)
	if !ndjson && !jsonMedia(ct) {
		c.metrics.requestRejected(errUnsupportedMedia)
		writeError(w, http.StatusUnsupportedMediaType, errUnsupportedMedia,
			"send Content-Type: application/json (an array of events) or application/x-ndjson (one event per line)")
		return
	}
	b, ok := c.readBody(w, r, int64(c.cfg.MaxBatchBytes))
	if !ok {
		return
	}
	defer b.release()
	body := b.Bytes()
	now := c.now()

	type item struct {
		data []byte
		line int            // NDJSON line number, 0 for array elements
		elem *event.Element // array elements come validated and split
	}
	var items []item
	// What each element of an array held of NaN and ±Infinity, by index.
	var arrayNonFinite map[int][]event.NonFinite
	if ndjson {
		for _, l := range event.SplitLines(body) {
			items = append(items, item{data: l.Data, line: l.Number})
		}
	} else {
		elems, found, inv := splitArray(body)
		if inv != nil {
			// The batch as a whole is unreadable: it is one failed event.
			c.reject(w, r, t, inv, body, now, "the body")
			return
		}
		arrayNonFinite = byElement(found)
		items = make([]item, len(elems))
		for i, e := range elems {
			items[i] = item{data: e.Bytes(), elem: &elems[i]}
			if len(arrayNonFinite[i]) > 0 && c.cfg.NonFinite == NonFiniteReject {
				// The dead letter keeps the element as sent.
				start, end := event.Original(found, e.Offset(), e.Offset()+len(e.Bytes()))
				items[i].data = body[start:end]
			}
		}
	}
	if len(items) > c.cfg.BatchMax {
		c.metrics.requestRejected(errTooManyEvents)
		writeError(w, http.StatusRequestEntityTooLarge, errTooManyEvents,
			fmt.Sprintf("the batch holds %d events; the limit is %d: split it", len(items), c.cfg.BatchMax))
		return
	}

	rb := c.newRecordBuilder(len(items), len(body), now)
	defer rb.release()
	var errs []batchError
	nonFinite := 0 // values stored as null in the accepted events
	rejected := make(map[string]int)
	for i, it := range items {
		var env *event.Envelope
		var inv *event.Invalid
		switch {
		case int64(len(it.data)) > int64(c.cfg.MaxBodyBytes):
			inv = &event.Invalid{Reason: errEventTooLarge, Errors: []event.FieldError{{
				Message: fmt.Sprintf("the event is %d bytes; one event may be at most %d", len(it.data), c.cfg.MaxBodyBytes),
			}}}
			// Keep the dead letter within what the broker accepts.
			it.data = it.data[:min(len(it.data), 64<<10)]
		case it.elem != nil && len(arrayNonFinite[i]) > 0 && c.cfg.NonFinite == NonFiniteReject:
			inv = nonFiniteInvalid(arrayNonFinite[i], "/"+strconv.Itoa(i))
		case it.elem != nil:
			env, inv = it.elem.Parse()
			if inv == nil {
				nonFinite += len(arrayNonFinite[i])
			}
		default:
			var n int
			env, n, inv = c.parse(it.data)
			nonFinite += n
		}
		if inv == nil {
			inv = c.checkSchema(env)
		}
		if inv != nil {
			msg := inv.Error()
			if it.line > 0 {
				msg = fmt.Sprintf("line %d: %s", it.line, msg)
			}
			errs = append(errs, batchError{Index: i, Reason: inv.Reason, Message: msg})
			if _, err := rb.failed(inv.Reason, inv.Errors, it.data, now); err != nil {
				writeError(w, http.StatusInternalServerError, "internal", err.Error())
				return
			}
			rejected[inv.Reason]++
			continue
		}
		if err := rb.raw(env); err != nil {
			writeError(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
	}
	if err := c.produce(r.Context(), t, rb); err != nil {
		c.unavailable(w, r, err)
		return
	}
	c.metrics.accepted.Add(float64(len(rb.rootIDs)))
	c.Add(len(rb.rootIDs))
	for reason, n := range rejected {
		c.metrics.rejected.WithLabelValues(reason).Add(float64(n))
	}
	c.metrics.nonFinite.Add(float64(nonFinite))
	writeBatchResult(w, rb.rootIDs, errs, nonFinite)
}

// splitArray splits an array batch. When NaN and ±Infinity are all that
// stop it, the elements are those of the body with null in their place,
// and found says where they were in the body.
func splitArray(body []byte) (elems []event.Element, found []event.NonFinite, inv *event.Invalid) {
	elems, inv = event.SplitArray(body)
	if inv == nil || inv.Reason != event.ReasonInvalidJSON {
		return elems, nil, inv
	}
	fixed, found := event.ReplaceNonFinite(body)
	if len(found) == 0 {
		return nil, nil, inv
	}
	fixedElems, fixedInv := event.SplitArray(fixed)
	if fixedInv != nil {
		return nil, nil, inv
	}
	return fixedElems, found, nil
}

// byElement groups what ReplaceNonFinite found in an array by element
// index, the first step of each path; nil for nothing found.
func byElement(found []event.NonFinite) map[int][]event.NonFinite {
	if len(found) == 0 {
		return nil
	}
	out := map[int][]event.NonFinite{}
	for _, f := range found {
		first, _, _ := strings.Cut(strings.TrimPrefix(f.Path, "/"), "/")
		if i, err := strconv.Atoi(first); err == nil {
			out[i] = append(out[i], f)
		}
	}
	return out
}

// writeBatchResult writes the batch answer by hand: with thousands of
// root ids, encoding/json's reflection showed in profiles.
func writeBatchResult(w http.ResponseWriter, rootIDs [][]byte, errs []batchError, nonFinite int) {
	if errs == nil {
		errs = []batchError{}
	}
	errJSON, err := json.Marshal(errs)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	b := make([]byte, 0, 64+len(rootIDs)*(event.RootIDLen+3)+len(errJSON))
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(len(rootIDs)), 10)
	b = append(b, `,"rejected":`...)
	b = strconv.AppendInt(b, int64(len(errs)), 10)
	b = append(b, `,"root_ids":[`...)
	for i, id := range rootIDs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, id...)
		b = append(b, '"')
	}
	b = append(b, `],"errors":`...)
	b = append(b, errJSON...)
	b = append(b, `,"non_finite":`...)
	b = strconv.AppendInt(b, int64(nonFinite), 10)
	b = append(b, "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// errProduceTimeout means Kafka did not acknowledge within ProduceTimeout.
var errProduceTimeout = errors.New("kafka did not acknowledge in time")

// produce writes rb's records and waits until Kafka has acknowledged every
// one, or returns an error. The wait is bounded by ProduceTimeout even when
// the client itself would keep retrying, so that the HTTP answer is prompt;
// a record may still be stored after a timeout, which is why a 503 says
// "not confirmed" rather than "not stored".
//
// The records do not live by the request's context: franz-go fails every
// buffered record of a partition when one record's context is canceled, so a
// client hanging up would fail other clients' events. They get their own
// deadline, released once the last of them is done.
func (c *Collector) produce(ctx context.Context, t *turn, rb *recordBuilder) error {
	recs := rb.records()
	if len(recs) == 0 {
		return nil
	}
	start := c.now()
	// In a stream's order: after the records of its request before. The
	// wait takes at most half the timeout, so that Kafka still has the rest.
	t.wait(ctx, c.cfg.ProduceTimeout/2)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ProduceTimeout-c.now().Sub(start))
	acks := rb.expectAcks(len(recs), cancel)
	for _, r := range recs {
		c.prod.Produce(rctx, r, rb.promise)
	}
	t.done() // handed over: each partition has them in order
	var first error
	for range recs {
		var err error
		select {
		case err = <-acks:
		case <-rctx.Done():
			if rctx.Err() == context.DeadlineExceeded {
				c.metrics.produceFailures.WithLabelValues("timeout").Inc()
				return fmt.Errorf("%w (%s)", errProduceTimeout, c.cfg.ProduceTimeout)
			}
			// Canceled: the last promise has fired, and every promise
			// sends its answer.
			err = <-acks
		case <-ctx.Done():
			c.metrics.produceFailures.WithLabelValues("client_gone").Inc()
			return fmt.Errorf("client went away: %w", ctx.Err())
		}
		if err != nil && first == nil {
			first = err
		}
	}
	rb.settled = true // Kafka is done with the records
	c.metrics.produceLatency.Observe(c.now().Sub(start).Seconds())
	if first != nil {
		c.metrics.produceFailures.WithLabelValues("error").Inc()
		return fmt.Errorf("produce: %w", first)
	}
	c.Clear("produce")
	return nil
}

func isTooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}

func (c *Collector) welcome(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"service":      "sluice collector",
		"collector_id": c.cfg.ID,
		"message":      "Welcome to Sluice. POST events to /api/v1/collect or /api/v1/collect/batch.",
		"docs":         "/api/v1/docs/",
		"openapi":      "/api/v1/openapi.json",
	})
}

// authorize requires one of the configured API keys, as a bearer token or
// in X-API-Key. With no keys configured it lets every request through.
func (c *Collector) authorize(h http.Handler) http.Handler {
	if len(c.cfg.APIKeys) == 0 {
		return h
	}
	keys := make([][]byte, len(c.cfg.APIKeys))
	for i, k := range c.cfg.APIKeys {
		keys[i] = []byte(k)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given := r.Header.Get("X-API-Key")
		if auth := r.Header.Get("Authorization"); given == "" && len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			given = strings.TrimSpace(auth[7:])
		}
		ok := 0
		for _, k := range keys {
			ok |= subtle.ConstantTimeCompare([]byte(given), k)
		}
		if given == "" || ok == 0 {
			c.metrics.requestRejected(errUnauthorized)
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			writeError(w, http.StatusUnauthorized, errUnauthorized,
				"send a valid API key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func mediaType(ct string) string {
	switch {
	case ct == "":
		return ""
	case strings.EqualFold(ct, "application/json"):
		// What nearly every request sends, without a parse.
		return "application/json"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "invalid"
	}
	return mt
}

// jsonMedia accepts application/json, and a missing Content-Type, since
// many clients send JSON without one.
func jsonMedia(ct string) bool {
	switch mediaType(ct) {
	case "", "application/json":
		return true
	}
	return false
}

func ndjsonMedia(ct string) bool {
	switch mediaType(ct) {
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines":
		return true
	}
	return false
}
