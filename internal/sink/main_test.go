package sink_test

import (
	"os"
	"testing"

	"github.com/sluicehq/sluice/internal/kafkatest"
)

// TestMain stops the real Kafka cluster the conformance suite may have run
// against (kafkatest.Env).
func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }
