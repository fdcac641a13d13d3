package lake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"net/url"
	"path"
	"strings"
	"time"

	icebergio "github.com/apache/iceberg-go/io"
)

// Iceberg reads and writes a lake on S3 (its metadata, manifests and, for
// compaction, data files) through the lake's own S3 client, so that a
// lake needs one set of S3 settings and credentials, and Iceberg's
// metadata is written the way the lake's data files are: whole objects,
// one PUT each. The catalog passes the settings as the standard Iceberg
// properties (s3.endpoint, s3.region, s3.path-style-access and the keys),
// which PyIceberg, Spark and Trino read too.
func init() {
	icebergio.Register("s3", func(_ context.Context, u *url.URL, props map[string]string) (icebergio.IO, error) {
		s, err := NewS3("s3://"+u.Host, S3Config{
			Endpoint:     props["s3.endpoint"],
			Region:       props["s3.region"],
			PathStyle:    props["s3.path-style-access"] == "true",
			AccessKey:    props["s3.access-key-id"],
			SecretKey:    props["s3.secret-access-key"],
			SessionToken: props["s3.session-token"],
		})
		if err != nil {
			return nil, err
		}
		return storageIO{store: s, root: "s3://" + u.Host + "/"}, nil
	})
}

// s3Props are the Iceberg properties that reach the lake's bucket.
func s3Props(c S3Config) map[string]string {
	c = c.fromEnv()
	props := map[string]string{"s3.endpoint": c.Endpoint, "s3.region": c.Region,
		"s3.path-style-access": fmt.Sprint(c.PathStyle)}
	for k, v := range map[string]string{"s3.access-key-id": c.AccessKey, "s3.secret-access-key": c.SecretKey, "s3.session-token": c.SessionToken} {
		if v != "" {
			props[k] = v
		}
	}
	return props
}

// storageIO is Iceberg's file IO over a Storage whose root is root.
type storageIO struct {
	store Storage
	root  string
}

var (
	_ icebergio.WriteFileIO = storageIO{}
	_ icebergio.ListableIO  = storageIO{}
)

func (s storageIO) path(name string) string { return strings.TrimPrefix(name, s.root) }

// Open reads the whole object: Iceberg opens metadata and manifests,
// which are small.
func (s storageIO) Open(name string) (icebergio.File, error) {
	b, err := s.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return &memFile{Reader: bytes.NewReader(b), name: name, size: int64(len(b))}, nil
}

func (s storageIO) ReadFile(name string) ([]byte, error) {
	b, err := s.store.ReadObject(context.Background(), s.path(name))
	if errors.Is(err, ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, iofs.ErrNotExist)
	}
	return b, err
}

func (s storageIO) Remove(name string) error {
	return s.store.Delete(context.Background(), s.path(name))
}

func (s storageIO) WriteFile(name string, p []byte) error {
	return PutBytes(context.Background(), s.store, s.path(name), p)
}

// WalkDir lists the objects under root, each with its size and time, as
// orphan removal wants them; it reports files only, as S3 has no
// directories.
func (s storageIO) WalkDir(root string, fn iofs.WalkDirFunc) error {
	prefix := strings.TrimSuffix(s.path(root), "/")
	if prefix != "" {
		prefix += "/"
	}
	objs, err := s.store.List(context.Background(), prefix)
	if err != nil {
		return fn(root, nil, err)
	}
	for _, o := range objs {
		name := s.root + o.Path
		if err := fn(name, objectEntry{o}, nil); err != nil {
			if errors.Is(err, iofs.SkipDir) || errors.Is(err, iofs.SkipAll) {
				return nil
			}
			return err
		}
	}
	return nil
}

type objectEntry struct{ o Object }

func (e objectEntry) Name() string                 { return path.Base(e.o.Path) }
func (e objectEntry) IsDir() bool                  { return false }
func (e objectEntry) Type() iofs.FileMode          { return 0 }
func (e objectEntry) Info() (iofs.FileInfo, error) { return objectInfo(e), nil }

type objectInfo struct{ o Object }

func (i objectInfo) Name() string        { return path.Base(i.o.Path) }
func (i objectInfo) Size() int64         { return i.o.Size }
func (i objectInfo) Mode() iofs.FileMode { return 0o444 }
func (i objectInfo) ModTime() time.Time  { return i.o.Modified }
func (i objectInfo) IsDir() bool         { return false }
func (i objectInfo) Sys() any            { return nil }

// Create buffers the object and writes it whole on Close.
func (s storageIO) Create(name string) (icebergio.FileWriter, error) {
	return &memWriter{io: s, name: name}, nil
}

type memWriter struct {
	bytes.Buffer
	io   storageIO
	name string
}

func (w *memWriter) Close() error { return w.io.WriteFile(w.name, w.Bytes()) }

type memFile struct {
	*bytes.Reader
	name string
	size int64
}

func (f *memFile) Close() error                 { return nil }
func (f *memFile) Stat() (iofs.FileInfo, error) { return memInfo{f}, nil }

type memInfo struct{ f *memFile }

func (i memInfo) Name() string        { return i.f.name }
func (i memInfo) Size() int64         { return i.f.size }
func (i memInfo) Mode() iofs.FileMode { return 0o444 }
func (i memInfo) ModTime() time.Time  { return time.Time{} }
func (i memInfo) IsDir() bool         { return false }
func (i memInfo) Sys() any            { return nil }
