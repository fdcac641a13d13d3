package console

import (
	"context"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/query"
)

// ShareLake opens the lake's engine at most once every ttl and lends it to
// the requests that come meanwhile: opening one reads every table's
// metadata, which a screen's several requests at once would each pay. An
// engine is closed once it is stale and its last borrower is done, so a
// reader sees the lake at most ttl old.
func ShareLake(open Lake, ttl time.Duration) Lake {
	s := &sharedLake{open: open, ttl: ttl}
	return s.borrow
}

type sharedLake struct {
	open Lake
	ttl  time.Duration

	mu  sync.Mutex
	cur *lent
}

// lent is one open engine and its borrowers.
type lent struct {
	eng    *query.Engine
	cat    *lake.Catalog
	done   func()
	opened time.Time
	users  int
	stale  bool
}

func (s *sharedLake) borrow(ctx context.Context) (*query.Engine, *lake.Catalog, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && time.Since(s.cur.opened) > s.ttl {
		s.retire(s.cur)
		s.cur = nil
	}
	if s.cur == nil {
		// Opened under the lock: requests meanwhile wait for this one
		// rather than open their own. It outlives the request that opens
		// it.
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		eng, cat, done, err := s.open(octx)
		cancel()
		if err != nil {
			return nil, nil, nil, err
		}
		s.cur = &lent{eng: eng, cat: cat, done: done, opened: time.Now()}
	}
	l := s.cur
	l.users++
	var once sync.Once
	return l.eng, l.cat, func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			l.users--
			if l.stale && l.users == 0 {
				l.done()
			}
		})
	}, nil
}

// retire closes l now if nobody borrows it, else when its last borrower
// is done.
func (s *sharedLake) retire(l *lent) {
	l.stale = true
	if l.users == 0 {
		l.done()
	}
}
