package lake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config says how to reach an S3-compatible store (AWS S3, MinIO, GCS's
// S3 API). Empty fields fall back to the standard AWS_* environment
// variables.
type S3Config struct {
	// Endpoint is host:port or a URL; http:// turns TLS off. Empty means
	// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then s3.amazonaws.com.
	Endpoint string `yaml:"s3_endpoint" flag:"s3-endpoint" doc:"S3 endpoint, host:port or a URL (http:// for no TLS). Default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then AWS S3."`
	Region   string `yaml:"s3_region" flag:"s3-region" doc:"S3 region. Default: AWS_REGION."`
	// PathStyle addresses buckets as endpoint/bucket rather than
	// bucket.endpoint, as MinIO and most self-hosted stores want.
	PathStyle bool `yaml:"s3_path_style" flag:"s3-path-style" doc:"Address buckets by path (endpoint/bucket), as MinIO and most self-hosted stores want."`
	// Credentials come from the standard AWS_* variables, the shared
	// credentials file or the instance role, never from the config file.
	AccessKey    string `yaml:"-"`
	SecretKey    string `yaml:"-"`
	SessionToken string `yaml:"-"`
}

// fromEnv fills empty fields from the AWS_* variables.
func (c S3Config) fromEnv() S3Config {
	env := func(v *string, names ...string) {
		for _, n := range names {
			if *v == "" {
				*v = os.Getenv(n)
			}
		}
	}
	env(&c.Endpoint, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	env(&c.Region, "AWS_REGION", "AWS_DEFAULT_REGION")
	env(&c.AccessKey, "AWS_ACCESS_KEY_ID")
	env(&c.SecretKey, "AWS_SECRET_ACCESS_KEY")
	env(&c.SessionToken, "AWS_SESSION_TOKEN")
	if c.Endpoint == "" {
		c.Endpoint = "s3.amazonaws.com"
	}
	return c
}

// S3 is a lake in an S3 bucket, under a prefix.
type S3 struct {
	cl     *minio.Client
	bucket string
	prefix string // "" or ending in "/"
	url    string
}

var _ Storage = (*S3)(nil)

// NewS3 opens the lake at s3://bucket/prefix.
func NewS3(lakeURL string, cfg S3Config) (*S3, error) {
	u, err := url.Parse(lakeURL)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("lake %q: want s3://bucket/prefix", lakeURL)
	}
	cfg = cfg.fromEnv()
	endpoint, secure := cfg.Endpoint, true
	if e, err := url.Parse(cfg.Endpoint); err == nil && e.Host != "" {
		endpoint, secure = e.Host, e.Scheme != "http"
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	creds := credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	if cfg.AccessKey == "" {
		// Instance roles, web identity and the shared credentials file.
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}, &credentials.IAM{},
		})
	}
	cl, err := minio.New(endpoint, &minio.Options{Creds: creds, Secure: secure, Region: cfg.Region, BucketLookup: lookup})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", cfg.Endpoint, err)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &S3{cl: cl, bucket: u.Host, prefix: prefix, url: lakeURL}, nil
}

func (s *S3) String() string { return s.url }

// Check verifies that the bucket exists and the credentials work, so that
// a wrong setting is reported at start rather than at the first flush.
func (s *S3) Check(ctx context.Context) error {
	ok, err := s.cl.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("lake %s: %w (check the endpoint, region and AWS_* credentials)", s.url, err)
	}
	if !ok {
		return fmt.Errorf("lake %s: bucket %s does not exist", s.url, s.bucket)
	}
	return nil
}

func (s *S3) key(p string) (string, error) {
	clean := path.Clean(p)
	if clean == "." || strings.HasPrefix(clean, "..") || strings.HasPrefix(clean, "/") {
		return "", fmt.Errorf("lake path %q escapes the lake", p)
	}
	return s.prefix + clean, nil
}

// Create buffers the object and uploads it on Commit with one PUT, or a
// multipart upload that is completed only at the end: either way S3 shows
// the object only once it is whole.
func (s *S3) Create(ctx context.Context, p string) (Writer, error) {
	key, err := s.key(p)
	if err != nil {
		return nil, err
	}
	return &s3Writer{ctx: ctx, s: s, key: key}, nil
}

type s3Writer struct {
	ctx context.Context
	s   *S3
	key string
	buf bytes.Buffer
}

func (w *s3Writer) Write(b []byte) (int, error) { return w.buf.Write(b) }

func (w *s3Writer) Commit() error {
	_, err := w.s.cl.PutObject(w.ctx, w.s.bucket, w.key, bytes.NewReader(w.buf.Bytes()), int64(w.buf.Len()),
		minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: 16 << 20})
	if err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", w.s.bucket, w.key, err)
	}
	return nil
}

func (w *s3Writer) Abort() { w.buf = bytes.Buffer{} }

// ReadObject downloads a whole object.
func (s *S3) ReadObject(ctx context.Context, p string) ([]byte, error) {
	key, err := s.key(p)
	if err != nil {
		return nil, err
	}
	obj, err := s.cl.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", p, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && resp.Code == "NoSuchKey" {
			return nil, fmt.Errorf("%s: %w", p, ErrNotExist)
		}
		return nil, fmt.Errorf("get %s: %w", p, err)
	}
	return b, nil
}

// List lists the objects under prefix.
func (s *S3) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	for o := range s.cl.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %s%s: %w", s.url, prefix, o.Err)
		}
		out = append(out, Object{Path: strings.TrimPrefix(o.Key, s.prefix), Size: o.Size, Modified: o.LastModified})
	}
	return out, nil
}

// Delete removes an object.
func (s *S3) Delete(ctx context.Context, p string) error {
	key, err := s.key(p)
	if err != nil {
		return err
	}
	if err := s.cl.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	return nil
}
