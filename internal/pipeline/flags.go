package pipeline

import (
	"io"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/search"
	"github.com/sluicehq/sluice/internal/sink"
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

// ConsoleFlags offers the console's keys.
func ConsoleFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Console }, names...)
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

// JobsFlags offers the batch layer's settings (the models directory).
func JobsFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Jobs }, names...)
}

func LakeFlags(fs *FlagSet, names ...string) {
	fs.Section(func(c *Config) any { return &c.Lake }, names...)
}

// SinkFlags offers the settings every sink shares (its topics, group, flush
// policy and memory), set in each sink that is named name, or is of type
// name (every sink for "*").
func SinkFlags(fs *FlagSet, name string, names ...string) {
	fs.SectionEach(&sink.Config{}, func(c *Config) []any {
		var out []any
		for _, s := range c.Sinks {
			if rc, ok := s.Config.(sink.Settings); ok && s.selected([]string{name}) {
				out = append(out, rc.Runner())
			}
		}
		return out
	}, names...)
}

// SearchFlags offers the search sinks' own settings (servers, index,
// credentials), set in each sink of a search type that is named name, or
// is of type name.
func SearchFlags(fs *FlagSet, name string) {
	fs.SectionEach(&search.Config{}, func(c *Config) []any {
		var out []any
		for _, s := range c.Sinks {
			if sc, ok := s.Config.(*search.Config); ok && s.selected([]string{name}) {
				out = append(out, sc)
			}
		}
		return out
	}, "search-urls", "search-index", "search-username", "search-password", "search-api-key", "search-ca-file", "search-versioning")
}
