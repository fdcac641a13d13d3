package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// body is a request body read into memory, holding its share of the
// in-flight byte budget until released. Bodies are reused, buffer and
// readers with them, since every request has one.
type body struct {
	buf         bytes.Buffer
	wire, plain limitedReader
	weight      int64
	c           *Collector
}

var bodies = sync.Pool{New: func() any { return new(body) }}

// Bytes is the body, valid until release.
func (b *body) Bytes() []byte { return b.buf.Bytes() }

// release gives back the body's budget, and the body for reuse.
func (b *body) release() {
	b.c.metrics.inflightBytes.Sub(float64(b.weight))
	b.c.inflight.Release(b.weight)
	b.c, b.wire, b.plain = nil, limitedReader{}, limitedReader{}
	// Very large buffers are not kept, so one big batch does not pin its
	// memory for good.
	if b.buf.Cap() <= 4<<20 {
		bodies.Put(b)
	}
}

// errTooLarge marks a body over its limit, before or after decompression.
var errTooLarge = errors.New("body too large")

// readBody reads the request body, decompressing gzip, within limit bytes
// after decompression. It first reserves room in the in-flight byte budget,
// waiting if the collector is full, so that memory stays bounded under any
// load. On failure it has answered the request and returns ok=false; on
// success the caller must release the body once it no longer needs it.
func (c *Collector) readBody(w http.ResponseWriter, r *http.Request, limit int64) (b *body, ok bool) {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	if enc != "" && enc != "identity" && enc != "gzip" {
		c.metrics.requestRejected(errUnsupportedEncoding)
		writeError(w, http.StatusUnsupportedMediaType, errUnsupportedEncoding,
			fmt.Sprintf("Content-Encoding %q is not supported; send gzip or no encoding", enc))
		return nil, false
	}
	if r.ContentLength > limit && enc != "gzip" {
		c.tooLarge(w, limit)
		return nil, false
	}
	// A plain body of known size reserves only what it is; anything else
	// reserves the limit it may grow to.
	weight := limit
	if r.ContentLength >= 0 && enc != "gzip" {
		weight = max(r.ContentLength, 1)
	}
	if err := c.inflight.Acquire(r.Context(), weight); err != nil {
		// Only the client going away ends the wait; there is nobody to answer.
		return nil, false
	}
	c.metrics.inflightBytes.Add(float64(weight))
	b = bodies.Get().(*body)
	b.buf.Reset()
	b.c, b.weight = c, weight

	err := b.readLimited(r.Body, enc == "gzip", limit)
	switch {
	case err == nil:
		return b, true
	case errors.Is(err, errTooLarge):
		c.tooLarge(w, limit)
	case errors.Is(err, errBadGzip):
		c.metrics.requestRejected(errInvalidEncoding)
		writeError(w, http.StatusBadRequest, errInvalidEncoding, err.Error())
	case errors.Is(err, context.Canceled):
	default:
		c.metrics.requestRejected("read_error")
		writeError(w, http.StatusBadRequest, "read_error", "reading the body failed: "+err.Error())
	}
	b.release()
	return nil, false
}

var errBadGzip = errors.New("body is not valid gzip")

// readLimited copies src into the buffer, refusing more than limit bytes
// both on the wire and after decompression, so that a gzip bomb is stopped
// after limit bytes of output rather than after it fills memory.
func (b *body) readLimited(src io.Reader, gz bool, limit int64) error {
	b.wire = limitedReader{r: src, n: limit}
	src = &b.wire
	if gz {
		zr, err := gzip.NewReader(src)
		if err != nil {
			if b.wire.over {
				return errTooLarge
			}
			return fmt.Errorf("%w: %v", errBadGzip, err)
		}
		defer zr.Close()
		src = zr
	}
	b.plain = limitedReader{r: src, n: limit}
	_, err := b.buf.ReadFrom(&b.plain)
	switch {
	case b.wire.over || b.plain.over:
		return errTooLarge
	case err != nil && gz && !errors.Is(err, b.wire.err):
		return fmt.Errorf("%w: %v", errBadGzip, err)
	case err != nil:
		return fmt.Errorf("read body: %w", err)
	}
	return nil
}

// limitedReader is io.LimitReader that remembers whether the source had more
// than n bytes, which LimitReader cannot tell from a body of exactly n.
type limitedReader struct {
	r    io.Reader
	n    int64
	over bool
	err  error // the source's own error, as opposed to gzip's
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// Probe one byte: more data means the limit is exceeded.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.over = true
			return 0, errTooLarge
		}
		if err != nil && err != io.EOF {
			l.err = err
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

func (c *Collector) tooLarge(w http.ResponseWriter, limit int64) {
	c.metrics.requestRejected(errBodyTooLarge)
	writeError(w, http.StatusRequestEntityTooLarge, errBodyTooLarge,
		fmt.Sprintf("the body is larger than %d bytes (after decompression); split it into smaller requests", limit))
}
