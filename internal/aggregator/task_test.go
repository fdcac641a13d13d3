package aggregator

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/window"
)

// TestTaskDue: completed windows wait to be written together for up to
// holdFor, and a task holds at most holdRows of them, whatever the time:
// the bound on its memory while it catches up on a backlog.
func TestTaskDue(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	const interval = 10 * time.Second
	recent := now.Add(-interval / 2)
	tests := []struct {
		name      string
		done      int
		doneSince time.Time
		dirty     bool
		hold      bool
		want      bool
	}{
		{name: "nothing completed, checkpoint not due", hold: true, want: false},
		{name: "completed windows held", done: 10, doneSince: now.Add(-holdFor / 2), hold: true, want: false},
		{name: "held for holdFor", done: 10, doneSince: now.Add(-holdFor), hold: true, want: true},
		{name: "one short of holdRows", done: holdRows - 1, doneSince: now, hold: true, want: false},
		{name: "holdRows reached at once", done: holdRows, doneSince: now, hold: true, want: true},
		{name: "no holding (retrying a failed write)", done: 1, doneSince: now, hold: false, want: true},
		{name: "checkpoint interval passed with records taken", dirty: true, hold: true, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := &task{done: make([]window.Result, tt.done), doneSince: tt.doneSince, dirty: tt.dirty, lastCheckpoint: recent}
			if tt.dirty {
				tk.lastCheckpoint = now.Add(-interval)
			}
			if got := tk.due(now, tt.hold, interval); got != tt.want {
				t.Errorf("due = %v, want %v", got, tt.want)
			}
		})
	}
}
