package laketest

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"

	"github.com/sluicehq/sluice/internal/lake"
)

// Full is a lake whose writes fail as on a full disk while Fill is on:
// objects cannot be created or committed, with ENOSPC; reads, lists and
// deletes work, as they do on a full file system.
type Full struct {
	lake.Storage
	on atomic.Bool
}

var _ lake.Storage = (*Full)(nil)

// Fill makes writes fail (true) or work again (false).
func (f *Full) Fill(on bool) { f.on.Store(on) }

func (f *Full) err(path string) error {
	return fmt.Errorf("write %s: %w", path, syscall.ENOSPC)
}

// Create fails while full; a writer made before fails to commit.
func (f *Full) Create(ctx context.Context, path string) (lake.Writer, error) {
	if f.on.Load() {
		return nil, f.err(path)
	}
	w, err := f.Storage.Create(ctx, path)
	if err != nil {
		return nil, err
	}
	return &fullWriter{Writer: w, f: f, path: path}, nil
}

type fullWriter struct {
	lake.Writer
	f    *Full
	path string
}

func (w *fullWriter) Commit() error {
	if w.f.on.Load() {
		w.Abort()
		return w.f.err(w.path)
	}
	return w.Writer.Commit()
}
