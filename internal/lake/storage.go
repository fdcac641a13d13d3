// Package lake is Sluice's data lake: Apache Iceberg tables on a local
// disk or in object storage, in a catalog (Iceberg's SQL catalog on a
// SQLite file) that PyIceberg, Spark, Trino and DuckDB read without Sluice.
//
// A table is a directory of Parquet data files with Iceberg field ids,
// partitioned by event date and named by the Kafka offset range they hold,
// and of Iceberg metadata:
//
//	<lake>/<table>/data/event_date=YYYY-MM-DD/<topic>-<partition>-<first>-<last>.parquet
//	<lake>/<table>/metadata/...
//
// The guarantee: a table changes only by a commit to the catalog, which
// swaps its metadata whole, so a reader sees a table before a change or
// after it; each snapshot carries the Kafka offsets the table holds, so a
// writer that commits a range again after a crash finds it there and
// commits nothing twice. Files appear only when complete (a rename on
// disk, a single PUT on S3). The loader's own bookkeeping lives beside the
// tables under _sluice/. Tables written as CSV.gz or Avro exports keep the
// plain layout <lake>/<table>/event_date=YYYY-MM-DD/<range>.<ext>, outside
// the catalog.
package lake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// ErrNotExist is returned for an object that is not there.
var ErrNotExist = errors.New("object does not exist")

// Object is a stored object's path, relative to the lake root, and size.
type Object struct {
	Path     string
	Size     int64
	Modified time.Time // when it was written: orphan removal spares young files
}

// Writer writes one object. Nothing is visible until Commit returns;
// Abort discards what was written.
type Writer interface {
	io.Writer
	Commit() error
	Abort()
}

// Storage is where the lake lives, modelled on Pebble's object storage: a
// flat namespace of slash-separated paths.
type Storage interface {
	// Create starts an object that appears whole on Commit, replacing any
	// object at the same path.
	Create(ctx context.Context, path string) (Writer, error)
	// ReadObject reads a whole (small) object, or returns ErrNotExist.
	ReadObject(ctx context.Context, path string) ([]byte, error)
	// List returns the objects whose paths start with prefix, sorted.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes an object; a missing object is not an error.
	Delete(ctx context.Context, path string) error
	// String names the storage for logs, such as a directory or an s3 URL.
	String() string
}

// Put writes the object at path with write, atomically: it appears whole
// once Put returns nil, replacing any object there, and not at all when
// write or the commit fails. Every object of the lake is written this way.
func Put(ctx context.Context, s Storage, path string, write func(io.Writer) error) error {
	w, err := s.Create(ctx, path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := write(w); err != nil {
		w.Abort()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// PutBytes writes b as the object at path, atomically, as Put does.
func PutBytes(ctx context.Context, s Storage, path string, b []byte) error {
	return Put(ctx, s, path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// Config says where the lake is.
type Config struct {
	URL     string        `yaml:"url" flag:"lake" doc:"The lake: a directory, or s3://bucket/prefix. Default: <data_dir>/lake. S3 credentials come from the AWS_* variables, the shared credentials file or the instance role."`
	S3      S3Config      `yaml:",inline"`
	Catalog CatalogConfig `yaml:",inline"`
}

// Open opens the lake at url: a local directory, or s3://bucket/prefix
// (checked to be reachable).
func Open(ctx context.Context, url string, s3 S3Config) (Storage, error) {
	if strings.HasPrefix(url, "s3://") {
		s, err := NewS3(url, s3)
		if err != nil {
			return nil, err
		}
		if err := s.Check(ctx); err != nil {
			return nil, err
		}
		return s, nil
	}
	return NewLocal(strings.TrimPrefix(url, "file://"))
}

// Local is a lake on a local file system.
type Local struct {
	root string
}

var _ Storage = (*Local)(nil)

// NewLocal opens (creating if needed) a lake directory.
func NewLocal(root string) (*Local, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("create lake directory: %w", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("lake directory %s: %w", root, err)
	}
	return &Local{root: abs}, nil
}

// Root is the lake's directory.
func (l *Local) Root() string { return l.root }

func (l *Local) String() string { return l.root }

func (l *Local) path(p string) (string, error) {
	clean := filepath.Clean(filepath.FromSlash(p))
	if clean == "." || strings.HasPrefix(clean, "..") || filepath.IsAbs(clean) {
		return "", fmt.Errorf("lake path %q escapes the lake", p)
	}
	return filepath.Join(l.root, clean), nil
}

// tmpSuffix marks files being written. Table globs end in .parquet (or
// .csv.gz, .avro), so readers never match them.
const tmpSuffix = ".tmp"

// Create writes to a temporary file beside the target; Commit fsyncs it,
// renames it into place and fsyncs the directory, so the object survives a
// crash once Commit returns and is never seen half-written.
func (l *Local) Create(_ context.Context, p string) (Writer, error) {
	full, err := l.path(p)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(full), err)
	}
	f, err := os.CreateTemp(filepath.Dir(full), "."+filepath.Base(full)+".*"+tmpSuffix)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	return &localWriter{f: f, target: full}, nil
}

type localWriter struct {
	f      *os.File
	target string
}

func (w *localWriter) Write(b []byte) (int, error) { return w.f.Write(b) }

func (w *localWriter) Commit() error {
	if err := w.f.Sync(); err != nil {
		w.Abort()
		return fmt.Errorf("sync %s: %w", w.target, err)
	}
	if err := w.f.Close(); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("close %s: %w", w.target, err)
	}
	if err := os.Rename(w.f.Name(), w.target); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("rename into %s: %w", w.target, err)
	}
	return syncDir(filepath.Dir(w.target))
}

func (w *localWriter) Abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ReadObject reads a whole file.
func (l *Local) ReadObject(_ context.Context, p string) ([]byte, error) {
	full, err := l.path(p)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(full)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", p, ErrNotExist)
	}
	return b, err
}

// List walks the directory under prefix, skipping temporary files.
func (l *Local) List(_ context.Context, prefix string) ([]Object, error) {
	var out []Object
	err := filepath.WalkDir(l.root, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(full, l.root+string(filepath.Separator)))
		if d.IsDir() {
			// Skip directories that cannot hold a match.
			if full != l.root && !strings.HasPrefix(rel+"/", prefix) && !strings.HasPrefix(prefix, rel+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(rel, prefix) || strings.HasSuffix(rel, tmpSuffix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed while listing
		}
		out = append(out, Object{Path: rel, Size: info.Size(), Modified: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// Delete removes a file.
func (l *Local) Delete(_ context.Context, p string) error {
	full, err := l.path(p)
	if err != nil {
		return err
	}
	if err := os.Remove(full); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	return nil
}

// dataFileRE matches the data files of catalog tables.
var dataFileRE = regexp.MustCompile(`^[^/]+/data/.+\.parquet$`)

// MirrorDir is the directory under cache where the mirror of src lives:
// one a lake, named after it, for every command and stage that mirrors it.
func MirrorDir(cache string, src Storage) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, src.String())
	return filepath.Join(cache, "lake", name)
}

// LocalOf is store when it is on local disk, else its mirror under cache
// (MirrorDir), brought up to date: how DuckDB, which reads only local files
// here (nothing is downloaded at run time, so no httpfs), reads any lake.
func LocalOf(ctx context.Context, store Storage, cache string) (*Local, error) {
	if local, ok := store.(*Local); ok {
		return local, nil
	}
	return Mirror(ctx, store, MirrorDir(cache, store))
}

// Mirror copies a lake's data files (of its catalog tables and its export
// tables) into a local directory, fetching only files it does not have yet
// (a file's name fixes its content, since it names the offset range it
// holds) and removing files the lake no longer has. Readers that can only read local files, such as DuckDB without its
// httpfs extension, query the mirror.
func Mirror(ctx context.Context, src Storage, dir string) (*Local, error) {
	dst, err := NewLocal(dir)
	if err != nil {
		return nil, err
	}
	want, err := src.List(ctx, "")
	if err != nil {
		return nil, err
	}
	have, err := dst.List(ctx, "")
	if err != nil {
		return nil, err
	}
	size := make(map[string]int64, len(have))
	for _, o := range have {
		size[o.Path] = o.Size
	}
	keep := make(map[string]bool, len(want))
	for _, o := range want {
		if _, ok := ParseFile(o.Path); !ok && !dataFileRE.MatchString(o.Path) {
			continue
		}
		keep[o.Path] = true
		if s, ok := size[o.Path]; ok && s == o.Size {
			continue
		}
		b, err := src.ReadObject(ctx, o.Path)
		if err != nil {
			return nil, fmt.Errorf("mirror %s: %w", o.Path, err)
		}
		if err := PutBytes(ctx, dst, o.Path, b); err != nil {
			return nil, fmt.Errorf("mirror: %w", err)
		}
	}
	for _, o := range have {
		if !keep[o.Path] {
			if err := dst.Delete(ctx, o.Path); err != nil {
				return nil, err
			}
		}
	}
	return dst, nil
}
