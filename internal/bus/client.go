package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/internal/config"
)

// ClientConfig is what every stage needs to reach a Kafka cluster.
type ClientConfig struct {
	Brokers  []string `yaml:"brokers" flag:"brokers" doc:"Kafka bootstrap brokers, host:port. None: 'sluice up' runs the embedded broker, and debugging commands (topics, tail) ask the embedded broker at broker.addr."`
	ClientID string   `yaml:"-"`
	TLS      bool     `yaml:"tls" flag:"kafka-tls" doc:"Connect to Kafka over TLS."`
	// TLSCAFile adds a CA bundle to the system roots.
	TLSCAFile     string `yaml:"tls_ca_file" flag:"kafka-tls-ca-file" doc:"PEM file of CAs to trust for Kafka's TLS, added to the system's."`
	SASLMechanism string `yaml:"sasl_mechanism" flag:"kafka-sasl-mechanism" doc:"SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty for none."`
	SASLUser      string `yaml:"sasl_user" flag:"kafka-sasl-user" doc:"SASL user name."`
	SASLPassword  string `yaml:"sasl_password" flag:"kafka-sasl-password" secret:"true" doc:"SASL password."`
	// StartTimeout bounds what a stage waits for Kafka when it starts.
	StartTimeout time.Duration `yaml:"start_timeout" flag:"kafka-start-timeout" doc:"How long a stage waits for Kafka when it starts (to create its topics) before it gives up with an error. Once running, an unreachable broker is waited out."`
}

// DefaultClientConfig returns the documented defaults.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{StartTimeout: 30 * time.Second}
}

// Validate reports settings no client can start with; having no brokers
// is for the command to judge (sluice up runs its own).
func (c ClientConfig) Validate() error {
	var errs []error
	for _, b := range c.Brokers {
		if b == "" || !strings.Contains(b, ":") {
			errs = append(errs, config.Field("brokers", "%q: want host:port", b))
		}
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		errs = append(errs, config.Field("sasl_mechanism", "%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism))
	}
	if c.StartTimeout < 0 {
		errs = append(errs, config.Field("start_timeout", "%v: want a positive duration, or 0 for the default", c.StartTimeout))
	}
	return errors.Join(errs...)
}

// ErrNoBrokers is a client config with no brokers to reach.
var ErrNoBrokers = errors.New("no Kafka brokers: pass --brokers host:port, or run 'sluice up' to use the embedded broker")

func (c ClientConfig) opts(logger *slog.Logger) ([]kgo.Opt, error) {
	if len(c.Brokers) == 0 {
		return nil, ErrNoBrokers
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.WithLogger(kgoLogger{logger, newRepeats()}),
		// A request retried after a metadata refresh (a leader that moved,
		// a topic just created) waits up to 100 ms for it, the Java
		// client's refresh backoff, rather than franz-go's 5 s minimum
		// age. On Kafka 4 (transactions v2, KIP-890) it matters at every
		// transaction: a transaction's end returns before its commit
		// markers are written, the next one's first produce can get
		// CONCURRENT_TRANSACTIONS, and franz-go retries that after a
		// refresh. Against a real cluster, back-to-back transactions
		// stalled 4.5 s each without it (TestTransformBackToBack), and
		// sluicebench peers took 52 s rather than 9.
		kgo.MetadataMinAge(100 * time.Millisecond),
	}
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if c.TLS || c.TLSCAFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLSCAFile != "" {
			pool, err := config.CAPool(c.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka: %w", err)
			}
			tc.RootCAs = pool
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha512Mechanism()))
	}
	return opts, nil
}

// ProducerConfig tunes how a producer batches.
type ProducerConfig struct {
	// Linger trades a little latency for fewer, larger produce requests.
	// Batches also form while a request is in flight (an idempotent
	// producer has one per broker), but under load that left about six
	// events a request; waiting 0.5 ms for more halved the embedded
	// broker's CPU per event and cut the collector's (sluicebench up -only
	// alone). 1 ms did no better there, and with the broker in the
	// collector's process (sluicebench collector) made 64 connections
	// latency-bound.
	Linger time.Duration `yaml:"linger" flag:"produce-linger" doc:"How long the producer waits to fill a batch before sending it: fewer, larger produce requests, so less CPU per event for the collector and the brokers, for up to this much more latency per request (0: send at once; batches still form while a request is in flight)."`
	// MaxBufferedBytes bounds the records waiting for acknowledgement; a
	// producer that reaches it blocks, which is the stage's back-pressure.
	MaxBufferedBytes config.ByteSize `yaml:"max_buffered_bytes" doc:"Records waiting for Kafka's acknowledgement, at most; a producer that reaches it waits, which slows the stage rather than growing it."`
	// MaxRecordBytes is the largest record the producer will send.
	MaxRecordBytes int `yaml:"-"`
	// Compression is none, lz4, zstd, snappy or gzip; empty means lz4.
	// lz4 is the default even for the embedded broker: its storage cost
	// grows with bytes, and uncompressed batches measured slower.
	Compression string `yaml:"compression" flag:"produce-compression" doc:"Kafka batch compression: none, lz4, zstd, snappy or gzip."`
}

// DefaultProducerConfig returns the documented defaults.
func DefaultProducerConfig() ProducerConfig {
	return ProducerConfig{Linger: 500 * time.Microsecond, MaxBufferedBytes: 256 << 20, Compression: "lz4"}
}

// Validate reports settings no producer can start with.
func (c ProducerConfig) Validate() error {
	var errs []error
	if _, err := codec(c.Compression); err != nil {
		errs = append(errs, config.Field("compression", "%q: want one of %s", c.Compression, strings.Join(Compressions, ", ")))
	}
	if c.Linger < 0 {
		errs = append(errs, config.Field("linger", "%v: want 0 or more", c.Linger))
	}
	return errors.Join(errs...)
}

// Compressions lists the codecs ProducerConfig.Compression takes.
var Compressions = []string{"none", "lz4", "zstd", "snappy", "gzip"}

func codec(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "", "lz4":
		return kgo.Lz4Compression(), nil
	case "none":
		return kgo.NoCompression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("compression %q: want one of %s", name, strings.Join(Compressions, ", "))
}

// NewProducer returns a client whose writes are acknowledged only when every
// in-sync replica has them (acks=all), with idempotence so that its own
// retries never duplicate a record.
func NewProducer(cc ClientConfig, pc ProducerConfig, logger *slog.Logger) (*kgo.Client, error) {
	opts, err := cc.opts(logger)
	if err != nil {
		return nil, err
	}
	compression, err := codec(pc.Compression)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(pc.Linger),
		kgo.ProducerBatchCompression(compression, kgo.NoCompression()),
		// Topics are created up front; an unknown topic fails fast rather
		// than holding requests until they time out.
		kgo.UnknownTopicRetries(2),
	)
	if pc.MaxBufferedBytes > 0 {
		opts = append(opts, kgo.MaxBufferedBytes(int(pc.MaxBufferedBytes)))
	}
	if pc.MaxRecordBytes > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(int32(pc.MaxRecordBytes)))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("new kafka producer: %w", err)
	}
	return cl, nil
}

// NewClient returns a plain client for admin work and direct consuming.
func NewClient(cc ClientConfig, logger *slog.Logger, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := cc.opts(logger)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("new kafka client: %w", err)
	}
	return cl, nil
}

// NewGroupTransactSession builds a transactional consumer-producer from
// cc, for stages that read, process and write exactly once.
func NewGroupTransactSession(cc ClientConfig, logger *slog.Logger, extra ...kgo.Opt) (*kgo.GroupTransactSession, error) {
	opts, err := cc.opts(logger)
	if err != nil {
		return nil, err
	}
	s, err := kgo.NewGroupTransactSession(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("new transactional kafka client: %w", err)
	}
	return s, nil
}

// EnsureTopics creates the topics that do not exist yet. Replication -1
// takes the cluster's default.
func EnsureTopics(ctx context.Context, cl *kgo.Client, partitions int32, replication int16, topics ...string) error {
	adm := kadm.NewClient(cl)
	resps, err := adm.CreateTopics(ctx, partitions, replication, nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, err)
	}
	for _, r := range resps.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// Header returns the value of a record header, or "" when it is absent.
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// kgoLogger routes the client's warnings and errors to slog, a repeating
// one (a broker that does not answer, every second) once a period.
type kgoLogger struct {
	l       *slog.Logger
	repeats *repeats
}

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if level != kgo.LogLevelError && level != kgo.LogLevelWarn {
		return
	}
	times, ok := k.repeats.log(msg)
	if !ok {
		return
	}
	if times > 1 {
		keyvals = append(keyvals, "times", times)
	}
	if level == kgo.LogLevelError {
		k.l.Error("kafka: "+msg, keyvals...)
	} else {
		k.l.Warn("kafka: "+msg, keyvals...)
	}
}
