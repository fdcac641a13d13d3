package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/query"
)

// Upkeep defaults, as the sluice lake commands': files of at least half
// of compactTarget are left alone; snapshots are expired past a week,
// keeping the last 10; orphans are removed after a day, so that writes in
// flight keep theirs.
const (
	compactTarget  = 128 << 20
	expireAfter    = 7 * 24 * time.Hour
	expireRetain   = 10
	orphansAfter   = 24 * time.Hour
	selectNoModels = "none"
)

// Executor runs schedules over a lake: it loads the models of dir at each
// run (edits take effect at the next), builds those the schedule selects
// in a new DuckDB over the tables' current snapshots, then runs its
// upkeep. A remote lake is read through a mirror in cache, where files are
// staged too.
func Executor(dir string, store lake.Storage, cat *lake.Catalog, cache string, logger *slog.Logger) Execute {
	return func(ctx context.Context, s Schedule, selection string) ([]Result, error) {
		var results []Result
		if selection != selectNoModels {
			var err error
			if results, err = buildModels(ctx, dir, selection, store, cat, cache, logger.With("schedule", s.Name)); err != nil {
				return nil, err
			}
		}
		for _, u := range s.Upkeep {
			if err := upkeep(ctx, u, store, cat, logger); err != nil {
				return results, fmt.Errorf("upkeep %s: %w", u, err)
			}
		}
		return results, nil
	}
}

func buildModels(ctx context.Context, dir, selection string, store lake.Storage, cat *lake.Catalog, cache string, logger *slog.Logger) ([]Result, error) {
	models, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if models, err = Select(models, selection); err != nil {
		return nil, err
	}
	local, err := lake.LocalOf(ctx, store, cache)
	if err != nil {
		return nil, err
	}
	eng, err := query.Open(ctx, local, cat, query.Options{})
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	return NewRunner(eng, cat, store, local, filepath.Join(cache, "jobs"), logger).Run(ctx, models, NewRunID(time.Now()), Options{})
}

// upkeep runs an upkeep task on every table of the catalog.
func upkeep(ctx context.Context, u Upkeep, store lake.Storage, cat *lake.Catalog, logger *slog.Logger) error {
	names, err := cat.Names(ctx)
	if err != nil {
		return err
	}
	for _, name := range names {
		switch u {
		case UpkeepCompact:
			res, err := cat.Compact(ctx, store, name, compactTarget)
			if err != nil {
				return err
			}
			if res.FilesBefore > 0 {
				logger.Info("compacted", "table", name, "files_before", res.FilesBefore, "files_after", res.FilesAfter)
			}
		case UpkeepExpire:
			if _, err := cat.Expire(ctx, name, expireAfter, expireRetain); err != nil {
				return err
			}
		case UpkeepOrphans:
			if _, err := cat.Orphans(ctx, name, orphansAfter, false); err != nil {
				return err
			}
		}
	}
	return nil
}
