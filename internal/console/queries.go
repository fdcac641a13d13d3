package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/httpapi"
	"github.com/sluicehq/sluice/internal/lake"
)

// SavedQuery is a query kept under a name, with the chart drawn of it.
type SavedQuery struct {
	Name string `json:"name"`
	SQL  string `json:"sql"`
	// Chart is the console's chart settings (kind, x, y, series), kept
	// as it sends them.
	Chart   json.RawMessage `json:"chart,omitempty"`
	SavedAt time.Time       `json:"saved_at"`
}

// Queries keeps saved queries in one JSON file of a directory, replaced
// whole (written aside, synced, renamed) at each change.
type Queries struct {
	mu    sync.Mutex
	store *lake.Local
}

const queriesFile = "queries.json"

// maxSavedQueries bounds the file.
const maxSavedQueries = 1000

// NewQueries keeps saved queries in dir, made if missing.
func NewQueries(dir string) (*Queries, error) {
	store, err := lake.NewLocal(dir)
	if err != nil {
		return nil, fmt.Errorf("saved queries: %w", err)
	}
	return &Queries{store: store}, nil
}

// List returns the saved queries by name.
func (q *Queries) List(ctx context.Context) ([]SavedQuery, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.read(ctx)
}

func (q *Queries) read(ctx context.Context) ([]SavedQuery, error) {
	b, err := q.store.ReadObject(ctx, queriesFile)
	if errors.Is(err, lake.ErrNotExist) {
		return []SavedQuery{}, nil
	}
	if err != nil {
		return nil, err
	}
	var out []SavedQuery
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s/%s: %w", q.store.Root(), queriesFile, err)
	}
	return out, nil
}

func (q *Queries) write(ctx context.Context, qs []SavedQuery) error {
	slices.SortFunc(qs, func(a, b SavedQuery) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(qs, "", "  ")
	if err != nil {
		return err
	}
	w, err := q.store.Create(ctx, queriesFile)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		w.Abort()
		return err
	}
	return w.Commit()
}

// Save adds s, or replaces the query of its name.
func (q *Queries) Save(ctx context.Context, s SavedQuery) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	qs, err := q.read(ctx)
	if err != nil {
		return err
	}
	qs = slices.DeleteFunc(qs, func(o SavedQuery) bool { return o.Name == s.Name })
	if len(qs) >= maxSavedQueries {
		return fmt.Errorf("%d saved queries already: delete some first", len(qs))
	}
	return q.write(ctx, append(qs, s))
}

// Delete removes the query named name; found is false when there is none.
func (q *Queries) Delete(ctx context.Context, name string) (found bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qs, err := q.read(ctx)
	if err != nil {
		return false, err
	}
	n := len(qs)
	qs = slices.DeleteFunc(qs, func(o SavedQuery) bool { return o.Name == name })
	if len(qs) == n {
		return false, nil
	}
	return true, q.write(ctx, qs)
}

func (c *Console) queries(w http.ResponseWriter) (*Queries, bool) {
	if c.deps.Queries == nil {
		httpapi.WriteError(w, http.StatusNotFound, "no_saved_queries", "this process keeps no saved queries: it has no data directory")
		return nil, false
	}
	return c.deps.Queries, true
}

func (c *Console) savedQueries(w http.ResponseWriter, r *http.Request) {
	qs, ok := c.queries(w)
	if !ok {
		return
	}
	list, err := qs.List(r.Context())
	if err != nil {
		unavailable(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"queries": list})
}

func (c *Console) saveQuery(w http.ResponseWriter, r *http.Request) {
	qs, ok := c.queries(w)
	if !ok {
		return
	}
	var s SavedQuery
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSQL))
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	switch {
	case err != nil:
		badRequest(w, fmt.Sprintf(`body: want {"name":"…","sql":"SELECT …","chart":{…}}: %v`, err))
		return
	case strings.TrimSpace(s.Name) == "" || len(s.Name) > 200:
		badRequest(w, "name: 1 to 200 characters")
		return
	case strings.TrimSpace(s.SQL) == "":
		badRequest(w, "sql: empty")
		return
	}
	s.SavedAt = c.now().UTC()
	if err := qs.Save(r.Context(), s); err != nil {
		unavailable(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, s)
}

func (c *Console) deleteQuery(w http.ResponseWriter, r *http.Request) {
	qs, ok := c.queries(w)
	if !ok {
		return
	}
	found, err := qs.Delete(r.Context(), r.PathValue("name"))
	switch {
	case err != nil:
		unavailable(w, err)
	case !found:
		httpapi.WriteError(w, http.StatusNotFound, "not_found", "no saved query of that name")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
