package loader

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/lake/laketest"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

// TestConformance runs the sink conformance suite on the lake sink, over a
// local lake whose disk can fill up.
func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) *sinktest.Destination {
		local, err := lake.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		store := &laketest.Full{Storage: local}
		cfg := DefaultConfig()
		cfg.Topics = []string{sinktest.Topic}
		return &sinktest.Destination{
			New: func(t *testing.T, env sink.Env) sink.Sink {
				l, err := New(cfg, store, env.DLQTopic, nil, env.Logger, env.Metrics)
				if err != nil {
					t.Fatal(err)
				}
				return l
			},
			Held: func(t *testing.T) map[string]int {
				counts := map[string]int{}
				objs, err := local.List(t.Context(), "")
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range objs {
					if strings.HasPrefix(o.Path, "_sluice/") {
						continue
					}
					if _, ok := lake.ParseFile(o.Path); !ok {
						t.Errorf("stray object in the lake: %s", o.Path)
						continue
					}
					data, err := local.ReadObject(t.Context(), o.Path)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range laketest.ReadParquet(t, data) {
						id, _ := r["root_id"].(string)
						counts[id]++
					}
				}
				return counts
			},
			Stop:   store.Fill,
			Points: Points,
		}
	})
}
