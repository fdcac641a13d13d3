// Package s3test runs a real S3 server in the test process: versitygw with
// its posix backend on a temporary directory. Tests get a fresh bucket each
// and talk to it over HTTP on 127.0.0.1, as they would to S3 or MinIO.
//
// The posix backend changes the process's working directory to its root
// and relies on it, so tests that also use relative paths must resolve
// them first (in TestMain).
package s3test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/embedgw"
)

// Credentials of the test server's root user.
const (
	AccessKey = "sluice-test"
	SecretKey = "sluice-test-secret"
	Region    = "us-east-1"
)

var (
	once      sync.Once
	serverURL string
	startErr  error
)

// start runs the one gateway a process may have (embedgw keeps globals).
func start() (string, error) {
	dir, err := os.MkdirTemp("", "sluice-s3test")
	if err != nil {
		return "", err
	}
	// Metadata in side-car files, so the server works on file systems
	// without extended attributes (tmpfs on older kernels).
	side, err := os.MkdirTemp("", "sluice-s3test-meta")
	if err != nil {
		return "", err
	}
	sc, err := meta.NewSideCar(side)
	if err != nil {
		return "", fmt.Errorf("versitygw side-car metadata: %w", err)
	}
	be, err := posix.New(dir, sc, posix.PosixOpts{NewDirPerm: 0o755, SideCarDir: side})
	if err != nil {
		return "", fmt.Errorf("versitygw posix backend: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := &embedgw.Config{
		RootUserAccess:    AccessKey,
		RootUserSecret:    SecretKey,
		Region:            Region,
		Ports:             []string{addr},
		MaxConnections:    250,
		MaxRequests:       250,
		MultipartMaxParts: 10000,
		Quiet:             true,
	}
	errc := make(chan error, 1)
	go func() { errc <- embedgw.RunVersityGW(context.Background(), be, cfg) }()
	// Ready when it answers.
	cl, _ := client("http://" + addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-errc:
			return "", fmt.Errorf("versitygw stopped: %w", err)
		default:
		}
		if _, err := cl.ListBuckets(context.Background()); err == nil {
			return "http://" + addr, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("versitygw did not answer on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func client(endpoint string) (*minio.Client, error) {
	return minio.New(strings.TrimPrefix(endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), Region: Region, BucketLookup: minio.BucketLookupPath,
	})
}

// Bucket starts the server if it is not running, makes a new bucket for
// the test and returns the endpoint (http://127.0.0.1:port) and bucket.
func Bucket(t testing.TB) (endpoint, bucket string) {
	t.Helper()
	once.Do(func() { serverURL, startErr = start() })
	if startErr != nil {
		t.Fatalf("in-process S3 server: %v", startErr)
	}
	endpoint = serverURL
	cl, err := client(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	bucket = strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(bucket) > 40 {
		bucket = bucket[:40]
	}
	bucket = fmt.Sprintf("%s-%d", strings.Trim(bucket, "-"), time.Now().UnixNano()%1e9)
	if err := cl.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{Region: Region}); err != nil {
		t.Fatalf("make bucket %s: %v", bucket, err)
	}
	return endpoint, bucket
}
