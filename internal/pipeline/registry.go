package pipeline

import (
	"slices"

	"github.com/sluicehq/sluice/internal/loader"
	"github.com/sluicehq/sluice/internal/search"
	"github.com/sluicehq/sluice/internal/sink"
)

// sinks are the sink types a config's sinks: entries name: a new sink is a
// package with its Spec, and a line here.
var sinks = []sink.Spec{
	loader.Spec,
	search.Spec,
	search.SpecElasticsearch,
}

// SinkSpec finds a sink type by name.
func SinkSpec(typ string) (sink.Spec, bool) {
	i := slices.IndexFunc(sinks, func(s sink.Spec) bool { return s.Type == typ })
	if i < 0 {
		return sink.Spec{}, false
	}
	return sinks[i], true
}

// SinkType is the type a command's sink name stands for without a config:
// itself, or for a kind of sinks ("search"), the first type of that kind.
func SinkType(name string) string {
	if i := slices.IndexFunc(sinks, func(s sink.Spec) bool { return s.Kind == name }); i >= 0 {
		return sinks[i].Type
	}
	return name
}

// ofKind reports whether typ is a sink type of kind.
func ofKind(typ, kind string) bool {
	spec, ok := SinkSpec(typ)
	return ok && spec.Kind != "" && spec.Kind == kind
}

// SinkTypes names the registered sink types.
func SinkTypes() []string {
	out := make([]string, len(sinks))
	for i, s := range sinks {
		out[i] = s.Type
	}
	return out
}
