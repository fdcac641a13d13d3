package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
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
	QueryRow(ctx context.Context, q string, dest ...any) error
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

// SetClock makes the runner read the time from now: the default range of
// incremental models and freshness checks depend on it.
func (r *Runner) SetClock(now func() time.Time) { r.now = now }

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
	Model    string `json:"model"`
	Status   Status `json:"status"`
	Rows     int64  `json:"rows"`
	Files    int    `json:"files"`
	Snapshot int64  `json:"snapshot,omitempty"`
	// Version is the version of a view model's view that the run made
	// current.
	Version int64         `json:"version,omitempty"`
	Took    time.Duration `json:"took_ns"`
	Error   string        `json:"error,omitempty"`
	// Range is the event dates an incremental run rebuilt, [from, to).
	Range  string        `json:"range,omitempty"`
	Checks []CheckResult `json:"checks,omitempty"`
}

// CheckResult is a check's outcome in a run.
type CheckResult struct {
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	// Failed counts the failing rows; those rows are in dq_failures.
	Failed int64 `json:"failed"`
}

// Options say what a run builds.
type Options struct {
	// From and To are the event dates [From, To) incremental models
	// rebuild (a backfill); zero, each model's lookback up to today.
	From, To time.Time
	// FullRefresh rebuilds incremental and merge models whole.
	FullRefresh bool
}

// The tables every run writes.
const (
	// RunsTable has a row per model and run: its status, times, rows,
	// the snapshot it published and its error.
	RunsTable = "job_runs"
	// FailuresTable has the failing rows of every check, with the check,
	// the model and the run.
	FailuresTable = "dq_failures"
)

// RunKey is the snapshot summary property of a model's snapshot that
// names the run that published it.
const RunKey = "sluice.run"

// maxFailures bounds the failing rows a check records per run: their
// count is exact, the rows a sample.
const maxFailures = 10_000

// Run builds models, each after those it reads, and returns what each
// did, in the order they ran; it records them in job_runs and their
// checks' failing rows in dq_failures. A model whose build fails, or
// whose check of severity error fails, keeps its table as it was, and the
// models that read it, directly or not, are skipped.
func (r *Runner) Run(ctx context.Context, models []Model, runID string, opts Options) ([]Result, error) {
	waves, err := Order(models)
	if err != nil {
		return nil, err
	}
	// Tables of the engine's database, not of a connection: models of a
	// wave run on connections of their own.
	for _, stmt := range []string{
		`CREATE OR REPLACE TABLE run_failures__ (run_id VARCHAR, model VARCHAR, "check" VARCHAR, severity VARCHAR, failed_at TIMESTAMPTZ, "row" JSON)`,
		`CREATE OR REPLACE TABLE run_models__ (run_id VARCHAR, model VARCHAR, materialized VARCHAR, status VARCHAR, started_at TIMESTAMPTZ,
			ended_at TIMESTAMPTZ, "rows" BIGINT, files BIGINT, snapshot BIGINT, date_range VARCHAR, checks_failed BIGINT, error VARCHAR)`,
	} {
		if err := r.eng.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("start run: %w", err)
		}
	}
	failed := map[string]string{} // model → the failed model it comes from
	var out []Result
	for _, wave := range waves {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		// A wave's models read only earlier waves': they run side by
		// side, up to one a core.
		results := make([]Result, len(wave))
		starts := make([]time.Time, len(wave))
		roots := make([]string, len(wave)) // of a skipped model, the failed one
		var wg sync.WaitGroup
		sem := make(chan struct{}, max(1, min(runtime.GOMAXPROCS(0), maxParallel)))
		for i, m := range wave {
			if j := slices.IndexFunc(m.Refs, func(ref string) bool { _, bad := failed[ref]; return bad }); j >= 0 {
				root := failed[m.Refs[j]]
				roots[i], starts[i] = root, r.now()
				results[i] = Result{Model: m.Name, Status: StatusSkipped, Error: "upstream model " + root + " failed"}
				r.logger.Warn("model skipped", "model", m.Name, "upstream", root)
				continue
			}
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				starts[i] = r.now()
				results[i] = r.build(ctx, m, runID, opts)
			})
		}
		wg.Wait()
		for i, m := range wave {
			res := results[i]
			switch {
			case res.Status == StatusSkipped:
				failed[m.Name] = roots[i]
			case res.Status != StatusSuccess:
				failed[m.Name] = m.Name
				r.logger.Error("model failed", "model", m.Name, "err", res.Error)
			default:
				r.logger.Info("model built", "model", m.Name, "rows", res.Rows, "snapshot", res.Snapshot, "took", res.Took)
			}
			out = append(out, res)
			if err := r.note(ctx, m, res, runID, starts[i]); err != nil {
				return out, err
			}
		}
	}
	if err := r.record(ctx, runID); err != nil {
		return out, err
	}
	return out, nil
}

// maxParallel bounds the models built side by side: each is a DuckDB
// query that uses every core already, and a commit; more would only
// share them.
const maxParallel = 4

// Failed is the models of results whose run failed (not those skipped
// for them).
func Failed(results []Result) []string {
	var out []string
	for _, r := range results {
		if r.Status == StatusError {
			out = append(out, r.Model)
		}
	}
	return out
}

// note adds a model's run to the run's rows of job_runs.
func (r *Runner) note(ctx context.Context, m Model, res Result, runID string, start time.Time) error {
	var failedRows int64
	for _, c := range res.Checks {
		failedRows += c.Failed
	}
	mat := string(m.Materialized)
	if m.Source {
		mat = "source"
	}
	snap := "NULL"
	if res.Snapshot != 0 {
		snap = fmt.Sprint(res.Snapshot)
	}
	stmt := fmt.Sprintf("INSERT INTO run_models__ VALUES (%s, %s, %s, %s, %s, %s, %d, %d, %s, %s, %d, %s)",
		quoteString(runID), quoteString(m.Name), quoteString(mat), quoteString(string(res.Status)), timeLiteral(start), timeLiteral(start.Add(res.Took)),
		res.Rows, res.Files, snap, nullString(res.Range), failedRows, nullString(res.Error))
	if err := r.eng.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("record the run of %s: %w", m.Name, err)
	}
	return nil
}

// record appends the run's rows to job_runs and dq_failures, each in one
// snapshot.
func (r *Runner) record(ctx context.Context, runID string) error {
	for _, t := range []struct{ table, q string }{
		{FailuresTable, "SELECT *, CAST(failed_at AS DATE) AS event_date FROM run_failures__"},
		{RunsTable, "SELECT *, CAST(started_at AS DATE) AS event_date FROM run_models__"},
	} {
		var n int64
		if err := r.scalar(ctx, "SELECT count(*) FROM ("+t.q+")", &n); err != nil {
			return fmt.Errorf("record the run in %s: %w", t.table, err)
		}
		if n == 0 {
			// Nothing to add; the table is made empty the first time, so
			// that a query of it after a clean run finds it.
			if _, err := r.cat.Load(ctx, t.table); !errors.Is(err, lake.ErrNoTable) {
				continue
			}
		}
		st, err := r.stage(ctx, t.table, t.q, runID)
		if err != nil {
			return fmt.Errorf("record the run in %s: %w", t.table, err)
		}
		// Appended, without reading the table's files: the run's are new.
		// The engine reads them next, as a caller's queries after the
		// run do.
		files, err := r.upload(ctx, t.table, st, runID)
		if err == nil {
			_, err = r.cat.Add(ctx, st.t, files, iceberg.Properties{RunKey: runID})
		}
		if err == nil {
			err = r.eng.Reload(ctx, t.table)
		}
		if err != nil {
			return fmt.Errorf("record the run in %s: %w", t.table, err)
		}
	}
	return nil
}

func timeLiteral(t time.Time) string {
	return "TIMESTAMPTZ '" + t.UTC().Format("2006-01-02 15:04:05.999999") + "+00'"
}

func nullString(s string) string {
	if s == "" {
		return "NULL"
	}
	return quoteString(s)
}

func dateLiteral(t time.Time) string { return "DATE '" + t.Format(time.DateOnly) + "'" }

// build runs one model, or a source's checks, and publishes the model's
// result as a snapshot of its table unless a check of severity error
// failed.
func (r *Runner) build(ctx context.Context, m Model, runID string, opts Options) Result {
	start := r.now()
	res := Result{Model: m.Name, Status: StatusSuccess}
	err := r.buildModel(ctx, m, runID, opts, &res)
	res.Took = r.now().Sub(start)
	if err != nil {
		res.Status, res.Error = StatusError, err.Error()
	}
	return res
}

func (r *Runner) buildModel(ctx context.Context, m Model, runID string, opts Options, res *Result) error {
	if m.Source {
		cols, err := r.eng.Describe(ctx, "SELECT * FROM "+quoteIdent(m.Name))
		if err != nil {
			return fmt.Errorf("table %s (checked by %s): %w", m.Name, m.File, err)
		}
		return r.audit(ctx, m, quoteIdent(m.Name), columnNames(cols), runID, res)
	}
	if m.Dedupe != nil {
		var err error
		if m, err = r.expandDedupe(ctx, m); err != nil {
			return err
		}
	}
	if m.Materialized == MaterializeView {
		return r.buildView(ctx, m, runID, res)
	}
	if m.Materialized == MaterializeMerge {
		// The merge's new rows are held for this run's queries only.
		defer func() {
			if err := r.eng.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+mergeStaging(m.Name)); err != nil {
				r.logger.Warn("drop the merge's new rows", "model", m.Name, "err", err)
			}
		}()
	}
	pl, err := r.output(ctx, m, runID, opts, res)
	if err != nil {
		return err
	}
	m.Checks = slices.Clone(m.Checks)
	for i, c := range m.Checks {
		m.Checks[i].SQL = fillRange(c.SQL, pl.from, pl.to)
	}
	q := pl.q
	st, err := r.stage(ctx, m.Name, q, runID)
	if err != nil {
		return err
	}
	defer os.RemoveAll(st.dir)
	// Write, audit, publish: the checks read the files before they are
	// part of the table.
	this := "(SELECT * FROM (" + q + ") WHERE false)"
	if len(st.files) > 0 {
		quoted := make([]string, len(st.files))
		for i, f := range st.files {
			quoted[i] = quoteString(f)
		}
		this = "read_parquet([" + strings.Join(quoted, ", ") + "])"
	}
	if pl.partial() {
		// The table as it will be: the rows the run keeps, and its own.
		this = fmt.Sprintf("(SELECT * FROM %s WHERE NOT (%s) UNION ALL BY NAME SELECT * FROM %s)", quoteIdent(m.Name), pl.rows(), this)
	}
	if err := r.audit(ctx, m, this, st.columns, runID, res); err != nil {
		return err
	}
	var replaced func(iceberg.DataFile) bool
	if pl.partial() {
		replaced = pl.replaces
	}
	t, err := r.publish(ctx, m.Name, st, runID, replaced)
	if err != nil {
		return err
	}
	if s := t.CurrentSnapshot(); s != nil {
		res.Snapshot = s.SnapshotID
		res.Rows = snapshotRows(s)
	}
	res.Files = len(st.files)
	return nil
}

func columnNames(cols []query.Column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.Name
	}
	return out
}

// plan is what a model's run writes and replaces.
type plan struct {
	// q is the query of the rows the run writes.
	q string
	// from and to are the event dates [from, to) an incremental run
	// rebuilds; zero, the run replaces the whole table.
	from, to time.Time
}

// partial reports whether the run replaces only some event dates.
func (p plan) partial() bool { return !p.from.IsZero() }

// rows is the condition of the rows a partial run replaces.
func (p plan) rows() string {
	return fmt.Sprintf("%s >= %s AND %s < %s", lake.EventDate, dateLiteral(p.from), lake.EventDate, dateLiteral(p.to))
}

// replaces reports whether a partial run replaces a data file of the
// table: one of an event date it rebuilds.
func (p plan) replaces(f iceberg.DataFile) bool {
	d := lake.PartitionDate(f.FilePath())
	return d >= p.from.Format(time.DateOnly) && d < p.to.Format(time.DateOnly)
}

// output plans a model's run.
func (r *Runner) output(ctx context.Context, m Model, runID string, opts Options, res *Result) (plan, error) {
	published := func() bool {
		t, err := r.cat.Load(ctx, m.Name)
		return err == nil && t.CurrentSnapshot() != nil
	}
	switch m.Materialized {
	case MaterializeIncremental:
		cols, err := r.eng.Describe(ctx, fillRange(m.SQL, time.Time{}, time.Time{}))
		if err != nil {
			return plan{}, fmt.Errorf("model %s (%s): %w", m.Name, m.File, err)
		}
		if !slices.Contains(columnNames(cols), lake.EventDate) {
			return plan{}, fmt.Errorf("model %s: an incremental model rebuilds event dates: its result needs an %s column", m.Name, lake.EventDate)
		}
		from, to := opts.From, opts.To
		if from.IsZero() && to.IsZero() {
			if opts.FullRefresh || !published() {
				return plan{q: "SELECT * FROM (" + fillRange(m.SQL, from, to) + ")"}, nil
			}
			today := r.now().UTC().Truncate(24 * time.Hour)
			from, to = today.AddDate(0, 0, 1-m.Lookback), today.AddDate(0, 0, 1)
		}
		res.Range = from.Format(time.DateOnly) + "/" + to.Format(time.DateOnly)
		pl := plan{from: from, to: to}
		pl.q = fmt.Sprintf("SELECT * FROM (%s) WHERE %s", fillRange(m.SQL, from, to), pl.rows())
		return pl, nil
	case MaterializeMerge:
		return r.merge(ctx, m, fillRange(m.SQL, time.Time{}, time.Time{}), runID, opts, published(), res)
	}
	return plan{q: "SELECT * FROM (" + fillRange(m.SQL, time.Time{}, time.Time{}) + ")"}, nil
}

// fillRange puts the dates of a run's range, [from, to), in place of
// {{ start }} and {{ end }}; zero dates are the whole of time.
func fillRange(sql string, from, to time.Time) string {
	return rangeTag.ReplaceAllStringFunc(sql, func(tag string) string {
		switch {
		case rangeTag.FindStringSubmatch(tag)[1] == "end" && to.IsZero():
			return "DATE '9999-12-31'"
		case rangeTag.FindStringSubmatch(tag)[1] == "end":
			return dateLiteral(to)
		case from.IsZero():
			return "DATE '0001-01-01'"
		}
		return dateLiteral(from)
	})
}

// merge stages a merge model's new rows, and returns the query of the
// table after the merge: its rows whose key the new rows do not hold, and
// the new rows. New rows with a null key are left out, and recorded as
// failures of the check unique_key_not_null (warn); new rows that repeat
// a key fail the model.
func (r *Runner) merge(ctx context.Context, m Model, sql, runID string, opts Options, published bool, res *Result) (plan, error) {
	staged := mergeStaging(m.Name)
	if err := r.eng.Exec(ctx, "CREATE OR REPLACE TABLE "+staged+" AS "+sql); err != nil {
		return plan{}, fmt.Errorf("model %s (%s): %w", m.Name, m.File, err)
	}
	keys := quoteIdents(m.UniqueKey)
	var anyNull []string
	for _, k := range m.UniqueKey {
		anyNull = append(anyNull, quoteIdent(k)+" IS NULL")
	}
	nullKey := strings.Join(anyNull, " OR ")
	nulls := Check{Name: "unique_key_not_null", Type: CheckExpression, Severity: SeverityWarn,
		SQL: "SELECT * FROM " + staged + " WHERE " + nullKey}
	if err := r.runCheck(ctx, m, nulls, staged, runID, res); err != nil {
		return plan{}, err
	}
	var dups int64
	if err := r.scalar(ctx, fmt.Sprintf("SELECT count(*) FROM (SELECT %s FROM %s WHERE NOT (%s) GROUP BY ALL HAVING count(*) > 1)", keys, staged, nullKey), &dups); err != nil {
		return plan{}, fmt.Errorf("model %s: %w", m.Name, err)
	}
	if dups > 0 {
		return plan{}, fmt.Errorf("model %s: %d keys (%s) are held by more than one of its rows: a merge needs one row per key", m.Name, dups, strings.Join(m.UniqueKey, ", "))
	}
	fresh := "SELECT * FROM " + staged + " WHERE NOT (" + nullKey + ")"
	if !published || opts.FullRefresh {
		return plan{q: fresh}, nil
	}
	return plan{q: fmt.Sprintf("SELECT * FROM %s ANTI JOIN (SELECT %s FROM %s) USING (%s) UNION ALL BY NAME %s", quoteIdent(m.Name), keys, staged, keys, fresh)}, nil
}

// mergeStaging is the engine's table of a merge model's new rows.
func mergeStaging(model string) string { return quoteIdent("merge_new__" + model) }

func (r *Runner) scalar(ctx context.Context, q string, v any) error {
	return r.eng.QueryRow(ctx, q, v)
}

// audit runs a model's checks on this, whose columns are cols, and
// records their failing rows; a check of severity error that fails is the
// model's error.
func (r *Runner) audit(ctx context.Context, m Model, this string, cols []string, runID string, res *Result) error {
	var errs []string
	for _, c := range m.Checks {
		if missing := c.missing(cols); len(missing) > 0 {
			errs = append(errs, fmt.Sprintf("check %s: %s has no column %s", c.ID(), m.Name, strings.Join(missing, ", ")))
			continue
		}
		if err := r.runCheck(ctx, m, c, this, runID, res); err != nil {
			return err
		}
		last := res.Checks[len(res.Checks)-1]
		if last.Failed > 0 && last.Severity == SeverityError {
			errs = append(errs, fmt.Sprintf("check %s failed on %d rows", c.ID(), last.Failed))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("model %s: %s (dq_failures has the rows); the table is kept as it was", m.Name, strings.Join(errs, "; "))
	}
	return nil
}

// runCheck runs one check on this and records its failing rows.
func (r *Runner) runCheck(ctx context.Context, m Model, c Check, this, runID string, res *Result) error {
	q := c.failing(this, r.now())
	var n int64
	if err := r.scalar(ctx, "SELECT count(*) FROM ("+q+")", &n); err != nil {
		return fmt.Errorf("model %s: check %s: %w", m.Name, c.ID(), err)
	}
	res.Checks = append(res.Checks, CheckResult{Check: c.ID(), Severity: c.severity(), Failed: n})
	if n == 0 {
		return nil
	}
	r.logger.Warn("check failed", "model", m.Name, "check", c.ID(), "severity", c.severity(), "rows", n)
	stmt := fmt.Sprintf("INSERT INTO run_failures__ SELECT %s, %s, %s, %s, %s, CAST(row AS JSON) FROM (%s) LIMIT %d",
		quoteString(runID), quoteString(m.Name), quoteString(c.ID()), quoteString(string(c.severity())), timeLiteral(r.now()), q, maxFailures)
	if err := r.eng.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("model %s: check %s: record failures: %w", m.Name, c.ID(), err)
	}
	return nil
}

// staged is a query's result written as files of a table, not yet in the
// lake.
type staged struct {
	t *table.Table
	// dir holds files, local paths of Parquet files with the table's
	// field ids; columns are theirs.
	dir     string
	files   []string
	columns []string
}

// stage writes q's result as Parquet files of table name, made or widened
// for it, in a staging directory.
func (r *Runner) stage(ctx context.Context, name, q, runID string) (staged, error) {
	st := staged{}
	cols, err := r.eng.Describe(ctx, q)
	if err != nil {
		return st, fmt.Errorf("model %s: %w", name, err)
	}
	outs := make([]output, len(cols))
	for i, c := range cols {
		if outs[i], err = outputOf(c); err != nil {
			return st, fmt.Errorf("model %s: %w", name, err)
		}
		st.columns = append(st.columns, c.Name)
	}
	if st.t, err = r.table(ctx, name, outs); err != nil {
		return st, err
	}
	sc := st.t.Schema()
	selects := make([]string, len(outs))
	ids := make([]string, len(outs))
	partitioned := false
	for i, o := range outs {
		f, _ := sc.FindFieldByName(o.field.Name)
		selects[i] = o.expr + " AS " + quoteIdent(o.field.Name)
		ids[i] = fmt.Sprintf("%s: %d", quoteIdent(o.field.Name), f.ID)
		partitioned = partitioned || o.field.Name == lake.EventDate
	}
	st.dir = filepath.Join(r.staging, name+"-"+runID)
	if err := os.RemoveAll(st.dir); err != nil {
		return st, err
	}
	if err := os.MkdirAll(st.dir, 0o755); err != nil {
		return st, fmt.Errorf("staging: %w", err)
	}
	// DuckDB writes the files, with the table's field ids, so that any
	// engine reads them by id; one file per event date, as the loader's.
	target, opts := filepath.Join(st.dir, "part.parquet"), ""
	if partitioned {
		target, opts = st.dir, ", PARTITION_BY ("+lake.EventDate+"), WRITE_PARTITION_COLUMNS true, FILENAME_PATTERN 'part-{i}'"
	}
	stmt := fmt.Sprintf("COPY (SELECT %s FROM (%s)) TO %s (FORMAT parquet, COMPRESSION zstd, FIELD_IDS {%s}%s)",
		strings.Join(selects, ", "), q, quoteString(target), strings.Join(ids, ", "), opts)
	if err := r.eng.Exec(ctx, stmt); err != nil {
		os.RemoveAll(st.dir)
		return st, fmt.Errorf("model %s: %w", name, err)
	}
	err = filepath.WalkDir(st.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			st.files = append(st.files, p)
		}
		return err
	})
	slices.Sort(st.files)
	if err != nil {
		os.RemoveAll(st.dir)
	}
	return st, err
}

// publish puts staged files in the lake, and swaps them into the table in
// place of the files replaced reports, in one snapshot, which the engine
// then reads for the models after it.
func (r *Runner) publish(ctx context.Context, name string, st staged, runID string, replaced func(iceberg.DataFile) bool) (*table.Table, error) {
	files, err := r.upload(ctx, name, st, runID)
	if err != nil {
		return nil, err
	}
	t, err := r.cat.Replace(ctx, st.t, files, iceberg.Properties{RunKey: runID}, replaced)
	if err != nil {
		return nil, fmt.Errorf("model %s: publish: %w", name, err)
	}
	if err := r.eng.Reload(ctx, name); err != nil {
		return nil, fmt.Errorf("model %s: read it back: %w", name, err)
	}
	return t, nil
}

// upload puts staged files in the lake (and its mirror), and returns
// their paths there.
func (r *Runner) upload(ctx context.Context, name string, st staged, runID string) ([]string, error) {
	defer os.RemoveAll(st.dir)
	var files []string
	for _, p := range st.files {
		rel, err := filepath.Rel(st.dir, p)
		if err != nil {
			return nil, err
		}
		// <table>/data/[event_date=.../]run-<id>-<file>, beside the
		// loader's files: the run in the name, so that a file is never
		// written twice.
		sub, base := filepath.Split(rel)
		dst := name + "/data/" + filepath.ToSlash(sub) + "run-" + runID + "-" + base
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if err := lake.PutBytes(ctx, r.store, dst, b); err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		if r.mirror != nil {
			if err := lake.PutBytes(ctx, r.mirror, dst, b); err != nil {
				return nil, fmt.Errorf("model %s: %w", name, err)
			}
		}
		files = append(files, dst)
	}
	return files, nil
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

// buildView checks a view model's result, as its readers will read it,
// then publishes its SQL as the view's new version. Its rows are not
// counted: reading them is the readers' work.
func (r *Runner) buildView(ctx context.Context, m Model, runID string, res *Result) error {
	q := fillRange(m.SQL, time.Time{}, time.Time{})
	cols, err := r.eng.Describe(ctx, q)
	if err != nil {
		return fmt.Errorf("model %s (%s): %w", m.Name, m.File, err)
	}
	fields := make([]iceberg.NestedField, len(cols))
	for i, c := range cols {
		o, err := outputOf(c)
		if err != nil {
			// A view may hold what a table cannot (an interval, say);
			// its schema says text, and DuckDB reads the real type.
			o.field = lake.NewField(0, lake.Column{Name: c.Name, Kind: row.KindString})
		}
		fields[i] = o.field
		fields[i].ID = i + 1
	}
	if err := r.audit(ctx, m, "("+q+")", columnNames(cols), runID, res); err != nil {
		return err
	}
	v, err := r.cat.ReplaceView(ctx, m.Name, q, iceberg.NewSchema(0, fields...), map[string]string{RunKey: runID})
	if err != nil {
		return fmt.Errorf("model %s: publish: %w", m.Name, err)
	}
	if err := r.eng.Reload(ctx, m.Name); err != nil {
		return fmt.Errorf("model %s: read it back: %w", m.Name, err)
	}
	res.Version = v.Version
	return nil
}

// table loads the model's table, made with the model's columns the first
// time; a column the model gained is added. A column whose type changed
// is an error: the table's readers rely on it. A view of the model's name
// (the model was one) is dropped for the table.
func (r *Runner) table(ctx context.Context, name string, outs []output) (*table.Table, error) {
	t, err := r.cat.Load(ctx, name)
	if errors.Is(err, lake.ErrNoTable) {
		if err := r.cat.DropView(ctx, name); err != nil {
			return nil, err
		}
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
	if lake.Streamed(t) {
		return nil, fmt.Errorf("model %s: the table %s is the loader's or the aggregator's (its snapshots hold Kafka offsets): a model of that name would replace its events; rename the model", name, name)
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
