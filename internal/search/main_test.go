package search

import (
	"os"
	"testing"

	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/internal/searchtest"
)

// TestMain stops the OpenSearch node the tests share, and the real Kafka
// cluster the conformance suite may have run against (kafkatest.Env).
func TestMain(m *testing.M) {
	os.Exit(kafkatest.Main(searchtest.Wrap(m)))
}
