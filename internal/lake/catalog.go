package lake

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/catalog/rest"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	"github.com/apache/iceberg-go/table"
	_ "github.com/mattn/go-sqlite3" // the embedded catalog's database

	"github.com/sluicehq/sluice/internal/retry"
	"github.com/sluicehq/sluice/internal/row"
)

// CatalogConfig says where the lake's Iceberg catalog is.
type CatalogConfig struct {
	// URI is the SQLite file of the embedded SQL catalog, the one that
	// PyIceberg's SqlCatalog, Spark's and Trino's JDBC catalogs open too, or
	// the http(s) URL of a REST catalog.
	URI       string `yaml:"catalog_uri" flag:"catalog-uri" doc:"The Iceberg catalog: the SQLite file of the embedded SQL catalog, or the http(s):// URL of an Iceberg REST catalog (Polaris, Nessie, Lakekeeper, Unity, Glue's REST endpoint), which needs a lake on S3. Default: <lake>/catalog.db for a lake on disk, <data_dir>/catalog.db for a lake on S3."`
	Name      string `yaml:"catalog_name" flag:"catalog-name" doc:"The catalog's name, as other engines must name it to see the same tables."`
	Namespace string `yaml:"namespace" flag:"namespace" doc:"The Iceberg namespace of the lake's tables."`
	// The REST catalog's settings. Secrets may come from the environment
	// instead, as a Kubernetes secret gives them.
	Warehouse   string `yaml:"catalog_warehouse" flag:"catalog-warehouse" doc:"REST catalog: the warehouse to ask for (Polaris's catalog name, Lakekeeper's warehouse, the AWS account id for Glue). Default: none."`
	Credential  string `yaml:"catalog_credential" secret:"true" doc:"REST catalog: OAuth2 client credentials, client_id:client_secret, exchanged for a token. Default: SLUICE_CATALOG_CREDENTIAL."`
	Token       string `yaml:"catalog_token" secret:"true" doc:"REST catalog: a bearer token. Default: SLUICE_CATALOG_TOKEN."`
	SigningName string `yaml:"catalog_signing_name" flag:"catalog-signing-name" doc:"REST catalog: sign requests with AWS SigV4 for this service (glue for Glue's Iceberg endpoint, s3tables for S3 Tables), in the lake's S3 region with the AWS credentials of the environment. Default: no signing."`
}

// REST reports whether the catalog is a REST catalog.
func (c CatalogConfig) REST() bool {
	return strings.HasPrefix(c.URI, "http://") || strings.HasPrefix(c.URI, "https://")
}

// DefaultCatalogName and DefaultNamespace name the embedded catalog and
// the namespace of the lake's tables in it: PyIceberg opens them as
// SqlCatalog("sluice", ...).load_table("sluice.<table>").
const (
	DefaultCatalogName = "sluice"
	DefaultNamespace   = "sluice"
)

// ErrNoTable is returned for a table the catalog does not hold.
var ErrNoTable = errors.New("no such table")

// Catalog is the lake's Iceberg catalog. Every Parquet table of the lake is
// an Iceberg v2 table in it, at <lake>/<table>: data files under data/,
// partitioned by event_date, and metadata under metadata/. A table changes
// only by a commit to the catalog, which swaps its metadata whole, so a
// reader sees a table before a change or after it, never half of it.
type Catalog struct {
	cat  catalog.Catalog
	db   *sql.DB // the SQL catalog's database; nil for a REST catalog
	ns   table.Identifier
	root string // the lake's URI: file:///dir or s3://bucket/prefix
	// name is the catalog's name, and props its file IO settings: views
	// of the SQL catalog write their metadata with them.
	name  string
	props iceberg.Properties
}

// OpenCatalog opens the catalog of the lake at lakeURL (a directory or an
// s3:// URL, reached with s3), creating its namespace on first use, and
// the embedded catalog's database.
func OpenCatalog(ctx context.Context, lakeURL string, cfg CatalogConfig, s3 S3Config) (*Catalog, error) {
	root, err := lakeRoot(lakeURL)
	if err != nil {
		return nil, err
	}
	name := cfg.Name
	if name == "" {
		name = DefaultCatalogName
	}
	ns := table.Identifier{cfg.Namespace}
	if cfg.Namespace == "" {
		ns = table.Identifier{DefaultNamespace}
	}
	c := &Catalog{ns: ns, root: root}
	if cfg.REST() {
		err = c.openREST(ctx, name, cfg, s3)
	} else {
		err = c.openSQL(name, cfg, s3)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", cfg.URI, err)
	}
	if err := c.ensureNamespace(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("catalog %s: %w", cfg.URI, err)
	}
	return c, nil
}

func (c *Catalog) openSQL(name string, cfg CatalogConfig, s3 S3Config) error {
	uri := cfg.URI
	if uri == "" {
		if strings.HasPrefix(c.root, "s3://") {
			return errors.New("a lake on S3 needs catalog_uri: the embedded catalog's database file, or a REST catalog's URL")
		}
		uri = filepath.Join(strings.TrimPrefix(c.root, "file://"), "catalog.db")
	}
	if err := os.MkdirAll(filepath.Dir(uri), 0o755); err != nil {
		return err
	}
	// WAL and a busy timeout: the loader, the aggregator and a query share
	// the file, and a writer waits for another rather than failing.
	db, err := sql.Open("sqlite3", "file:"+uri+"?_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate")
	if err != nil {
		return err
	}
	props := iceberg.Properties{
		"init_catalog_tables":   "true",
		"warehouse":             c.root,
		sqlcat.SchemaVersionKey: sqlcat.SchemaVersionV1,
	}
	if strings.HasPrefix(c.root, "s3://") {
		maps.Copy(props, s3Props(s3))
	}
	cat, err := sqlcat.NewCatalog(name, db, sqlcat.SQLite, props)
	if err != nil {
		db.Close()
		return err
	}
	c.cat, c.db, c.name, c.props = cat, db, name, props
	return nil
}

// openREST connects to a REST catalog. The catalog writes table metadata
// itself, so the lake must be where it can reach: S3. Data files and
// manifests are written with the lake's S3 settings, which the catalog's
// own (vended credentials, endpoints) override for the tables it names.
func (c *Catalog) openREST(ctx context.Context, name string, cfg CatalogConfig, s3 S3Config) error {
	if !strings.HasPrefix(c.root, "s3://") {
		return fmt.Errorf("a REST catalog needs a lake on S3 (lake.url: s3://bucket/prefix), where the catalog writes table metadata; the lake is %s", c.root)
	}
	env := func(v, name string) string {
		if v == "" {
			return os.Getenv(name)
		}
		return v
	}
	opts := []rest.Option{rest.WithAdditionalProps(s3Props(s3))}
	if cfg.Warehouse != "" {
		opts = append(opts, rest.WithWarehouseLocation(cfg.Warehouse))
	}
	if cred := env(cfg.Credential, "SLUICE_CATALOG_CREDENTIAL"); cred != "" {
		opts = append(opts, rest.WithCredential(cred))
	}
	if token := env(cfg.Token, "SLUICE_CATALOG_TOKEN"); token != "" {
		opts = append(opts, rest.WithOAuthToken(token))
	}
	if cfg.SigningName != "" {
		opts = append(opts, rest.WithSigV4RegionSvc(s3.fromEnv().Region, cfg.SigningName))
	}
	cat, err := rest.NewCatalog(ctx, name, cfg.URI, opts...)
	if err != nil {
		return err
	}
	c.cat, c.name = cat, name
	return nil
}

// lakeRoot is the lake's location as Iceberg writes it in metadata.
func lakeRoot(lakeURL string) (string, error) {
	if strings.HasPrefix(lakeURL, "s3://") {
		return strings.TrimRight(lakeURL, "/"), nil
	}
	dir, err := filepath.Abs(strings.TrimPrefix(lakeURL, "file://"))
	if err != nil {
		return "", fmt.Errorf("lake %s: %w", lakeURL, err)
	}
	return "file://" + dir, nil
}

func (c *Catalog) ensureNamespace(ctx context.Context) error {
	ok, err := c.cat.CheckNamespaceExists(ctx, c.ns)
	if err != nil || ok {
		return err
	}
	err = c.cat.CreateNamespace(ctx, c.ns, nil)
	if err == nil || errors.Is(err, catalog.ErrNamespaceAlreadyExists) {
		return nil
	}
	// Processes that start together create it together, and not every
	// catalog answers the loser AlreadyExists: Iceberg's REST catalog on a
	// SQL database answers 500 for the key the other one took. It exists
	// once the winner's transaction ends.
	for range 5 {
		if ok, cerr := c.cat.CheckNamespaceExists(ctx, c.ns); cerr == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
	return err
}

// Close releases the catalog's database (the SQL catalog does not close a
// handle it was given).
func (c *Catalog) Close() error {
	err := closeCatalog(c.cat)
	if c.db != nil {
		err = errors.Join(err, c.db.Close())
	}
	return err
}

// closeCatalog closes what the catalog holds open, when it holds any.
func closeCatalog(cat catalog.Catalog) error {
	if cl, ok := cat.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// Path is a table file's path in the lake's Storage, from its location.
func (c *Catalog) Path(location string) string {
	if dir, ok := strings.CutPrefix(c.root, "file://"); ok {
		// Iceberg's local file IO names files by path, without the scheme.
		location = strings.TrimPrefix(strings.TrimPrefix(location, "file://"), dir)
	}
	return strings.TrimPrefix(strings.TrimPrefix(location, c.root), "/")
}

// Names lists the catalog's tables, sorted.
func (c *Catalog) Names(ctx context.Context) ([]string, error) {
	var names []string
	for id, err := range c.cat.ListTables(ctx, c.ns) {
		if err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		names = append(names, id[len(id)-1])
	}
	slices.Sort(names)
	return names, nil
}

func (c *Catalog) ident(name string) table.Identifier {
	return append(slices.Clone(c.ns), name)
}

// Load reads a table's current metadata; ErrNoTable when there is none.
func (c *Catalog) Load(ctx context.Context, name string) (*table.Table, error) {
	t, err := c.cat.LoadTable(ctx, c.ident(name))
	if errors.Is(err, catalog.ErrNoSuchTable) {
		return nil, fmt.Errorf("table %s: %w", name, ErrNoTable)
	}
	if err != nil {
		return nil, fmt.Errorf("load table %s: %w", name, err)
	}
	return t, nil
}

// EventDate is the column every table is partitioned by: the UTC date of
// its event time.
const EventDate = "event_date"

// Column is a table column as the loader and the aggregator write it.
type Column struct {
	Name string
	Kind row.Kind
}

// Create makes a table with cols, then event_date, partitioned by
// event_date; when another writer made it first, that table is returned.
func (c *Catalog) Create(ctx context.Context, name string, cols []Column) (*table.Table, error) {
	fields := make([]iceberg.NestedField, 0, len(cols)+1)
	for i, col := range cols {
		fields = append(fields, NewField(i+1, col))
	}
	fields = append(fields, iceberg.NestedField{ID: len(fields) + 1, Name: EventDate, Type: iceberg.PrimitiveTypes.Date,
		Doc: "The UTC date of the event time: the table's partition."})
	return c.CreateSchema(ctx, name, fields)
}

// CreateSchema makes a table of fields, partitioned by event_date when
// fields hold it (a date), unpartitioned otherwise; when another writer
// made it first, that table is returned.
func (c *Catalog) CreateSchema(ctx context.Context, name string, fields []iceberg.NestedField) (*table.Table, error) {
	spec := *iceberg.UnpartitionedSpec
	for _, f := range fields {
		if f.Name == EventDate {
			spec = iceberg.NewPartitionSpec(iceberg.PartitionField{SourceIDs: []int{f.ID}, FieldID: 1000, Name: EventDate,
				Transform: iceberg.IdentityTransform{}})
		}
	}
	_, err := c.cat.CreateTable(ctx, c.ident(name), iceberg.NewSchema(0, fields...),
		catalog.WithLocation(c.root+"/"+name), catalog.WithPartitionSpec(&spec),
		catalog.WithProperties(union(iceberg.Properties{
			"format-version":                  "2",
			"write.parquet.compression-codec": "zstd",
			"created-by":                      "sluice",
			// A commit writes a new metadata file: without these, a
			// table loaded every few seconds keeps every one of them.
			table.MetadataDeleteAfterCommitEnabledKey: "true",
			table.MetadataPreviousVersionsMaxKey:      "20",
		}, mergeProperties)))
	if err != nil && !errors.Is(err, catalog.ErrTableAlreadyExists) {
		return nil, fmt.Errorf("create table %s: %w", name, err)
	}
	return c.Load(ctx, name)
}

// mergeProperties make an append (the loader's every few seconds, a
// run's job_runs) merge the table's manifests once there are 8: each
// append writes one, and a reader plans every one. Iceberg's default,
// 100, made every plan of a table the loader appends to read up to 100
// files.
var mergeProperties = iceberg.Properties{
	table.ManifestMergeEnabledKey:  "true",
	table.ManifestMinMergeCountKey: "8",
}

func union(a, b iceberg.Properties) iceberg.Properties {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// jsonDoc marks string columns that hold JSON text: Iceberg v2 has no
// JSON type, and readers here make them JSON again.
const jsonDoc = "JSON"

// NewField is the Iceberg field of a column, with field id id.
func NewField(id int, col Column) iceberg.NestedField {
	f := iceberg.NestedField{ID: id, Name: col.Name, Type: IcebergType(col.Kind)}
	if col.Kind == row.KindJSON {
		f.Doc = jsonDoc
	}
	return f
}

// IcebergType is the Iceberg type of a kind of value.
func IcebergType(k row.Kind) iceberg.Type {
	switch k {
	case row.KindBool:
		return iceberg.PrimitiveTypes.Bool
	case row.KindInt:
		return iceberg.PrimitiveTypes.Int64
	case row.KindFloat:
		return iceberg.PrimitiveTypes.Float64
	case row.KindTimestamp:
		return iceberg.PrimitiveTypes.TimestampTz
	}
	return iceberg.PrimitiveTypes.String
}

// Kind is the kind of value a table column holds; ok is false for types
// Sluice does not write, such as a nested struct another engine added.
func Kind(f iceberg.NestedField) (k row.Kind, ok bool) {
	switch f.Type.(type) {
	case iceberg.BooleanType:
		return row.KindBool, true
	case iceberg.Int32Type, iceberg.Int64Type:
		return row.KindInt, true
	case iceberg.Float32Type, iceberg.Float64Type:
		return row.KindFloat, true
	case iceberg.TimestampTzType, iceberg.TimestampType:
		return row.KindTimestamp, true
	case iceberg.StringType:
		if f.Doc == jsonDoc {
			return row.KindJSON, true
		}
		return row.KindString, true
	}
	return row.KindNull, false
}

// AddColumns adds new optional columns to table t (as the caller loaded
// it), unless another writer has added them first, and returns the table as
// committed. A column that exists keeps its type: types never change by a
// load.
func (c *Catalog) AddColumns(ctx context.Context, t *table.Table, cols []Column) (*table.Table, error) {
	fields := make([]iceberg.NestedField, len(cols))
	for i, col := range cols {
		fields[i] = NewField(0, col)
	}
	return c.AddFields(ctx, t, fields)
}

// AddFields adds new optional top-level fields (their ids are the table's
// to give) to table t, as AddColumns does.
func (c *Catalog) AddFields(ctx context.Context, t *table.Table, fields []iceberg.NestedField) (*table.Table, error) {
	name := tableName(t)
	return c.retry(ctx, name, t, func(t *table.Table) (*table.Transaction, error) {
		sc := t.Schema()
		var add []iceberg.NestedField
		for _, f := range fields {
			if _, ok := sc.FindFieldByName(f.Name); !ok {
				add = append(add, f)
			}
		}
		if len(add) == 0 {
			return nil, nil
		}
		tx := t.NewTransaction()
		u := tx.UpdateSchema(true, false)
		for _, f := range add {
			u.AddColumn([]string{f.Name}, f.Type, f.Doc, false, nil)
		}
		if err := u.Commit(); err != nil {
			return nil, fmt.Errorf("add columns to %s: %w", name, err)
		}
		return tx, nil
	})
}

// Offsets is what a table holds of Kafka partitions: by "topic/partition",
// the last offset whose rows are in it. Every snapshot the loader commits
// carries the whole map in its summary, as Iceberg's Kafka Connect sink
// does, so the current snapshot alone says where each partition stands.
type Offsets map[string]int64

// offsetsKey is the snapshot summary property that holds Offsets.
const offsetsKey = "sluice.offsets"

// OffsetKey names a topic-partition in Offsets.
func OffsetKey(topic string, partition int32) string {
	return topic + "/" + strconv.Itoa(int(partition))
}

// Streamed reports whether a stream writes table t, the loader or the
// aggregator: its current snapshot holds the Kafka offsets it covers.
func Streamed(t *table.Table) bool {
	s := t.CurrentSnapshot()
	if s == nil || s.Summary == nil {
		return false
	}
	_, ok := s.Summary.Properties[offsetsKey]
	return ok
}

// TableOffsets reads the offsets of a table's current snapshot.
func TableOffsets(t *table.Table) (Offsets, error) {
	out := Offsets{}
	s := t.CurrentSnapshot()
	if s == nil || s.Summary == nil {
		return out, nil
	}
	v, ok := s.Summary.Properties[offsetsKey]
	if !ok {
		return out, nil
	}
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fmt.Errorf("table %s: snapshot %d: %s is corrupt: %w", t.Identifier(), s.SnapshotID, offsetsKey, err)
	}
	return out, nil
}

// Append commits files to table t (as the caller loaded it) as one
// snapshot that records set in its offsets, and returns the table as
// committed. When the table already holds those offsets (a commit that went
// through before a crash), it does nothing and appended is false.
func (c *Catalog) Append(ctx context.Context, t *table.Table, files []iceberg.DataFile, set Offsets) (_ *table.Table, appended bool, err error) {
	name := tableName(t)
	t, err = c.retry(ctx, name, t, func(t *table.Table) (*table.Transaction, error) {
		offsets, err := TableOffsets(t)
		if err != nil {
			return nil, err
		}
		done := true
		for k, last := range set {
			if got, ok := offsets[k]; !ok || got < last {
				done = false
			}
		}
		if done {
			return nil, nil
		}
		maps.Copy(offsets, set)
		b, err := json.Marshal(offsets)
		if err != nil {
			return nil, err
		}
		tx := t.NewTransaction()
		if err := tx.AddDataFiles(ctx, files, iceberg.Properties{offsetsKey: string(b)}, table.WithoutDuplicateCheck()); err != nil {
			return nil, fmt.Errorf("append to %s: %w", name, err)
		}
		appended = true
		return tx, nil
	})
	return t, appended, err
}

// tableName is a table's name in the namespace.
func tableName(t *table.Table) string {
	id := t.Identifier()
	return id[len(id)-1]
}

// conflict reports whether a commit failed because another writer
// committed first, or may not have happened: a REST catalog that answers
// 5xx may have committed. Every change re-reads the table before it
// commits again (an append finds its offsets there), so retrying either
// is safe. The SQL catalog reports a stale base as a failed requirement,
// which iceberg-go does not wrap as ErrCommitFailed.
func conflict(err error) bool {
	return errors.Is(err, table.ErrCommitFailed) || errors.Is(err, rest.ErrCommitStateUnknown) ||
		strings.HasPrefix(err.Error(), "requirement failed:")
}

// retry runs change against the table's metadata and commits its
// transaction, again over the new metadata when another writer committed
// first (optimistic concurrency, as every Iceberg writer does). The first
// attempt runs on base, the table as the caller loaded it, when there is
// one. A nil transaction is nothing to commit.
func (c *Catalog) retry(ctx context.Context, name string, base *table.Table, change func(*table.Table) (*table.Transaction, error)) (*table.Table, error) {
	// Jittered, so that writers that lost to each other spread out.
	backoff := retry.Backoff{Min: 10 * time.Millisecond, Max: time.Second}
	for attempt := 1; ; attempt++ {
		t := base
		if t == nil {
			var err error
			if t, err = c.Load(ctx, name); err != nil {
				return nil, err
			}
		}
		base = nil
		tx, err := change(t)
		if err != nil || tx == nil {
			return t, err
		}
		if _, ok := t.Properties()[table.ManifestMergeEnabledKey]; !ok {
			// A table made before appends merged manifests: from its
			// next commit on, they do.
			if err := tx.SetProperties(mergeProperties); err != nil {
				return nil, fmt.Errorf("commit to %s: %w", name, err)
			}
		}
		t, err = tx.Commit(ctx)
		if err == nil {
			return t, nil
		}
		if !conflict(err) || attempt == 20 {
			return nil, fmt.Errorf("commit to %s: %w", name, err)
		}
		if err := backoff.Wait(ctx, 0); err != nil {
			return nil, err
		}
	}
}

// WriteFile writes buf as a data file of table t, for the rows of one
// event date (YYYY-MM-DD), at <table>/data/event_date=<date>/<name> in
// store, and returns it ready to be appended. Columns are written as t's
// schema types them; buf's columns that the schema lacks are not written,
// so the caller adds them first (AddColumns).
func (c *Catalog) WriteFile(ctx context.Context, store Storage, t *table.Table, date, name string, buf *Buffer) (iceberg.DataFile, DataFile, error) {
	day, err := time.Parse(time.DateOnly, date)
	if err != nil {
		return nil, DataFile{}, fmt.Errorf("event date %q: %w", date, err)
	}
	days := int32(day.Unix() / 86400)
	sc := t.Schema()
	var cols []FileColumn
	dateID := 0
	for _, f := range sc.Fields() {
		if f.Name == EventDate {
			dateID = f.ID
			continue
		}
		if k, ok := Kind(f); ok {
			cols = append(cols, FileColumn{Name: f.Name, ID: f.ID, Kind: k})
		}
	}
	if dateID == 0 {
		return nil, DataFile{}, fmt.Errorf("table %s has no %s column", t.Identifier(), EventDate)
	}
	rel := c.Path(t.Location()) + "/data/" + EventDate + "=" + date + "/" + name
	var stats DataFile
	if err := Put(ctx, store, rel, func(w io.Writer) (err error) {
		stats, err = buf.WriteDataFile(w, cols, dateID, days)
		return err
	}); err != nil {
		return nil, stats, err
	}
	spec := t.Spec()
	partition := map[int]any{}
	for _, f := range spec.Fields() {
		if len(f.SourceIDs) == 1 && f.SourceIDs[0] == dateID {
			partition[f.FieldID] = iceberg.Date(days)
		}
	}
	b, err := iceberg.NewDataFileBuilder(spec, iceberg.EntryContentData, c.root+"/"+rel, iceberg.ParquetFile,
		partition, nil, nil, stats.Rows, stats.Bytes)
	if err != nil {
		return nil, stats, fmt.Errorf("data file %s: %w", rel, err)
	}
	lower, upper := map[int][]byte{}, map[int][]byte{}
	for id, lo := range stats.Lower {
		f, ok := t.Schema().FindFieldByID(id)
		if !ok {
			continue
		}
		if b, ok := boundBytes(f.Type, lo, false); ok {
			lower[id] = b
		}
		if b, ok := boundBytes(f.Type, stats.Upper[id], true); ok {
			upper[id] = b
		}
	}
	return b.NullValueCounts(stats.Nulls).ValueCounts(stats.Values).
		LowerBoundValues(lower).UpperBoundValues(upper).Build(), stats, nil
}

// boundChars is how many characters of a string bound the manifests keep,
// Iceberg's default (write.metadata.metrics.default truncate(16)): ids and
// JSON would otherwise make manifests as large as the data.
const boundChars = 16

// boundBytes is a file's lower or upper bound of a column of type t, in
// Iceberg's single-value serialisation; ok is false when there is none to
// give: a string whose upper bound cannot be cut short, a type Sluice does
// not bound.
func boundBytes(t iceberg.Type, c row.Cell, upper bool) (_ []byte, ok bool) {
	var lit iceberg.Literal
	switch t.(type) {
	case iceberg.BooleanType:
		lit = iceberg.BoolLiteral(c.I != 0)
	case iceberg.Int32Type:
		if c.I < math.MinInt32 || c.I > math.MaxInt32 {
			return nil, false
		}
		lit = iceberg.Int32Literal(int32(c.I))
	case iceberg.Int64Type:
		lit = iceberg.Int64Literal(c.I)
	case iceberg.Float32Type:
		lit = iceberg.Float32Literal(float32(c.F))
	case iceberg.Float64Type:
		lit = iceberg.Float64Literal(c.F)
	case iceberg.DateType:
		lit = iceberg.DateLiteral(iceberg.Date(c.I))
	case iceberg.TimestampType, iceberg.TimestampTzType:
		lit = iceberg.TimestampLiteral(iceberg.Timestamp(c.I))
	case iceberg.StringType:
		return stringBound(c.B, upper)
	default:
		return nil, false
	}
	b, err := lit.MarshalBinary()
	return b, err == nil
}

// stringBound cuts a string bound to boundChars characters: a lower bound
// is its prefix; an upper bound is its prefix with the last character
// that can be incremented incremented, so it stays above every value.
func stringBound(s []byte, upper bool) ([]byte, bool) {
	if !utf8.Valid(s) {
		return nil, false
	}
	if utf8.RuneCount(s) <= boundChars {
		return bytes.Clone(s), true
	}
	runes := []rune(string(s))[:boundChars]
	if !upper {
		return []byte(string(runes)), true
	}
	for i := len(runes) - 1; i >= 0; i-- {
		next := runes[i] + 1
		if next >= 0xD800 && next <= 0xDFFF {
			next = 0xE000 // past the surrogates, which UTF-8 cannot hold
		}
		if next <= utf8.MaxRune {
			runes[i] = next
			return []byte(string(runes[:i+1])), true
		}
	}
	return nil, false
}

// Add appends files to table base in one snapshot whose summary holds
// props, as Replace does but without reading the table's files: the
// caller names files that no snapshot holds yet (a run's own, say).
func (c *Catalog) Add(ctx context.Context, base *table.Table, files []string, props iceberg.Properties) (*table.Table, error) {
	name := tableName(base)
	full := make([]string, len(files))
	for i, f := range files {
		full[i] = c.root + "/" + f
	}
	return c.retry(ctx, name, base, func(t *table.Table) (*table.Transaction, error) {
		if len(full) == 0 {
			return nil, nil
		}
		tx := t.NewTransaction()
		if err := tx.AddFiles(ctx, full, props, true); err != nil {
			return nil, fmt.Errorf("add files to %s: %w", name, err)
		}
		return tx, nil
	})
}

// Replace swaps files into table base in place of the current files that
// replaced reports (every file, when it is nil), in one snapshot whose
// summary holds props: readers see the table before or after, never in
// between. files are paths in the lake's storage of Parquet files that
// carry the table's field ids (another engine wrote them). The swap is
// made on base as the caller loaded it, and made again over the table when
// another writer changed it meanwhile.
func (c *Catalog) Replace(ctx context.Context, base *table.Table, files []string, props iceberg.Properties, replaced func(iceberg.DataFile) bool) (*table.Table, error) {
	name := tableName(base)
	full := make([]string, len(files))
	for i, f := range files {
		full[i] = c.root + "/" + f
	}
	return c.retry(ctx, name, base, func(t *table.Table) (*table.Transaction, error) {
		var old []string
		if t.CurrentSnapshot() != nil {
			tasks, err := t.Scan().PlanFiles(ctx)
			if err != nil {
				return nil, fmt.Errorf("plan %s: %w", name, err)
			}
			for _, task := range tasks {
				if replaced == nil || replaced(task.File) {
					old = append(old, task.File.FilePath())
				}
			}
		}
		if len(old) == 0 && len(full) == 0 {
			return nil, nil
		}
		tx := t.NewTransaction()
		if err := tx.ReplaceDataFiles(ctx, old, full, props); err != nil {
			return nil, fmt.Errorf("replace the files of %s: %w", name, err)
		}
		return tx, nil
	})
}
