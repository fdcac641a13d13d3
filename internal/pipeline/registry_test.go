package pipeline

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSinkKinds checks that a command naming a kind of sinks ('sluice
// loader search') runs every sink of its types and, without a config, one
// of the kind's first type, while names and types still select alone.
func TestSinkKinds(t *testing.T) {
	sinks := []Sink{NewSink("lake"), NewSink("opensearch"), NewSink("elasticsearch"), NewSink("opensearch")}
	sinks[3].Name = "logs"
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"search", []string{"opensearch/opensearch", "elasticsearch/elasticsearch", "opensearch/logs"}},
		{"opensearch", []string{"opensearch/opensearch", "opensearch/logs"}},
		{"logs", []string{"opensearch/logs"}},
		{"lake", []string{"lake/lake"}},
		{"*", []string{"lake/lake", "opensearch/opensearch", "elasticsearch/elasticsearch", "opensearch/logs"}},
	} {
		var got []string
		for _, s := range sinks {
			if s.selected([]string{tc.name}) {
				got = append(got, s.Type+"/"+s.Name)
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s selects (-want +got):\n%s", tc.name, diff)
		}
	}
	for name, want := range map[string]string{"search": "opensearch", "lake": "lake", "elasticsearch": "elasticsearch", "mine": "mine"} {
		if got := SinkType(name); got != want {
			t.Errorf("SinkType(%q) = %q, want %q", name, got, want)
		}
	}
}
