package lake

import (
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// Kind is the type of a value, and of a column once a batch is written.
type Kind uint8

// Kinds of values.
const (
	KindNull Kind = iota
	KindBool
	KindInt
	KindFloat
	KindString
	KindTimestamp // microseconds since the Unix epoch, UTC
	KindJSON      // a nested object or array, kept as JSON text
)

func (k Kind) String() string {
	return [...]string{"null", "boolean", "bigint", "double", "string", "timestamp", "json"}[k]
}

// Cell is one typed value: I holds ints, booleans (0 or 1) and timestamps,
// F floats, and S strings and JSON text.
type Cell struct {
	Kind Kind
	I    int64
	F    float64
	S    string
}

// Field is a named cell of a row.
type Field struct {
	Name string
	Cell Cell
}

// Buffer gathers the rows of one table file in columns. Columns appear as
// fields first appear; rows without a column hold null there, so new fields
// simply become new columns.
type Buffer struct {
	cols  map[string]*column
	order []string
	rows  int
	bytes int
}

type column struct {
	cells []Cell
	kinds uint8 // bit set of the non-null kinds seen
}

// NewBuffer returns an empty buffer.
func NewBuffer() *Buffer { return &Buffer{cols: make(map[string]*column)} }

// cellOverhead approximates a Cell's memory beside its string bytes.
const cellOverhead = 40

// Append adds a row. A field repeated within the row keeps its last value.
func (b *Buffer) Append(row []Field) {
	for _, f := range row {
		c := b.cols[f.Name]
		if c == nil {
			c = &column{cells: make([]Cell, b.rows, max(b.rows+1, 16))}
			b.cols[f.Name] = c
			b.order = append(b.order, f.Name)
			b.bytes += len(f.Name) + 64 + b.rows*cellOverhead
		}
		if len(c.cells) > b.rows {
			c.cells[b.rows] = f.Cell // a repeated field
		} else {
			c.cells = append(c.cells, f.Cell)
		}
		if f.Cell.Kind != KindNull {
			c.kinds |= 1 << f.Cell.Kind
		}
		b.bytes += cellOverhead + len(f.Cell.S)
	}
	b.rows++
	for _, name := range b.order {
		if c := b.cols[name]; len(c.cells) < b.rows {
			c.cells = append(c.cells, Cell{})
			b.bytes += cellOverhead
		}
	}
}

// Rows is how many rows the buffer holds.
func (b *Buffer) Rows() int { return b.rows }

// Bytes approximates the buffer's memory.
func (b *Buffer) Bytes() int { return b.bytes }

// Columns lists the buffer's columns with the types they will be written
// as, in the order they first appeared.
func (b *Buffer) Columns() []Field {
	out := make([]Field, len(b.order))
	for i, name := range b.order {
		out[i] = Field{Name: name, Cell: Cell{Kind: b.cols[name].kind()}}
	}
	return out
}

// kind resolves a column's type from the kinds it holds: one kind is kept;
// integers mixed with floats are doubles; any other mix is a conflict,
// written as strings. A column of nulls only is a string column.
func (c *column) kind() Kind {
	switch c.kinds {
	case 0:
		return KindString
	case 1<<KindInt | 1<<KindFloat:
		return KindFloat
	}
	if bits.OnesCount8(c.kinds) == 1 {
		return Kind(bits.TrailingZeros8(c.kinds))
	}
	return KindString
}

// conflict reports whether the column's values disagree on a type.
func (c *column) conflict() bool {
	return bits.OnesCount8(c.kinds) > 1 && c.kinds != 1<<KindInt|1<<KindFloat
}

func node(k Kind) parquet.Node {
	switch k {
	case KindBool:
		return parquet.Leaf(parquet.BooleanType)
	case KindInt:
		return parquet.Int(64)
	case KindFloat:
		return parquet.Leaf(parquet.DoubleType)
	case KindTimestamp:
		return parquet.TimestampAdjusted(parquet.Microsecond, true)
	case KindJSON:
		return parquet.JSON()
	}
	return parquet.String()
}

// WriteParquet writes the buffer as a zstd-compressed Parquet file and
// returns how many values were written as strings because their column's
// types conflicted.
func (b *Buffer) WriteParquet(w io.Writer) (conflicts int, err error) {
	group := make(parquet.Group, len(b.order))
	kinds := make(map[string]Kind, len(b.order))
	for _, name := range b.order {
		k := b.cols[name].kind()
		kinds[name] = k
		group[name] = parquet.Optional(node(k))
	}
	schema := parquet.NewSchema("sluice", group)
	cfg, err := parquet.NewWriterConfig(schema, parquet.Compression(&zstd.Codec{}))
	if err != nil {
		return 0, fmt.Errorf("parquet writer config: %w", err)
	}
	pw := parquet.NewWriter(w, cfg)

	// The schema orders columns its own way; map each to its cells.
	fields := schema.Fields()
	cols := make([]*column, len(fields))
	colKinds := make([]Kind, len(fields))
	for i, f := range fields {
		cols[i] = b.cols[f.Name()]
		colKinds[i] = kinds[f.Name()]
	}
	const chunk = 1024
	rows := make([]parquet.Row, 0, chunk)
	for r := 0; r < b.rows; r++ {
		row := make(parquet.Row, len(cols))
		for j, c := range cols {
			row[j] = value(c.cells[r], colKinds[j]).Level(0, definition(c.cells[r]), j)
		}
		rows = append(rows, row)
		if len(rows) == chunk || r == b.rows-1 {
			if _, err := pw.WriteRows(rows); err != nil {
				return 0, fmt.Errorf("write parquet rows: %w", err)
			}
			rows = rows[:0]
		}
	}
	if err := pw.Close(); err != nil {
		return 0, fmt.Errorf("close parquet: %w", err)
	}
	return b.conflicts(), nil
}

func definition(c Cell) int {
	if c.Kind == KindNull {
		return 0
	}
	return 1
}

// value converts a cell to its column's type.
func value(c Cell, col Kind) parquet.Value {
	if c.Kind == KindNull {
		return parquet.NullValue()
	}
	switch col {
	case KindBool:
		return parquet.BooleanValue(c.I != 0)
	case KindInt, KindTimestamp:
		return parquet.Int64Value(c.I)
	case KindFloat:
		if c.Kind == KindInt {
			return parquet.DoubleValue(float64(c.I))
		}
		return parquet.DoubleValue(c.F)
	}
	return parquet.ByteArrayValue([]byte(c.Text()))
}

// Text is a cell as a string, for string columns and conflicts.
func (c Cell) Text() string {
	switch c.Kind {
	case KindBool:
		return strconv.FormatBool(c.I != 0)
	case KindInt:
		return strconv.FormatInt(c.I, 10)
	case KindFloat:
		return strconv.FormatFloat(c.F, 'g', -1, 64)
	case KindTimestamp:
		return time.UnixMicro(c.I).UTC().Format("2006-01-02T15:04:05.000000Z")
	}
	return c.S
}
