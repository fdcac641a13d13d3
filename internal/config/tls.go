package config

import (
	"crypto/x509"
	"fmt"
	"os"
)

// CAPool is the system's trusted certificates plus the PEM ones of file, a
// setting such as kafka.tls_ca_file: private CAs are trusted beside the
// public ones, not instead of them.
func CAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}
