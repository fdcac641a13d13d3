package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/httpapi"
)

type partitionOffsets struct {
	Partition int32 `json:"partition"`
	Start     int64 `json:"start_offset"`
	End       int64 `json:"end_offset"`
}

type topicInfo struct {
	Topic      string             `json:"topic"`
	Partitions []partitionOffsets `json:"partitions"`
	// Offsets is what the partitions span: records, and on a
	// transactional topic, commit markers too.
	Offsets int64 `json:"offsets"`
}

// admin runs fn with an admin client of the cluster.
func (c *Console) admin(ctx context.Context, fn func(context.Context, *kadm.Client) error) error {
	cl, err := bus.NewClient(c.deps.Kafka, c.deps.Logger)
	if err != nil {
		return err
	}
	defer cl.Close()
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return fn(actx, kadm.NewClient(cl))
}

func (c *Console) topics(w http.ResponseWriter, r *http.Request) {
	var out []topicInfo
	err := c.admin(r.Context(), func(ctx context.Context, adm *kadm.Client) error {
		starts, err := adm.ListStartOffsets(ctx)
		if err != nil {
			return err
		}
		ends, err := adm.ListEndOffsets(ctx)
		if err != nil {
			return err
		}
		byTopic := map[string]*topicInfo{}
		ends.Each(func(e kadm.ListedOffset) {
			if strings.HasPrefix(e.Topic, "__") {
				return // Kafka's own
			}
			t := byTopic[e.Topic]
			if t == nil {
				t = &topicInfo{Topic: e.Topic}
				byTopic[e.Topic] = t
			}
			s, _ := starts.Lookup(e.Topic, e.Partition)
			t.Partitions = append(t.Partitions, partitionOffsets{Partition: e.Partition, Start: s.Offset, End: e.Offset})
			t.Offsets += e.Offset - s.Offset
		})
		for _, t := range byTopic {
			slices.SortFunc(t.Partitions, func(a, b partitionOffsets) int { return int(a.Partition - b.Partition) })
			out = append(out, *t)
		}
		slices.SortFunc(out, func(a, b topicInfo) int { return strings.Compare(a.Topic, b.Topic) })
		return nil
	})
	if err != nil {
		unavailable(w, fmt.Errorf("list topics: %w", err))
		return
	}
	if out == nil {
		out = []topicInfo{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"topics": out})
}

// recordsPage is a page of one partition's records; Next is the offset to
// ask for the next page from.
type recordsPage struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Start     int64             `json:"start_offset"`
	End       int64             `json:"end_offset"`
	Records   []bus.ShownRecord `json:"records"`
	Next      int64             `json:"next"`
}

// records is a page of a partition's records, read committed, from an
// offset (the start by default), or from the first record at or after a
// time.
func (c *Console) records(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	part, err := intParam(r, "partition", 0, 0, 1<<20)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	limit, err := intParam(r, "limit", 50, 1, 500)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	at, err := c.timeParam(r, "time")
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	page := recordsPage{Topic: topic, Partition: int32(part), Records: []bus.ShownRecord{}}
	from := int64(-1)
	if s := r.URL.Query().Get("offset"); s != "" {
		if from, err = strconv.ParseInt(s, 10, 64); err != nil || from < 0 {
			badRequest(w, "offset: want a whole number, 0 or more")
			return
		}
	}
	err = c.admin(r.Context(), func(ctx context.Context, adm *kadm.Client) error {
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			return err
		}
		ends, err := adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			return err
		}
		if err := ends.Error(); err != nil {
			return err
		}
		s, ok := starts.Lookup(topic, page.Partition)
		e, ok2 := ends.Lookup(topic, page.Partition)
		if !ok || !ok2 {
			return errNoPartition
		}
		page.Start, page.End = s.Offset, e.Offset
		switch {
		case !at.IsZero():
			after, err := adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), topic)
			if err != nil {
				return err
			}
			if a, ok := after.Lookup(topic, page.Partition); ok && a.Offset >= 0 {
				from = a.Offset
			} else {
				from = page.End
			}
		case from < 0:
			from = page.Start
		}
		from = max(from, page.Start)
		return nil
	})
	if errors.Is(err, errNoPartition) || errors.Is(err, kerr.UnknownTopicOrPartition) {
		httpapi.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no partition %d of topic %q; see /api/v1/topics", part, topic))
		return
	}
	if err != nil {
		unavailable(w, err)
		return
	}
	page.Next = from
	if from < page.End {
		span := map[string]map[int32]bus.Span{topic: {page.Partition: {Start: from, End: page.End}}}
		err = bus.ReadSpans(r.Context(), c.deps.Kafka, span, func(rec *kgo.Record) error {
			if len(page.Records) == limit {
				return errPageFull
			}
			page.Records = append(page.Records, bus.Show(rec))
			page.Next = rec.Offset + 1
			return nil
		})
		if err != nil && !errors.Is(err, errPageFull) {
			unavailable(w, err)
			return
		}
		if len(page.Records) < limit {
			page.Next = page.End // the rest were markers or aborted records
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
}

var (
	errNoPartition = errors.New("no such partition")
	errPageFull    = errors.New("page full")
)

// live streams a topic's new records as server-sent events, each with the
// positions after it as its id: a client that reconnects with
// Last-Event-ID (or ?from=) resumes where it was, paused or not. Records
// may be filtered by event_type (header or field) or by a field's value.
func (c *Console) live(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	// Through wrappers such as the collector's metrics, which unwrap. A
	// stream outlives the server's write timeout.
	flusher := http.NewResponseController(w)
	_ = flusher.SetWriteDeadline(time.Time{})
	q := r.URL.Query()
	match, err := liveFilter(q.Get("event_type"), q.Get("field"), q.Get("value"))
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	pos := r.Header.Get("Last-Event-ID")
	if pos == "" {
		pos = q.Get("from")
	}
	from, err := parsePositions(pos)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	offsets := map[int32]kgo.Offset{}
	err = c.admin(r.Context(), func(ctx context.Context, adm *kadm.Client) error {
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return err
		}
		if err := ends.Error(); err != nil {
			return err
		}
		ends.Each(func(e kadm.ListedOffset) {
			start, ok := from[e.Partition]
			if !ok {
				start = e.Offset // new records only
				from[e.Partition] = start
			}
			offsets[e.Partition] = kgo.NewOffset().At(start)
		})
		return nil
	})
	if err != nil {
		httpapi.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("topic %q: %v; see /api/v1/topics", topic, err))
		return
	}
	cl, err := bus.NewClient(c.deps.Kafka, c.deps.Logger, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		unavailable(w, err)
		return
	}
	defer cl.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\nid: %s\nevent: ready\ndata: {}\n\n", formatPositions(from))
	if err := flusher.Flush(); err != nil {
		return // streaming is not possible through this writer
	}
	ctx := r.Context()
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fetches := cl.PollFetches(pctx)
		cancel()
		sent := false
		for it := fetches.RecordIter(); !it.Done(); {
			rec := it.Next()
			from[rec.Partition] = rec.Offset + 1
			if !match(rec) {
				continue
			}
			b, _ := json.Marshal(bus.Show(rec))
			fmt.Fprintf(w, "id: %s\ndata: %s\n\n", formatPositions(from), b)
			sent = true
		}
		select {
		case <-keepAlive.C:
			// A comment keeps proxies from closing an idle stream, and
			// moves the client's place past records it filtered out.
			fmt.Fprintf(w, "id: %s\n: idle\n\n", formatPositions(from))
			sent = true
		default:
		}
		if sent && flusher.Flush() != nil {
			return // the client went away
		}
	}
}

// liveFilter matches records by event type (the header, else the value's
// field) and by a top-level or payload field's value, as text.
func liveFilter(eventType, field, value string) (func(*kgo.Record) bool, error) {
	if field == "" && value != "" {
		return nil, errors.New("value needs field")
	}
	return func(rec *kgo.Record) bool {
		var v map[string]any
		parsed := false
		get := func(name string) (any, bool) {
			if !parsed {
				parsed = true
				_ = json.Unmarshal(rec.Value, &v)
			}
			if x, ok := v[name]; ok {
				return x, true
			}
			if p, ok := v["payload"].(map[string]any); ok {
				x, ok := p[name]
				return x, ok
			}
			return nil, false
		}
		if eventType != "" {
			et := bus.Header(rec, "event_type")
			if et == "" {
				x, _ := get("event_type")
				et, _ = x.(string)
			}
			if et != eventType {
				return false
			}
		}
		if field != "" {
			x, ok := get(field)
			if !ok {
				return false
			}
			if value != "" && fmt.Sprint(x) != value {
				return false
			}
		}
		return true
	}, nil
}

// parsePositions reads "0:12,1:40" (partition:next offset).
func parsePositions(s string) (map[int32]int64, error) {
	out := map[int32]int64{}
	if s == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		p, o, ok := strings.Cut(part, ":")
		pi, err1 := strconv.ParseInt(p, 10, 32)
		oi, err2 := strconv.ParseInt(o, 10, 64)
		if !ok || err1 != nil || err2 != nil || pi < 0 || oi < 0 {
			return nil, fmt.Errorf("from %q: want partition:offset pairs, such as 0:12,1:40", s)
		}
		out[int32(pi)] = oi
	}
	return out, nil
}

func formatPositions(m map[int32]int64) string {
	parts := make([]int32, 0, len(m))
	for p := range m {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d:%d", p, m[p])
	}
	return b.String()
}
