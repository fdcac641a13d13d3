package lake

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// openParquet opens a Parquet file held in memory for reading, once
// checkFooter and checkPages found nothing that would make the reader
// allocate beyond the file's size.
func openParquet(data []byte) (pf *parquet.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unreadable Parquet file: %v", r)
		}
	}()
	if err := checkFooter(data); err != nil {
		return nil, err
	}
	// The page index and bloom filters are not read: nothing here needs
	// them, and their lengths are not checked.
	pf, err = parquet.OpenFile(bytes.NewReader(data), int64(len(data)), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, err
	}
	if err := checkPages(data, pf.Metadata()); err != nil {
		return nil, err
	}
	return pf, nil
}

// The Parquet reader allocates what a file's Thrift structures declare
// (a statistic's length, a page's size, a list's length) before it looks
// whether the bytes are there: a damaged file of a few hundred bytes makes
// it allocate gigabytes, and a few such reads end the process. checkFooter
// and checkPages walk those structures first, allocating nothing, and
// refuse what claims more than the file holds; only then does the reader
// see the file.

const (
	// maxThriftDepth is far more nesting than any Parquet structure has.
	maxThriftDepth = 32
	// maxPageSize bounds a page's uncompressed size. Writers cut pages
	// at about a megabyte (parquet-go 256 KiB, Spark and DuckDB 1 MiB);
	// a compressed page that claims more is damage, not data.
	maxPageSize = 256 << 20
	// maxPageValues bounds the values of one page: the reader sizes its
	// level buffers by it.
	maxPageValues = 64 << 20
)

// Thrift compact protocol types.
const (
	tStop = iota
	tTrue
	tFalse
	tByte
	tI16
	tI32
	tI64
	tDouble
	tBinary
	tList
	tSet
	tMap
	tStruct
)

var errThriftShort = errors.New("a structure runs past its end")

// thriftWalk reads Thrift compact encoding without building anything.
type thriftWalk struct {
	b     []byte
	i     int
	depth int
}

func (w *thriftWalk) byte() (byte, error) {
	if w.i >= len(w.b) {
		return 0, errThriftShort
	}
	w.i++
	return w.b[w.i-1], nil
}

func (w *thriftWalk) uvarint() (uint64, error) {
	v, n := binary.Uvarint(w.b[w.i:])
	if n <= 0 {
		return 0, errThriftShort
	}
	w.i += n
	return v, nil
}

func (w *thriftWalk) varint() (int64, error) {
	v, err := w.uvarint()
	return int64(v>>1) ^ -int64(v&1), err
}

// length reads a size that counts at least one byte per unit, and refuses
// one beyond the bytes left.
func (w *thriftWalk) length(what string) (int, error) {
	n, err := w.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(w.b)-w.i) {
		return 0, fmt.Errorf("a %s of %d with %d bytes left", what, n, len(w.b)-w.i)
	}
	return int(n), nil
}

// fields walks a struct, calling fn for each field; fn either reads the
// value (and returns true) or leaves it to be skipped.
func (w *thriftWalk) fields(fn func(id int16, typ byte) (bool, error)) error {
	if w.depth++; w.depth > maxThriftDepth {
		return fmt.Errorf("structures nested deeper than %d", maxThriftDepth)
	}
	defer func() { w.depth-- }()
	var id int16
	for {
		h, err := w.byte()
		if err != nil {
			return err
		}
		typ := h & 0x0f
		if typ == tStop {
			return nil
		}
		if delta := h >> 4; delta != 0 {
			id += int16(delta)
		} else {
			v, err := w.varint()
			if err != nil {
				return err
			}
			id = int16(v)
		}
		read := false
		if fn != nil {
			if read, err = fn(id, typ); err != nil {
				return err
			}
		}
		if !read {
			if err := w.skip(typ); err != nil {
				return err
			}
		}
	}
}

func (w *thriftWalk) skip(typ byte) error {
	var err error
	switch typ {
	case tTrue, tFalse:
	case tByte:
		_, err = w.byte()
	case tI16, tI32, tI64:
		_, err = w.uvarint()
	case tDouble:
		if len(w.b)-w.i < 8 {
			return errThriftShort
		}
		w.i += 8
	case tBinary:
		var n int
		if n, err = w.length("string"); err == nil {
			w.i += n
		}
	case tList, tSet:
		var h byte
		if h, err = w.byte(); err != nil {
			return err
		}
		n, elem := int(h>>4), h&0x0f
		if n == 15 {
			if n, err = w.length("list"); err != nil {
				return err
			}
		}
		for range n {
			if err := w.skipElem(elem); err != nil {
				return err
			}
		}
	case tMap:
		var n int
		if n, err = w.length("map"); err != nil || n == 0 {
			return err
		}
		var kv byte
		if kv, err = w.byte(); err != nil {
			return err
		}
		for range n {
			if err := errors.Join(w.skipElem(kv>>4), w.skipElem(kv&0x0f)); err != nil {
				return err
			}
		}
	case tStruct:
		err = w.fields(nil)
	default:
		err = fmt.Errorf("unknown type %d", typ)
	}
	return err
}

// skipElem skips an element of a list or map, where booleans take a byte.
func (w *thriftWalk) skipElem(typ byte) error {
	if typ == tTrue || typ == tFalse {
		_, err := w.byte()
		return err
	}
	return w.skip(typ)
}

func (w *thriftWalk) i32() (int32, error) {
	v, err := w.varint()
	return int32(v), err
}

// checkFooter refuses a file whose footer claims more bytes than the file
// has, or whose metadata holds a length beyond the footer's bytes.
func checkFooter(data []byte) error {
	const tail = 8 // footer length (4 bytes, little endian), then PAR1
	if len(data) < 4+tail || string(data[:4]) != "PAR1" || string(data[len(data)-4:]) != "PAR1" {
		return errors.New("not a Parquet file: no PAR1 at its start and end")
	}
	n := binary.LittleEndian.Uint32(data[len(data)-tail:])
	if int64(n) > int64(len(data)-4-tail) {
		return fmt.Errorf("damaged Parquet file: its footer claims %d bytes of a %d-byte file", n, len(data))
	}
	w := thriftWalk{b: data[len(data)-tail-int(n) : len(data)-tail]}
	if err := w.fields(nil); err != nil {
		return fmt.Errorf("damaged Parquet file: footer: %w", err)
	}
	return nil
}

// checkPages refuses a file whose column chunks lie outside it, or whose
// pages claim more than their chunk holds, before the reader decodes them.
func checkPages(data []byte, meta *format.FileMetaData) error {
	footer := len(data) - 8 - int(binary.LittleEndian.Uint32(data[len(data)-8:]))
	var rows int64
	for g, rg := range meta.RowGroups {
		rows += rg.NumRows
		for c, cc := range rg.Columns {
			md := cc.MetaData
			start := md.DataPageOffset
			if md.DictionaryPageOffset > 0 && md.DictionaryPageOffset < start {
				start = md.DictionaryPageOffset
			}
			if start < 4 || md.TotalCompressedSize < 0 || start+md.TotalCompressedSize > int64(footer) || start > int64(footer) {
				return fmt.Errorf("damaged Parquet file: row group %d column %d lies at bytes %d to %d of %d",
					g, c, start, start+md.TotalCompressedSize, footer)
			}
			values, err := checkChunk(data[start:start+md.TotalCompressedSize], md.Codec)
			if err != nil {
				return fmt.Errorf("damaged Parquet file: row group %d column %d: %w", g, c, err)
			}
			// Every row has at least one value (or null) in every column:
			// the reader sizes buffers by the rows claimed.
			if rg.NumRows < 0 || rg.NumRows > values {
				return fmt.Errorf("damaged Parquet file: row group %d claims %d rows, its column %d has %d values", g, rg.NumRows, c, values)
			}
		}
	}
	if meta.NumRows < 0 || meta.NumRows > rows {
		return fmt.Errorf("damaged Parquet file: it claims %d rows, its row groups %d", meta.NumRows, rows)
	}
	return nil
}

// checkChunk walks the page headers of one column chunk, and returns the
// values its data pages hold.
func checkChunk(chunk []byte, codec format.CompressionCodec) (int64, error) {
	var total int64
	for at := 0; at < len(chunk); {
		w := thriftWalk{b: chunk[at:]}
		var size, compressed, values int32
		var levels int64
		dataPage := false
		err := w.fields(func(id int16, typ byte) (bool, error) {
			var err error
			switch {
			case id == 2 && typ == tI32:
				size, err = w.i32()
			case id == 3 && typ == tI32:
				compressed, err = w.i32()
			case (id == 5 || id == 7 || id == 8) && typ == tStruct:
				dataPage = id != 7
				// data_page_header, dictionary_page_header and
				// data_page_header_v2 all start with num_values; v2 has
				// the levels' byte lengths as fields 5 and 6.
				err = w.fields(func(id int16, typ byte) (bool, error) {
					if typ != tI32 || (id != 1 && id != 5 && id != 6) {
						return false, nil
					}
					v, err := w.i32()
					if id == 1 {
						values = v
					} else {
						levels += int64(v)
					}
					return true, err
				})
			default:
				return false, nil
			}
			return true, err
		})
		if err != nil {
			return 0, fmt.Errorf("page header at byte %d: %w", at, err)
		}
		at += w.i
		switch {
		case compressed < 0 || int(compressed) > len(chunk)-at:
			return 0, fmt.Errorf("a page of %d bytes with %d left in its chunk", compressed, len(chunk)-at)
		case size < 0 || size > maxPageSize || (codec == format.Uncompressed && size > compressed):
			return 0, fmt.Errorf("a page of %d bytes uncompressed (%d compressed)", size, compressed)
		case values < 0 || values > maxPageValues:
			return 0, fmt.Errorf("a page of %d values", values)
		case levels < 0 || levels > int64(compressed):
			return 0, fmt.Errorf("a page with %d bytes of levels in %d", levels, compressed)
		}
		at += int(compressed)
		if dataPage {
			total += int64(values)
		}
	}
	return total, nil
}
