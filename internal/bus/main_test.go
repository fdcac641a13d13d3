package bus

import (
	"os"
	"testing"

	"github.com/sluicehq/sluice/internal/kafkatest"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }
