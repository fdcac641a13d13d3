package bus

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Fuller fetches: a stage behind the collector waits up to
// fullerFetchWait for fullerFetchBytes before a fetch returns.
const (
	fullerFetchBytes = 256 << 10
	fullerFetchWait  = 200 * time.Millisecond
)

// FullerFetches makes a consumer's fetches wait for fullerFetchBytes, or
// fullerFetchWait: the stages behind the collector (the enricher, the
// sinks) take records in fewer, larger polls, and the enricher in fewer
// transactions. Each poll and transaction costs the same whatever it holds,
// and in `sluice up` those stages share the collector's cores. Under a
// trickle of events it adds at most the wait to an event's way.
func FullerFetches() []kgo.Opt {
	return []kgo.Opt{kgo.FetchMinBytes(fullerFetchBytes), kgo.FetchMaxWait(fullerFetchWait)}
}
