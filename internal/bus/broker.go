// Package bus is Sluice's only door to Kafka: the clients every stage uses
// (an idempotent acks=all producer, consumers, topic admin) and the embedded
// broker that `sluice up` runs when no cluster is given.
//
// The embedded broker is franz-go's kfake persisted to a directory. It speaks
// the Kafka protocol on a real port, so kcat, librdkafka and franz-go clients
// work against it exactly as against a cluster.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/sluicehq/sluice/internal/health"
)

// MaxMessageBytes is the largest record batch the embedded broker accepts.
const MaxMessageBytes = 16 << 20

// BrokerConfig configures the embedded broker.
type BrokerConfig struct {
	// Addr is where the broker listens and what it advertises to clients.
	// Port 0 picks a free port; Broker.Addr tells which.
	Addr string `yaml:"addr" flag:"broker-addr" doc:"Address the embedded broker listens on, and that debugging commands (topics, tail) ask when no brokers are given. Any Kafka client can connect to it."`
	// Dir holds the broker's log segments and state. It survives restarts.
	Dir string `yaml:"-"`
	// Partitions is the partition count of topics created automatically.
	Partitions int32 `yaml:"-"`
	// Fsync makes every produced batch durable on disk before it is
	// acknowledged. Without it, a produced batch is written to the file
	// system at once (so it survives the process being killed) but reaches
	// the disk on the operating system's schedule, as with Kafka's defaults.
	Fsync bool `yaml:"fsync" flag:"broker-fsync" doc:"Fsync every produced batch before acknowledging it: survives power loss, not only a crash, at a cost in throughput."`
}

// Validate reports a configuration the broker cannot start with.
func (c BrokerConfig) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("broker address %q: want host:port: %w", c.Addr, err)
	}
	if c.Dir == "" {
		return errors.New("broker directory is empty")
	}
	if c.Partitions < 1 {
		return fmt.Errorf("broker partitions %d: want at least 1", c.Partitions)
	}
	return nil
}

// Broker is a running embedded Kafka broker, and a component of its
// process.
type Broker struct {
	*health.Reporter
	cluster *kfake.Cluster
	addr    string
	lock    *os.File
	logger  *slog.Logger
}

// StartBroker starts the embedded broker, reloading whatever an earlier run
// left in cfg.Dir. Only one process may use a directory at a time.
func StartBroker(cfg BrokerConfig, logger *slog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create broker directory: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(cfg.Addr)
	portNum, err := strconv.Atoi(port)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("broker address %q: bad port: %w", cfg.Addr, err)
	}
	opts := []kfake.Opt{
		kfake.Ports(portNum),
		// kfake always asks for 127.0.0.1; listen where the user asked, which
		// is also the address advertised in metadata.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, port))
		}),
		kfake.DataDir(cfg.Dir),
		kfake.DefaultNumPartitions(int(cfg.Partitions)),
		kfake.AllowAutoTopicCreation(),
		kfake.WithLogger(&kfakeLogger{l: logger, repeats: newRepeats()}),
		// Room for the largest event the collector takes (16 MiB batches of
		// events up to its body limit), like a cluster tuned for it.
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(MaxMessageBytes)}),
		kfake.MaxVersions(advertised()),
	}
	if cfg.Fsync {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		lock.Close()
		var opErr *net.OpError
		if errors.As(err, &opErr) && errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("start embedded broker: %s is in use: stop what listens there or pass --broker-addr: %w", cfg.Addr, err)
		}
		return nil, fmt.Errorf("start embedded broker in %s: %w", cfg.Dir, err)
	}
	c.ControlKey(kmsg.CreateTopics.Int16(), createTopics(c, cfg.Partitions))
	b := &Broker{Reporter: health.New("broker", logger), cluster: c, addr: c.ListenAddrs()[0], lock: lock, logger: logger}
	logger.Info("embedded broker started", "addr", b.addr, "dir", cfg.Dir, "fsync", cfg.Fsync)
	return b, nil
}

// advertised is the API versions the broker offers: Kafka's stable ones,
// without DescribeTopicPartitions (KIP-966). kfake answers that with null
// eligible-leader-replica lists, on which Apache Kafka's Java admin client
// (4.x) fails in describeTopics; without it the client describes topics
// with Metadata, as it does against Kafka before 3.8.
func advertised() *kversion.Versions {
	v := kversion.Stable()
	v.SetMaxKeyVersion(kmsg.DescribeTopicPartitions.Int16(), -1)
	return v
}

// createTopics answers CreateTopics as Kafka does. kfake answers a topic
// created without configs with a null list of them, and lists those set
// with an unknown source (-1), and Apache Kafka's Java admin client (4.x)
// fails on either (a NullPointerException; "id should be positive"). This
// creates the topics through kfake's own CreateTopic, which runs the same
// checks, and answers with each topic's configs as set on it
// (DYNAMIC_TOPIC_CONFIG), an empty list for none.
func createTopics(c *kfake.Cluster, defaultPartitions int32) func(kmsg.Request) (kmsg.Response, error, bool) {
	return func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.CreateTopicsRequest)
		resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
		// The cluster's loop serves CreateTopic while this sleeps.
		c.SleepControl(func() {
			for _, rt := range r.Topics {
				st := kmsg.NewCreateTopicsResponseTopic()
				st.Topic = rt.Topic
				st.Configs = []kmsg.CreateTopicsResponseTopicConfig{}
				var err error
				switch {
				case len(rt.ReplicaAssignment) > 0:
					err = kerr.InvalidRequest // kfake places replicas itself
				case c.TopicInfo(rt.Topic) != nil:
					err = kerr.TopicAlreadyExists
				case !r.ValidateOnly:
					configs := map[string]string{}
					for _, cfg := range rt.Configs {
						if cfg.Value != nil {
							configs[cfg.Name] = *cfg.Value
						}
					}
					err = c.CreateTopic(rt.Topic, rt.NumPartitions, configs)
				}
				if err != nil {
					if ke := (*kerr.Error)(nil); errors.As(err, &ke) {
						st.ErrorCode = ke.Code
					} else {
						st.ErrorCode = kerr.UnknownServerError.Code
					}
					st.ErrorMessage = kmsg.StringPtr(err.Error())
					resp.Topics = append(resp.Topics, st)
					continue
				}
				st.NumPartitions, st.ReplicationFactor = rt.NumPartitions, 1
				if st.NumPartitions <= 0 {
					st.NumPartitions = defaultPartitions // validate only: what it would have
				}
				if info := c.TopicInfo(rt.Topic); info != nil {
					st.TopicID = info.TopicID
					st.NumPartitions = int32(len(c.PartitionInfos(rt.Topic)))
					for _, name := range slices.Sorted(maps.Keys(info.Configs)) {
						cfg := kmsg.NewCreateTopicsResponseTopicConfig()
						cfg.Name, cfg.Value, cfg.Source = name, info.Configs[name], 1 // DYNAMIC_TOPIC_CONFIG
						st.Configs = append(st.Configs, cfg)
					}
				}
				resp.Topics = append(resp.Topics, st)
			}
		})
		return resp, nil, true
	}
}

// Addr is the host:port clients connect to.
func (b *Broker) Addr() string { return b.addr }

// Run serves until ctx is done. The broker stops only with Close, which its
// process calls after every other component has stopped, so that they
// finish their writes.
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Close stops the broker, saving its state to its directory.
func (b *Broker) Close() {
	b.cluster.Close()
	b.lock.Close()
	b.logger.Info("embedded broker stopped", "addr", b.addr)
}

// lockDir takes an exclusive lock on dir, so that two processes never write
// the same broker files.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open broker lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("broker directory %s is in use by another sluice process: stop it or pass another --data-dir", dir)
		}
		return nil, fmt.Errorf("lock broker directory %s: %w", dir, err)
	}
	return f, nil
}

// kfakeLogger sends the broker's own warnings and errors to slog; its info
// and debug logs describe every request and are too chatty to keep.
type kfakeLogger struct {
	l       *slog.Logger
	repeats *repeats
}

func (k *kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	if level != kfake.LogLevelError && level != kfake.LogLevelWarn {
		return
	}
	times, ok := k.repeats.log(msg)
	if !ok {
		return
	}
	attrs := []any{}
	if times > 1 {
		attrs = append(attrs, "times", times)
	}
	if level == kfake.LogLevelError {
		k.l.Error("broker: "+fmt.Sprintf(msg, args...), attrs...)
	} else {
		k.l.Warn("broker: "+fmt.Sprintf(msg, args...), attrs...)
	}
}

// repeats keeps a warning that repeats, such as a full disk failing every
// batch or a broker that does not answer every dial, to one line a
// health.LogEvery, with how many times it came.
type repeats struct {
	mu   sync.Mutex
	seen map[string]*repeat
}

type repeat struct {
	logged time.Time
	times  int
}

func newRepeats() *repeats { return &repeats{seen: map[string]*repeat{}} }

// log counts msg and says whether to log it now, with how many times it
// came since it was last logged.
func (r *repeats) log(msg string) (times int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.seen[msg]
	if e == nil {
		if len(r.seen) > 1000 {
			clear(r.seen) // messages are formats: few, unless a client varies them
		}
		e = &repeat{}
		r.seen[msg] = e
	}
	e.times++
	now := time.Now()
	if !e.logged.IsZero() && now.Sub(e.logged) < health.LogEvery {
		return 0, false
	}
	times = e.times
	e.logged, e.times = now, 0
	return times, true
}
