package config

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadGood(t *testing.T) {
	cfg, err := Load("testdata/full.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DataDir = "/var/lib/sluice"
	want.LogFormat, want.LogLevel = "json", "debug"
	want.Kafka = Kafka{Brokers: []string{"kafka-0:9092", "kafka-1:9092"}, TLS: true,
		SASLMechanism: "SCRAM-SHA-512", SASLUser: "sluice", SASLPassword: "secret"}
	want.Broker = Broker{Addr: "127.0.0.1:19092", Fsync: true}
	want.Topics = Topics{Raw: "events.raw", Enriched: "events.enriched", DLQ: "events.dlq", Partitions: 12, Replication: 3}
	want.Enricher = Enricher{Group: "enrichers", TransactionalID: "enricher-0", UnknownSchema: "reject", Concurrency: 64,
		FormsAPI: "http://forms:8090/forms/{payload.form_id}"}
	want.Collector = Collector{HTTPAddr: "0.0.0.0:8080", ID: "collector-0", APIKeys: []string{"k1", "k2"},
		MaxBodyBytes: 512 << 10, MaxBatchBytes: 32 << 20, BatchMax: 5000, MaxInflightBytes: 1 << 30,
		ProduceTimeout: 3 * time.Second, ShutdownTimeout: 20 * time.Second}
	want.Producer = Producer{Linger: 5 * time.Millisecond, MaxBufferedBytes: 128 << 20, Compression: "zstd"}
	want.Schemas = "/etc/sluice/schemas"
	want.Lake = Lake{URL: "s3://events/lake", S3Endpoint: "http://minio:9000", S3Region: "eu-west-1", S3PathStyle: true}
	want.Loader = Loader{Topics: []string{"sluice.enriched", "sluice.dlq"}, Group: "loaders", FlushRows: 50000,
		FlushBytes: 32 << 20, FlushInterval: 30 * time.Second, MemoryLimit: 1 << 30, Tables: map[string]LoaderTable{
			"agg_turnstile": {Format: "csv.gz"}, "yellow_taxi_trip": {TimeField: "tpep_pickup_datetime",
				Columns: map[string]string{"tpep_pickup_datetime": "timestamp", "tpep_dropoff_datetime": "timestamp"}}}}
	want.Aggregations = []Aggregation{{Name: "turnstile_4h", Topic: "mta-turnstile", Format: "csv",
		Columns: []Column{{"C/A", "string"}, {"ENTRIES", "int"}},
		Time:    AggregationTime{Fields: []string{"DATE", "TIME"}, Layout: "MM/DD/YYYY HH:mm:ss"},
		Window:  AggregationWindow{Size: 4 * time.Hour, Delay: time.Hour, IdleTimeout: 30 * time.Second},
		GroupBy: []string{"C/A"}, Dedupe: []string{"C/A", "DATE", "TIME"},
		Aggregates: []Aggregate{{Op: "sum", Field: "ENTRIES", As: "entries"}}, Output: AggregationOutput{Format: "csv.gz"},
		MaxOpenWindows: 1000000, Partitions: 6, Group: "turnstile-aggregators"}}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}

	empty, err := Load("testdata/empty.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), empty); diff != "" {
		t.Errorf("an empty file must mean the defaults (-want +got):\n%s", diff)
	}
}

func TestLoadBad(t *testing.T) {
	tests := map[string]string{
		"unknown_key.bad.yml":  "field http_adr not found",
		"bad_size.bad.yml":     `want a size such as 65536, 64KiB or 1MiB, got "lots"`,
		"bad_duration.bad.yml": "soon",
		"missing.yml":          "no such file",
	}
	for file, want := range tests {
		_, err := Load(filepath.Join("testdata", file))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s) = %v, want an error containing %q", file, err, want)
		}
	}
}

// TestPrecedence checks file < environment < flags, list flags replacing
// rather than appending, and flags given between positional arguments.
func TestPrecedence(t *testing.T) {
	parse := func(env map[string]string, args ...string) (Config, []string) {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		fs := NewFlagSet("test", "Usage: test", &bytes.Buffer{})
		c := fs.Config()
		fs.String(&c.Collector.HTTPAddr, "http-addr", "")
		fs.List(&c.Collector.APIKeys, "api-key", "")
		fs.Bytes(&c.Collector.MaxBodyBytes, "max-body-bytes", "")
		fs.Duration(&c.Collector.ProduceTimeout, "produce-timeout", "")
		fs.Bool(&c.Broker.Fsync, "broker-fsync", "")
		cfg, err := fs.Parse(args)
		if err != nil {
			t.Fatal(err)
		}
		return cfg, fs.Args()
	}
	file := []string{"--config", "testdata/full.good.yml"}

	cfg, _ := parse(nil, file...)
	if cfg.Collector.HTTPAddr != "0.0.0.0:8080" || cfg.Collector.ProduceTimeout != 3*time.Second {
		t.Errorf("file not applied: %+v", cfg.Collector)
	}
	cfg, _ = parse(map[string]string{"SLUICE_HTTP_ADDR": "127.0.0.1:1", "SLUICE_API_KEY": "e1,e2"}, file...)
	if cfg.Collector.HTTPAddr != "127.0.0.1:1" || !cmp.Equal(cfg.Collector.APIKeys, []string{"e1", "e2"}) {
		t.Errorf("environment must win over the file: %q %q", cfg.Collector.HTTPAddr, cfg.Collector.APIKeys)
	}
	cfg, args := parse(map[string]string{"SLUICE_HTTP_ADDR": "127.0.0.1:1", "SLUICE_API_KEY": "e1"},
		append(file, "topic", "--http-addr", "127.0.0.1:2", "--api-key", "f1", "--api-key", "f2",
			"--max-body-bytes", "2MiB", "--broker-fsync", "other")...)
	if cfg.Collector.HTTPAddr != "127.0.0.1:2" || !cmp.Equal(cfg.Collector.APIKeys, []string{"f1", "f2"}) ||
		cfg.Collector.MaxBodyBytes != 2<<20 || !cfg.Broker.Fsync {
		t.Errorf("flags must win over the environment: %+v", cfg.Collector)
	}
	if diff := cmp.Diff([]string{"topic", "other"}, args); diff != "" {
		t.Errorf("positional args (-want +got):\n%s", diff)
	}
	// Settings nobody touched keep the file's values.
	if cfg.Topics.Raw != "events.raw" {
		t.Errorf("topics.raw = %q, want the file's", cfg.Topics.Raw)
	}
}

func TestBadFlagValues(t *testing.T) {
	for _, args := range [][]string{
		{"--max-body-bytes", "huge"},
		{"--produce-timeout", "5"},
	} {
		fs := NewFlagSet("test", "Usage: test", &bytes.Buffer{})
		c := fs.Config()
		fs.Bytes(&c.Collector.MaxBodyBytes, "max-body-bytes", "")
		fs.Duration(&c.Collector.ProduceTimeout, "produce-timeout", "")
		if _, err := fs.Parse(args); err == nil {
			t.Errorf("Parse(%v) accepted a bad value", args)
		}
	}
	t.Setenv("SLUICE_PRODUCE_TIMEOUT", "later")
	fs := NewFlagSet("test", "Usage: test", &bytes.Buffer{})
	fs.Duration(&fs.Config().Collector.ProduceTimeout, "produce-timeout", "")
	if _, err := fs.Parse(nil); err == nil || !strings.Contains(err.Error(), "SLUICE_PRODUCE_TIMEOUT") {
		t.Errorf("a bad environment value: %v, want an error naming the variable", err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"65536": 65536, "64KiB": 64 << 10, "1MiB": 1 << 20, "16MB": 16_000_000, "1.5GiB": 3 << 29, "2g": 2 << 30, "10 b": 10,
	} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "MiB", "1TiB", "1e30"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}
