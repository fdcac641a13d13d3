package jobs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/config"
)

// Spec is a model's <name>.yml: its data-quality checks.
type Spec struct {
	Checks []Check `yaml:"checks" doc:"Data-quality checks of the model's output (or of the source table), run before it is published."`
}

// Validate reports checks that cannot run.
func (s Spec) Validate() error {
	var errs []error
	names := map[string]bool{}
	for i, c := range s.Checks {
		if err := c.Validate(); err != nil {
			errs = append(errs, config.Prefix(fmt.Sprintf("checks[%d]", i), err))
		}
		if names[c.ID()] {
			errs = append(errs, config.Field(fmt.Sprintf("checks[%d].name", i), "two checks are named %s: name one of them", c.ID()))
		}
		names[c.ID()] = true
	}
	return errors.Join(errs...)
}

// CheckType is what a check tests.
type CheckType string

// The check types.
const (
	CheckNotNull        CheckType = "not_null"
	CheckUnique         CheckType = "unique"
	CheckAcceptedValues CheckType = "accepted_values"
	CheckRelationships  CheckType = "relationships"
	CheckRowCount       CheckType = "row_count"
	CheckFreshness      CheckType = "freshness"
	CheckExpression     CheckType = "expression"
)

var checkTypes = []CheckType{CheckNotNull, CheckUnique, CheckAcceptedValues, CheckRelationships, CheckRowCount, CheckFreshness, CheckExpression}

// Severity says what a failed check does.
type Severity string

// The severities.
const (
	// SeverityError keeps the table as it was: the run is not published.
	SeverityError Severity = "error"
	// SeverityWarn reports the failing rows and publishes.
	SeverityWarn Severity = "warn"
)

// Check is one data-quality check. Its failing rows go to the dq_failures
// table, with the check's name, the model and the run.
type Check struct {
	Name string    `yaml:"name" doc:"The check's name in dq_failures; default <type>_<columns>."`
	Type CheckType `yaml:"type" doc:"not_null, unique, accepted_values, relationships, row_count, freshness or expression."`
	// Columns: not_null (each), unique (together).
	Columns []string `yaml:"columns" doc:"not_null: the columns that must hold a value; unique: the columns whose values together are unique."`
	// Column: accepted_values, relationships, freshness.
	Column string   `yaml:"column" doc:"accepted_values, relationships, freshness: the column checked."`
	Values []string `yaml:"values" doc:"accepted_values: the values allowed (compared as text); null passes."`
	To     string   `yaml:"to" doc:"relationships: the table (or model) whose field the column's values must be in."`
	Field  string   `yaml:"field" doc:"relationships: the field of that table."`
	Min    *int64   `yaml:"min" doc:"row_count: the fewest rows allowed."`
	Max    *int64   `yaml:"max" doc:"row_count: the most rows allowed."`
	// MaxAge: freshness, the age of the newest value of Column.
	MaxAge   time.Duration `yaml:"max_age" doc:"freshness: how old the column's newest value may be."`
	SQL      string        `yaml:"sql" doc:"expression: a SELECT returning the failing rows; {{ this }} is the model's output."`
	Severity Severity      `yaml:"severity" doc:"error (the default): a failure keeps the table unpublished; warn: report and publish."`
}

// ID is the check's name: its own, or made of its type and columns.
func (c Check) ID() string {
	if c.Name != "" {
		return c.Name
	}
	switch c.Type {
	case CheckNotNull, CheckUnique:
		return string(c.Type) + "_" + strings.Join(c.Columns, "_")
	case CheckAcceptedValues, CheckRelationships, CheckFreshness:
		return string(c.Type) + "_" + c.Column
	}
	return string(c.Type)
}

// Validate reports a check missing what its type needs.
func (c Check) Validate() error {
	var errs []error
	need := func(ok bool, key, what string) {
		if !ok {
			errs = append(errs, config.Field(key, "%s needs %s", c.Type, what))
		}
	}
	switch c.Type {
	case CheckNotNull, CheckUnique:
		need(len(c.Columns) > 0, "columns", "columns: [a, b]")
	case CheckAcceptedValues:
		need(c.Column != "", "column", "column")
		need(len(c.Values) > 0, "values", "values: [...]")
	case CheckRelationships:
		need(c.Column != "", "column", "column")
		need(c.To != "", "to", "to: the table it refers to")
		need(c.Field != "", "field", "field: the field of that table")
	case CheckRowCount:
		need(c.Min != nil || c.Max != nil, "min", "min or max")
	case CheckFreshness:
		need(c.Column != "", "column", "column: a time or date column")
		need(c.MaxAge > 0, "max_age", "max_age such as 48h")
	case CheckExpression:
		need(strings.TrimSpace(c.SQL) != "", "sql", "sql: a SELECT of the failing rows")
	default:
		errs = append(errs, config.Field("type", "%q: want one of %v", c.Type, checkTypes))
	}
	if c.Severity != "" && c.Severity != SeverityError && c.Severity != SeverityWarn {
		errs = append(errs, config.Field("severity", "%q: want error or warn", c.Severity))
	}
	return errors.Join(errs...)
}

// severity is the check's severity, error unless it says warn.
func (c Check) severity() Severity {
	if c.Severity == SeverityWarn {
		return SeverityWarn
	}
	return SeverityError
}

// failing is a SELECT of the rows of this (a relation) that fail the check,
// each as a JSON object in the column row; now is the time freshness
// measures from.
func (c Check) failing(this string, now time.Time) string {
	row := func(from, where string) string {
		return fmt.Sprintf("SELECT CAST(to_json(t) AS VARCHAR) AS row FROM %s AS t WHERE %s", from, where)
	}
	switch c.Type {
	case CheckNotNull:
		var or []string
		for _, col := range c.Columns {
			or = append(or, quoteIdent(col)+" IS NULL")
		}
		return row(this, strings.Join(or, " OR "))
	case CheckUnique:
		cols := quoteIdents(c.Columns)
		// Every row of a key held more than once, nulls counting as
		// values (they are no key either).
		return fmt.Sprintf("SELECT CAST(to_json(t) AS VARCHAR) AS row FROM (SELECT *, count(*) OVER (PARTITION BY %s) AS n__ FROM %s) AS t WHERE n__ > 1", cols, this)
	case CheckAcceptedValues:
		vals := make([]string, len(c.Values))
		for i, v := range c.Values {
			vals[i] = quoteString(v)
		}
		return row(this, fmt.Sprintf("%s IS NOT NULL AND CAST(%s AS VARCHAR) NOT IN (%s)", quoteIdent(c.Column), quoteIdent(c.Column), strings.Join(vals, ", ")))
	case CheckRelationships:
		return row(this, fmt.Sprintf("%s IS NOT NULL AND %s NOT IN (SELECT %s FROM %s WHERE %s IS NOT NULL)",
			quoteIdent(c.Column), quoteIdent(c.Column), quoteIdent(c.Field), quoteIdent(c.To), quoteIdent(c.Field)))
	case CheckRowCount:
		var cond []string
		if c.Min != nil {
			cond = append(cond, fmt.Sprintf("n < %d", *c.Min))
		}
		if c.Max != nil {
			cond = append(cond, fmt.Sprintf("n > %d", *c.Max))
		}
		return fmt.Sprintf("SELECT CAST(to_json(t) AS VARCHAR) AS row FROM (SELECT count(*) AS n FROM %s) AS t WHERE %s", this, strings.Join(cond, " OR "))
	case CheckFreshness:
		limit := now.Add(-c.MaxAge).UTC().Format("2006-01-02 15:04:05.999999")
		return fmt.Sprintf("SELECT CAST(to_json(t) AS VARCHAR) AS row FROM (SELECT max(%s) AS newest FROM %s) AS t WHERE newest IS NULL OR CAST(newest AS TIMESTAMP) < TIMESTAMP '%s'",
			quoteIdent(c.Column), this, limit)
	case CheckExpression:
		q := strings.TrimRight(strings.TrimSpace(thisTag.ReplaceAllLiteralString(c.SQL, this)), ";")
		return fmt.Sprintf("SELECT CAST(to_json(t) AS VARCHAR) AS row FROM (%s) AS t", q)
	}
	return ""
}

func quoteIdents(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quoteIdent(c)
	}
	return strings.Join(q, ", ")
}

// missing is the columns the check names that cols lacks.
func (c Check) missing(cols []string) []string {
	var out []string
	for _, col := range append(slices.Clone(c.Columns), c.Column) {
		if col != "" && !slices.Contains(cols, col) {
			out = append(out, col)
		}
	}
	return out
}
