package lake

import (
	"math"
	"math/bits"
	"sync"

	"github.com/sluicehq/sluice/internal/row"
)

// A column is stored in fixed blocks of rows and chunks of text rather than
// in growing slices: growing copies everything already held into fresh
// memory, and on this project's machines that was most of the loader's
// time (the loader benchmark, cmd/sluicebench). Blocks and full-size text
// chunks go back to pools on Reset, for the next buffer of any table; the
// garbage collector empties the pools of what stays unused.
const (
	blockRows    = 512
	minTextChunk = 1 << 10
	maxTextChunk = 32 << 10 // the largest small allocation
)

// block holds blockRows cells: each one's kind and value. Values are ints,
// booleans and timestamps as int64 bits, floats as float64 bits, and for
// text the chunk index (high 32 bits) and end offset in that chunk of its
// bytes; they start where the chunk's previous text ended.
type block struct {
	kinds [blockRows]row.Kind
	vals  [blockRows]uint64
}

const blockBytes = blockRows * 9

var (
	blocks = sync.Pool{New: func() any { return new(block) }}
	chunks = sync.Pool{New: func() any { return new([maxTextChunk]byte) }}
)

type column struct {
	name string
	n    int // cells set; rows past n are null
	// blocks holds the cells.
	blocks []*block
	// text holds chunks of text; a value never spans two. The last is
	// the one being filled.
	text [][]byte
	// lastStart is where the last text value starts in the current chunk,
	// so a field repeated within a row can replace it.
	lastStart int
	seen      uint8 // bit set of the non-null kinds seen
}

// reset empties the column, giving its memory back to the pools.
func (c *column) reset() {
	for i, b := range c.blocks {
		blocks.Put(b)
		c.blocks[i] = nil
	}
	for i, t := range c.text {
		if cap(t) == maxTextChunk {
			chunks.Put((*[maxTextChunk]byte)(t[:maxTextChunk]))
		}
		c.text[i] = nil
	}
	c.blocks, c.text = c.blocks[:0], c.text[:0]
	c.n, c.lastStart, c.seen = 0, 0, 0
}

// set stores row r's cell, padding the rows before it with nulls, or
// replacing r's cell when the field repeats within a row. It returns the
// memory it took.
func (c *column) set(r int, cell row.Cell) (grew int) {
	if c.n > r { // a repeated field: its last value wins
		c.n = r
		if k := c.blocks[r/blockRows].kinds[r%blockRows]; k == row.KindString || k == row.KindJSON {
			last := len(c.text) - 1
			c.text[last] = c.text[last][:c.lastStart]
		}
	}
	for c.n < r { // rows without this field: null
		grew += c.grow(c.n)
		c.blocks[c.n/blockRows].kinds[c.n%blockRows] = row.KindNull
		c.n++
	}
	grew += c.grow(r)
	c.n = r + 1
	var v uint64
	switch cell.Kind {
	case row.KindNull:
	case row.KindFloat:
		v = math.Float64bits(cell.F)
	case row.KindString, row.KindJSON:
		grew += c.room(len(cell.B))
		last := len(c.text) - 1
		c.lastStart = len(c.text[last])
		c.text[last] = append(c.text[last], cell.B...)
		v = uint64(last)<<32 | uint64(len(c.text[last]))
	default:
		v = uint64(cell.I)
	}
	bl := c.blocks[uint(r)/blockRows]
	bl.kinds[uint(r)%blockRows], bl.vals[uint(r)%blockRows] = cell.Kind, v
	if cell.Kind != row.KindNull {
		c.seen |= 1 << cell.Kind
	}
	return grew
}

// grow adds row r's block when r is the first row of a block not yet
// made, and returns the memory that took.
func (c *column) grow(r int) int {
	if r%blockRows != 0 || r/blockRows < len(c.blocks) {
		return 0
	}
	c.blocks = append(c.blocks, blocks.Get().(*block))
	return blockBytes
}

// full reports whether each of the first rows rows holds a value of kind k
// (none null, none of another kind).
func (c *column) full(rows int, k row.Kind) bool {
	if c.n < rows || c.seen != 1<<k {
		return false
	}
	for i, b := range c.blocks {
		n := min(blockRows, rows-i*blockRows)
		if n <= 0 {
			break
		}
		for _, kind := range b.kinds[:n] {
			if kind == row.KindNull {
				return false
			}
		}
	}
	return true
}

// room makes the last text chunk fit n more bytes, adding a chunk if not,
// and returns the memory that took.
func (c *column) room(n int) (grew int) {
	last := len(c.text) - 1
	if last >= 0 && cap(c.text[last])-len(c.text[last]) >= n {
		return 0
	}
	// Chunks double up to the largest small allocation; a longer value
	// has a chunk of its own.
	size := minTextChunk
	if last >= 0 {
		size = min(2*cap(c.text[last]), maxTextChunk)
	}
	var chunk []byte
	switch {
	case n > maxTextChunk:
		chunk = make([]byte, 0, n)
	case size == maxTextChunk:
		chunk = chunks.Get().(*[maxTextChunk]byte)[:0]
	default:
		chunk = make([]byte, 0, max(size, n))
	}
	c.text = append(c.text, chunk)
	return cap(chunk)
}

// cells reads a column's cells in row order; text aliases the column.
type cells struct {
	c     *column
	r     int
	chunk uint64
	off   uint64
}

// next returns the next row's cell.
func (it *cells) next() row.Cell {
	return it.cell(it.raw())
}

// raw returns the next row's cell as its kind, its value bits and, for
// text, its bytes.
func (it *cells) raw() (row.Kind, uint64, []byte) {
	r := it.r
	it.r++
	if r >= it.c.n {
		return row.KindNull, 0, nil
	}
	bl := it.c.blocks[r/blockRows]
	k, v := bl.kinds[r%blockRows], bl.vals[r%blockRows]
	if k != row.KindString && k != row.KindJSON {
		return k, v, nil
	}
	chunk, end := v>>32, v&(1<<32-1)
	if chunk != it.chunk {
		it.chunk, it.off = chunk, 0
	}
	start := it.off
	it.off = end
	return k, v, it.c.text[chunk][start:end]
}

// cell makes a cell of what raw returned.
func (*cells) cell(k row.Kind, v uint64, b []byte) row.Cell {
	switch k {
	case row.KindNull:
		return row.Cell{}
	case row.KindFloat:
		return row.Cell{Kind: k, F: math.Float64frombits(v)}
	case row.KindString, row.KindJSON:
		return row.Cell{Kind: k, B: b}
	default:
		return row.Cell{Kind: k, I: int64(v)}
	}
}

// eachKind calls f with the kind of each cell set.
func (c *column) eachKind(f func(row.Kind)) {
	for r := 0; r < c.n; r++ {
		f(c.blocks[r/blockRows].kinds[r%blockRows])
	}
}

// kind resolves a column's type from the kinds it holds: one kind is kept;
// integers mixed with floats are doubles; any other mix is a conflict,
// written as strings. A column of nulls only is a string column.
func (c *column) kind() row.Kind {
	switch c.seen {
	case 0:
		return row.KindString
	case 1<<row.KindInt | 1<<row.KindFloat:
		return row.KindFloat
	}
	if bits.OnesCount8(c.seen) == 1 {
		return row.Kind(bits.TrailingZeros8(c.seen))
	}
	return row.KindString
}

// conflict reports whether the column's values disagree on a type.
func (c *column) conflict() bool {
	return bits.OnesCount8(c.seen) > 1 && c.seen != 1<<row.KindInt|1<<row.KindFloat
}

// take moves src's cells to the end of c, which holds rows rows (those
// past its cells are null), and empties src: cells are copied a block at
// a time, and text chunks change hands, their cells' chunk numbers moved
// past c's. It returns the memory c took.
func (c *column) take(rows int, src *column) (grew int) {
	if src.n == 0 {
		src.reset()
		return 0
	}
	// Null cells up to rows, then src's cells, a stretch at a time:
	// from within one of src's blocks into within one of c's.
	base := uint64(len(c.text))
	end := rows + src.n
	for c.n < end {
		if c.n%blockRows == 0 && c.n/blockRows == len(c.blocks) {
			c.blocks = append(c.blocks, blocks.Get().(*block))
			grew += blockBytes
		}
		dst := c.blocks[c.n/blockRows]
		at := c.n % blockRows
		if c.n < rows {
			n := min(blockRows-at, rows-c.n)
			clear(dst.kinds[at : at+n]) // KindNull
			c.n += n
			continue
		}
		from := c.n - rows
		sb, sat := src.blocks[from/blockRows], from%blockRows
		n := min(blockRows-at, blockRows-sat, end-c.n)
		copy(dst.kinds[at:at+n], sb.kinds[sat:sat+n])
		copy(dst.vals[at:at+n], sb.vals[sat:sat+n])
		if base > 0 {
			for i, k := range dst.kinds[at : at+n] {
				if k == row.KindString || k == row.KindJSON {
					dst.vals[at+i] += base << 32
				}
			}
		}
		c.n += n
	}
	for _, t := range src.text {
		grew += cap(t)
	}
	c.text = append(c.text, src.text...)
	c.lastStart = 0
	c.seen |= src.seen
	clear(src.text) // c's now, not the pool's
	src.text = src.text[:0]
	src.reset()
	return grew
}
