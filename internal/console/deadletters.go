package console

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/dlq"
	"github.com/sluicehq/sluice/internal/httpapi"
)

// filter reads a dead-letter filter from the query.
func (c *Console) filter(r *http.Request) (dlq.Filter, error) {
	q := r.URL.Query()
	f := dlq.Filter{Stage: q.Get("stage"), Reason: q.Get("reason")}
	var err error
	if f.Since, err = c.timeParam(r, "since"); err != nil {
		return f, err
	}
	f.Until, err = c.timeParam(r, "until")
	return f, err
}

// deadLetterPage is a page of dead letters; Next, when set, is the after
// of the next page.
type deadLetterPage struct {
	DeadLetters []*dlq.DeadLetter `json:"dead_letters"`
	Next        string            `json:"next,omitempty"`
}

func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request) {
	f, err := c.filter(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	limit, err := intParam(r, "limit", 50, 1, 1000)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	var after *dlq.Coord
	if s := r.URL.Query().Get("after"); s != "" {
		a, err := dlq.ParseCoord(s)
		if err != nil {
			badRequest(w, "after: "+err.Error())
			return
		}
		after = &a
	}
	page := deadLetterPage{DeadLetters: []*dlq.DeadLetter{}}
	more := false
	err = c.deps.Replayer.ScanAfter(r.Context(), f, after, func(dl *dlq.DeadLetter) bool {
		if len(page.DeadLetters) == limit {
			more = true
			return false
		}
		page.DeadLetters = append(page.DeadLetters, dl)
		return true
	})
	if err != nil {
		unavailable(w, err)
		return
	}
	if more {
		page.Next = page.DeadLetters[len(page.DeadLetters)-1].Coord.String()
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
}

// statsBucket counts the dead letters of a stage and reason written in
// one bucket of time.
type statsBucket struct {
	Time   time.Time `json:"time"`
	Stage  string    `json:"stage"`
	Reason string    `json:"reason"`
	Count  int       `json:"count"`
}

// maxStatsScan bounds how many dead letters one stats answer reads.
const maxStatsScan = 200_000

// deadLetterStats counts dead letters by stage, reason and bucket of time
// (a minute by default), since a time (an hour ago by default).
func (c *Console) deadLetterStats(w http.ResponseWriter, r *http.Request) {
	f, err := c.filter(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if f.Since.IsZero() {
		f.Since = c.now().Add(-time.Hour)
	}
	bucket := time.Minute
	if s := r.URL.Query().Get("bucket"); s != "" {
		if bucket, err = time.ParseDuration(s); err != nil || bucket < time.Second {
			badRequest(w, "bucket: want a duration of a second or more, such as 1m")
			return
		}
	}
	type key struct {
		t             int64
		stage, reason string
	}
	counts := map[key]int{}
	scanned := 0
	err = c.deps.Replayer.Scan(r.Context(), f, func(dl *dlq.DeadLetter) bool {
		counts[key{dl.Time.Truncate(bucket).UnixMilli(), dl.Stage, dl.Reason}]++
		scanned++
		return scanned < maxStatsScan
	})
	if err != nil {
		unavailable(w, err)
		return
	}
	out := make([]statsBucket, 0, len(counts))
	for k, n := range counts {
		out = append(out, statsBucket{Time: time.UnixMilli(k.t).UTC(), Stage: k.stage, Reason: k.reason, Count: n})
	}
	slices.SortFunc(out, func(a, b statsBucket) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Stage, b.Stage); c != 0 {
			return c
		}
		return cmp.Compare(a.Reason, b.Reason)
	})
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"since": f.Since.UTC(), "bucket": bucket.String(),
		"buckets": out, "complete": scanned < maxStatsScan})
}

func (c *Console) coord(w http.ResponseWriter, r *http.Request) (dlq.Coord, bool) {
	co, err := dlq.ParseCoord(r.PathValue("partition") + "/" + r.PathValue("offset"))
	if err != nil {
		badRequest(w, err.Error())
		return co, false
	}
	return co, true
}

func (c *Console) deadLetter(w http.ResponseWriter, r *http.Request) {
	co, ok := c.coord(w, r)
	if !ok {
		return
	}
	dl, err := c.deps.Replayer.Get(r.Context(), co)
	switch {
	case errors.Is(err, dlq.ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case err != nil:
		unavailable(w, err)
	default:
		httpapi.WriteJSON(w, http.StatusOK, dl)
	}
}

// replayRequest is the body of a replay: a filter, or for one dead letter,
// its fixed original.
type replayRequest struct {
	Stage    string          `json:"stage"`
	Reason   string          `json:"reason"`
	Since    string          `json:"since"`
	Until    string          `json:"until"`
	DryRun   bool            `json:"dry_run"`
	Original json.RawMessage `json:"original"`
	// By names who replays, for the record, beside where from.
	By string `json:"by"`
}

const maxReplayBody = 4 << 20

func readReplay(w http.ResponseWriter, r *http.Request) (replayRequest, bool) {
	var req replayRequest
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReplayBody))
	if err == nil && len(b) > 0 {
		err = json.Unmarshal(b, &req)
	}
	if err != nil {
		badRequest(w, fmt.Sprintf("body: want a JSON object such as {\"reason\":\"enrichment_failed\",\"since\":\"1h\",\"dry_run\":true}: %v", err))
		return req, false
	}
	return req, true
}

// by says who replays, for the record: the name the request gives, if
// any, and the console and where from.
func (c *Console) by(r *http.Request, name string) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	where := "console at " + host
	if len(c.cfg.AdminKeys) > 0 {
		where = "console (admin key) at " + host
	}
	if name = strings.TrimSpace(name); name != "" {
		return truncate(name, 100) + " (" + where + ")"
	}
	return where
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}

func (c *Console) replayMatching(w http.ResponseWriter, r *http.Request) {
	req, ok := readReplay(w, r)
	if !ok {
		return
	}
	f := dlq.Filter{Stage: req.Stage, Reason: req.Reason}
	var err error
	if f.Since, err = dlq.ParseWhen(req.Since, c.now()); err != nil {
		badRequest(w, "since: "+err.Error())
		return
	}
	if f.Until, err = dlq.ParseWhen(req.Until, c.now()); err != nil {
		badRequest(w, "until: "+err.Error())
		return
	}
	rep, err := c.deps.Replayer.Replay(r.Context(), f, dlq.Options{By: c.by(r, req.By), DryRun: req.DryRun})
	if err != nil {
		unavailable(w, fmt.Errorf("%w (sent %d before it)", err, rep.Replayed))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, rep)
}

func (c *Console) replayOne(w http.ResponseWriter, r *http.Request) {
	co, ok := c.coord(w, r)
	if !ok {
		return
	}
	req, ok := readReplay(w, r)
	if !ok {
		return
	}
	opts := dlq.Options{By: c.by(r, req.By), DryRun: req.DryRun}
	if len(req.Original) > 0 && string(req.Original) != "null" {
		opts.Fixed = map[dlq.Coord][]byte{co: req.Original}
	}
	rep, err := c.deps.Replayer.ReplayOne(r.Context(), co, opts)
	switch {
	case errors.Is(err, dlq.ErrAlreadyReplayed):
		httpapi.WriteError(w, http.StatusConflict, "already_replayed", err.Error())
	case errors.Is(err, dlq.ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case err != nil && len(rep.Unreplayable) > 0:
		httpapi.WriteError(w, http.StatusUnprocessableEntity, "not_an_event", err.Error())
	case err != nil:
		unavailable(w, err)
	default:
		httpapi.WriteJSON(w, http.StatusOK, rep)
	}
}

// replaySummary is a replay without its list of dead letters, which may be
// long.
type replaySummary struct {
	ID          string      `json:"replay_id"`
	By          string      `json:"by"`
	At          time.Time   `json:"at"`
	Filter      *dlq.Filter `json:"filter,omitempty"`
	DeadLetters int         `json:"dead_letters"`
	Fixed       int         `json:"fixed"`
	// First lists the first dead letters it sent.
	First []dlq.Sent `json:"first"`
}

func (c *Console) replays(w http.ResponseWriter, r *http.Request) {
	replays, err := c.deps.Replayer.Replays(r.Context())
	if err != nil {
		unavailable(w, err)
		return
	}
	out := make([]replaySummary, 0, len(replays))
	for i := len(replays) - 1; i >= 0; i-- { // newest first
		rp := replays[i]
		s := replaySummary{ID: rp.ID, By: rp.By, At: rp.At, Filter: rp.Filter, DeadLetters: len(rp.DeadLetters),
			First: rp.DeadLetters[:min(10, len(rp.DeadLetters))]}
		for _, d := range rp.DeadLetters {
			if d.Fixed {
				s.Fixed++
			}
		}
		out = append(out, s)
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(len(out)))
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"replays": out})
}
