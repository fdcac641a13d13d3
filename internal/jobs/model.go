// Package jobs is the batch layer: SQL models over the lake, run in the
// order their references make, each published as one Iceberg snapshot.
//
// A model is a DuckDB SELECT in a file of a models directory, named by the
// file. It reads lake tables and other models by name, plainly or as
// {{ ref('name') }}; the references between models form a graph that a run
// follows, a model after those it reads. Its output replaces the model's
// table in one commit (write, then publish): a reader of the lake sees the
// table before the run or after it, never part of it, and a run that
// fails, or a process killed during it, leaves the table as it was (the
// files it wrote are orphans, for 'sluice lake orphans').
package jobs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/lake"
)

// Materialization is how a model's result is kept.
type Materialization string

// The materializations.
const (
	// MaterializeTable rebuilds the model's table from its whole result.
	MaterializeTable Materialization = "table"
	// MaterializeIncremental rebuilds the event dates of a range: the last
	// days (its lookback) by default, so that late events are picked up,
	// or the range of a backfill. The model's result must have event_date.
	MaterializeIncremental Materialization = "incremental"
	// MaterializeMerge puts the result's rows in place of the table's rows
	// with the same unique key, and keeps the others.
	MaterializeMerge Materialization = "merge"
	// MaterializeView keeps the model's SQL as a view of the catalog,
	// read by running it: nothing is written, and it is never stale.
	MaterializeView Materialization = "view"
)

// defaultLookback is how many days an incremental model rebuilds when no
// range is given.
const defaultLookback = 3

// Model is one SQL model.
type Model struct {
	Name string
	// File is where it was read from, for errors.
	File string
	// SQL is the model's query, with {{ ref() }} replaced by the names
	// they give and {{ config() }} removed.
	SQL          string
	Materialized Materialization
	// UniqueKey are the columns that identify a row of a merge model.
	UniqueKey []string
	// Lookback is how many days before today an incremental run
	// rebuilds, today included.
	Lookback int
	// Refs are the models it reads, sorted.
	Refs []string
	// Checks are run on the files a run writes, before they are
	// published: from <name>.yml beside the model.
	Checks []Check
	// Source: a table the loader writes, not built here, whose checks
	// (in <name>.yml, without a .sql) run against the table itself.
	Source bool
	// Dedupe is the model's {{ dedupe() }}, when it has one.
	Dedupe *Dedupe
}

var (
	refCall    = regexp.MustCompile(`\{\{\s*ref\(\s*['"]([^'"]+)['"]\s*\)\s*\}\}`)
	configCall = regexp.MustCompile(`\{\{\s*config\(([^)]*)\)\s*\}\}`)
	configArg  = regexp.MustCompile(`^\s*(\w+)\s*=\s*['"]([^'"]*)['"]\s*$`)
	identifier = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
	// rangeTag is the start or end of an incremental run's dates, a
	// DATE literal at run time: to read only the sources' days it needs.
	rangeTag = regexp.MustCompile(`\{\{\s*(start|end)\s*\}\}`)
	// dedupeTag is a deduplicated event table, with its lookback.
	dedupeTag = regexp.MustCompile(`\{\{\s*dedupe\(\s*['"]([^'"]+)['"]\s*(?:,\s*lookback\s*=\s*['"]([^'"]*)['"]\s*)?\)\s*\}\}`)
	// thisTag is the relation a check's SQL tests.
	thisTag = regexp.MustCompile(`\{\{\s*this\s*\}\}`)
	// A template tag that is none of those: a typo, or a feature not here.
	otherTag = regexp.MustCompile(`\{\{.*?\}\}`)
)

// Load reads the models of dir: every *.sql file. Model names are lake
// table names, so a file's name must be one.
func Load(dir string) ([]Model, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("models directory %s: %w", dir, errors.Unwrap(err))
		}
	}
	slices.Sort(paths)
	var models []Model
	var errs []error
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m, err := Parse(strings.TrimSuffix(filepath.Base(p), ".sql"), string(b))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		m.File = p
		models = append(models, m)
	}
	// <name>.yml holds a model's checks; one without a model is a
	// source table's.
	ymls, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		return nil, err
	}
	for _, p := range ymls {
		name := strings.TrimSuffix(filepath.Base(p), ".yml")
		var spec Spec
		// Both the file's and its checks' errors: a misspelt key is
		// often a check missing what it needs, too.
		loadErr := config.LoadFile(p, &spec)
		if err := errors.Join(loadErr, config.Prefix(p, spec.Validate())); err != nil {
			errs = append(errs, err)
			continue
		}
		i := slices.IndexFunc(models, func(m Model) bool { return m.Name == name })
		if i < 0 {
			if lake.TableName(name) != name {
				errs = append(errs, fmt.Errorf("%s: %q is no table name (lower case letters, digits and _)", p, name))
				continue
			}
			models = append(models, Model{Name: name, File: p, Source: true})
			i = len(models) - 1
		}
		models[i].Checks = spec.Checks
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := link(models); err != nil {
		return nil, err
	}
	return models, nil
}

// Parse reads one model's text. Its references to other models are found
// by link, which knows them all.
func Parse(name, text string) (Model, error) {
	m := Model{Name: name, Materialized: MaterializeTable}
	if lake.TableName(name) != name {
		return m, fmt.Errorf("model name %q: a model is a lake table, named in lower case letters, digits and _ (rename the file %s.sql)", name, lake.TableName(name))
	}
	if name == RunsTable || name == FailuresTable {
		return m, fmt.Errorf("model name %q: every run writes the table %s itself; rename the file", name, name)
	}
	var errs []error
	for _, c := range configCall.FindAllStringSubmatch(text, -1) {
		for arg := range strings.SplitSeq(c[1], ",") {
			if strings.TrimSpace(arg) == "" {
				continue
			}
			kv := configArg.FindStringSubmatch(arg)
			if kv == nil {
				errs = append(errs, fmt.Errorf("config(%s): want key='value' pairs", c[1]))
				continue
			}
			switch kv[1] {
			case "materialized":
				m.Materialized = Materialization(kv[2])
				if !slices.Contains([]Materialization{MaterializeTable, MaterializeIncremental, MaterializeMerge, MaterializeView}, m.Materialized) {
					errs = append(errs, fmt.Errorf("materialized=%q: want table, incremental, merge or view", kv[2]))
				}
			case "unique_key":
				for k := range strings.SplitSeq(kv[2], "|") {
					if k = strings.TrimSpace(k); k != "" {
						m.UniqueKey = append(m.UniqueKey, k)
					}
				}
			case "lookback":
				days, err := parseDays(kv[2])
				if err != nil {
					errs = append(errs, fmt.Errorf("lookback=%q: %w", kv[2], err))
				}
				m.Lookback = days
			default:
				errs = append(errs, fmt.Errorf("config: unknown key %q (known: materialized, unique_key, lookback)", kv[1]))
			}
		}
	}
	text = configCall.ReplaceAllString(text, "")
	text = refCall.ReplaceAllStringFunc(text, func(s string) string {
		return quoteIdent(refCall.FindStringSubmatch(s)[1])
	})
	if d := dedupeTag.FindAllStringSubmatch(text, -1); len(d) > 0 {
		m.Dedupe = &Dedupe{Source: d[0][1], Lookback: defaultDedupeLookback}
		if d[0][2] != "" {
			days, err := parseDays(d[0][2])
			if err != nil {
				errs = append(errs, fmt.Errorf("dedupe lookback=%q: %w", d[0][2], err))
			}
			m.Dedupe.Lookback = days
		}
		if len(d) > 1 {
			errs = append(errs, errors.New("one {{ dedupe() }} a model"))
		}
	}
	if tag := otherTag.FindString(dedupeTag.ReplaceAllString(rangeTag.ReplaceAllString(text, ""), "")); tag != "" {
		errs = append(errs, fmt.Errorf("%s: only {{ ref('name') }}, {{ config(...) }}, {{ dedupe('table') }}, {{ start }} and {{ end }} are known", tag))
	}
	m.SQL = strings.TrimRight(strings.TrimSpace(text), ";")
	if m.SQL == "" {
		errs = append(errs, errors.New("no SQL: a model is one SELECT"))
	}
	if m.Materialized == MaterializeMerge && len(m.UniqueKey) == 0 {
		errs = append(errs, errors.New("materialized='merge' needs unique_key='column' (several: 'a|b')"))
	}
	if m.Materialized != MaterializeMerge && len(m.UniqueKey) > 0 {
		errs = append(errs, errors.New("unique_key is for materialized='merge'"))
	}
	if m.Lookback == 0 {
		m.Lookback = defaultLookback
	}
	return m, errors.Join(errs...)
}

// parseDays reads a lookback: days (3d) or hours (72h) that make whole
// days.
func parseDays(s string) (int, error) {
	var n int
	var unit string
	if _, err := fmt.Sscanf(s, "%d%s", &n, &unit); err != nil || n < 1 {
		return 0, errors.New("want a number of days such as 3d")
	}
	switch {
	case unit == "d":
		return n, nil
	case unit == "h" && n%24 == 0:
		return n / 24, nil
	}
	return 0, errors.New("want a number of days such as 3d")
}

// link finds each model's references to the others: names in its SQL,
// outside comments and string literals, that are models' names.
func link(models []Model) error {
	byName := map[string]bool{}
	for _, m := range models {
		byName[m.Name] = true
	}
	for i, m := range models {
		refs := map[string]bool{}
		for _, word := range identifier.FindAllString(stripLiterals(m.SQL), -1) {
			if w := strings.ToLower(word); byName[w] && w != m.Name {
				refs[w] = true
			}
		}
		if d := m.Dedupe; d != nil && byName[d.Source] && d.Source != m.Name {
			refs[d.Source] = true
		}
		for r := range refs {
			models[i].Refs = append(models[i].Refs, r)
		}
		slices.Sort(models[i].Refs)
	}
	_, err := Order(models)
	return err
}

// stripLiterals blanks SQL comments and string literals, whose words are
// no references; quoted identifiers keep their text.
func stripLiterals(sql string) string {
	b := []byte(sql)
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\'':
			j := i + 1
			for j < len(b) {
				if b[j] == '\'' {
					if j+1 < len(b) && b[j+1] == '\'' { // '' is a quote inside
						j += 2
						continue
					}
					break
				}
				j++
			}
			for k := i; k < len(b) && k <= j; k++ {
				b[k] = ' '
			}
			i = j
		case b[i] == '-' && i+1 < len(b) && b[i+1] == '-':
			for ; i < len(b) && b[i] != '\n'; i++ {
				b[i] = ' '
			}
		case b[i] == '/' && i+1 < len(b) && b[i+1] == '*':
			end := strings.Index(string(b[i+2:]), "*/")
			stop := len(b)
			if end >= 0 {
				stop = i + 2 + end + 2
			}
			for ; i < stop; i++ {
				b[i] = ' '
			}
		case b[i] == '"':
			b[i] = ' '
		}
	}
	return string(b)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Order sorts models so that each comes after the models it reads, in
// waves: a wave's models read only earlier waves', so they may run side by
// side. A cycle is an error that names it.
func Order(models []Model) ([][]Model, error) {
	byName := map[string]Model{}
	for _, m := range models {
		if _, dup := byName[m.Name]; dup {
			return nil, fmt.Errorf("two models are named %s", m.Name)
		}
		byName[m.Name] = m
	}
	done := map[string]bool{}
	var waves [][]Model
	for len(done) < len(models) {
		var wave []Model
		for _, m := range models {
			if done[m.Name] {
				continue
			}
			ready := true
			for _, r := range m.Refs {
				if _, ok := byName[r]; ok && !done[r] {
					ready = false
				}
			}
			if ready {
				wave = append(wave, m)
			}
		}
		if len(wave) == 0 {
			return nil, fmt.Errorf("models read each other in a cycle: %s", cycle(models, done))
		}
		for _, m := range wave {
			done[m.Name] = true
		}
		waves = append(waves, wave)
	}
	return waves, nil
}

// cycle names a cycle among the models not done, as a → b → a.
func cycle(models []Model, done map[string]bool) string {
	refs := map[string][]string{}
	for _, m := range models {
		if !done[m.Name] {
			for _, r := range m.Refs {
				if !done[r] {
					refs[m.Name] = append(refs[m.Name], r)
				}
			}
		}
	}
	var start string
	for _, m := range models {
		if !done[m.Name] {
			start = m.Name
			break
		}
	}
	// Every model left reads another left: walking from any of them
	// comes back to a model on the path.
	path, at := []string{}, map[string]int{}
	for n := start; ; n = refs[n][0] {
		if i, seen := at[n]; seen {
			return strings.Join(append(path[i:], n), " → ")
		}
		at[n] = len(path)
		path = append(path, n)
	}
}

// Select gives the models a selection names, with what it asks for around
// them: "name" alone, "name+" with every model downstream of it, "+name"
// with every model it reads, directly or not. Several are separated by
// commas or spaces; none selects every model.
func Select(models []Model, selection string) ([]Model, error) {
	sel := strings.FieldsFunc(selection, func(r rune) bool { return r == ',' || r == ' ' })
	if len(sel) == 0 {
		return models, nil
	}
	byName := map[string]Model{}
	readers := map[string][]string{}
	for _, m := range models {
		byName[m.Name] = m
		for _, r := range m.Refs {
			readers[r] = append(readers[r], m.Name)
		}
	}
	chosen := map[string]bool{}
	var walk func(name string, next func(string) []string)
	walk = func(name string, next func(string) []string) {
		for _, n := range next(name) {
			if !chosen[n] {
				chosen[n] = true
				walk(n, next)
			}
		}
	}
	for _, s := range sel {
		name := strings.Trim(s, "+")
		if _, ok := byName[name]; !ok {
			return nil, fmt.Errorf("--select %s: no model %s (models: %s)", s, name, strings.Join(names(models), ", "))
		}
		chosen[name] = true
		if strings.HasSuffix(s, "+") {
			walk(name, func(n string) []string { return readers[n] })
		}
		if strings.HasPrefix(s, "+") {
			walk(name, func(n string) []string { return byName[n].Refs })
		}
	}
	var out []Model
	for _, m := range models {
		if chosen[m.Name] {
			out = append(out, m)
		}
	}
	return out, nil
}

func names(models []Model) []string {
	out := make([]string, len(models))
	for i, m := range models {
		out[i] = m.Name
	}
	return out
}
