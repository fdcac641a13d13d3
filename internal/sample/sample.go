// Package sample holds the real public data Sluice ships for its demo and
// tests, and the schemas of its events, embedded in the binary so that
// `sluice demo` needs nothing else.
// data/README.md says where each file comes from and under which licence.
package sample

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
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
	TLCTrips = "yellow_tripdata_2025-01_first10000.parquet" // NYC TLC yellow taxi trips, first 10,000 of January 2025
	// TLCTripsSample has the problems of real data: nulls, refunds.
	TLCTripsSample = "yellow_tripdata_2025-02_sample5000.parquet" // NYC TLC yellow taxi trips, a random 5,000 of February 2025
	TaxiZones      = "taxi_zone_lookup.csv"                       // the TLC zone lookup, 265 zones
	Turnstiles     = "turnstile_230603_classic_first5000.csv"     // MTA NYCT turnstile audits, week of 2023-06-03, 5,000 rows
	FormsFolder    = "forms"                                      // Typeform form definitions

	// TurnstilesByTime is Turnstiles in event-time order, as WriteTo
	// writes it beside the others.
	TurnstilesByTime = "turnstile_230603_classic_first5000_by_time.csv"
)

// TurnstilesInTimeOrder is the MTA sample as a live feed would send it:
// the header, then the rows by DATE and TIME, in file order within one
// time. The weekly files are sorted by turnstile, so that replayed as they
// are, nearly every reading is late to an event-time window.
func TurnstilesInTimeOrder() ([]byte, error) {
	b, err := fs.ReadFile(FS(), Turnstiles)
	if err != nil {
		return nil, err
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	type row struct {
		at   time.Time
		line []byte
	}
	rows := make([]row, 0, len(lines)-1)
	for i, l := range lines[1:] {
		f := bytes.Split(bytes.TrimRight(l, "\r\n"), []byte(","))
		if len(f) < 8 {
			return nil, fmt.Errorf("%s line %d: %d fields, want 11", Turnstiles, i+2, len(f))
		}
		at, err := time.Parse("01/02/2006 15:04:05", string(f[6])+" "+string(f[7]))
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", Turnstiles, i+2, err)
		}
		rows = append(rows, row{at, l})
	}
	slices.SortStableFunc(rows, func(a, b row) int { return a.at.Compare(b.at) })
	out := append([]byte(nil), lines[0]...)
	for _, r := range rows {
		out = append(out, r.line...)
	}
	return out, nil
}

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
	byTime, err := TurnstilesInTimeOrder()
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, TurnstilesByTime), byTime, 0o644)
	}
	if err != nil {
		return "", fmt.Errorf("write sample data to %s: %w", dir, err)
	}
	return dir, nil
}
