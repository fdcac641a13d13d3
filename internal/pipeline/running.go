package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Running is what a running `sluice up` says of itself in its data
// directory, so that `sluice tail`, `topics` and `query` find it there
// whatever addresses it was given.
type Running struct {
	PID     int       `json:"pid"`
	Broker  string    `json:"broker"`
	HTTP    string    `json:"http"`
	Lake    string    `json:"lake"`
	Started time.Time `json:"started"`
}

// runningFile is where, in the data directory.
const runningFile = "sluice.json"

// WriteRunning records p's addresses in its data directory; remove takes
// them away again when p stops.
func WriteRunning(p *Process) (remove func(), err error) {
	r := Running{PID: os.Getpid(), Lake: p.Config.LakeURL(), Started: time.Now().UTC()}
	if len(p.Config.Kafka.Brokers) > 0 {
		r.Broker = p.Config.Kafka.Brokers[0]
	}
	if p.CollectorAddr != nil {
		r.HTTP = p.CollectorAddr.String()
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(p.Config.Process.DataDir, runningFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return func() { os.Remove(path) }, nil
}

// ReadRunning reads what a `sluice up` running on dataDir says of itself;
// ok is false when none runs there.
func ReadRunning(dataDir string) (r Running, ok bool) {
	b, err := os.ReadFile(filepath.Join(dataDir, runningFile))
	if err != nil || json.Unmarshal(b, &r) != nil || r.PID <= 0 {
		return Running{}, false
	}
	// A file a killed process left behind names a process that is gone.
	if err := syscall.Kill(r.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return Running{}, false
	}
	return r, true
}
