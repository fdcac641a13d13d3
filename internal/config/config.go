// Package config is Sluice's one way to configure a command: a YAML file,
// then SLUICE_* environment variables, then flags, each overriding the one
// before. Every flag has an environment variable named after it
// (--http-addr is SLUICE_HTTP_ADDR) and a YAML key at a fixed place in
// Config, so the three sources can never disagree on what a setting is.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/internal/collector"
	"github.com/sluicehq/sluice/internal/loader"
)

// Config is the whole configuration file. Each command reads the parts it
// needs.
type Config struct {
	DataDir   string    `yaml:"data_dir"`
	LogFormat string    `yaml:"log_format"`
	LogLevel  string    `yaml:"log_level"`
	Kafka     Kafka     `yaml:"kafka"`
	Broker    Broker    `yaml:"broker"`
	Topics    Topics    `yaml:"topics"`
	Collector Collector `yaml:"collector"`
	Producer  Producer  `yaml:"producer"`
	Lake      Lake      `yaml:"lake"`
	Loader    Loader    `yaml:"loader"`
	Enricher  Enricher  `yaml:"enricher"`
	// Aggregations are the windowed aggregations `sluice aggregator` and
	// `sluice up` run.
	Aggregations []Aggregation `yaml:"aggregations"`
	// Schemas is a directory of JSON Schemas, <event_type>/<version>.json;
	// empty means the schemas bundled for the sample data.
	Schemas string `yaml:"schemas"`
}

// Lake says where the lake is: a directory, or s3://bucket/prefix. Empty
// means <data_dir>/lake.
type Lake struct {
	URL string `yaml:"url"`
	// S3 settings; empty ones come from the standard AWS_* variables.
	S3Endpoint  string `yaml:"s3_endpoint"`
	S3Region    string `yaml:"s3_region"`
	S3PathStyle bool   `yaml:"s3_path_style"`
}

// Loader configures the lake loader.
type Loader struct {
	Topics        []string      `yaml:"topics"`
	Group         string        `yaml:"group"`
	FlushRows     int           `yaml:"flush_rows"`
	FlushBytes    ByteSize      `yaml:"flush_bytes"`
	FlushInterval time.Duration `yaml:"flush_interval"`
	MemoryLimit   ByteSize      `yaml:"memory_limit"`
	// Tables sets, per table, its file format (parquet, csv.gz, avro), the
	// field whose date partitions it, and exact column types.
	Tables map[string]LoaderTable `yaml:"tables"`
}

// LoaderTable configures one lake table.
type LoaderTable struct {
	Format    string `yaml:"format"`
	TimeField string `yaml:"time_field"`
	// Columns maps column names to boolean, bigint, double, string,
	// timestamp or json.
	Columns map[string]string `yaml:"columns"`
}

// Enricher configures the enricher stage. Its pipelines are the bundled
// ones: taxi zones joined to yellow_taxi_trip, and, with FormsAPI, form
// definitions fetched for form_event and modelled into form and
// form_field rows.
type Enricher struct {
	Group string `yaml:"group"`
	// TransactionalID must differ between enrichers running at once;
	// empty means sluice-enricher-<collector id>.
	TransactionalID string `yaml:"transactional_id"`
	UnknownSchema   string `yaml:"unknown_schema"`
	Concurrency     int    `yaml:"concurrency"`
	// FormsAPI is the forms API's URL template, such as
	// http://forms:8090/forms/{payload.form_id}.
	FormsAPI string `yaml:"forms_api"`
	// Disabled keeps `sluice up` from running an enricher.
	Disabled bool `yaml:"disabled"`
}

// Aggregation is one windowed aggregation (docs/aggregations.md).
type Aggregation struct {
	Name string `yaml:"name"`
	// Topic is the input; EventType keeps only envelopes of that type.
	Topic     string `yaml:"topic"`
	EventType string `yaml:"event_type"`
	// Format is json (Sluice envelopes) or csv, with Columns in order.
	Format             string            `yaml:"format"`
	Columns            []Column          `yaml:"columns"`
	Time               AggregationTime   `yaml:"time"`
	Window             AggregationWindow `yaml:"window"`
	GroupBy            []string          `yaml:"group_by"`
	Dedupe             []string          `yaml:"dedupe"`
	Aggregates         []Aggregate       `yaml:"aggregates"`
	Output             AggregationOutput `yaml:"output"`
	CheckpointInterval time.Duration     `yaml:"checkpoint_interval"`
	// MaxOpenWindows bounds the state in window-groups (0: no bound).
	MaxOpenWindows int `yaml:"max_open_windows"`
	// Keyed says the topic is partitioned by the group already: no
	// repartition topic. Partitions sizes the repartition topic (default:
	// the input's), the most instances that can share the work.
	Keyed      bool  `yaml:"keyed"`
	Partitions int32 `yaml:"partitions"`
	// Group is the consumer group (default sluice-aggregator-<name>);
	// TransactionalID, unique to each running instance, defaults to
	// sluice-aggregator-<name>-<collector id>.
	Group           string `yaml:"group"`
	TransactionalID string `yaml:"transactional_id"`
}

// AggregationTime says where the event time is: fields joined by a
// space, read with layout (MM/DD/YYYY HH:mm:ss style, Go's, or rfc3339).
type AggregationTime struct {
	Fields []string `yaml:"fields"`
	Layout string   `yaml:"layout"`
}

// AggregationWindow sets the windows (slide 0: tumbling) and the
// watermark.
type AggregationWindow struct {
	Size        time.Duration `yaml:"size"`
	Slide       time.Duration `yaml:"slide"`
	Delay       time.Duration `yaml:"delay"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// AggregationOutput sets the table's file format (parquet, csv.gz) and
// the results topic (default sluice.agg.<name>).
type AggregationOutput struct {
	Format string `yaml:"format"`
	Topic  string `yaml:"topic"`
}

// Column is a declared CSV field: string, int, float or timestamp.
type Column struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
}

// Aggregate is one output column: op (count, sum, min, max, avg, first,
// last, delta) of field, named as.
type Aggregate struct {
	Op    string `yaml:"op"`
	Field string `yaml:"field"`
	As    string `yaml:"as"`
}

// Kafka says how to reach an external cluster. With no brokers, `sluice up`
// runs the embedded one.
type Kafka struct {
	Brokers       []string `yaml:"brokers"`
	TLS           bool     `yaml:"tls"`
	TLSCAFile     string   `yaml:"tls_ca_file"`
	SASLMechanism string   `yaml:"sasl_mechanism"`
	SASLUser      string   `yaml:"sasl_user"`
	SASLPassword  string   `yaml:"sasl_password"`
}

// Broker configures the embedded broker.
type Broker struct {
	Addr  string `yaml:"addr"`
	Fsync bool   `yaml:"fsync"`
}

// Topics names the topics and how new ones are made.
type Topics struct {
	Raw         string `yaml:"raw"`
	Enriched    string `yaml:"enriched"`
	DLQ         string `yaml:"dlq"`
	Partitions  int32  `yaml:"partitions"`
	Replication int16  `yaml:"replication"`
}

// Collector configures the HTTP collector.
type Collector struct {
	HTTPAddr         string        `yaml:"http_addr"`
	ID               string        `yaml:"id"`
	APIKeys          []string      `yaml:"api_keys"`
	MaxBodyBytes     ByteSize      `yaml:"max_body_bytes"`
	MaxBatchBytes    ByteSize      `yaml:"max_batch_bytes"`
	BatchMax         int           `yaml:"batch_max"`
	MaxInflightBytes ByteSize      `yaml:"max_inflight_bytes"`
	ProduceTimeout   time.Duration `yaml:"produce_timeout"`
	ShutdownTimeout  time.Duration `yaml:"shutdown_timeout"`
}

// Producer tunes Kafka producing.
type Producer struct {
	Linger           time.Duration `yaml:"linger"`
	MaxBufferedBytes ByteSize      `yaml:"max_buffered_bytes"`
	// Compression is none, lz4, zstd, snappy or gzip. lz4 is the default
	// even for the embedded broker: its storage cost grows with bytes, and
	// uncompressed batches measured slower (make bench -compression none).
	Compression string `yaml:"compression"`
}

// Default returns the documented defaults.
func Default() Config {
	// Each stage owns its defaults; the file format only names them.
	cd := collector.DefaultConfig()
	ld := loader.DefaultConfig()
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "sluice"
	}
	return Config{
		DataDir:   "./sluice-data",
		LogFormat: "auto",
		LogLevel:  "info",
		Broker:    Broker{Addr: "127.0.0.1:9092"},
		Topics:    Topics{Raw: "sluice.raw", Enriched: "sluice.enriched", DLQ: "sluice.dlq", Partitions: 3, Replication: -1},
		Collector: Collector{
			HTTPAddr:         cd.Addr,
			ID:               host,
			MaxBodyBytes:     ByteSize(cd.MaxBodyBytes),
			MaxBatchBytes:    ByteSize(cd.MaxBatchBytes),
			BatchMax:         cd.BatchMax,
			MaxInflightBytes: ByteSize(cd.MaxInflightBytes),
			ProduceTimeout:   cd.ProduceTimeout,
			ShutdownTimeout:  cd.ShutdownTimeout,
		},
		Producer: Producer{MaxBufferedBytes: 256 << 20, Compression: "lz4"},
		Enricher: Enricher{Group: "sluice-enricher", UnknownSchema: "pass", Concurrency: 256},
		Loader: Loader{
			Topics:        ld.Topics,
			Group:         ld.Group,
			FlushRows:     ld.FlushRows,
			FlushBytes:    ByteSize(ld.FlushBytes),
			FlushInterval: ld.FlushInterval,
			MemoryLimit:   ByteSize(ld.MemoryLimit),
		},
	}
}

// Load reads a YAML file over the defaults. Unknown keys are errors, so that
// a misspelt setting is reported instead of silently ignored.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, nil
	}
	if err := cfg.loadFile(path); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c *Config) loadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	return c.LoadYAML(path, b)
}

// LoadYAML reads the settings b has over c's, as a config file named name.
func (c *Config) LoadYAML(name string, b []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty file means "all defaults".
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", name, err)
	}
	return nil
}
