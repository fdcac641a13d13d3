package loader

import (
	"time"

	"github.com/sluicehq/sluice/internal/lake"
)

type tableDate struct{ table, date string }

// partition is the buffered, unflushed state of one topic-partition.
type partition struct {
	topic     string
	partition int32
	// committed is the last offset in the lake.
	committed int64
	// forced is the last offset of a flush that was pending when the
	// partition was assigned, or -1: the next flush must end exactly there.
	forced int64
	tables map[tableDate]*lake.Buffer
	first  int64
	last   int64
	rows   int
	bytes  int
	since  time.Time // when the first buffered record arrived
}

func newPartition(topic string, p int32, prog lake.Progress) *partition {
	st := &partition{topic: topic, partition: p, committed: prog.Committed, forced: -1}
	if prog.Pending != nil && prog.Pending.Last > prog.Committed {
		st.forced = prog.Pending.Last
	}
	st.reset(prog.Committed)
	return st
}

func (p *partition) buffer(table, date string) *lake.Buffer {
	k := tableDate{table, date}
	b := p.tables[k]
	if b == nil {
		b = lake.NewBuffer()
		p.tables[k] = b
	}
	return b
}

func (p *partition) note(offset int64, grew int, now time.Time) {
	if p.rows == 0 {
		p.first = offset
		p.since = now
	}
	p.last = offset
	p.rows++
	p.bytes += grew
}

// reset starts new buffers after the range up to committed is handed to
// a flush.
func (p *partition) reset(committed int64) {
	if committed >= p.forced {
		p.forced = -1
	}
	p.committed = committed
	p.tables = make(map[tableDate]*lake.Buffer)
	p.rows, p.bytes = 0, 0
	p.first, p.last = -1, -1
}
