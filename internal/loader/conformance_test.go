package loader

import (
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
		dir := t.TempDir()
		local, err := lake.NewLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		cat := openCatalog(t, dir, lake.CatalogConfig{}, lake.S3Config{})
		store := &laketest.Full{Storage: local}
		cfg := DefaultConfig()
		cfg.Topics = []string{sinktest.Topic}
		return &sinktest.Destination{
			New: func(t *testing.T, env sink.Env) sink.Sink {
				l, err := New(cfg, store, cat, env.DLQTopic, nil, env.Logger, env.Metrics)
				if err != nil {
					t.Fatal(err)
				}
				return l
			},
			Held: func(t *testing.T) map[string]int {
				e := &env{t: t, store: local, cat: cat}
				return e.lakeIDs()
			},
			Stop:   store.Fill,
			Points: Points,
		}
	})
}
