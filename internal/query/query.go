// Package query runs SQL over the lake with embedded DuckDB. Each table of
// the lake's Iceberg catalog is a view of the same name over the data
// files of its current snapshot (or of the snapshot a time travel names),
// as iceberg-go plans them; columns are read by field id, so a renamed
// column still reads and a file written before a column existed reads it
// as null. Plain export tables (CSV.gz) are views over their files, with
// Hive partitioning. Nothing is downloaded at run time: DuckDB's parquet
// and json extensions are built into the library.
package query

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	_ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" driver

	"github.com/sluicehq/sluice/internal/lake"
	"github.com/sluicehq/sluice/internal/row"
)

// Engine is an in-memory DuckDB with a view per lake table, and each view
// of the catalog as a view of its own.
type Engine struct {
	db    *sql.DB
	local *lake.Local
	cat   *lake.Catalog

	mu     sync.Mutex // guards tables, which Reload changes, and confined
	tables []Table
	// confined is set once Confine has locked DuckDB's settings.
	confined bool
}

// Table is a lake table as the engine sees it.
type Table struct {
	Name     string `json:"table"`
	Format   string `json:"format"`
	Files    int    `json:"files"`
	Bytes    int64  `json:"bytes"`
	Rows     int64  `json:"rows"`               // -1 when the table cannot be read here
	Snapshot int64  `json:"snapshot,omitempty"` // the Iceberg snapshot read
	// SnapshotTime is when that snapshot was committed.
	SnapshotTime *time.Time `json:"snapshot_time,omitempty"`
	// Snapshots is how many snapshots the table keeps, for time travel.
	Snapshots int `json:"snapshots,omitempty"`
	// Version is a view's version: a view holds no data, only its SQL.
	Version int64 `json:"version,omitempty"`
}

// Options say what the engine reads.
type Options struct {
	// AsOf reads every catalog table as of a snapshot id, or as of a time
	// (RFC 3339, or a date): the snapshot current then.
	AsOf string
}

// Open starts DuckDB over a lake whose files are on local disk (a remote
// one is read through lake.Mirror) and its catalog.
func Open(ctx context.Context, local *lake.Local, cat *lake.Catalog, opts Options) (*Engine, error) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, fmt.Errorf("start duckdb: %w", err)
	}
	// Views are the database's, seen by each of its connections: batch
	// models of one wave run side by side on connections of their own.
	db.SetMaxOpenConns(4)
	e := &Engine{db: db, local: local, cat: cat}
	if err := e.openCatalog(ctx, local, cat, opts); err != nil {
		db.Close()
		return nil, err
	}
	if err := e.openFiles(ctx, local); err != nil {
		db.Close()
		return nil, err
	}
	if err := e.openViews(ctx); err != nil {
		db.Close()
		return nil, err
	}
	slices.SortFunc(e.tables, func(a, b Table) int { return strings.Compare(a.Name, b.Name) })
	return e, nil
}

// openCatalog makes a view of each catalog table.
func (e *Engine) openCatalog(ctx context.Context, local *lake.Local, cat *lake.Catalog, opts Options) error {
	names, err := cat.Names(ctx)
	if err != nil {
		return err
	}
	tables := make([]*table.Table, len(names))
	for i, name := range names {
		if tables[i], err = cat.Load(ctx, name); err != nil {
			return err
		}
	}
	when, err := resolveAsOf(tables, opts.AsOf)
	if err != nil {
		return err
	}
	for i, name := range names {
		t, err := e.view(ctx, name, tables[i], when, "CREATE VIEW")
		if err != nil {
			return err
		}
		e.tables = append(e.tables, t)
	}
	return nil
}

// openViews makes a DuckDB view of each view of the catalog. A view may
// read another: those whose tables are not there yet are made after the
// others, until a round makes none.
func (e *Engine) openViews(ctx context.Context) error {
	names, err := e.cat.ViewNames(ctx)
	if err != nil {
		return err
	}
	var pending []lake.View
	for _, name := range names {
		if slices.ContainsFunc(e.tables, func(t Table) bool { return t.Name == name }) {
			continue // a table's name is the table's
		}
		v, err := e.cat.LoadView(ctx, name)
		if err != nil {
			return err
		}
		pending = append(pending, v)
	}
	for len(pending) > 0 {
		var later []lake.View
		var errs []error
		for _, v := range pending {
			if err := e.createView(ctx, v, "CREATE VIEW"); err != nil {
				later, errs = append(later, v), append(errs, err)
				continue
			}
			e.tables = append(e.tables, Table{Name: v.Name, Format: "view", Version: v.Version})
		}
		if len(later) == len(pending) {
			// A view over a table that is gone, say: the rest of the
			// lake still reads.
			for i, v := range later {
				e.tables = append(e.tables, Table{Name: v.Name, Format: "view (" + errs[i].Error() + ")", Version: v.Version})
			}
			return nil
		}
		pending = later
	}
	return nil
}

func (e *Engine) createView(ctx context.Context, v lake.View, create string) error {
	if _, err := e.db.ExecContext(ctx, fmt.Sprintf("%s %s AS %s", create, quoteIdent(v.Name), v.SQL)); err != nil {
		return fmt.Errorf("create view %s: %w", v.Name, err)
	}
	return nil
}

// Reload makes the view of a catalog table read its current snapshot, or
// a view of the catalog its current SQL, for a statement after a commit
// to it (a model the next model reads).
func (e *Engine) Reload(ctx context.Context, name string) error {
	var t Table
	tbl, err := e.cat.Load(ctx, name)
	switch {
	case errors.Is(err, lake.ErrNoTable):
		v, verr := e.cat.LoadView(ctx, name)
		if verr != nil {
			return err
		}
		if err := e.createView(ctx, v, "CREATE OR REPLACE VIEW"); err != nil {
			return err
		}
		t = Table{Name: name, Format: "view", Version: v.Version}
	case err != nil:
		return err
	default:
		if t, err = e.view(ctx, name, tbl, asOfTime{}, "CREATE OR REPLACE VIEW"); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	i := slices.IndexFunc(e.tables, func(t Table) bool { return t.Name == name })
	if i < 0 {
		e.tables = append(e.tables, t)
		slices.SortFunc(e.tables, func(a, b Table) int { return strings.Compare(a.Name, b.Name) })
	} else {
		e.tables[i] = t
	}
	return nil
}

// view makes (create says how: CREATE VIEW or CREATE OR REPLACE VIEW) the
// view of a catalog table as of when, and returns the table.
func (e *Engine) view(ctx context.Context, name string, tbl *table.Table, when asOfTime, create string) (Table, error) {
	t := Table{Name: name, Format: "iceberg", Snapshots: len(tbl.Metadata().Snapshots())}
	snap := asOf(tbl, when)
	sc := tbl.Schema()
	var files []string
	if snap != nil {
		t.Snapshot = snap.SnapshotID
		at := time.UnixMilli(snap.TimestampMs).UTC()
		t.SnapshotTime = &at
		if s, ok := tbl.Schemas()[snapshotSchema(snap)]; ok {
			sc = s
		}
		tasks, err := tbl.Scan(table.WithSnapshotID(snap.SnapshotID)).PlanFiles(ctx)
		if err != nil {
			return t, fmt.Errorf("plan %s: %w", name, err)
		}
		for _, task := range tasks {
			files = append(files, e.local.Root()+"/"+e.cat.Path(task.File.FilePath()))
			t.Bytes += task.File.FileSizeBytes()
			t.Rows += task.File.Count()
		}
	}
	t.Files = len(files)
	if _, err := e.db.ExecContext(ctx, icebergView(create, name, sc, files)); err != nil {
		return t, fmt.Errorf("create view %s: %w", name, err)
	}
	return t, nil
}

func snapshotSchema(s *table.Snapshot) int {
	if s.SchemaID != nil {
		return *s.SchemaID
	}
	return -1
}

// asOfTime is when the tables are read: a time, or the time of a snapshot
// and that snapshot itself for its table; the zero value is the latest.
type asOfTime struct {
	ms       int64
	snapshot int64
}

// resolveAsOf reads --as-of: a snapshot id (of one table: the others are
// read as they were when it was committed) or a time.
func resolveAsOf(tables []*table.Table, when string) (asOfTime, error) {
	if when == "" {
		return asOfTime{}, nil
	}
	if id, err := strconv.ParseInt(when, 10, 64); err == nil && len(when) > 10 {
		for _, t := range tables {
			if s := t.SnapshotByID(id); s != nil {
				return asOfTime{ms: s.TimestampMs, snapshot: id}, nil
			}
		}
		return asOfTime{}, fmt.Errorf("--as-of %d: no table has that snapshot (see sluice lake history TABLE)", id)
	}
	at, ok := row.ParseTime(when)
	if !ok {
		return asOfTime{}, fmt.Errorf("--as-of %q: want a snapshot id or a time such as 2025-01-01T12:00:00Z", when)
	}
	return asOfTime{ms: at.UnixMilli()}, nil
}

// asOf is the table's snapshot to read at when; nil when it had none.
func asOf(tbl *table.Table, when asOfTime) *table.Snapshot {
	if when == (asOfTime{}) {
		return tbl.CurrentSnapshot()
	}
	if s := tbl.SnapshotByID(when.snapshot); when.snapshot != 0 && s != nil {
		return s
	}
	return tbl.SnapshotAsOf(when.ms, true)
}

// icebergView is the view of a table: its columns read by field id from
// files, or no rows when there are none.
func icebergView(create, name string, sc *iceberg.Schema, files []string) string {
	var cols, entries []string
	for _, f := range sc.Fields() {
		typ := duckType(f.Type)
		if typ == "" {
			continue // a type Sluice does not write, such as a struct
		}
		col := quoteIdent(f.Name)
		switch {
		case len(files) == 0:
			col = fmt.Sprintf("CAST(NULL AS %s) AS %s", typ, col)
		case f.Doc == "JSON":
			col = fmt.Sprintf("CAST(%s AS JSON) AS %s", col, col)
		}
		cols = append(cols, col)
		entries = append(entries, fmt.Sprintf("%d: {name: %s, type: '%s', default_value: NULL}", f.ID, quoteString(f.Name), typ))
	}
	if len(files) == 0 {
		return fmt.Sprintf("%s %s AS SELECT %s WHERE false", create, quoteIdent(name), strings.Join(cols, ", "))
	}
	quoted := make([]string, len(files))
	for i, f := range files {
		quoted[i] = quoteString(f)
	}
	return fmt.Sprintf("%s %s AS SELECT %s FROM read_parquet([%s], schema = MAP {%s})", create, quoteIdent(name),
		strings.Join(cols, ", "), strings.Join(quoted, ", "), strings.Join(entries, ", "))
}

// duckType is DuckDB's name of an Iceberg primitive type, or "".
func duckType(t iceberg.Type) string {
	switch t := t.(type) {
	case iceberg.BooleanType:
		return "BOOLEAN"
	case iceberg.Int32Type:
		return "INTEGER"
	case iceberg.Int64Type:
		return "BIGINT"
	case iceberg.Float32Type:
		return "FLOAT"
	case iceberg.Float64Type:
		return "DOUBLE"
	case iceberg.DecimalType:
		return fmt.Sprintf("DECIMAL(%d, %d)", t.Precision(), t.Scale())
	case iceberg.DateType:
		return "DATE"
	case iceberg.TimestampTzType:
		return "TIMESTAMPTZ"
	case iceberg.TimestampType:
		return "TIMESTAMP"
	case iceberg.StringType:
		return "VARCHAR"
	case iceberg.BinaryType:
		return "BLOB"
	}
	return ""
}

// openFiles makes a view of each plain export table.
func (e *Engine) openFiles(ctx context.Context, local *lake.Local) error {
	files, err := lake.Tables(ctx, local)
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if slices.ContainsFunc(e.tables, func(t Table) bool { return t.Name == name }) {
			continue
		}
		t := Table{Name: name, Files: len(files[name])}
		for _, o := range files[name] {
			t.Bytes += o.Size
		}
		f, _ := lake.ParseFile(files[name][0].Path)
		glob := strings.ReplaceAll(local.Root()+"/"+name+"/*/*."+f.Ext, "'", "''")
		var reader string
		switch f.Ext {
		case "parquet":
			reader = fmt.Sprintf(`read_parquet('%s', hive_partitioning = true, union_by_name = true)`, glob)
		case "csv.gz":
			reader = fmt.Sprintf(`read_csv('%s', header = true, hive_partitioning = true, union_by_name = true)`, glob)
		default:
			// DuckDB reads Avro only through an extension that would have to
			// be downloaded; Spark and Trino read these tables.
			t.Format = f.Ext + " (not queryable here)"
			e.tables = append(e.tables, t)
			continue
		}
		t.Format = f.Ext
		stmt := fmt.Sprintf(`CREATE VIEW %s AS SELECT * FROM %s`, quoteIdent(name), reader)
		if _, err := e.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create view %s: %w", name, err)
		}
		e.tables = append(e.tables, t)
	}
	return nil
}

// Exec runs one statement that returns no rows, such as a COPY.
func (e *Engine) Exec(ctx context.Context, stmt string) error {
	_, err := e.db.ExecContext(ctx, stmt)
	return err
}

// QueryRow runs a query of one row into dest, as database/sql's Scan.
func (e *Engine) QueryRow(ctx context.Context, q string, dest ...any) error {
	return e.db.QueryRowContext(ctx, q).Scan(dest...)
}

// Column is a result column: its name and DuckDB type.
type Column struct {
	Name, Type string
}

// Describe gives the columns a query would return, without running it.
func (e *Engine) Describe(ctx context.Context, q string) ([]Column, error) {
	rows, err := e.db.QueryContext(ctx, "DESCRIBE "+q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []Column
	for rows.Next() {
		vals := make([]any, len(names))
		ptrs := make([]any, len(names))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		// DESCRIBE's first two columns are column_name and column_type.
		out = append(out, Column{Name: fmt.Sprint(vals[0]), Type: fmt.Sprint(vals[1])})
	}
	return out, rows.Err()
}

// Close stops DuckDB.
func (e *Engine) Close() error { return e.db.Close() }

// Tables lists the lake's tables with their row counts.
func (e *Engine) Tables(ctx context.Context) ([]Table, error) {
	e.mu.Lock()
	out := slices.Clone(e.tables)
	e.mu.Unlock()
	for i := range out {
		if !e.queryable(out[i]) {
			out[i].Rows = -1
			continue
		}
		if out[i].Format == "iceberg" {
			continue // counted from the manifests
		}
		if err := e.db.QueryRowContext(ctx, "SELECT count(*) FROM "+quoteIdent(out[i].Name)).Scan(&out[i].Rows); err != nil {
			return nil, fmt.Errorf("count %s: %w", out[i].Name, err)
		}
	}
	return out, nil
}

func (e *Engine) queryable(t Table) bool {
	return t.Format == "iceberg" || t.Format == "parquet" || t.Format == "csv.gz" || t.Format == "view"
}

// Result is a query's columns and rows, values as DuckDB's driver gives them.
type Result struct {
	Columns []string
	Types   []string // DuckDB type names, such as DATE or TIMESTAMP
	Rows    [][]any
}

// Query runs one SQL statement and reads its whole result. JSON columns
// come back as their text, keys in the order the lake holds them: DuckDB's
// driver would decode them into maps, whose order is lost.
func (e *Engine) Query(ctx context.Context, q string) (Result, error) {
	res, jsonCols, err := e.query(ctx, q, true)
	if err != nil || len(jsonCols) == 0 {
		return res, err
	}
	replace := make([]string, len(jsonCols))
	for i, c := range jsonCols {
		replace[i] = fmt.Sprintf("CAST(%s AS VARCHAR) AS %s", quoteIdent(c), quoteIdent(c))
	}
	wrapped := fmt.Sprintf("SELECT * REPLACE (%s) FROM (%s)", strings.Join(replace, ", "), subquery(q))
	text, _, err := e.query(ctx, wrapped, false)
	if err != nil {
		// Columns of one name twice, say: the maps will do.
		res, _, err = e.query(ctx, q, false)
		return res, err
	}
	for i := range text.Types {
		text.Types[i] = res.Types[i]
	}
	return text, nil
}

// query runs q; with probe, it stops at the column types when some are
// JSON, and names them.
func (e *Engine) query(ctx context.Context, q string, probe bool) (Result, []string, error) {
	rows, err := e.db.QueryContext(ctx, q)
	if err != nil {
		return Result{}, nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return Result{}, nil, err
	}
	types, err := rows.ColumnTypes()
	if err != nil {
		return Result{}, nil, err
	}
	res := Result{Columns: cols, Types: make([]string, len(types))}
	var jsonCols []string
	for i, t := range types {
		res.Types[i] = t.DatabaseTypeName()
		if res.Types[i] == "JSON" {
			jsonCols = append(jsonCols, cols[i])
		}
	}
	if probe && len(jsonCols) > 0 {
		return res, jsonCols, nil
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return Result{}, nil, err
		}
		res.Rows = append(res.Rows, vals)
	}
	return res, nil, rows.Err()
}

// subquery is a query as the FROM clause of another takes it: without the
// semicolons and space that may end it.
func subquery(q string) string { return strings.TrimRight(strings.TrimSpace(q), "; \n\t") }

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteString(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// Confine keeps the engine's SQL to the lake: DuckDB may then read no file
// outside the lake's directory, write none, and no statement may lift
// that. The console runs SQL from whoever holds a read key through it.
func (e *Engine) Confine(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.confined {
		return nil
	}
	dir := e.local.Root()
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	for _, stmt := range []string{
		"SET GLOBAL allowed_directories = [" + quoteString(dir+string(filepath.Separator)) + "]",
		"SET GLOBAL enable_external_access = false",
		"SET GLOBAL lock_configuration = true",
	} {
		if _, err := e.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("confine duckdb (%s): %w", stmt, err)
		}
	}
	e.confined = true
	return nil
}

// Page runs a query and reads rows [offset, offset+limit) of its result,
// and whether more follow, reading no more than that from DuckDB. q must
// be one query (a SELECT, WITH, VALUES, FROM or a table's name as DuckDB
// takes it), not a statement that changes anything.
func (e *Engine) Page(ctx context.Context, q string, offset, limit int) (Result, bool, error) {
	paged := fmt.Sprintf("SELECT * FROM (%s) LIMIT %d OFFSET %d", subquery(q), limit+1, offset)
	res, err := e.Query(ctx, paged)
	if err != nil {
		return res, false, err
	}
	more := len(res.Rows) > limit
	if more {
		res.Rows = res.Rows[:limit]
	}
	return res, more, nil
}

// Stream runs a query, tells columns its column names and types, then
// calls fn with each row in turn, the values as Query gives them; the
// slice is reused. Nothing is held but the row.
func (e *Engine) Stream(ctx context.Context, q string, columns func(names, types []string) error, fn func([]any) error) error {
	rows, err := e.db.QueryContext(ctx, "SELECT * FROM ("+subquery(q)+")")
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	cts, err := rows.ColumnTypes()
	if err != nil {
		return err
	}
	types := make([]string, len(cts))
	for i, t := range cts {
		types[i] = t.DatabaseTypeName()
	}
	if err := columns(cols, types); err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		if err := fn(vals); err != nil {
			return err
		}
	}
	return rows.Err()
}
