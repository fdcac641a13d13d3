package pipeline

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluicehq/sluice/internal/aggregator"
	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/console"
	"github.com/sluicehq/sluice/internal/jobs"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/loader"
	"github.com/sluicehq/sluice/internal/row"
	"github.com/sluicehq/sluice/internal/window"
)

func TestLoadGood(t *testing.T) {
	cfg, err := Load("testdata/full.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Process = ProcessConfig{InstanceID: "collector-0", DataDir: "/var/lib/sluice", LogFormat: "json", LogLevel: "debug"}
	want.Ops = app.OpsConfig{Addr: "0.0.0.0:9464", Pprof: true}
	want.Kafka = bus.ClientConfig{Brokers: []string{"kafka-0:9092", "kafka-1:9092"}, TLS: true,
		SASLMechanism: "SCRAM-SHA-512", SASLUser: "sluice", SASLPassword: "secret", StartTimeout: time.Minute}
	want.Broker = bus.BrokerConfig{Addr: "127.0.0.1:19092", Fsync: true}
	want.Topics = Topics{Raw: "events.raw", Enriched: "events.enriched", DLQ: "events.dlq", Replays: "events.replays", Partitions: 12, Replication: 3}
	want.Console = console.Config{ReadKeys: []string{"look"}, AdminKeys: []string{"fix"}}
	want.Enricher.Group, want.Enricher.TransactionalID, want.Enricher.UnknownSchema = "enrichers", "enricher-0", "reject"
	want.Enricher.Concurrency, want.Enricher.FormsAPI = 64, "http://forms:8090/forms/{payload.form_id}"
	c := &want.Collector
	c.Addr, c.APIKeys, c.MaxBodyBytes, c.MaxBatchBytes, c.BatchMax = "0.0.0.0:8080", []string{"k1", "k2"}, 512<<10, 32<<20, 5000
	c.MaxInflightBytes, c.ProduceTimeout, c.ShutdownTimeout = 1<<30, 3*time.Second, 20*time.Second
	want.Producer = bus.ProducerConfig{Linger: 5 * time.Millisecond, MaxBufferedBytes: 128 << 20, Compression: "zstd"}
	want.Schemas = "/etc/sluice/schemas"
	want.Lake = lake.Config{URL: "s3://events/lake", S3: lake.S3Config{Endpoint: "http://minio:9000", Region: "eu-west-1", PathStyle: true}}
	ls := loader.DefaultConfig()
	ls.Topics, ls.Group, ls.FlushRows, ls.FlushBytes = []string{"sluice.enriched", "sluice.dlq"}, "loaders", 50000, 32<<20
	ls.FlushInterval, ls.MemoryLimit = 30*time.Second, 1<<30
	ls.Tables = map[string]loader.Table{"agg_turnstile": {Format: "csv.gz"}, "yellow_taxi_trip": {TimeField: "tpep_pickup_datetime",
		Columns: map[string]row.Kind{"tpep_pickup_datetime": row.KindTimestamp, "tpep_dropoff_datetime": row.KindTimestamp}}}
	want.Sinks = []Sink{{Type: "lake", Name: "lake", Config: &ls}}
	var agg aggregator.Config
	agg.SetDefaults()
	agg.Name, agg.Topic, agg.Format = "turnstile_4h", "mta-turnstile", "csv"
	agg.Columns = []aggregator.Column{{Name: "C/A", Type: "string"}, {Name: "ENTRIES", Type: "int"}, {Name: "DATE", Type: "string"}, {Name: "TIME", Type: "string"}}
	agg.Time = aggregator.Time{Fields: []string{"DATE", "TIME"}, Layout: "MM/DD/YYYY HH:mm:ss"}
	agg.Window = aggregator.Window{Size: 4 * time.Hour, Delay: time.Hour, IdleTimeout: 30 * time.Second}
	agg.GroupBy, agg.Dedupe = []string{"C/A"}, []string{"C/A", "DATE", "TIME"}
	agg.Aggregates = []window.Aggregate{{Op: "sum", Field: "ENTRIES", As: "entries"}}
	agg.Output.Format, agg.MaxOpenWindows, agg.Partitions, agg.Group = "csv.gz", 1000000, 6, "turnstile-aggregators"
	want.Aggregations = []aggregator.Config{agg}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the full example does not validate: %v", err)
	}

	empty, err := Load("testdata/empty.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), empty); diff != "" {
		t.Errorf("an empty file must mean the defaults (-want +got):\n%s", diff)
	}
}

// TestLoadBad checks that every error of a bad file is reported with its
// YAML path, by Load or by Validate.
func TestLoadBad(t *testing.T) {
	tests := map[string][]string{
		"unknown_key.bad.yml":   {"collector.http_adr: unknown setting; did you mean http_addr?"},
		"bad_size.bad.yml":      {`collector.max_body_bytes: want a size such as 65536, 64KiB or 1MiB, got "lots" (line 2)`},
		"bad_duration.bad.yml":  {`collector.produce_timeout: want a duration such as 5s or 250ms, got "soon" (line 2)`},
		"moved_loader.bad.yml":  {"loader: the lake loader is now a sink: list it under sinks: as - type: lake"},
		"bad_sink_type.bad.yml": {`sinks[0].type: "lak": want one of [lake opensearch elasticsearch] (line 2)`},
		"bad_kind.bad.yml":      {`sinks[0].tables.trips.columns.pickup: column type "datetime": want boolean, bigint, double, string, timestamp or json (line 4)`},
		"invalid.bad.yml": {
			`log_level: "loud": want debug, info, warn or error`,
			"topics.partitions: 0: want at least 1",
			"collector.batch_max: batch max 0: want at least 1",
			"collector.produce_timeout: produce timeout must be positive",
			"sinks[0].flush_rows: 0: want at least 1",
			"sinks[0].memory_limit: memory limit 1024 must be at least the flush bytes 67108864",
			`sinks[0].tables.trips.format: "orc": want one of parquet, csv.gz, avro`,
			`sinks[1].name: "lake": another sink has this name`,
			`aggregations[0].name: aggregation name "Bad Name": want snake_case`,
		},
		"bad_search.bad.yml": {
			`sinks[0].urls[0]: "opensearch:9200": want http://host:port or https://host:port`,
			`sinks[0].index: "Events-{event_type}-{yyyy.MMM}": {yyyy.MMM}: want {event_type} or a date`,
			`sinks[0].versioning: "internal": want none or external`,
			"sinks[0].bulk_docs: 0: want at least 1",
			"sinks[0].api_key: give an API key or a username and password, not both",
			`sinks[1].index: "{event_type}-{yyyy.MM.dd}": a data stream rolls over by itself`,
		},
		"missing.yml": {"no such file"},
	}
	for file, wants := range tests {
		cfg, err := Load(filepath.Join("testdata", file))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil {
			t.Errorf("%s: no error", file)
			continue
		}
		got := err.Error()
		for _, want := range wants {
			if !strings.Contains(got, want) {
				t.Errorf("%s: errors lack %q; got:\n%s", file, want, got)
			}
		}
		if n := len(config.Errors(err)); file == "invalid.bad.yml" && n < len(wants) {
			t.Errorf("%s: %d errors, want each of the %d reported", file, n, len(wants))
		}
	}
}

// TestPrecedence checks file < environment < flags, list flags replacing
// rather than appending, flags given between positional arguments, and
// flags of the lake sink, an entry of a list.
func TestPrecedence(t *testing.T) {
	parse := func(env map[string]string, args ...string) (Config, []string) {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		fs := NewFlagSet("test", "Usage: test", &bytes.Buffer{})
		CollectorFlags(fs)
		BrokerFlags(fs)
		SinkFlags(fs, "*")
		cfg, err := fs.Parse(args)
		if err != nil {
			t.Fatal(err)
		}
		return cfg, fs.Args()
	}
	file := []string{"--config", "testdata/full.good.yml"}

	cfg, _ := parse(nil, file...)
	if cfg.Collector.Addr != "0.0.0.0:8080" || cfg.Collector.ProduceTimeout != 3*time.Second || cfg.LakeSink().FlushRows != 50000 {
		t.Errorf("file not applied: %+v", cfg.Collector)
	}
	cfg, _ = parse(map[string]string{"SLUICE_HTTP_ADDR": "127.0.0.1:1", "SLUICE_API_KEY": "e1,e2", "SLUICE_FLUSH_ROWS": "7"}, file...)
	if cfg.Collector.Addr != "127.0.0.1:1" || !cmp.Equal(cfg.Collector.APIKeys, []string{"e1", "e2"}) || cfg.LakeSink().FlushRows != 7 {
		t.Errorf("environment must win over the file: %q %q %d", cfg.Collector.Addr, cfg.Collector.APIKeys, cfg.LakeSink().FlushRows)
	}
	cfg, args := parse(map[string]string{"SLUICE_HTTP_ADDR": "127.0.0.1:1", "SLUICE_API_KEY": "e1"},
		append(file, "topic", "--http-addr", "127.0.0.1:2", "--api-key", "f1", "--api-key", "f2",
			"--max-body-bytes", "2MiB", "--broker-fsync", "--flush-rows", "9", "other")...)
	if cfg.Collector.Addr != "127.0.0.1:2" || !cmp.Equal(cfg.Collector.APIKeys, []string{"f1", "f2"}) ||
		cfg.Collector.MaxBodyBytes != 2<<20 || !cfg.Broker.Fsync || cfg.LakeSink().FlushRows != 9 {
		t.Errorf("flags must win over the environment: %+v", cfg.Collector)
	}
	if diff := cmp.Diff([]string{"topic", "other"}, args); diff != "" {
		t.Errorf("positional args (-want +got):\n%s", diff)
	}
	// Settings nobody touched keep the file's values.
	if cfg.Topics.Raw != "events.raw" || cfg.LakeSink().Group != "loaders" {
		t.Errorf("topics.raw = %q, sinks[0].group = %q, want the file's", cfg.Topics.Raw, cfg.LakeSink().Group)
	}
}

func TestBadFlagValues(t *testing.T) {
	for _, args := range [][]string{
		{"--max-body-bytes", "huge"},
		{"--produce-timeout", "5"},
		{"--flush-rows", "many"},
	} {
		fs := NewFlagSet("test", "Usage: test", &bytes.Buffer{})
		CollectorFlags(fs)
		SinkFlags(fs, "*")
		if _, err := fs.Parse(args); err == nil {
			t.Errorf("Parse(%v) accepted a bad value", args)
		}
	}
	t.Setenv("SLUICE_PRODUCE_TIMEOUT", "later")
	fs := NewFlagSet("test", "Usage: test", &bytes.Buffer{})
	CollectorFlags(fs)
	if _, err := fs.Parse(nil); err == nil || !strings.Contains(err.Error(), "SLUICE_PRODUCE_TIMEOUT") {
		t.Errorf("a bad environment value: %v, want an error naming the variable", err)
	}
}

// TestWriteReadsBack prints the full example and reads it back: the same
// configuration, but for the secrets, which are masked.
func TestWriteReadsBack(t *testing.T) {
	cfg, err := Load("testdata/full.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := cfg.Write(&b); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"secret", "k1", "look", "fix"} {
		if regexp.MustCompile(`\b` + secret + `\b`).Match(b.Bytes()) {
			t.Errorf("the printed config shows the secret %q:\n%s", secret, b.String())
		}
	}
	back := Default()
	if err := back.LoadYAML(b.Bytes()); err != nil {
		t.Fatalf("the printed config does not read back: %v\n%s", err, b.String())
	}
	if diff := cmp.Diff(cfg, back, cmpopts.IgnoreFields(bus.ClientConfig{}, "SASLPassword"), cmpopts.IgnoreFields(Config{}, "Collector.APIKeys", "Console"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("printed and read back (-want +got):\n%s", diff)
	}
}

// TestConfigurationReference keeps docs/configuration.md in step with the
// config types: regenerate it with 'go run ./cmd/sluice config docs >
// docs/configuration.md'.
func TestConfigurationReference(t *testing.T) {
	var b bytes.Buffer
	if err := WriteReference(&b); err != nil {
		t.Fatal(err)
	}
	path := "../../docs/configuration.md"
	if os.Getenv("SLUICE_UPDATE_DOCS") != "" {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(have), b.String()); diff != "" {
		t.Errorf("docs/configuration.md is stale; regenerate it with 'go run ./cmd/sluice config docs > docs/configuration.md' (-have +want):\n%s", diff)
	}
	for _, want := range []string{"`collector.http_addr`", "`--http-addr` (`SLUICE_HTTP_ADDR`)", "## sinks: type lake", "`sinks[].flush_rows`",
		"`sinks[].tables.<name>.format`", "`aggregations[].window.size`", "`kafka.sasl_password`"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the reference lacks %s", want)
		}
	}
}

// TestDocsExamplesLoad reads every YAML example of the README and the docs
// as a config file, and the demo's aggregations, so that none goes stale.
func TestDocsExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	fence := regexp.MustCompile("(?s)( *)```yaml\n(.*?)\n *```")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fence.FindAllStringSubmatch(string(b), -1) {
			indent, body := m[1], m[2]
			var lines []string
			for _, l := range strings.Split(body, "\n") {
				lines = append(lines, strings.TrimPrefix(l, indent))
			}
			if strings.HasPrefix(lines[0], "# models/") {
				// A batch model's checks, not a config.
				var spec jobs.Spec
				if err := errors.Join(config.DecodeYAML([]byte(strings.Join(lines, "\n")), &spec), spec.Validate()); err != nil {
					t.Errorf("%s: a model's checks do not load: %v\n%s", f, err, body)
				}
				continue
			}
			cfg := Default()
			if err := cfg.LoadYAML([]byte(strings.Join(lines, "\n"))); err != nil {
				t.Errorf("%s: a YAML example does not load: %v\n%s", f, err, body)
				continue
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("%s: a YAML example is not valid: %v\n%s", f, err, body)
			}
			n++
		}
	}
	if n < 3 {
		t.Errorf("found %d YAML examples, want the README's and the docs'", n)
	}
	demoModels, err := jobs.Load("../../cmd/sluice/demo-models")
	if err != nil || len(demoModels) != 4 {
		t.Errorf("demo models: %d, %v; want the 3 models and the sample's checks", len(demoModels), err)
	}
	demo, err := os.ReadFile("../../cmd/sluice/demo-aggregations.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	if err := cfg.LoadYAML(demo); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil || len(cfg.Aggregations) != 3 {
		t.Errorf("demo aggregations: %d, %v", len(cfg.Aggregations), err)
	}
}
