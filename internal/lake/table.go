package lake

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"reflect"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/internal/row"
)

// Buffer gathers the rows of one table file in columns. Columns appear as
// fields first appear; rows without a column hold null there, so new fields
// simply become new columns.
//
// Columns are blocks of kinds and 8-byte values, and chunks of text,
// without pointers for the garbage collector to scan, grown without
// copying and pooled (see column).
type Buffer struct {
	cols  map[string]*column
	order []*column
	// shape is the previous row's columns by field position: rows of a
	// table mostly repeat their fields in order, so most fields find their
	// column here without a map lookup.
	shape []*column
	rows  int
	bytes int
}

// NewBuffer returns an empty buffer.
func NewBuffer() *Buffer { return &Buffer{cols: make(map[string]*column)} }

// Append adds a row. A field repeated within the row keeps its last value.
func (b *Buffer) Append(row []row.Field) {
	for i, f := range row {
		var c *column
		if i < len(b.shape) && b.shape[i].name == f.Name {
			c = b.shape[i]
		} else {
			c = b.column(f.Name)
			if i < len(b.shape) {
				b.shape[i] = c
			} else {
				b.shape = append(b.shape, c)
			}
		}
		b.bytes += c.set(b.rows, f.Cell)
	}
	b.shape = b.shape[:min(len(b.shape), len(row))]
	b.rows++
}

// Take moves src's rows to the end of b, in order, and empties src: the
// same as appending them again, at the cost of copying their cells a
// block at a time. Decoding goroutines fill buffers of their own, that
// one goroutine then takes in order. It returns the memory b took.
func (b *Buffer) Take(src *Buffer) (grew int) {
	before := b.bytes
	for _, sc := range src.order {
		c := b.column(sc.name)
		b.bytes += c.take(b.rows, sc)
	}
	b.rows += src.rows
	b.shape = b.shape[:0]
	src.Reset()
	return b.bytes - before
}

// column finds or adds the named column.
func (b *Buffer) column(name string) *column {
	c := b.cols[name]
	if c == nil {
		c = &column{name: name}
		b.cols[name] = c
		b.order = append(b.order, c)
		b.bytes += len(name) + 64
	}
	return c
}

// Reset empties the buffer for reuse and gives its memory back to the
// pools that new buffers take from; the buffer's cells and the text written
// from them must not be used after it.
func (b *Buffer) Reset() {
	for _, c := range b.cols {
		c.reset()
	}
	clear(b.cols)
	b.order, b.shape = b.order[:0], b.shape[:0]
	b.rows, b.bytes = 0, 0
}

// Rows is how many rows the buffer holds.
func (b *Buffer) Rows() int { return b.rows }

// Bytes is the buffer's memory in use.
func (b *Buffer) Bytes() int { return b.bytes }

// Columns lists the buffer's columns with the types they will be written
// as, in the order they first appeared.
func (b *Buffer) Columns() []row.Field {
	out := make([]row.Field, len(b.order))
	for i, c := range b.order {
		out[i] = row.Field{Name: c.name, Cell: row.Cell{Kind: c.kind()}}
	}
	return out
}

func node(k row.Kind) parquet.Node {
	switch k {
	case row.KindBool:
		return parquet.Leaf(parquet.BooleanType)
	case row.KindInt:
		return parquet.Int(64)
	case row.KindFloat:
		return parquet.Leaf(parquet.DoubleType)
	case row.KindTimestamp:
		return parquet.TimestampAdjusted(parquet.Microsecond, true)
	case row.KindJSON:
		return parquet.JSON()
	}
	return parquet.String()
}

// columnGroup is a Parquet group whose columns keep the order they first
// appeared in, the event's (envelope, then payload), where parquet.Group
// sorts them by name: SELECT * then reads like the events.
type columnGroup struct {
	parquet.Group
	order []string
}

func (g columnGroup) Fields() []parquet.Field {
	fields := make([]parquet.Field, len(g.order))
	for i, name := range g.order {
		fields[i] = namedNode{Node: g.Group[name], name: name}
	}
	return fields
}

type namedNode struct {
	parquet.Node
	name string
}

func (f namedNode) Name() string { return f.name }

// Value is only used to write Go values, which the buffer never does.
func (f namedNode) Value(base reflect.Value) reflect.Value {
	return base.MapIndex(reflect.ValueOf(f.name))
}

// dictMaxBytes bounds a column's dictionary: past it the column goes on in
// plain encoding. Repeating values need far less; unique ones (ids, exact
// times) grow it fast, and were 4 times larger dictionary-encoded than
// plain with a 1 MiB bound.
const dictMaxBytes = 64 << 10

// pageBytes is the page buffer's size; pageWindow must hold a page.
const pageBytes = 1 << 20

// pageBufferSize is the page buffer of a file of n rows: up to pageBytes,
// but no more than its columns are likely to need. parquet-go allocates
// the whole buffer for every required column up front, so a file of 1,500
// rows (an aggregator's window, a loader's flush in a quiet second) made a
// MiB of garbage per column.
func pageBufferSize(n int) int {
	return min(pageBytes, max(64<<10, 32*n))
}

// WriteParquet writes the buffer as a zstd-compressed Parquet file, each
// column typed by the values it holds, and returns how many values were
// written as strings because their column's types conflicted. It is the
// plain-file export; tables of the catalog are written by WriteDataFile.
func (b *Buffer) WriteParquet(w io.Writer) (conflicts int, err error) {
	cols := make([]fileColumn, len(b.order))
	for i, c := range b.order {
		cols[i] = fileColumn{name: c.name, kind: c.kind(), c: c}
	}
	if _, err := b.writeParquet(w, cols); err != nil {
		return 0, err
	}
	return b.conflicts(), nil
}

// FileColumn is a column of a table's data file: its field id and type in
// the table's schema.
type FileColumn struct {
	Name string
	ID   int
	Kind row.Kind
}

// DataFile is what WriteDataFile reports of the file it wrote.
type DataFile struct {
	Rows  int64
	Bytes int64
	// Nulls and Values count each column's nulls and values, by field id,
	// for the table's file statistics.
	Nulls, Values map[int]int64
	// Lower and Upper are each column's least and greatest non-null value
	// (NaN left out), by field id, for engines to skip the file; strings
	// are whole here, and cut to Iceberg's length when serialised.
	Lower, Upper map[int]row.Cell
	// Unconverted counts values that did not fit their column's type and
	// were written as null; the loader types values before they are
	// buffered, so it is 0 unless a schema changed underneath.
	Unconverted int
}

// WriteDataFile writes the buffer as a data file of a catalog table: the
// columns cols names, each under its field id and as its type in the
// table's schema (buffer columns that cols does not name are not
// written), then the event_date column dateID, holding day (days since
// the Unix epoch) in every row. Readers find columns by field id, so a
// column renamed later still reads.
func (b *Buffer) WriteDataFile(w io.Writer, cols []FileColumn, dateID int, day int32) (DataFile, error) {
	fc := make([]fileColumn, 0, len(cols)+1)
	for _, col := range cols {
		c := b.cols[col.Name]
		if c == nil {
			continue
		}
		fc = append(fc, fileColumn{name: col.Name, id: col.ID, kind: col.Kind, c: c})
	}
	fc = append(fc, fileColumn{name: EventDate, id: dateID, date: true, day: day})
	cw := &countingWriter{w: w}
	stats, err := b.writeParquet(cw, fc)
	stats.Bytes = cw.n
	return stats, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// fileColumn is a column to write: a buffer column as kind, or a date
// that every row holds.
type fileColumn struct {
	name  string
	id    int
	kind  row.Kind
	c     *column
	date  bool
	day   int32
	plain bool // mostly distinct values: no dictionary
	// required: every row holds a value of the column's kind, so the
	// file's column has no definition levels. Iceberg readers take a
	// required column for an optional field (a field made optional after
	// its files were written is one), and parquet-go's bookkeeping of
	// optional values was a tenth of the loader's time.
	required bool
}

// sampleRows is how many of a column's first values decide whether it is
// dictionary-encoded.
const sampleRows = 1024

// distinct reports whether most of the column's first values differ (ids,
// exact times), so that a dictionary would hold nearly every value twice:
// once in it and once as an index. Such a column was twice the size of
// DuckDB's plain one.
func (c *column) distinct(seen map[uint64]struct{}) bool {
	// Values by their hash: a collision only makes a column look a little
	// less distinct than it is, and no value is copied to a string.
	clear(seen)
	it := cells{c: c}
	values := 0
	for r := 0; r < c.n && values < sampleRows; r++ {
		k, v, b := it.raw()
		switch k {
		case row.KindNull:
			continue
		case row.KindString, row.KindJSON:
			seen[maphash.Bytes(distinctSeed, b)] = struct{}{}
		default:
			seen[v] = struct{}{}
		}
		values++
	}
	return values >= 64 && len(seen) > values*3/4
}

var distinctSeed = maphash.MakeSeed()

func (f fileColumn) node() parquet.Node {
	n := node(f.kind)
	switch {
	case f.date:
		n = parquet.Date()
	case f.kind != row.KindBool && !f.plain:
		// Event columns mostly repeat few values (vendors, zones,
		// flags, amounts): dictionaries make them several times
		// smaller, as in DuckDB's and Spark's files. A column of
		// unique values outgrows dictMaxBytes and goes on plain.
		n = parquet.Encoded(n, &parquet.RLEDictionary)
	}
	if !f.required {
		n = parquet.Optional(n)
	}
	if f.id > 0 {
		n = parquet.FieldID(n, f.id)
	}
	return n
}

// writeParquet writes cols column by column, as Parquet stores them, each
// column's cells in chunks of values that alias the buffer's memory.
func (b *Buffer) writeParquet(w io.Writer, cols []fileColumn) (DataFile, error) {
	stats := DataFile{Rows: int64(b.rows), Nulls: map[int]int64{}, Values: map[int]int64{},
		Lower: map[int]row.Cell{}, Upper: map[int]row.Cell{}}
	group := columnGroup{Group: make(parquet.Group, len(cols))}
	seen := make(map[uint64]struct{}, sampleRows)
	for i, f := range cols {
		switch {
		case f.date:
			f.required = true
		case f.c != nil:
			f.plain = f.c.distinct(seen)
			f.required = f.c.full(b.rows, f.kind)
		}
		cols[i] = f
		group.Group[f.name] = f.node()
		group.order = append(group.order, f.name)
	}
	schema := parquet.NewSchema("sluice", group)
	// Pages of up to a MiB: each page is compressed on its own, and
	// zstd finds the repeats of a column across a large one; with
	// parquet-go's 256 KiB a page held 25,000 ints and the files were
	// twice DuckDB's.
	cfg, err := parquet.NewWriterConfig(schema, parquet.Compression(parquetZstd), parquet.DictionaryMaxBytes(dictMaxBytes), parquet.PageBufferSize(pageBufferSize(b.rows)))
	if err != nil {
		return stats, fmt.Errorf("parquet writer config: %w", err)
	}
	pw := parquet.NewWriter(w, cfg)
	writers := pw.ColumnWriters()
	// Chunks of whole blocks, so that a chunk reads its blocks alone.
	const chunk = 8 * blockRows
	values := make([]parquet.Value, 0, chunk)
	var text []byte // values converted to text, for one chunk
	for j, f := range cols {
		var cv columnValues
		if f.c != nil {
			cv.it = cells{c: f.c}
		}
		for start := 0; start < b.rows; start += chunk {
			end := min(start+chunk, b.rows)
			values, text = values[:0], text[:0]
			if f.date {
				v := parquet.Int32Value(f.day).Level(0, 0, j)
				for range end - start {
					values = append(values, v)
				}
			} else {
				values, text = cv.append(values, text, f, end-start, &stats)
				for i := range values {
					if !f.required && !values[i].IsNull() {
						values[i].SetDefinitionLevel(1)
					}
					values[i].SetColumnIndex(j)
				}
			}
			if _, err := writers[j].WriteRowValues(values); err != nil {
				return stats, fmt.Errorf("write parquet column %s: %w", f.name, err)
			}
		}
		if f.id > 0 {
			stats.Nulls[f.id], stats.Values[f.id] = cv.nulls, int64(b.rows)
			if f.date && b.rows > 0 {
				day := row.Cell{Kind: row.KindInt, I: int64(f.day)}
				stats.Lower[f.id], stats.Upper[f.id] = day, day
			} else if cv.bounds.set {
				stats.Lower[f.id], stats.Upper[f.id] = cv.bounds.lo, cv.bounds.hi
			}
		}
	}
	if err := pw.Close(); err != nil {
		return stats, fmt.Errorf("close parquet: %w", err)
	}
	return stats, nil
}

// columnValues turns a column's cells into Parquet values, with its null
// count and bounds. Cells of the column's own kind, nearly all of them,
// take a loop with no conversions: building values one row.Cell at a time
// was most of the loader's writing time (BenchmarkWriteDataFile).
type columnValues struct {
	it     cells
	nulls  int64
	bounds bounds
}

// append appends the next n rows' values, without levels, and returns the
// text that converted values took.
func (cv *columnValues) append(values []parquet.Value, text []byte, f fileColumn, n int, stats *DataFile) ([]parquet.Value, []byte) {
	it := &cv.it
	for range n {
		k, v, b := it.raw()
		if k == row.KindNull {
			values = append(values, parquet.Value{})
			cv.nulls++
			continue
		}
		if k == f.kind {
			switch k {
			case row.KindBool:
				values = append(values, parquet.BooleanValue(v != 0))
				if f.id > 0 {
					cv.bounds.addInt(k, int64(v))
				}
				continue
			case row.KindInt, row.KindTimestamp:
				values = append(values, parquet.Int64Value(int64(v)))
				if f.id > 0 {
					cv.bounds.addInt(k, int64(v))
				}
				continue
			case row.KindFloat:
				x := math.Float64frombits(v)
				values = append(values, parquet.DoubleValue(x))
				if f.id > 0 {
					cv.bounds.addFloat(x)
				}
				continue
			case row.KindString, row.KindJSON:
				values = append(values, parquet.ByteArrayValue(b))
				if f.id > 0 {
					cv.bounds.addText(k, b)
				}
				continue
			}
		}
		cell := it.cell(k, v, b)
		if k != f.kind && !(k == row.KindInt && f.kind == row.KindFloat) {
			if f.kind == row.KindString && f.id == 0 {
				// A conflict in a plain file: the value as text.
				start := len(text)
				text = cell.AppendText(text)
				cell = row.Cell{Kind: row.KindString, B: text[start:]}
			} else if c, ok := row.Coerce(cell, f.kind); ok {
				start := len(text)
				text = append(text, c.B...)
				c.B = text[start:]
				cell = c
			} else {
				stats.Unconverted++
				values = append(values, parquet.Value{})
				cv.nulls++
				continue
			}
		}
		values = append(values, value(cell, f.kind))
		if f.id > 0 {
			cv.bounds.add(cell, f.kind)
		}
	}
	return values, text
}

// bounds is a column's least and greatest value so far, as its column's
// kind. String bounds are copies: the cells alias memory that is reused.
type bounds struct {
	set    bool
	lo, hi row.Cell
}

func (b *bounds) add(c row.Cell, k row.Kind) {
	switch k {
	case row.KindFloat:
		f := c.F
		if c.Kind == row.KindInt {
			f = float64(c.I)
		}
		b.addFloat(f)
	case row.KindString, row.KindJSON:
		b.addText(k, c.B)
	default: // bool, int, timestamp
		b.addInt(k, c.I)
	}
}

func (b *bounds) addFloat(f float64) {
	if math.IsNaN(f) {
		return
	}
	if !b.set || f < b.lo.F {
		b.lo = row.Cell{Kind: row.KindFloat, F: f}
	}
	if !b.set || f > b.hi.F {
		b.hi = row.Cell{Kind: row.KindFloat, F: f}
	}
	b.set = true
}

func (b *bounds) addText(k row.Kind, t []byte) {
	if !b.set || bytes.Compare(t, b.lo.B) < 0 {
		b.lo = row.Cell{Kind: k, B: append(b.lo.B[:0], t...)}
	}
	if !b.set || bytes.Compare(t, b.hi.B) > 0 {
		b.hi = row.Cell{Kind: k, B: append(b.hi.B[:0], t...)}
	}
	b.set = true
}

func (b *bounds) addInt(k row.Kind, i int64) {
	if !b.set || i < b.lo.I {
		b.lo = row.Cell{Kind: k, I: i}
	}
	if !b.set || i > b.hi.I {
		b.hi = row.Cell{Kind: k, I: i}
	}
	b.set = true
}

// value converts a non-null cell to its column's type.
func value(c row.Cell, col row.Kind) parquet.Value {
	switch col {
	case row.KindBool:
		return parquet.BooleanValue(c.I != 0)
	case row.KindInt, row.KindTimestamp:
		return parquet.Int64Value(c.I)
	case row.KindFloat:
		if c.Kind == row.KindInt {
			return parquet.DoubleValue(float64(c.I))
		}
		return parquet.DoubleValue(c.F)
	}
	return parquet.ByteArrayValue(c.B)
}
