package source

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/row"
)

// Formats a source can be read in; the default comes from the name.
var Formats = []string{"parquet", "csv", "csv.gz", "ndjson", "ndjson.gz"}

// Source is one file of rows, local or at an http(s) URL.
type Source struct {
	// Location is the path or URL; Name its base name without extensions,
	// which prefixes event ids.
	Location, Name string
	Format         string
	// TimeLayout formats Parquet timestamps and CSV columns typed
	// timestamp.
	TimeLayout string
	// Columns types CSV columns: string (the default), int, float, bool or
	// timestamp. Empty fields of typed columns are null.
	Columns map[string]string
	// Strict makes a column of Columns missing from the file an error
	// (presets type columns a file may not have).
	Strict bool
	// BadRow, when set, is told of a CSV or NDJSON row that cannot be read
	// (not JSON, the wrong number of fields, a value not of its column's
	// type), and reading goes on; otherwise such a row stops the read.
	BadRow func(line int64, raw string, err error)
	Client *http.Client
}

// New describes the file at location, its format taken from its name
// unless format is set.
func New(location, format string) (*Source, error) {
	base := path.Base(location)
	if i := strings.IndexAny(base, "?#"); i >= 0 {
		base = base[:i]
	}
	name := base
	for _, ext := range []string{".gz", ".parquet", ".csv", ".ndjson", ".jsonl", ".json"} {
		name = strings.TrimSuffix(name, ext)
	}
	if format == "" {
		switch lower := strings.ToLower(base); {
		case strings.HasSuffix(lower, ".parquet"):
			format = "parquet"
		case strings.HasSuffix(lower, ".csv.gz"):
			format = "csv.gz"
		case strings.HasSuffix(lower, ".csv"):
			format = "csv"
		case strings.HasSuffix(lower, ".ndjson"), strings.HasSuffix(lower, ".jsonl"), strings.HasSuffix(lower, ".json"):
			format = "ndjson"
		case strings.HasSuffix(lower, ".ndjson.gz"), strings.HasSuffix(lower, ".jsonl.gz"), strings.HasSuffix(lower, ".json.gz"):
			format = "ndjson.gz"
		default:
			return nil, fmt.Errorf("%s: cannot tell the format from the name; pass --input-format %s", location, strings.Join(Formats, "|"))
		}
	}
	valid := false
	for _, f := range Formats {
		valid = valid || f == format
	}
	if !valid {
		return nil, fmt.Errorf("format %q: want one of %s", format, strings.Join(Formats, ", "))
	}
	return &Source{Location: location, Name: name, Format: format, TimeLayout: DefaultTimeLayout, Client: http.DefaultClient}, nil
}

func (s *Source) remote() bool {
	return strings.HasPrefix(s.Location, "http://") || strings.HasPrefix(s.Location, "https://")
}

// Progress reports how far a read is: Done of Total rows or bytes (Total 0
// when unknown).
type Progress struct{ Done, Total int64 }

// Rows calls fn with each row as a JSON object, numbered from 1, streaming
// the file: Parquet one row group at a time (over HTTP with range
// requests), CSV and NDJSON line by line. progress, when not nil, is
// updated as the read advances.
func (s *Source) Rows(ctx context.Context, progress func(Progress), fn func(n int64, row []byte) error) error {
	if progress == nil {
		progress = func(Progress) {}
	}
	if s.Format == "parquet" {
		ra, size, closer, err := s.openAt(ctx)
		if err != nil {
			return err
		}
		defer closer.Close()
		var n int64
		total := int64(0)
		return parquetRows(ra, size, s.TimeLayout, func(rows int64) { total = rows }, func(row []byte) error {
			n++
			if n%1024 == 0 {
				progress(Progress{n, total})
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			return fn(n, row)
		})
	}
	body, size, err := s.open(ctx)
	if err != nil {
		return err
	}
	defer body.Close()
	counted := &countingReader{r: body}
	var r io.Reader = counted
	format, gzipped := strings.CutSuffix(s.Format, ".gz")
	if gzipped {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Location, err)
		}
		defer zr.Close()
		r = zr
	}
	report := func(n int64) error {
		if n%1024 == 0 {
			progress(Progress{counted.n, size})
			return ctx.Err()
		}
		return nil
	}
	if format == "ndjson" {
		return s.ndjsonRows(r, report, fn)
	}
	return s.csvRows(r, report, fn)
}

func (s *Source) ndjsonRows(r io.Reader, report func(int64) error, fn func(int64, []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var n, line int64
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		n++ // bad rows keep their number, so that ids are positions
		if _, _, err := event.ObjectMembers(b, "", nil, nil); err != nil {
			err = fmt.Errorf("%s line %d: not a JSON object: %w", s.Location, line, err)
			if s.BadRow == nil {
				return err
			}
			s.BadRow(line, string(b), err)
			continue
		}
		if err := report(n); err != nil {
			return err
		}
		if err := fn(n, b); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", s.Location, err)
	}
	return nil
}

func (s *Source) csvRows(r io.Reader, report func(int64) error, fn func(int64, []byte) error) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1 // checked below, so that a bad row need not stop the read
	header, err := cr.Read()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s header: %w", s.Location, err)
	}
	names := make([][]byte, len(header))
	conv := make([]func(dst []byte, v string) ([]byte, error), len(header))
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		names[i] = event.AppendString(nil, h)
		if conv[i], err = csvConverter(s.Columns[h], s.TimeLayout); err != nil {
			return fmt.Errorf("column %s: %w", h, err)
		}
	}
	for name := range s.Columns {
		if !s.Strict {
			break
		}
		found := false
		for _, h := range header {
			found = found || strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) == name
		}
		if !found {
			return fmt.Errorf("%s has no column %q to type (columns: %s)", s.Location, name, strings.Join(header, ","))
		}
	}
	var buf []byte
	var n int64
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", s.Location, err)
		}
		n++ // bad rows keep their number, so that ids are positions
		line, _ := cr.FieldPos(0)
		if len(rec) != len(names) {
			err := fmt.Errorf("%s line %d: %d fields, the header has %d", s.Location, line, len(rec), len(names))
			if s.BadRow == nil {
				return err
			}
			s.BadRow(int64(line), strings.Join(rec, ","), err)
			continue
		}
		buf = append(buf[:0], '{')
		var bad error
		for i, v := range rec {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(append(buf, names[i]...), ':')
			if buf, err = conv[i](buf, v); err != nil {
				bad = fmt.Errorf("%s line %d, column %s: %w", s.Location, line, strings.TrimSpace(header[i]), err)
				break
			}
		}
		if bad != nil {
			if s.BadRow == nil {
				return bad
			}
			s.BadRow(int64(line), strings.Join(rec, ","), bad)
			continue
		}
		buf = append(buf, '}')
		if err := report(n); err != nil {
			return err
		}
		if err := fn(n, buf); err != nil {
			return err
		}
	}
}

// ValidType reports whether typ is a column type Columns takes.
func ValidType(typ string) error {
	_, err := csvConverter(typ, DefaultTimeLayout)
	return err
}

// csvConverter writes a CSV field as the JSON value of its column's type.
func csvConverter(typ, layout string) (func(dst []byte, v string) ([]byte, error), error) {
	null := func(dst []byte, v string, f func([]byte, string) ([]byte, error)) ([]byte, error) {
		if strings.TrimSpace(v) == "" {
			return append(dst, "null"...), nil
		}
		return f(dst, strings.TrimSpace(v))
	}
	switch typ {
	case "", "string":
		return func(dst []byte, v string) ([]byte, error) { return event.AppendString(dst, v), nil }, nil
	case "int":
		return func(dst []byte, v string) ([]byte, error) {
			return null(dst, v, func(dst []byte, v string) ([]byte, error) {
				i, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					// Integers written as 1.0 by pandas are still integers.
					f, ferr := strconv.ParseFloat(v, 64)
					if ferr != nil || f != float64(int64(f)) {
						return dst, fmt.Errorf("%q is not an integer", v)
					}
					i = int64(f)
				}
				return strconv.AppendInt(dst, i, 10), nil
			})
		}, nil
	case "float":
		return func(dst []byte, v string) ([]byte, error) {
			return null(dst, v, func(dst []byte, v string) ([]byte, error) {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return dst, fmt.Errorf("%q is not a number", v)
				}
				return appendFloat(dst, f, 64), nil
			})
		}, nil
	case "bool":
		return func(dst []byte, v string) ([]byte, error) {
			return null(dst, v, func(dst []byte, v string) ([]byte, error) {
				b, err := strconv.ParseBool(strings.ToLower(v))
				if err != nil {
					return dst, fmt.Errorf("%q is not a boolean", v)
				}
				return strconv.AppendBool(dst, b), nil
			})
		}, nil
	case "timestamp":
		return func(dst []byte, v string) ([]byte, error) {
			return null(dst, v, func(dst []byte, v string) ([]byte, error) {
				t, ok := row.ParseTime(v)
				if !ok {
					return dst, fmt.Errorf("%q is not a time", v)
				}
				return event.AppendString(dst, t.Format(layout)), nil
			})
		}, nil
	}
	return nil, fmt.Errorf("type %q: want string, int, float, bool or timestamp", typ)
}

// open streams the file; size is its length when known, else 0.
func (s *Source) open(ctx context.Context) (io.ReadCloser, int64, error) {
	if !s.remote() {
		f, err := os.Open(s.Location)
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, st.Size(), nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Location, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", s.Location, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("get %s: %s", s.Location, resp.Status)
	}
	return resp.Body, max(resp.ContentLength, 0), nil
}

// openAt gives random access, which Parquet needs: a local file, or range
// requests to the URL (which must serve them).
func (s *Source) openAt(ctx context.Context) (io.ReaderAt, int64, io.Closer, error) {
	if !s.remote() {
		f, err := os.Open(s.Location)
		if err != nil {
			return nil, 0, nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, nil, err
		}
		return f, st.Size(), f, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, s.Location, nil)
	if err != nil {
		return nil, 0, nil, err
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("head %s: %w", s.Location, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength <= 0 {
		return nil, 0, nil, fmt.Errorf("head %s: %s, length %d: Parquet over HTTP needs the file's length", s.Location, resp.Status, resp.ContentLength)
	}
	if resp.Header.Get("Accept-Ranges") != "bytes" {
		return nil, 0, nil, fmt.Errorf("%s does not accept range requests, which reading Parquet over HTTP needs; download it first", s.Location)
	}
	return &httpReaderAt{ctx: ctx, url: s.Location, client: s.Client, size: resp.ContentLength}, resp.ContentLength, io.NopCloser(nil), nil
}

type httpReaderAt struct {
	ctx    context.Context
	url    string
	client *http.Client
	size   int64
}

// Size is what parquet-go asks a reader for.
func (h *httpReaderAt) Size() int64 { return h.size }

func (h *httpReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	req, err := http.NewRequestWithContext(h.ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1))
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", h.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return 0, fmt.Errorf("range request to %s: %s", h.url, resp.Status)
	}
	n, err := io.ReadFull(resp.Body, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
