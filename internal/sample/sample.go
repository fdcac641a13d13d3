// Package sample holds the real public data Sluice ships for its demo and
// tests, and the schemas of its events, embedded in the binary so that
// `sluice demo` needs nothing else.
// data/README.md says where each file comes from and under which licence.
package sample

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed data
var data embed.FS

//go:embed schemas
var schemas embed.FS

// Schemas are the JSON Schemas of the bundled datasets' events, laid out
// as <event_type>/<schema_version>.json.
func Schemas() fs.FS {
	sub, err := fs.Sub(schemas, "schemas")
	if err != nil {
		panic(err) // the embedded directory exists at build time
	}
	return sub
}

// Files are the bundled datasets, by path under data/.
const (
	TLCTrips    = "yellow_tripdata_2025-01_first10000.parquet" // NYC TLC yellow taxi trips, first 10,000 of January 2025
	TaxiZones   = "taxi_zone_lookup.csv"                       // the TLC zone lookup, 265 zones
	Turnstiles  = "turnstile_230603_classic_first5000.csv"     // MTA NYCT turnstile audits, week of 2023-06-03, 5,000 rows
	FormsFolder = "forms"                                      // Typeform form definitions
)

// FS is the bundled data.
func FS() fs.FS {
	sub, err := fs.Sub(data, "data")
	if err != nil {
		panic(err) // the embedded directory exists at build time
	}
	return sub
}

// WriteTo copies the bundled files into dir, for tools that read paths,
// and returns dir.
func WriteTo(dir string) (string, error) {
	err := fs.WalkDir(FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(FS(), p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		return "", fmt.Errorf("write sample data to %s: %w", dir, err)
	}
	return dir, nil
}
