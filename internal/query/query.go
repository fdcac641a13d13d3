// Package query runs SQL over the lake with embedded DuckDB. Each lake table
// is a view of the same name over its Parquet files (Hive partitioning, so
// event_date is a column; union_by_name, so files written before a column
// existed read it as null). Nothing is downloaded at run time: DuckDB's
// parquet and json extensions are built into the library.
package query

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"

	_ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" driver

	"github.com/sluicehq/sluice/internal/lake"
)

// Engine is an in-memory DuckDB with a view per lake table.
type Engine struct {
	db     *sql.DB
	tables []Table
}

// Table is a lake table as the engine sees it.
type Table struct {
	Name   string `json:"table"`
	Format string `json:"format"`
	Files  int    `json:"files"`
	Bytes  int64  `json:"bytes"`
	Rows   int64  `json:"rows"` // -1 when the table cannot be read here
}

// Open starts DuckDB over a local lake (a remote one is read through
// lake.Mirror).
func Open(ctx context.Context, local *lake.Local) (*Engine, error) {
	files, err := lake.Tables(ctx, local)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, fmt.Errorf("start duckdb: %w", err)
	}
	// One connection: views live in the connection's catalog.
	db.SetMaxOpenConns(1)
	e := &Engine{db: db}
	for _, name := range slices.Sorted(maps.Keys(files)) {
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
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			db.Close()
			return nil, fmt.Errorf("create view %s: %w", name, err)
		}
		e.tables = append(e.tables, t)
	}
	return e, nil
}

// Close stops DuckDB.
func (e *Engine) Close() error { return e.db.Close() }

// Tables lists the lake's tables with their row counts.
func (e *Engine) Tables(ctx context.Context) ([]Table, error) {
	out := slices.Clone(e.tables)
	for i := range out {
		if !e.queryable(out[i]) {
			out[i].Rows = -1
			continue
		}
		if err := e.db.QueryRowContext(ctx, "SELECT count(*) FROM "+quoteIdent(out[i].Name)).Scan(&out[i].Rows); err != nil {
			return nil, fmt.Errorf("count %s: %w", out[i].Name, err)
		}
	}
	return out, nil
}

func (e *Engine) queryable(t Table) bool { return t.Format == "parquet" || t.Format == "csv.gz" }

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
	wrapped := fmt.Sprintf("SELECT * REPLACE (%s) FROM (%s)", strings.Join(replace, ", "), strings.TrimRight(strings.TrimSpace(q), ";"))
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

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
