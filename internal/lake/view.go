package lake

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/catalog/rest"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	icebergio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/apache/iceberg-go/view"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/retry"
)

// ViewDialect is the SQL dialect of the lake's views: they are DuckDB SQL
// over the lake's tables by name, as Sluice's models and queries are.
const ViewDialect = "duckdb"

// View is an Iceberg view of the catalog: a query over the lake's tables,
// kept as its SQL and the schema of its result. A view holds no data;
// it is read by running its SQL.
type View struct {
	Name    string
	SQL     string
	Version int64
	Schema  *iceberg.Schema
}

// views is what the SQL and the REST catalogs of iceberg-go both do with
// views; they make and change them differently.
type views interface {
	ListViews(ctx context.Context, namespace table.Identifier) iter.Seq2[table.Identifier, error]
	DropView(ctx context.Context, identifier table.Identifier) error
}

var (
	_ views = (*sqlcat.Catalog)(nil)
	_ views = (*rest.Catalog)(nil)
)

// ViewNames lists the catalog's views, sorted as they come.
func (c *Catalog) ViewNames(ctx context.Context) ([]string, error) {
	vc, ok := c.cat.(views)
	if !ok {
		return nil, nil
	}
	var names []string
	for id, err := range vc.ListViews(ctx, c.ns) {
		if errors.Is(err, rest.ErrEndpointNotSupported) {
			return nil, nil // a REST catalog without views has none
		}
		if err != nil {
			return nil, fmt.Errorf("list views: %w", err)
		}
		names = append(names, id[len(id)-1])
	}
	return names, nil
}

// LoadView reads a view; ErrNoTable when there is none.
func (c *Catalog) LoadView(ctx context.Context, name string) (View, error) {
	md, _, err := c.viewMetadata(ctx, name)
	if err != nil {
		return View{}, err
	}
	return viewOf(name, md)
}

// viewMetadata is a view's metadata, and where the catalog keeps it.
func (c *Catalog) viewMetadata(ctx context.Context, name string) (view.Metadata, string, error) {
	var (
		md  view.Metadata
		loc string
		err error
	)
	switch cat := c.cat.(type) {
	case *rest.Catalog:
		var v *view.View
		if v, err = cat.LoadView(ctx, c.ident(name)); err == nil {
			md, loc = v.Metadata(), v.MetadataLocation()
		}
	case *sqlcat.Catalog:
		if loc, err = c.viewLocation(ctx, name); err == nil {
			var v *view.View
			v, err = view.NewFromLocation(ctx, c.ident(name), loc, icebergio.LoadFSFunc(c.props, loc))
			if err == nil {
				md = v.Metadata()
			}
		}
	default:
		err = catalog.ErrNoSuchView
	}
	if errors.Is(err, catalog.ErrNoSuchView) {
		return nil, "", fmt.Errorf("view %s: %w", name, ErrNoTable)
	}
	if err != nil {
		return nil, "", fmt.Errorf("load view %s: %w", name, err)
	}
	return md, loc, nil
}

// viewLocation is where the SQL catalog's row of a view says its metadata
// is; catalog.ErrNoSuchView when it has no such row.
func (c *Catalog) viewLocation(ctx context.Context, name string) (string, error) {
	var loc sql.NullString
	err := c.db.QueryRowContext(ctx, `SELECT metadata_location FROM iceberg_tables
		WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND iceberg_type = ?`,
		c.name, c.namespace(), name, sqlcat.ViewType).Scan(&loc)
	if errors.Is(err, sql.ErrNoRows) || err == nil && !loc.Valid {
		return "", catalog.ErrNoSuchView
	}
	return loc.String, err
}

// namespace is the namespace as the SQL catalog's rows name it, for a
// namespace without dots (iceberg-go encodes others otherwise).
func (c *Catalog) namespace() string { return strings.Join(c.ns, ".") }

func viewOf(name string, md view.Metadata) (View, error) {
	v := md.CurrentVersion()
	if v == nil {
		return View{}, fmt.Errorf("view %s has no current version", name)
	}
	for _, r := range v.Representations {
		if r.Dialect == ViewDialect {
			return View{Name: name, SQL: r.Sql, Version: v.VersionID, Schema: md.CurrentSchema()}, nil
		}
	}
	return View{}, fmt.Errorf("view %s has no %s SQL: another engine made it", name, ViewDialect)
}

// ReplaceView makes view name the query q, with the schema of its result,
// in one change of the catalog: a reader finds the view as it was or as
// it is now, never without it. summary is recorded with the version (the
// run that made it, say). A view of the same SQL and schema is left as
// it is. A table of that name is an error: it holds data that a view
// would hide.
func (c *Catalog) ReplaceView(ctx context.Context, name, q string, sc *iceberg.Schema, summary map[string]string) (View, error) {
	backoff := retry.Backoff{Min: 10 * time.Millisecond, Max: time.Second}
	for attempt := 1; ; attempt++ {
		v, err := c.replaceView(ctx, name, q, sc, summary)
		if err == nil || !errors.Is(err, errViewChanged) || attempt == 20 {
			return v, err
		}
		if err := backoff.Wait(ctx, 0); err != nil {
			return View{}, err
		}
	}
}

// errViewChanged is a view that another writer changed since it was read.
var errViewChanged = errors.New("the view changed meanwhile")

func (c *Catalog) replaceView(ctx context.Context, name, q string, sc *iceberg.Schema, summary map[string]string) (View, error) {
	if _, err := c.Load(ctx, name); err == nil {
		return View{}, fmt.Errorf("view %s: a table of that name holds data; give the model another name, or drop the table first", name)
	} else if !errors.Is(err, ErrNoTable) {
		return View{}, err
	}
	base, baseLoc, err := c.viewMetadata(ctx, name)
	if err != nil && !errors.Is(err, ErrNoTable) {
		return View{}, err
	}
	fresh, err := iceberg.AssignFreshSchemaIDs(sc, nil)
	if err != nil {
		return View{}, fmt.Errorf("view %s: %w", name, err)
	}
	version, err := view.NewVersion(1, view.LastAddedID, view.Representations{view.NewRepresentation(q, ViewDialect)}, c.ns,
		view.WithDefaultViewCatalog(c.name), view.WithVersionSummary(view.VersionSummary{"engine-name": "sluice"}),
		view.WithVersionSummary(summary))
	if err != nil {
		return View{}, fmt.Errorf("view %s: %w", name, err)
	}
	if base != nil {
		if cur, err := viewOf(name, base); err == nil && cur.SQL == q && cur.Schema.Equals(fresh) {
			return cur, nil
		}
		version.VersionID = base.CurrentVersionID() + 1
	}
	if rc, ok := c.cat.(*rest.Catalog); ok {
		var v *view.View
		if base == nil {
			v, err = rc.CreateView(ctx, c.ident(name), version, fresh, catalog.WithViewLocation(c.root+"/"+name))
			if errors.Is(err, catalog.ErrViewAlreadyExists) {
				return View{}, errViewChanged
			}
		} else {
			v, err = rc.UpdateView(ctx, c.ident(name), []view.Requirement{view.AssertViewUUID(base.ViewUUID())},
				[]view.Update{view.NewAddSchemaUpdate(fresh), view.NewAddViewVersionUpdate(version), view.NewSetCurrentVersionUpdate(view.LastAddedID)})
			if errors.Is(err, rest.ErrCommitFailed) {
				return View{}, errViewChanged
			}
		}
		if err != nil {
			return View{}, fmt.Errorf("view %s: %w", name, err)
		}
		return viewOf(name, v.Metadata())
	}
	if c.db == nil {
		return View{}, fmt.Errorf("view %s: the catalog keeps no views", name)
	}
	return c.replaceSQLView(ctx, name, base, baseLoc, version, fresh)
}

// replaceSQLView writes a view's new metadata file, then points the SQL
// catalog's row at it in one statement, which finds the row as the view
// was read or changes nothing.
func (c *Catalog) replaceSQLView(ctx context.Context, name string, base view.Metadata, baseLoc string, version *view.Version, sc *iceberg.Schema) (View, error) {
	var b *view.MetadataBuilder
	var err error
	if base == nil {
		b, err = view.NewMetadataBuilder()
		if err == nil {
			b = b.SetLoc(c.root + "/" + name).SetProperties(iceberg.Properties{"created-by": "sluice"})
		}
	} else {
		b, err = view.MetadataBuilderFromBase(base)
	}
	if err != nil {
		return View{}, fmt.Errorf("view %s: %w", name, err)
	}
	md, err := b.SetCurrentVersion(version, sc).Build()
	if err != nil {
		return View{}, fmt.Errorf("view %s: %w", name, err)
	}
	data, err := json.Marshal(md)
	if err != nil {
		return View{}, fmt.Errorf("view %s: %w", name, err)
	}
	loc := fmt.Sprintf("%s/metadata/%05d-%s.metadata.json", md.Location(), version.VersionID, uuid.NewString())
	fs, err := icebergio.LoadFS(ctx, c.props, loc)
	if err != nil {
		return View{}, fmt.Errorf("view %s: %w", name, err)
	}
	if err := writeViewFile(fs, loc, data); err != nil {
		return View{}, fmt.Errorf("view %s: %w", name, err)
	}
	var res sql.Result
	if base == nil {
		res, err = c.db.ExecContext(ctx, `INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, iceberg_type, metadata_location)
			SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?)`,
			c.name, c.namespace(), name, sqlcat.ViewType, loc, c.name, c.namespace(), name)
	} else {
		res, err = c.db.ExecContext(ctx, `UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ?
			WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND iceberg_type = ? AND metadata_location = ?`,
			loc, baseLoc, c.name, c.namespace(), name, sqlcat.ViewType, baseLoc)
	}
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil || n == 0 {
		_ = fs.Remove(loc) // never part of the view
	}
	if err != nil {
		return View{}, fmt.Errorf("view %s: commit: %w", name, err)
	}
	if n == 0 {
		return View{}, errViewChanged
	}
	return viewOf(name, md.Metadata)
}

func writeViewFile(fs icebergio.IO, loc string, data []byte) error {
	wfs, ok := fs.(icebergio.WriteFileIO)
	if !ok {
		return fmt.Errorf("%s: the lake's storage cannot be written", loc)
	}
	return wfs.WriteFile(loc, data)
}

// DropView removes a view, if there is one.
func (c *Catalog) DropView(ctx context.Context, name string) error {
	vc, ok := c.cat.(views)
	if !ok {
		return nil
	}
	err := vc.DropView(ctx, c.ident(name))
	if err != nil && !errors.Is(err, catalog.ErrNoSuchView) {
		return fmt.Errorf("drop view %s: %w", name, err)
	}
	return nil
}
