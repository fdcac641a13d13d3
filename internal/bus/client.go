package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// ClientConfig is what every stage needs to reach a Kafka cluster.
type ClientConfig struct {
	Brokers  []string
	ClientID string
	// TLS turns on TLS; TLSCAFile adds a CA bundle to the system roots.
	TLS       bool
	TLSCAFile string
	// SASLMechanism is empty, PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	SASLMechanism string
	SASLUser      string
	SASLPassword  string
}

// Validate reports a configuration no client can start with.
func (c ClientConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("no Kafka brokers: pass --brokers host:port[,host:port]")
	}
	for _, b := range c.Brokers {
		if b == "" || !strings.Contains(b, ":") {
			return fmt.Errorf("broker %q: want host:port", b)
		}
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return fmt.Errorf("sasl mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism)
	}
	return nil
}

func (c ClientConfig) opts(logger *slog.Logger) ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.WithLogger(kgoLogger{logger}),
	}
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if c.TLS || c.TLSCAFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLSCAFile != "" {
			pem, err := os.ReadFile(c.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("read kafka CA file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka CA file %s holds no PEM certificate", c.TLSCAFile)
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
	// Linger is how long a partition waits for more records before sending.
	Linger time.Duration
	// MaxBufferedBytes bounds the records waiting for acknowledgement; a
	// producer that reaches it blocks, which is the stage's back-pressure.
	MaxBufferedBytes int
	// MaxRecordBytes is the largest record the producer will send.
	MaxRecordBytes int
	// Compression is none, lz4, zstd, snappy or gzip; empty means lz4.
	Compression string
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
		opts = append(opts, kgo.MaxBufferedBytes(pc.MaxBufferedBytes))
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

// kgoLogger routes the client's warnings and errors to slog.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error("kafka: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn("kafka: "+msg, keyvals...)
	}
}
