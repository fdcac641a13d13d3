package lake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/google/uuid"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/sluicehq/sluice/internal/row"
)

// Upkeep of catalog tables: compaction, snapshot expiry and orphan
// removal. Each is safe while loaders write: it commits optimistically and
// starts again over a table another writer changed, and it never removes
// what the current snapshot needs. A compaction's snapshot carries the
// table's Kafka offsets forward, so a loader that rewrites a range after a
// crash still finds it committed.

// Compaction is what Compact did to a table.
type Compaction struct {
	Table string
	// Partitions is how many event dates were compacted.
	Partitions int
	// FilesBefore and FilesAfter count the files rewritten and written.
	FilesBefore, FilesAfter int
	Rows                    int64
	BytesBefore, BytesAfter int64
	// Skipped says why the table was left alone, when it was.
	Skipped string
}

// rewritable reports whether compaction can write every column of sc as
// its type, and names one it cannot: the data files compaction writes
// hold the loader's types, and a model's table may have others (a date, a
// 32-bit int) that a rewrite would change.
func rewritable(sc *iceberg.Schema) (string, bool) {
	for _, f := range sc.Fields() {
		if f.Name == EventDate {
			continue
		}
		k, ok := Kind(f)
		if ok && IcebergType(k).Equals(f.Type) {
			continue
		}
		return fmt.Sprintf("column %s is %s, which compaction does not write", f.Name, f.Type), false
	}
	return "", true
}

// Compact bin-packs a table's data files smaller than target into files of
// about target bytes, per event date, and swaps them in with one snapshot.
// Rows and their values are unchanged; a reader sees the old files or the
// new ones, never both or neither.
func (c *Catalog) Compact(ctx context.Context, store Storage, name string, target int64) (Compaction, error) {
	res := Compaction{Table: name}
	t, err := c.Load(ctx, name)
	if err != nil {
		return res, err
	}
	if t.CurrentSnapshot() == nil {
		return res, nil
	}
	if why, ok := rewritable(t.Schema()); !ok {
		res.Skipped = why
		return res, nil
	}
	tasks, err := t.Scan().PlanFiles(ctx)
	if err != nil {
		return res, fmt.Errorf("plan %s: %w", name, err)
	}
	byDate := map[string][]iceberg.DataFile{}
	for _, task := range tasks {
		f := task.File
		if f.FileSizeBytes() >= target/2 || len(task.DeleteFiles) > 0 {
			continue // big enough, or with deletes Sluice does not write
		}
		date := PartitionDate(f.FilePath())
		if date == "" {
			continue
		}
		byDate[date] = append(byDate[date], f)
	}
	var remove, add []iceberg.DataFile
	for _, date := range slices.Sorted(maps.Keys(byDate)) {
		files := byDate[date]
		if len(files) < 2 {
			continue
		}
		res.Partitions++
		// Files in bins of about target bytes, in their order in the
		// table, so that rows stay near their neighbours.
		slices.SortFunc(files, func(a, b iceberg.DataFile) int { return strings.Compare(a.FilePath(), b.FilePath()) })
		for len(files) > 0 {
			n, size := 0, int64(0)
			for n < len(files) && (n == 0 || size+files[n].FileSizeBytes() <= target) {
				size += files[n].FileSizeBytes()
				n++
			}
			bin := files[:n]
			files = files[n:]
			if len(bin) < 2 {
				continue
			}
			df, err := c.rewrite(ctx, store, t, date, bin)
			if err != nil {
				return res, err
			}
			remove = append(remove, bin...)
			add = append(add, df)
			for _, f := range bin {
				res.FilesBefore++
				res.BytesBefore += f.FileSizeBytes()
				res.Rows += f.Count()
			}
			res.FilesAfter++
			res.BytesAfter += df.FileSizeBytes()
		}
	}
	if len(add) == 0 {
		return res, nil
	}
	gone := map[string]bool{}
	for _, f := range remove {
		gone[f.FilePath()] = true
	}
	_, err = c.retry(ctx, name, nil, func(t *table.Table) (*table.Transaction, error) {
		// Another writer may have appended since: its files stay. One
		// that removed a file this compaction rewrote wins, and this
		// compaction's files are left for orphan removal.
		tasks, err := t.Scan().PlanFiles(ctx)
		if err != nil {
			return nil, err
		}
		found := 0
		for _, task := range tasks {
			if gone[task.File.FilePath()] {
				found++
			}
		}
		if found != len(remove) {
			return nil, fmt.Errorf("compact %s: another writer changed the files being compacted; run it again", name)
		}
		tx := t.NewTransaction()
		if err := tx.ReplaceDataFilesWithDataFiles(ctx, remove, add, carriedSummary(t)); err != nil {
			return nil, fmt.Errorf("compact %s: %w", name, err)
		}
		return tx, nil
	})
	return res, err
}

// carriedSummary is what a snapshot that changes no rows keeps of the
// current one: its Kafka offsets.
func carriedSummary(t *table.Table) iceberg.Properties {
	props := iceberg.Properties{}
	if s := t.CurrentSnapshot(); s != nil && s.Summary != nil {
		if v, ok := s.Summary.Properties[offsetsKey]; ok {
			props[offsetsKey] = v
		}
	}
	return props
}

// PartitionDate is the event date (YYYY-MM-DD) in a data file's path, or "".
func PartitionDate(p string) string {
	_, rest, ok := strings.Cut(p, "/"+EventDate+"=")
	if !ok || len(rest) < len(time.DateOnly) {
		return ""
	}
	return rest[:len(time.DateOnly)]
}

// rewrite reads files of one event date of t into one new data file.
func (c *Catalog) rewrite(ctx context.Context, store Storage, t *table.Table, date string, files []iceberg.DataFile) (iceberg.DataFile, error) {
	buf := NewBuffer()
	defer buf.Reset()
	kinds := map[int]FileColumn{}
	for _, f := range t.Schema().Fields() {
		if k, ok := Kind(f); ok && f.Name != EventDate {
			kinds[f.ID] = FileColumn{Name: f.Name, ID: f.ID, Kind: k}
		}
	}
	for _, f := range files {
		data, err := store.ReadObject(ctx, c.Path(f.FilePath()))
		if err != nil {
			return nil, fmt.Errorf("compact: %w", err)
		}
		if err := ReadDataFile(data, kinds, buf); err != nil {
			return nil, fmt.Errorf("compact %s: %w", f.FilePath(), err)
		}
	}
	name := "compacted-" + uuid.NewString() + ".parquet"
	df, _, err := c.WriteFile(ctx, store, t, date, name, buf)
	return df, err
}

// ReadDataFile appends the rows of a data file to buf: the columns whose
// field ids cols holds, typed as they say. Files without field ids (from
// another writer), and columns of cols without an id, are read by name.
func ReadDataFile(data []byte, cols map[int]FileColumn, buf *Buffer) error {
	pf, err := openParquet(data)
	if err != nil {
		return err
	}
	return readRows(pf, cols, buf)
}

// readRows is ReadDataFile on a file openParquet opened.
func readRows(pf *parquet.File, cols map[int]FileColumn, buf *Buffer) (err error) {
	defer func() {
		// The Parquet reader trusts what the file says beyond the lengths
		// checkFooter and checkPages bound: a damaged file must be an
		// error here, not a crash of the process.
		if r := recover(); r != nil {
			err = fmt.Errorf("unreadable Parquet file: %v", r)
		}
	}()
	byName := map[string]FileColumn{}
	for _, c := range cols {
		byName[c.Name] = c
	}
	leaves := pf.Schema().Fields()
	want := make([]*FileColumn, len(leaves))
	for i, f := range leaves {
		if c, ok := cols[f.ID()]; ok && f.ID() > 0 {
			want[i] = &c
		} else if c, ok := byName[f.Name()]; ok && (f.ID() == 0 || c.ID <= 0) {
			// A file without ids, or read by name (migration).
			want[i] = &c
		}
	}
	// The reader of pf itself: opening the bytes again would read the
	// page index that checkPages does not bound.
	r := parquet.NewReader(pf, pf.Schema())
	defer r.Close()
	rows := make([]parquet.Row, 256)
	var fields []row.Field
	for {
		n, err := r.ReadRows(rows)
		for _, pr := range rows[:n] {
			fields = fields[:0]
			for _, v := range pr {
				col := want[v.Column()]
				if col == nil || v.IsNull() {
					continue
				}
				fields = append(fields, row.Field{Name: col.Name, Cell: cellOf(v, col.Kind)})
			}
			buf.Append(fields)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if n == 0 {
			// A damaged file can make the reader return nothing, for
			// ever, without an error.
			return errors.New("unreadable Parquet file: no rows read and no end")
		}
	}
}

func cellOf(v parquet.Value, k row.Kind) row.Cell {
	switch v.Kind() {
	case parquet.Boolean:
		return row.Cell{Kind: row.KindBool, I: b2i(v.Boolean())}
	case parquet.Int32:
		return row.Cell{Kind: row.KindInt, I: int64(v.Int32())}
	case parquet.Int64:
		if k == row.KindTimestamp {
			return row.Cell{Kind: row.KindTimestamp, I: v.Int64()}
		}
		return row.Cell{Kind: row.KindInt, I: v.Int64()}
	case parquet.Float:
		return row.Cell{Kind: row.KindFloat, F: float64(v.Float())}
	case parquet.Double:
		return row.Cell{Kind: row.KindFloat, F: v.Double()}
	}
	kind := row.KindString
	if k == row.KindJSON {
		kind = row.KindJSON
	}
	return row.Cell{Kind: kind, B: v.ByteArray()}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Expire removes a table's snapshots older than olderThan, keeping at
// least the last retain, and the files only they referenced; it returns
// how many snapshots it removed.
func (c *Catalog) Expire(ctx context.Context, name string, olderThan time.Duration, retain int) (int, error) {
	removed := 0
	_, err := c.retry(ctx, name, nil, func(t *table.Table) (*table.Transaction, error) {
		before := len(t.Metadata().Snapshots())
		cutoff := time.Now().Add(-olderThan).UnixMilli()
		old := 0
		for _, s := range t.Metadata().Snapshots() {
			if s.TimestampMs < cutoff {
				old++
			}
		}
		if old == 0 || before <= retain {
			return nil, nil
		}
		removed = min(old, before-retain)
		tx := t.NewTransaction()
		if err := tx.ExpireSnapshots(table.WithOlderThan(olderThan), table.WithRetainLast(retain)); err != nil {
			return nil, fmt.Errorf("expire %s: %w", name, err)
		}
		return tx, nil
	})
	return removed, err
}

// Orphans removes (or, with dryRun, lists) the files under a table's
// location that no snapshot or metadata of it references and that are
// older than olderThan: files of writes that never committed, and of
// compactions that lost to another writer. The grace period keeps files
// of commits in flight.
func (c *Catalog) Orphans(ctx context.Context, name string, olderThan time.Duration, dryRun bool) ([]string, error) {
	t, err := c.Load(ctx, name)
	if err != nil {
		return nil, err
	}
	res, err := t.DeleteOrphanFiles(ctx, table.WithFilesOlderThan(olderThan), table.WithDryRun(dryRun))
	if err != nil {
		return nil, fmt.Errorf("orphans of %s: %w", name, err)
	}
	out := make([]string, len(res.OrphanFileLocations))
	for i, l := range res.OrphanFileLocations {
		out[i] = c.Path(l)
	}
	slices.Sort(out)
	return out, nil
}

// legacyFiles are the Parquet files of the layout before the catalog:
// <table>/event_date=<date>/<topic>-<partition>-<first>-<last>.parquet.
// (CSV.gz and Avro export tables keep that layout.)
func legacyFiles(ctx context.Context, store Storage) (map[string][]File, error) {
	tables, err := Tables(ctx, store)
	if err != nil {
		return nil, err
	}
	out := map[string][]File{}
	for name, objs := range tables {
		for _, o := range objs {
			if f, ok := ParseFile(o.Path); ok && f.Ext == "parquet" {
				out[name] = append(out[name], f)
			}
		}
	}
	return out, nil
}

// CheckLayout refuses a lake that holds Parquet tables of the layout
// before the catalog, whose files a loader would leave out of its tables,
// and says how to migrate them.
func CheckLayout(ctx context.Context, store Storage) error {
	old, err := legacyFiles(ctx, store)
	if err != nil {
		return err
	}
	if len(old) == 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(old))
	return fmt.Errorf("the lake at %s holds tables written before Sluice kept them in an Iceberg catalog (%s); "+
		"run 'sluice lake migrate --lake %s' once, with nothing loading, to make them catalog tables", store, strings.Join(names, ", "), store)
}

// Migrate makes the Parquet tables of the layout before the catalog into
// catalog tables: each file is rewritten, with field ids and the types the
// table settles on, as a data file of its table, committed with the Kafka
// offsets it holds, and then removed. A column's type is that of its
// values across the files; a file whose column holds only nulls does not
// set it. It returns how many files it migrated; run again, it carries on
// where it stopped.
func Migrate(ctx context.Context, store Storage, cat *Catalog) (int, error) {
	old, err := legacyFiles(ctx, store)
	if err != nil {
		return 0, err
	}
	migrated := 0
	for _, name := range slices.Sorted(maps.Keys(old)) {
		files := old[name]
		slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path(), b.Path()) })
		// The columns and their types, from the values of every file.
		var cols []Column
		at := map[string]int{}
		for _, f := range files {
			buf, err := readLegacy(ctx, store, f, nil)
			if err != nil {
				return migrated, err
			}
			for _, c := range buf.Columns() {
				if c.Name == EventDate || c.Cell.Kind == row.KindNull {
					continue
				}
				i, ok := at[c.Name]
				switch {
				case !ok:
					at[c.Name] = len(cols)
					cols = append(cols, Column{Name: c.Name, Kind: c.Cell.Kind})
				case cols[i].Kind != c.Cell.Kind && (cols[i].Kind == row.KindInt && c.Cell.Kind == row.KindFloat ||
					cols[i].Kind == row.KindString && buf.cols[c.Name].seen == 0):
					cols[i].Kind = c.Cell.Kind
				case cols[i].Kind != c.Cell.Kind && !(cols[i].Kind == row.KindFloat && c.Cell.Kind == row.KindInt) && buf.cols[c.Name].seen != 0:
					cols[i].Kind = row.KindString // values of two types: text keeps them all
				}
			}
			buf.Reset()
		}
		t, err := cat.Load(ctx, name)
		if errors.Is(err, ErrNoTable) {
			t, err = cat.Create(ctx, name, cols)
		}
		if err != nil {
			return migrated, err
		}
		if t, err = cat.AddColumns(ctx, t, cols); err != nil {
			return migrated, err
		}
		offsets, err := TableOffsets(t)
		if err != nil {
			return migrated, err
		}
		kinds := map[string]row.Kind{}
		for _, f := range t.Schema().Fields() {
			if k, ok := Kind(f); ok {
				kinds[f.Name] = k
			}
		}
		for _, f := range files {
			key := OffsetKey(f.Topic, f.Partition)
			if o, ok := offsets[key]; ok && o >= f.Last {
				continue // migrated before a stop: only the old file is left
			}
			buf, err := readLegacy(ctx, store, f, kinds)
			if err != nil {
				return migrated, err
			}
			df, _, err := cat.WriteFile(ctx, store, t, f.Date, path.Base(f.Path()), buf)
			buf.Reset()
			if err != nil {
				return migrated, err
			}
			if t, _, err = cat.Append(ctx, t, []iceberg.DataFile{df}, Offsets{key: f.Last}); err != nil {
				return migrated, err
			}
			if err := store.Delete(ctx, f.Path()); err != nil {
				return migrated, err
			}
			migrated++
		}
		// Files whose rows a commit already holds, left by a stop.
		for _, f := range files {
			if o, ok := offsets[OffsetKey(f.Topic, f.Partition)]; ok && o >= f.Last {
				if err := store.Delete(ctx, f.Path()); err != nil {
					return migrated, err
				}
			}
		}
	}
	return migrated, nil
}

// readLegacy reads a file of the layout before the catalog into a buffer,
// its columns typed as kinds says, or by their Parquet types.
func readLegacy(ctx context.Context, store Storage, f File, kinds map[string]row.Kind) (*Buffer, error) {
	data, err := store.ReadObject(ctx, f.Path())
	if err != nil {
		return nil, err
	}
	pf, err := openParquet(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path(), err)
	}
	cols := map[int]FileColumn{}
	for i, leaf := range pf.Schema().Fields() {
		k, ok := kinds[leaf.Name()]
		if !ok {
			k = parquetKind(leaf)
		}
		cols[-1-i] = FileColumn{Name: leaf.Name(), Kind: k} // no id: read by name
	}
	buf := NewBuffer()
	if err := readRows(pf, cols, buf); err != nil {
		buf.Reset()
		return nil, fmt.Errorf("%s: %w", f.Path(), err)
	}
	return buf, nil
}

// parquetKind is the kind of value a Parquet column of the old layout
// holds, from its type.
func parquetKind(f parquet.Field) row.Kind {
	t := f.Type()
	if lt := t.LogicalType(); lt != nil {
		switch lt.Value.(type) {
		case *format.TimestampType:
			return row.KindTimestamp
		case *format.JsonType:
			return row.KindJSON
		}
	}
	switch t.Kind() {
	case parquet.Boolean:
		return row.KindBool
	case parquet.Int32, parquet.Int64:
		return row.KindInt
	case parquet.Float, parquet.Double:
		return row.KindFloat
	}
	return row.KindString
}
