// Package pipeline builds Sluice's processes from their configuration: it
// is the one place that knows every component. Each component's config
// type owns its settings (keys, flags, defaults, checks); Config only
// composes them, the registry (registry.go) finds sinks by their type, and
// Build makes the components a command runs, the same way for `sluice up`
// as for a stage run alone.
package pipeline

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/internal/aggregator"
	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/collector"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/console"
	"github.com/sluicehq/sluice/internal/enricher"
	"github.com/sluicehq/sluice/internal/jobs"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/loader"
	"github.com/sluicehq/sluice/internal/sink"
)

// Config is the whole configuration: one YAML file, the SLUICE_*
// environment and flags.
type Config struct {
	Process   ProcessConfig      `yaml:",inline"`
	Ops       app.OpsConfig      `yaml:"ops"`
	Console   console.Config     `yaml:"console"`
	Kafka     bus.ClientConfig   `yaml:"kafka"`
	Broker    bus.BrokerConfig   `yaml:"broker"`
	Topics    Topics             `yaml:"topics"`
	Producer  bus.ProducerConfig `yaml:"producer"`
	Collector collector.Config   `yaml:"collector"`
	Schemas   string             `yaml:"schemas" flag:"schemas" doc:"Directory of JSON Schemas, <event_type>/<version>.json, that validate events and type the lake's columns. Default: the schemas bundled for the sample data. SIGHUP reloads it."`
	Enricher  enricher.Config    `yaml:"enricher"`
	Lake      lake.Config        `yaml:"lake"`
	// Sinks are the destinations events are loaded into, each of a
	// registered type.
	Sinks []Sink `yaml:"sinks" doc:"The sinks events are loaded into, each {type, name, ...its settings}. Default: one sink of type lake."`
	// Models turn events into rows of tables (docs/models.md).
	Models []enricher.ModelConfig `yaml:"models" doc:"Models the enricher applies: the events of a type become rows of tables, such as a checkout's items a table of their own (docs/models.md)."`
	// Aggregations are the windowed aggregations (docs/aggregations.md).
	Aggregations []aggregator.Config `yaml:"aggregations" doc:"The windowed aggregations (docs/aggregations.md)."`
	// Jobs is the batch layer: SQL models over the lake, on schedules
	// (docs/jobs.md).
	Jobs jobs.Config `yaml:"jobs"`
}

// ProcessConfig holds the settings of the process itself.
type ProcessConfig struct {
	InstanceID string `yaml:"instance_id" flag:"instance-id" doc:"This process's name among those running the same stages, kept across restarts: the collector stamps it on events as collector_id, it names the enricher's and aggregators' Kafka transactional ids, and the enricher, the aggregators and the sinks join their groups as static members with it (a restarted one gets its partitions back at once). Two processes of the same stage must not share it. Default: the host name, as a pod's."`
	DataDir    string `yaml:"data_dir" flag:"data-dir" doc:"Directory of the embedded broker's log and, by default, the lake."`
	LogFormat  string `yaml:"log_format" flag:"log-format" doc:"Log format: auto (text on a terminal, JSON otherwise), text or json."`
	LogLevel   string `yaml:"log_level" flag:"log-level" doc:"Log level: debug, info, warn or error."`
}

// Topics names the topics and says how new ones are made.
type Topics struct {
	Raw         string `yaml:"raw" flag:"topic-raw" doc:"Topic of accepted raw events."`
	Enriched    string `yaml:"enriched" doc:"Topic of enriched events and modelled rows."`
	DLQ         string `yaml:"dlq" flag:"topic-dlq" doc:"Topic of failed events (dead letters) of every stage."`
	Replays     string `yaml:"replays" flag:"topic-replays" doc:"Topic of the replays of dead letters: which were sent back to the raw topic, by whom and when ('sluice dlq replay'); made with one partition on first use."`
	Partitions  int32  `yaml:"partitions" flag:"topic-partitions" doc:"Partitions of the topics Sluice creates."`
	Replication int16  `yaml:"replication" doc:"Replication factor of the topics Sluice creates; -1 for the cluster's default (the embedded broker has one copy)."`
}

// Default returns the documented defaults.
func Default() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "sluice"
	}
	col := collector.DefaultConfig()
	col.ID, col.RawTopic, col.DLQTopic = "", "", ""
	enr := enricher.DefaultConfig()
	enr.RawTopic, enr.EnrichedTopic, enr.DLQTopic, enr.TransactionalID = "", "", "", ""
	return Config{
		Process:   ProcessConfig{InstanceID: host, DataDir: "./sluice-data", LogFormat: "auto", LogLevel: "info"},
		Ops:       app.OpsConfig{},
		Kafka:     bus.DefaultClientConfig(),
		Broker:    bus.BrokerConfig{Addr: "127.0.0.1:9092"},
		Topics:    Topics{Raw: "sluice.raw", Enriched: "sluice.enriched", DLQ: "sluice.dlq", Replays: "sluice.replays", Partitions: 3, Replication: -1},
		Producer:  bus.DefaultProducerConfig(),
		Collector: col,
		Enricher:  enr,
		Sinks:     []Sink{NewSink(loader.Spec.Type)},
		Jobs:      jobs.DefaultConfig(),
	}
}

// Load reads a YAML file over the defaults.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, nil
	}
	if err := config.LoadFile(path, &cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// LoadYAML reads the YAML document b over c.
func (c *Config) LoadYAML(b []byte) error { return config.DecodeYAML(b, c) }

// Write writes c as YAML, secrets masked.
func (c Config) Write(w io.Writer) error {
	b, err := config.EncodeYAML(c)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// LakeURL is where the lake is: lake.url, or <data_dir>/lake.
func (c *Config) LakeURL() string {
	if c.Lake.URL != "" {
		return c.Lake.URL
	}
	return c.Process.DataDir + "/lake"
}

// Catalog is the lake's catalog settings, its database defaulting to
// <data_dir>/catalog.db for a lake on S3 (a lake on disk keeps its own).
func (c *Config) Catalog() lake.CatalogConfig {
	cc := c.Lake.Catalog
	if cc.URI == "" && strings.HasPrefix(c.LakeURL(), "s3://") {
		cc.URI = filepath.Join(c.Process.DataDir, "catalog.db")
	}
	return cc
}

// LakeSink is the settings of the first sink of type lake, made when there
// is none.
func (c *Config) LakeSink() *loader.Config {
	return c.SinkOf(loader.Spec.Type).(*loader.Config)
}

// SinkOf is the settings of the first sink of type typ, made with its
// defaults when there is none.
func (c *Config) SinkOf(typ string) any {
	for _, s := range c.Sinks {
		if s.Type == typ {
			return s.Config
		}
	}
	s := NewSink(typ)
	c.Sinks = append(c.Sinks, s)
	return s.Config
}

// Validate reports every setting the process cannot start with, each with
// its YAML path.
func (c *Config) Validate() error {
	var errs []error
	add := func(path string, err error) { errs = append(errs, config.Prefix(path, err)) }
	if c.Process.InstanceID == "" {
		add("instance_id", errors.New("must be set: name this process, such as its pod's name"))
	}
	switch c.Process.LogFormat {
	case "auto", "text", "json":
	default:
		add("log_format", fmt.Errorf("%q: want auto, text or json", c.Process.LogFormat))
	}
	switch c.Process.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", fmt.Errorf("%q: want debug, info, warn or error", c.Process.LogLevel))
	}
	add("ops", c.Ops.Validate())
	add("console", c.Console.Validate())
	add("kafka", c.Kafka.Validate())
	if _, _, err := net.SplitHostPort(c.Broker.Addr); err != nil {
		add("broker.addr", fmt.Errorf("%q: want host:port", c.Broker.Addr))
	}
	for key, name := range map[string]string{"raw": c.Topics.Raw, "enriched": c.Topics.Enriched, "dlq": c.Topics.DLQ, "replays": c.Topics.Replays} {
		if name == "" {
			add("topics."+key, errors.New("must be set"))
		}
	}
	if c.Topics.Partitions < 1 {
		add("topics.partitions", fmt.Errorf("%d: want at least 1", c.Topics.Partitions))
	}
	add("producer", c.Producer.Validate())
	add("jobs", c.Jobs.Validate())
	add("collector", c.collectorConfig().Validate())
	if !c.Enricher.Disabled {
		add("enricher", c.enricherConfig().Validate())
	}
	modelled := map[string]bool{}
	for i, m := range c.models() {
		path := fmt.Sprintf("models[%d]", i)
		if i >= len(c.Models) {
			path = "enricher.forms_api"
		}
		if modelled[m.EventType] {
			add(path+".event_type", fmt.Errorf("%q: another model has this event type; one model an event type", m.EventType))
		}
		modelled[m.EventType] = true
		add(path, m.Validate())
	}
	names := map[string]bool{}
	for i, s := range c.Sinks {
		path := fmt.Sprintf("sinks[%d]", i)
		if names[s.Name] {
			add(path+".name", fmt.Errorf("%q: another sink has this name", s.Name))
		}
		names[s.Name] = true
		v, ok := s.Config.(interface{ Validate() error })
		if !ok {
			add(path, errors.New("a sink needs a type and its settings"))
			continue
		}
		add(path, v.Validate())
	}
	aggs := map[string]bool{}
	for i := range c.Aggregations {
		a := c.aggregationConfig(i)
		path := fmt.Sprintf("aggregations[%d]", i)
		if aggs[a.Name] {
			add(path+".name", fmt.Errorf("%q: another aggregation has this name", a.Name))
		}
		aggs[a.Name] = true
		add(path, a.Validate())
	}
	return errors.Join(errs...)
}

// models are the models of the file, and the bundled form model when
// enricher.forms_api names the forms API.
func (c *Config) models() []enricher.ModelConfig {
	ms := slices.Clone(c.Models)
	if c.Enricher.FormsAPI != "" {
		ms = append(ms, enricher.Forms(c.Enricher.FormsAPI))
	}
	return ms
}

// collectorConfig is the collector's settings with what the process gives
// it: its id and topics.
func (c *Config) collectorConfig() collector.Config {
	cc := c.Collector
	cc.ID, cc.RawTopic, cc.DLQTopic = c.Process.InstanceID, c.Topics.Raw, c.Topics.DLQ
	return cc
}

// enricherConfig is the enricher's settings with its topics and
// transactional id.
func (c *Config) enricherConfig() enricher.Config {
	ec := c.Enricher
	ec.RawTopic, ec.EnrichedTopic, ec.DLQTopic = c.Topics.Raw, c.Topics.Enriched, c.Topics.DLQ
	ec.InstanceID = c.Process.InstanceID
	if ec.TransactionalID == "" {
		ec.TransactionalID = "sluice-enricher-" + c.Process.InstanceID
	}
	return ec
}

// aggregationConfig is the i-th aggregation with what the process gives
// it.
func (c *Config) aggregationConfig(i int) aggregator.Config {
	a := c.Aggregations[i]
	a.DLQTopic, a.InstanceID = c.Topics.DLQ, c.Process.InstanceID
	if a.TransactionalID == "" {
		a.TransactionalID = "sluice-aggregator-" + a.Name + "-" + c.Process.InstanceID
	}
	return a
}

// Sink is an entry of sinks: its type, its name, and the settings of its
// type.
type Sink struct {
	Type string
	// Name names the sink (sink.<name> in the status API); its type by
	// default.
	Name string
	// Config points to the type's settings, as the type's Spec.Config
	// made them.
	Config any
}

// NewSink is a sink of type typ with its defaults.
func NewSink(typ string) Sink {
	spec, _ := SinkSpec(typ)
	return Sink{Type: typ, Name: typ, Config: spec.Config()}
}

// DecodeYAML reads a sinks entry: its type, then the rest as that type's
// settings.
func (s *Sink) DecodeYAML(n *yaml.Node, path string) []error {
	if n.Kind != yaml.MappingNode {
		return []error{&config.PathError{Path: path, Line: n.Line, Err: errors.New("want a mapping: type, name and the type's settings")}}
	}
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line}
	var typ, name *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "type":
			typ = n.Content[i+1]
		case "name":
			name = n.Content[i+1]
		default:
			rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
		}
	}
	if typ == nil || typ.Value == "" {
		return []error{&config.PathError{Path: config.Join(path, "type"), Line: n.Line,
			Err: fmt.Errorf("every sink needs a type: one of %v", SinkTypes())}}
	}
	spec, ok := SinkSpec(typ.Value)
	if !ok {
		return []error{&config.PathError{Path: config.Join(path, "type"), Line: typ.Line,
			Err: fmt.Errorf("%q: want one of %v", typ.Value, SinkTypes())}}
	}
	s.Type, s.Name, s.Config = typ.Value, typ.Value, spec.Config()
	if name != nil && name.Value != "" {
		s.Name = name.Value
	}
	if rc, ok := s.Config.(sink.Settings); ok {
		// Sinks of one type but other names must not share a group,
		// which would split the partitions between them.
		rc.Runner().Group = "sluice-loader-" + s.Name
	}
	return config.DecodeNode(rest, s.Config, path)
}

// EncodeYAML writes a sinks entry as DecodeYAML reads it.
func (s Sink) EncodeYAML() *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	n.Content = append(n.Content, str("type"), str(s.Type), str("name"), str(s.Name))
	if settings := config.EncodeNode(reflect.ValueOf(s.Config), false); settings.Kind == yaml.MappingNode {
		n.Content = append(n.Content, settings.Content...)
	}
	return n
}

// selected reports whether a sink is among names (of sinks, of types or
// of kinds of types); "*" selects every sink.
func (s Sink) selected(names []string) bool {
	return slices.Contains(names, "*") || slices.Contains(names, s.Name) || slices.Contains(names, s.Type) ||
		slices.ContainsFunc(names, func(n string) bool { return ofKind(s.Type, n) })
}
