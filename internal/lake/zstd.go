package lake

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// pageZstd compresses Parquet pages with zstd. It is parquet-go's zstd codec
// with a window the size of a page: each page is compressed on its own, so
// the default 8 MiB window only cost memory (32 MB of encoder history in
// the loader's memory-bound test) and no compression. Encoders are pooled
// across every file written.
type pageZstd struct {
	encoders, decoders sync.Pool
}

// pageWindow is more than a page (pageBytes, plus the page's levels).
const pageWindow = 2 * pageBytes

var parquetZstd = new(pageZstd)

func (*pageZstd) String() string                            { return "ZSTD" }
func (*pageZstd) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *pageZstd) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		e, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(pageWindow),
			zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return dst, fmt.Errorf("zstd encoder: %w", err)
		}
	}
	defer c.encoders.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

func (c *pageZstd) Decode(dst, src []byte) ([]byte, error) {
	d, _ := c.decoders.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return dst, fmt.Errorf("zstd decoder: %w", err)
		}
	}
	defer c.decoders.Put(d)
	return d.DecodeAll(src, dst[:0])
}
