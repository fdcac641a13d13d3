package pipeline

import (
	"io"

	"github.com/sluicehq/sluice/internal/config"
)

// FlagSet is a command's flags over Config.
type FlagSet = config.FlagSet[Config]

// NewFlagSet starts a command's flags: Config's defaults, then the file
// given with --config, the SLUICE_* environment, the flags.
func NewFlagSet(name, usage string, out io.Writer) *FlagSet {
	return config.NewFlagSet(name, usage, out, Default, func(c *Config, path string) error {
		return config.LoadFile(path, c)
	})
}

// The sections of Config a command offers as flags; with names, only
// those flags of the section.

func ProcessFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Process }, names...)
}

func OpsFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Ops }, names...)
}

func KafkaFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Kafka }, names...)
}

func BrokerFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Broker }, names...)
}

func TopicFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Topics }, names...)
}

func ProducerFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Producer }, names...)
}

func CollectorFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Collector }, names...)
}

func SchemaFlags(fs *FlagSet) {
	fs.Section(func(c *Config) any { return c }, "schemas")
}

func EnricherFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Enricher }, names...)
}

func LakeFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Lake }, names...)
}

// LakeSinkFlags offers the settings of the first lake sink (made when the
// config has none).
func LakeSinkFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return c.LakeSink() }, names...)
}
