package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/query"
	"github.com/sluicehq/sluice/internal/row"
)

// Engine runs SQL over the lake: query.Engine.
type Engine interface {
	Describe(ctx context.Context, q string) ([]query.Column, error)
	Exec(ctx context.Context, stmt string) error
	Reload(ctx context.Context, name string) error
}

var _ Engine = (*query.Engine)(nil)

// Runner builds models into tables of the lake.
type Runner struct {
	eng    Engine
	cat    *lake.Catalog
	store  lake.Storage
	logger *slog.Logger
	now    func() time.Time
	// mirror is the local copy of a remote store that eng reads, or nil:
	// a published file goes there too, for the models that read it next.
	mirror lake.Storage
	// staging is a local directory for the files DuckDB writes before
	// they go to the lake.
	staging string
}

// NewRunner builds models with eng, which reads the lake in store through
// cat, from local (store itself, or its local mirror), and stages their
// files in a directory of staging.
func NewRunner(eng Engine, cat *lake.Catalog, store lake.Storage, local *lake.Local, staging string, logger *slog.Logger) *Runner {
	r := &Runner{eng: eng, cat: cat, store: store, staging: staging, logger: logger, now: time.Now}
	if lake.Storage(local) != store {
		r.mirror = local
	}
	return r
}

// Status is how a model's run ended.
type Status string

// The statuses of a model's run.
const (
	StatusSuccess Status = "success"
	StatusError   Status = "error"
	// StatusSkipped: a model it reads failed or was skipped, so it kept
	// its table rather than build on the old one.
	StatusSkipped Status = "skipped"
)

// Result is what one model's run did.
type Result struct {
	Model    string        `json:"model"`
	Status   Status        `json:"status"`
	Rows     int64         `json:"rows"`
	Files    int           `json:"files"`
	Snapshot int64         `json:"snapshot,omitempty"`
	Took     time.Duration `json:"took_ns"`
	Error    string        `json:"error,omitempty"`
}

// RunKey is the snapshot summary property of a model's snapshot that
// names the run that published it.
const RunKey = "sluice.run"

// Run builds models, each after those it reads, and returns what each
// did, in the order they ran. A model whose build fails keeps its table
// as it was, and the models that read it, directly or not, are skipped.
func (r *Runner) Run(ctx context.Context, models []Model, runID string) ([]Result, error) {
	waves, err := Order(models)
	if err != nil {
		return nil, err
	}
	failed := map[string]string{} // model → the failed model it comes from
	var out []Result
	for _, wave := range waves {
		for _, m := range wave {
			if err := ctx.Err(); err != nil {
				return out, err
			}
			if i := slices.IndexFunc(m.Refs, func(ref string) bool { _, bad := failed[ref]; return bad }); i >= 0 {
				root := failed[m.Refs[i]]
				failed[m.Name] = root
				out = append(out, Result{Model: m.Name, Status: StatusSkipped, Error: "upstream model " + root + " failed"})
				r.logger.Warn("model skipped", "model", m.Name, "upstream", root)
				continue
			}
			res := r.build(ctx, m, runID)
			if res.Status != StatusSuccess {
				failed[m.Name] = m.Name
				r.logger.Error("model failed", "model", m.Name, "err", res.Error)
			} else {
				r.logger.Info("model built", "model", m.Name, "rows", res.Rows, "snapshot", res.Snapshot, "took", res.Took)
			}
			out = append(out, res)
		}
	}
	return out, nil
}

// build runs one model and publishes its result as its table's snapshot.
func (r *Runner) build(ctx context.Context, m Model, runID string) Result {
	start := r.now()
	res := Result{Model: m.Name}
	err := r.publish(ctx, m, runID, &res)
	res.Took = r.now().Sub(start)
	res.Status = StatusSuccess
	if err != nil {
		res.Status, res.Error = StatusError, err.Error()
	}
	return res
}

func (r *Runner) publish(ctx context.Context, m Model, runID string, res *Result) error {
	cols, err := r.eng.Describe(ctx, m.SQL)
	if err != nil {
		return fmt.Errorf("model %s (%s): %w", m.Name, m.File, err)
	}
	outs := make([]output, len(cols))
	for i, c := range cols {
		if outs[i], err = outputOf(c); err != nil {
			return fmt.Errorf("model %s: %w", m.Name, err)
		}
	}
	t, err := r.table(ctx, m.Name, outs)
	if err != nil {
		return err
	}
	sc := t.Schema()
	selects := make([]string, len(outs))
	ids := make([]string, len(outs))
	partitioned := false
	for i, o := range outs {
		f, _ := sc.FindFieldByName(o.field.Name)
		selects[i] = o.expr + " AS " + quoteIdent(o.field.Name)
		ids[i] = fmt.Sprintf("%s: %d", quoteIdent(o.field.Name), f.ID)
		partitioned = partitioned || o.field.Name == lake.EventDate
	}
	dir := filepath.Join(r.staging, "model-"+m.Name+"-"+runID)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	// DuckDB writes the files, with the table's field ids, so that any
	// engine reads them by id; one file per event date, as the loader's.
	target, opts := filepath.Join(dir, "part.parquet"), ""
	if partitioned {
		target, opts = dir, ", PARTITION_BY ("+lake.EventDate+"), WRITE_PARTITION_COLUMNS true, FILENAME_PATTERN 'part-{i}'"
	}
	stmt := fmt.Sprintf("COPY (SELECT %s FROM (%s)) TO %s (FORMAT parquet, COMPRESSION zstd, FIELD_IDS {%s}%s)",
		strings.Join(selects, ", "), m.SQL, quoteString(target), strings.Join(ids, ", "), opts)
	if err := r.eng.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("model %s (%s): %w", m.Name, m.File, err)
	}
	var files []string
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		// <table>/data/[event_date=.../]run-<id>-<file>, beside the
		// loader's files: the run in the name, so that a file is never
		// written twice.
		sub, base := filepath.Split(rel)
		dst := m.Name + "/data/" + filepath.ToSlash(sub) + "run-" + runID + "-" + base
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := lake.PutBytes(ctx, r.store, dst, b); err != nil {
			return err
		}
		if r.mirror != nil {
			if err := lake.PutBytes(ctx, r.mirror, dst, b); err != nil {
				return err
			}
		}
		files = append(files, dst)
		return nil
	})
	if err != nil {
		return fmt.Errorf("model %s: %w", m.Name, err)
	}
	slices.Sort(files)
	t, err = r.cat.Replace(ctx, m.Name, files, iceberg.Properties{RunKey: runID})
	if err != nil {
		return fmt.Errorf("model %s: publish: %w", m.Name, err)
	}
	if s := t.CurrentSnapshot(); s != nil {
		res.Snapshot = s.SnapshotID
		res.Rows = snapshotRows(s)
	}
	res.Files = len(files)
	if err := r.eng.Reload(ctx, m.Name); err != nil {
		return fmt.Errorf("model %s: read it back: %w", m.Name, err)
	}
	return nil
}

// snapshotRows is the rows a snapshot's table holds, from its summary.
func snapshotRows(s *table.Snapshot) int64 {
	if s.Summary == nil {
		return 0
	}
	var n int64
	fmt.Sscan(s.Summary.Properties["total-records"], &n)
	return n
}

// table loads the model's table, made with the model's columns the first
// time; a column the model gained is added. A column whose type changed
// is an error: the table's readers rely on it.
func (r *Runner) table(ctx context.Context, name string, outs []output) (*table.Table, error) {
	t, err := r.cat.Load(ctx, name)
	if errors.Is(err, lake.ErrNoTable) {
		fields := make([]iceberg.NestedField, len(outs))
		for i, o := range outs {
			fields[i] = o.field
			fields[i].ID = i + 1
		}
		return r.cat.CreateSchema(ctx, name, fields)
	}
	if err != nil {
		return nil, err
	}
	var add []iceberg.NestedField
	for _, o := range outs {
		f, ok := t.Schema().FindFieldByName(o.field.Name)
		if !ok {
			add = append(add, o.field)
			continue
		}
		if !f.Type.Equals(o.field.Type) {
			return nil, fmt.Errorf("model %s: column %s is %s in the table and %s in the model's result; cast it to %s in the model, or give the model another name",
				name, o.field.Name, f.Type, o.field.Type, f.Type)
		}
	}
	if len(add) > 0 {
		return r.cat.AddFields(ctx, t, add)
	}
	return t, nil
}

// output is a result column as the table keeps it: its field, and the
// expression that casts the result to its type.
type output struct {
	field iceberg.NestedField
	expr  string
}

// outputOf maps a DuckDB result type to the table's: the loader's types
// (boolean, bigint, double, string, timestamp with time zone, JSON text)
// and dates. Integers widen to bigint and decimals to double; nested values
// become JSON text.
func outputOf(c query.Column) (output, error) {
	col := quoteIdent(c.Name)
	typ := strings.ToUpper(c.Type)
	kind := func(k row.Kind, expr string) (output, error) {
		return output{field: lake.NewField(0, lake.Column{Name: c.Name, Kind: k}), expr: expr}, nil
	}
	if c.Name == "" || strings.ContainsAny(c.Name, "\x00") {
		return output{}, fmt.Errorf("a result column has no name: name each with AS")
	}
	switch {
	case c.Name == lake.EventDate:
		// The partition: a date, whatever time the model gives.
		return output{field: iceberg.NestedField{Name: c.Name, Type: iceberg.PrimitiveTypes.Date}, expr: "CAST(" + col + " AS DATE)"}, nil
	case typ == "BOOLEAN":
		return kind(row.KindBool, col)
	case slices.Contains([]string{"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "HUGEINT", "UHUGEINT"}, typ):
		return kind(row.KindInt, "CAST("+col+" AS BIGINT)")
	case typ == "FLOAT" || typ == "DOUBLE" || strings.HasPrefix(typ, "DECIMAL"):
		return kind(row.KindFloat, "CAST("+col+" AS DOUBLE)")
	case typ == "VARCHAR" || typ == "UUID":
		return kind(row.KindString, "CAST("+col+" AS VARCHAR)")
	case typ == "JSON":
		return kind(row.KindJSON, "CAST("+col+" AS VARCHAR)")
	case strings.HasPrefix(typ, "TIMESTAMP"):
		return kind(row.KindTimestamp, "CAST("+col+" AS TIMESTAMPTZ)")
	case typ == "DATE":
		return output{field: iceberg.NestedField{Name: c.Name, Type: iceberg.PrimitiveTypes.Date}, expr: col}, nil
	case strings.HasSuffix(typ, "[]") || strings.HasPrefix(typ, "STRUCT") || strings.HasPrefix(typ, "MAP") || strings.HasPrefix(typ, "LIST"):
		return kind(row.KindJSON, "CAST(to_json("+col+") AS VARCHAR)")
	}
	return output{}, fmt.Errorf("column %s is %s, which a lake table does not hold: cast it to VARCHAR, BIGINT, DOUBLE, BOOLEAN, DATE or TIMESTAMP", c.Name, c.Type)
}

func quoteString(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// NewRunID names a run: its start time, then random, so that names sort
// by time.
func NewRunID(now time.Time) string {
	return now.UTC().Format("20060102T150405Z") + "-" + uuid.NewString()[:8]
}
