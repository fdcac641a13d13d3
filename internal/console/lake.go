package console

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/httpapi"
	"github.com/sluicehq/sluice/internal/jobs"
	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/query"
)

// withLake runs fn with the lake's engine, confined to the lake, and its
// catalog, answering 404 when the process has no lake and 503 when it
// cannot open it.
func (c *Console) withLake(w http.ResponseWriter, r *http.Request, fn func(ctx context.Context, eng *query.Engine, cat *lake.Catalog)) {
	if c.deps.Lake == nil {
		httpapi.WriteError(w, http.StatusNotFound, "no_lake", "this process has no lake: open the console of sluice up or of a process with --lake")
		return
	}
	ctx := r.Context()
	eng, cat, done, err := c.deps.Lake(ctx)
	if err != nil {
		unavailable(w, fmt.Errorf("open the lake: %w", err))
		return
	}
	defer done()
	if err := eng.Confine(ctx); err != nil {
		unavailable(w, err)
		return
	}
	fn(ctx, eng, cat)
}

func (c *Console) tables(w http.ResponseWriter, r *http.Request) {
	c.withLake(w, r, func(ctx context.Context, eng *query.Engine, _ *lake.Catalog) {
		ts, err := eng.Tables(ctx)
		if err != nil {
			unavailable(w, err)
			return
		}
		if ts == nil {
			ts = []query.Table{}
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"tables": ts})
	})
}

// tableDetail is a table's schema, snapshots and files.
type tableDetail struct {
	Table         string            `json:"table"`
	Location      string            `json:"location"`
	SchemaID      int               `json:"schema_id"`
	Columns       []lake.ColumnInfo `json:"columns"`
	PartitionedBy []string          `json:"partitioned_by"`
	Snapshots     []snapshot        `json:"snapshots"`
	Partitions    []partitionSize   `json:"partitions"`
	Files         []lake.FileInfo   `json:"files"`
	// FilesTotal counts the files; Files holds the first maxFiles.
	FilesTotal int   `json:"files_total"`
	Rows       int64 `json:"rows"`
	Bytes      int64 `json:"bytes"`
}

// snapshot is a lake.SnapshotInfo whose ids are strings: JavaScript's
// numbers hold only 53 bits, and snapshot ids are 63.
type snapshot struct {
	lake.SnapshotInfo
	ID     string `json:"snapshot_id"`
	Parent string `json:"parent_id,omitempty"`
}

type partitionSize struct {
	Partition string `json:"partition"`
	Files     int    `json:"files"`
	Rows      int64  `json:"rows"`
	Bytes     int64  `json:"bytes"`
}

const maxFiles = 500

func (c *Console) table(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("table")
	c.withLake(w, r, func(ctx context.Context, _ *query.Engine, cat *lake.Catalog) {
		t, err := cat.Load(ctx, name)
		if err != nil {
			httpapi.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("table %q: %v; see /api/v1/lake/tables", name, err))
			return
		}
		files, err := lake.DataFiles(ctx, t)
		if err != nil {
			unavailable(w, err)
			return
		}
		d := tableDetail{Table: name, Location: t.Location(), SchemaID: t.Schema().ID, Columns: lake.Columns(t),
			PartitionedBy: lake.PartitionedBy(t), Snapshots: []snapshot{}, Partitions: []partitionSize{}, FilesTotal: len(files)}
		for _, s := range lake.Snapshots(t) {
			sn := snapshot{SnapshotInfo: s, ID: strconv.FormatInt(s.ID, 10)}
			if s.Parent != nil {
				sn.Parent = strconv.FormatInt(*s.Parent, 10)
			}
			d.Snapshots = append(d.Snapshots, sn)
		}
		byPart := map[string]int{}
		for _, f := range files {
			i, ok := byPart[f.Partition]
			if !ok {
				i = len(d.Partitions)
				byPart[f.Partition] = i
				d.Partitions = append(d.Partitions, partitionSize{Partition: f.Partition})
			}
			d.Partitions[i].Files++
			d.Partitions[i].Rows += f.Rows
			d.Partitions[i].Bytes += f.Bytes
			d.Rows += f.Rows
			d.Bytes += f.Bytes
		}
		d.Files = files[:min(len(files), maxFiles)]
		httpapi.WriteJSON(w, http.StatusOK, d)
	})
}

// queryPage is a page of a query's result.
type queryPage struct {
	Columns []string `json:"columns"`
	Types   []string `json:"types"`
	Rows    [][]any  `json:"rows"`
	Offset  int      `json:"offset"`
	More    bool     `json:"more"`
	Millis  int64    `json:"elapsed_ms"`
}

// identifier is a table name the preview may quote without escaping.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c *Console) preview(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("table")
	if !identifier.MatchString(name) {
		badRequest(w, "table: want a lake table's name")
		return
	}
	limit, err := intParam(r, "limit", 20, 1, 500)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	c.runPage(w, r, `SELECT * FROM "`+name+`"`, 0, limit)
}

func (c *Console) runPage(w http.ResponseWriter, r *http.Request, q string, offset, limit int) {
	c.page(w, r, q, offset, limit, "")
}

// page answers a page of q's result; with needs, an empty page while the
// lake has no table of that name.
func (c *Console) page(w http.ResponseWriter, r *http.Request, q string, offset, limit int, needs string) {
	c.withLake(w, r, func(ctx context.Context, eng *query.Engine, _ *lake.Catalog) {
		if needs != "" {
			ts, err := eng.Tables(ctx)
			if err != nil {
				unavailable(w, err)
				return
			}
			if !slices.ContainsFunc(ts, func(t query.Table) bool { return t.Name == needs }) {
				httpapi.WriteJSON(w, http.StatusOK, queryPage{Columns: []string{}, Types: []string{}, Rows: [][]any{}})
				return
			}
		}
		start := time.Now()
		res, more, err := eng.Page(ctx, q, offset, limit)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "query_failed", err.Error())
			return
		}
		page := queryPage{Columns: res.Columns, Types: res.Types, Rows: make([][]any, len(res.Rows)), Offset: offset, More: more,
			Millis: time.Since(start).Milliseconds()}
		for i, row := range res.Rows {
			page.Rows[i] = query.JSONValues(res, row)
		}
		httpapi.WriteJSON(w, http.StatusOK, page)
	})
}

type queryRequest struct {
	SQL    string `json:"sql"`
	Offset int    `json:"offset"`
	Limit  int    `json:"limit"`
}

// maxSQL bounds a query's text.
const maxSQL = 256 << 10

func (c *Console) query(w http.ResponseWriter, r *http.Request) {
	var req queryRequest
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSQL))
	if err == nil {
		err = json.Unmarshal(b, &req)
	}
	switch {
	case err != nil:
		badRequest(w, fmt.Sprintf(`body: want {"sql":"SELECT …","offset":0,"limit":100}: %v`, err))
		return
	case strings.TrimSpace(req.SQL) == "":
		badRequest(w, "sql: empty")
		return
	case req.Offset < 0 || req.Limit < 0 || req.Limit > 1000:
		badRequest(w, "offset: 0 or more; limit: 1 to 1000 (100 if 0)")
		return
	}
	if req.Limit == 0 {
		req.Limit = 100
	}
	c.runPage(w, r, req.SQL, req.Offset, req.Limit)
}

// queryCSV streams a query's whole result as CSV, a row at a time.
func (c *Console) queryCSV(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("sql")
	if strings.TrimSpace(q) == "" {
		badRequest(w, "sql: empty")
		return
	}
	// A large result takes longer than the server's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	c.withLake(w, r, func(ctx context.Context, eng *query.Engine, _ *lake.Catalog) {
		var cw *csv.Writer
		var types []string
		started := false
		err := eng.Stream(ctx, q, func(cols, colTypes []string) error {
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="sluice-query.csv"`)
			w.WriteHeader(http.StatusOK)
			started = true
			cw, types = csv.NewWriter(w), colTypes
			return cw.Write(cols)
		}, func(vals []any) error {
			rec := make([]string, len(vals))
			for i, v := range vals {
				rec[i] = query.Text(v, types[i])
			}
			return cw.Write(rec)
		})
		if cw != nil {
			cw.Flush()
		}
		if err != nil && !started {
			httpapi.WriteError(w, http.StatusBadRequest, "query_failed", err.Error())
		}
	})
}

// jobRuns lists the batch layer's latest runs, from the lake's job_runs.
func (c *Console) jobRuns(w http.ResponseWriter, r *http.Request) {
	c.lakeTablePage(w, r, jobs.RunsTable, "SELECT * FROM "+jobs.RunsTable+" ORDER BY started_at DESC, model")
}

// checkFailures lists the failing rows of data-quality checks, from the
// lake's dq_failures, optionally of one model.
func (c *Console) checkFailures(w http.ResponseWriter, r *http.Request) {
	q := "SELECT * FROM " + jobs.FailuresTable
	if m := r.URL.Query().Get("model"); m != "" {
		if !identifier.MatchString(m) {
			badRequest(w, "model: want a model's name")
			return
		}
		q += " WHERE model = '" + m + "'"
	}
	c.lakeTablePage(w, r, jobs.FailuresTable, q+` ORDER BY failed_at DESC, model, "check"`)
}

// lakeTablePage answers the page of q that the request's offset and limit
// ask for, over a table the batch layer makes on its first run: before
// it, an empty page.
func (c *Console) lakeTablePage(w http.ResponseWriter, r *http.Request, table, q string) {
	limit, err := intParam(r, "limit", 50, 1, 1000)
	if err == nil {
		var offset int
		if offset, err = intParam(r, "offset", 0, 0, 1<<30); err == nil {
			c.page(w, r, q, offset, limit, table)
			return
		}
	}
	badRequest(w, err.Error())
}
