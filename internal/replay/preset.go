package replay

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/internal/source"
)

// Preset sets up a replay of a known dataset.
type Preset struct {
	EventType string
	// Columns types the dataset's CSV columns; a file may lack some.
	Columns map[string]string
	// KeyField keys Kafka records when replaying to a topic.
	KeyField string
	// TimeField paces --time-warp.
	TimeField string
}

// Presets are the datasets the seeds replay.
var Presets = map[string]Preset{
	// NYC TLC yellow taxi trips: Parquet as published, or its CSV export.
	"tlc-yellow": {
		EventType: "yellow_taxi_trip",
		KeyField:  "VendorID",
		TimeField: "tpep_pickup_datetime",
		Columns: map[string]string{
			"VendorID": "int", "tpep_pickup_datetime": "timestamp", "tpep_dropoff_datetime": "timestamp",
			"passenger_count": "float", "trip_distance": "float", "RatecodeID": "float", "PULocationID": "int",
			"DOLocationID": "int", "payment_type": "int", "fare_amount": "float", "extra": "float", "mta_tax": "float",
			"tip_amount": "float", "tolls_amount": "float", "improvement_surcharge": "float", "total_amount": "float",
			"congestion_surcharge": "float", "Airport_fee": "float", "airport_fee": "float", "cbd_congestion_fee": "float",
		},
	},
	// MTA NYCT turnstile audits, classic weekly CSV layout.
	"mta-turnstile": {
		EventType: "mta_turnstile",
		KeyField:  "UNIT",
		Columns:   map[string]string{"ENTRIES": "int", "EXITS": "int"},
	},
}

// PresetNames lists the presets, sorted.
func PresetNames() string {
	var names []string
	for n := range Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// ParseSchema reads --schema: name:type pairs separated by commas.
func ParseSchema(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, typ, ok := strings.Cut(item, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("schema item %q: want name:type", item)
		}
		if err := source.ValidType(typ); err != nil {
			return nil, fmt.Errorf("schema item %q: %w", item, err)
		}
		out[name] = typ
	}
	return out, nil
}
