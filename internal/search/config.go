package search

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/sink"
)

// Config configures the search sink.
type Config struct {
	sink.Config `yaml:",inline"`
	URLs        []string `yaml:"urls" flag:"search-urls" doc:"Base URLs of the OpenSearch or Elasticsearch nodes (http://host:9200); requests go round the list, the next one after a node fails."`
	// Index is a pattern: {event_type} is the event's type (or its table,
	// for rows a model made), lower-cased; {yyyy.MM.dd} and the like, the
	// UTC date of its time_field.
	Index        string `yaml:"index" flag:"search-index" doc:"Index of each document: {event_type} is the event's type (or its model table), lower-cased; a {yyyy.MM.dd}-style part (yyyy, MM, dd, HH) is the UTC time of time_field."`
	DataStreams  bool   `yaml:"data_streams" flag:"search-data-streams" doc:"Write to data streams instead of dated indices: index then names the stream (no date part), the templates declare it, each document gets @timestamp from time_field, and is created, never replaced (the server's 409 for an id already there counts as done)."`
	TimeField    string `yaml:"time_field" doc:"Top-level field whose time dates the index (an RFC 3339 string); records without one use their Kafka timestamp."`
	OffsetsIndex string `yaml:"offsets_index" doc:"Index where the sink records, per consumer group and partition, the last Kafka offset it wrote: restarts resume there."`
	// Versioning external makes the Kafka offset each document's version,
	// so that an older write never overwrites a newer one.
	Versioning string          `yaml:"versioning" flag:"search-versioning" doc:"none, or external: each document's version is its Kafka offset, so a replay of an older record never overwrites a newer one (the server's 409 then counts as done)."`
	Templates  bool            `yaml:"templates" doc:"Create or update an index template per event type at start and on a new type, with mappings from the registered JSON Schemas, so that field types do not depend on the first document."`
	Shards     int             `yaml:"shards" doc:"Primary shards of the indices the templates describe; 0 leaves the server's default."`
	Replicas   int             `yaml:"replicas" doc:"Replicas of the indices the templates describe; -1 leaves the server's default."`
	BulkDocs   int             `yaml:"bulk_docs" doc:"Documents per _bulk request at most."`
	BulkBytes  config.ByteSize `yaml:"bulk_bytes" doc:"Bytes of a _bulk request body at most (a larger document goes alone)."`
	InFlight   int             `yaml:"in_flight" doc:"_bulk requests in flight at once."`
	Gzip       bool            `yaml:"gzip" doc:"Compress request bodies with gzip."`
	Timeout    time.Duration   `yaml:"timeout" doc:"Time a request may take before it is tried again."`
	Username   string          `yaml:"username" flag:"search-username" doc:"User for HTTP basic authentication."`
	Password   string          `yaml:"password" flag:"search-password" secret:"true" doc:"Password for HTTP basic authentication."`
	APIKey     string          `yaml:"api_key" flag:"search-api-key" secret:"true" doc:"API key, sent as Authorization: ApiKey (Elasticsearch's encoded id:key)."`
	CAFile     string          `yaml:"ca_file" flag:"search-ca-file" doc:"PEM file of CAs to trust for the servers' TLS, added to the system's."`
	// InsecureSkipVerify is for test clusters with self-signed
	// certificates only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" doc:"Do not verify the servers' TLS certificates (test clusters only)."`
	// MaxRounds is how many times a Write sends a range's documents that
	// the server rejected for the moment (429, 5xx) before it gives the
	// runner an error: the runner then reports the fault and backs off.
	MaxRounds int `yaml:"max_rounds" doc:"Times a flush sends documents the server pushed back (429, 5xx) before the sink reports the fault and backs off longer."`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	c := Config{
		Config:       sink.DefaultConfig(),
		URLs:         []string{"http://127.0.0.1:9200"},
		Index:        "{event_type}-{yyyy.MM.dd}",
		TimeField:    "collector_tstamp",
		OffsetsIndex: "sluice-offsets",
		Versioning:   "none",
		Templates:    true,
		Replicas:     -1,
		BulkDocs:     1000,
		BulkBytes:    5 << 20,
		InFlight:     2,
		Timeout:      30 * time.Second,
		MaxRounds:    5,
	}
	// Search is for fresh data: flush often, in smaller ranges than the
	// lake's files.
	c.Topics = []string{"sluice.enriched"}
	c.Group = "sluice-loader-opensearch"
	c.FlushRows = 10_000
	c.FlushBytes = 16 << 20
	c.FlushInterval = time.Second
	c.MemoryLimit = 128 << 20
	return c
}

// SetDefaults gives a new sinks entry of a search type the defaults.
func (c *Config) SetDefaults() { *c = DefaultConfig() }

// Validate reports a configuration the search sink cannot start with.
func (c Config) Validate() error {
	errs := []error{c.Config.Validate()}
	if len(c.URLs) == 0 {
		errs = append(errs, config.Field("urls", "no server to write to: give at least one base URL, such as http://127.0.0.1:9200"))
	}
	for i, u := range c.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, config.Field(fmt.Sprintf("urls[%d]", i), "%q: want http://host:port or https://host:port", u))
		}
	}
	if p, err := parseIndex(c.Index); err != nil {
		errs = append(errs, config.Field("index", "%q: %v", c.Index, err))
	} else if c.DataStreams && p.dated() {
		errs = append(errs, config.Field("index", "%q: a data stream rolls over by itself; name it without a date, such as events-{event_type}", c.Index))
	}
	if c.TimeField == "" {
		errs = append(errs, config.Field("time_field", "must be set (collector_tstamp, say)"))
	}
	if c.OffsetsIndex == "" || c.OffsetsIndex != indexName(c.OffsetsIndex) {
		errs = append(errs, config.Field("offsets_index", "%q: want a lower-case index name", c.OffsetsIndex))
	}
	switch c.Versioning {
	case "none", "external":
	default:
		errs = append(errs, config.Field("versioning", "%q: want none or external", c.Versioning))
	}
	if c.Shards < 0 {
		errs = append(errs, config.Field("shards", "%d: want 0 (the server's default) or more", c.Shards))
	}
	if c.Replicas < -1 {
		errs = append(errs, config.Field("replicas", "%d: want -1 (the server's default) or more", c.Replicas))
	}
	if c.BulkDocs < 1 {
		errs = append(errs, config.Field("bulk_docs", "%d: want at least 1", c.BulkDocs))
	}
	if c.BulkBytes < 1<<10 {
		errs = append(errs, config.Field("bulk_bytes", "%d: want at least 1KiB", c.BulkBytes))
	}
	if c.InFlight < 1 {
		errs = append(errs, config.Field("in_flight", "%d: want at least 1", c.InFlight))
	}
	if c.Timeout <= 0 {
		errs = append(errs, config.Field("timeout", "%v: want a positive duration", c.Timeout))
	}
	if c.MaxRounds < 1 {
		errs = append(errs, config.Field("max_rounds", "%d: want at least 1", c.MaxRounds))
	}
	if c.APIKey != "" && (c.Username != "" || c.Password != "") {
		errs = append(errs, config.Field("api_key", "give an API key or a username and password, not both"))
	}
	if c.Password != "" && c.Username == "" {
		errs = append(errs, config.Field("username", "a password needs a username"))
	}
	return errors.Join(errs...)
}

// indexPattern is a parsed index setting: literal text, the event type,
// and a date part in Go's layout.
type indexPattern struct {
	parts []indexPart
}

type indexPart struct {
	text   string // literal, or a Go time layout when date is set
	typ    bool   // the event type
	date   bool
	layout string
}

// parseIndex reads an index pattern such as {event_type}-{yyyy.MM.dd}.
func parseIndex(s string) (indexPattern, error) {
	var p indexPattern
	if s == "" {
		return p, errors.New("empty")
	}
	for s != "" {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			p.parts = append(p.parts, indexPart{text: s})
			break
		}
		if open > 0 {
			p.parts = append(p.parts, indexPart{text: s[:open]})
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			return p, errors.New("a { without its }")
		}
		token := s[open+1 : open+end]
		s = s[open+end+1:]
		if token == "event_type" {
			p.parts = append(p.parts, indexPart{typ: true})
			continue
		}
		layout, err := dateLayout(token)
		if err != nil {
			return p, err
		}
		p.parts = append(p.parts, indexPart{date: true, layout: layout})
	}
	for _, part := range p.parts {
		if !part.typ && !part.date && (part.text != strings.ToLower(part.text) || strings.ContainsAny(part.text, forbidden)) {
			return p, fmt.Errorf("%q: index names are lower case, without spaces or \\/*?\"<>|,#:", part.text)
		}
	}
	return p, nil
}

// dateLayout turns a date pattern in Elasticsearch's letters (yyyy, MM,
// dd, HH) into Go's layout.
func dateLayout(pattern string) (string, error) {
	var b strings.Builder
	for token := pattern; token != ""; {
		switch {
		case strings.HasPrefix(token, "yyyy"):
			b.WriteString("2006")
			token = token[4:]
		case strings.HasPrefix(token, "MM"):
			b.WriteString("01")
			token = token[2:]
		case strings.HasPrefix(token, "dd"):
			b.WriteString("02")
			token = token[2:]
		case strings.HasPrefix(token, "HH"):
			b.WriteString("15")
			token = token[2:]
		case strings.ContainsRune(".-_", rune(token[0])):
			b.WriteByte(token[0])
			token = token[1:]
		default:
			return "", fmt.Errorf("{%s}: want {event_type} or a date of yyyy, MM, dd and HH with . - or _ between", pattern)
		}
	}
	return b.String(), nil
}

// name renders the index of an event of type typ at t.
func (p indexPattern) name(typ string, t time.Time) string {
	var b strings.Builder
	for _, part := range p.parts {
		switch {
		case part.typ:
			b.WriteString(typ)
		case part.date:
			b.WriteString(t.UTC().Format(part.layout))
		default:
			b.WriteString(part.text)
		}
	}
	return b.String()
}

// dated reports whether the pattern has a date part.
func (p indexPattern) dated() bool {
	return slices.ContainsFunc(p.parts, func(part indexPart) bool { return part.date })
}

// wildcard is the pattern's indices of event type typ, for a template.
func (p indexPattern) wildcard(typ string) string {
	var b strings.Builder
	for _, part := range p.parts {
		switch {
		case part.typ:
			b.WriteString(typ)
		case part.date:
			b.WriteByte('*')
		default:
			b.WriteString(part.text)
		}
	}
	return b.String()
}

// forbidden are the characters no index name may hold.
const forbidden = "\\/*?\"<>| ,#:"

// indexName makes s a valid index name: lower case, characters the
// servers refuse replaced by _, no leading - _ + or ., at most 200 bytes
// (the servers allow 255; the date and prefix need room).
func indexName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if strings.IndexByte(forbidden, c) >= 0 {
			b[i] = '_'
		}
	}
	out := strings.TrimLeft(string(b), "-_+.")
	if len(out) > 200 {
		out = out[:200]
	}
	if out == "" {
		out = "unknown"
	}
	return out
}
