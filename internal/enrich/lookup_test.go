package enrich

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/source"
)

// TestZoneJoinOnTLC joins the real TLC sample with the taxi zone lookup,
// pickup and dropoff, and checks the result against counts computed
// straight from the two files.
func TestZoneJoinOnTLC(t *testing.T) {
	dir, err := sample.WriteTo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	zones, err := LoadLookup(t.Context(), filepath.Join(dir, sample.TaxiZones), "LocationID")
	if err != nil {
		t.Fatal(err)
	}
	if zones.Len() != 265 {
		t.Fatalf("zones: %d, want 265", zones.Len())
	}
	pickup := Join{Lookup: zones, Field: "PULocationID", Columns: []Rename{{"Borough", "pickup_borough"}, {"Zone", "pickup_zone"}}}
	dropoff := Join{Lookup: zones, Field: "DOLocationID", Columns: []Rename{{"Borough", "dropoff_borough"}, {"Zone", "dropoff_zone"}}}

	src, err := source.New(filepath.Join(dir, sample.TLCTrips), "")
	if err != nil {
		t.Fatal(err)
	}
	boroughs := map[string]int{}
	trips, misses := 0, 0
	err = src.Rows(t.Context(), nil, func(_ int64, row []byte) error {
		out, ok1, err := pickup.Apply(row)
		if err != nil {
			return err
		}
		out, ok2, err := dropoff.Apply(out)
		if err != nil {
			return err
		}
		if !ok1 || !ok2 {
			misses++
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("joined row is not JSON: %v\n%s", err, out)
		}
		if m["PULocationID"] == 132.0 && m["pickup_zone"] != "JFK Airport" {
			t.Fatalf("zone 132 is %v, want JFK Airport", m["pickup_zone"])
		}
		b, _ := m["pickup_borough"].(string)
		boroughs[b]++
		trips++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if trips != 10000 || misses != 0 {
		t.Errorf("trips %d, misses %d; every TLC location is in the lookup", trips, misses)
	}
	if boroughs["Manhattan"] < 8000 || boroughs["Queens"] == 0 || boroughs[""] != 0 {
		t.Errorf("pickups by borough %v", boroughs)
	}
}

func TestJoinMissAndEdges(t *testing.T) {
	l := &Lookup{rows: map[string][]Field{"7": {{"LocationID", []byte("7")}, {"Zone", []byte(`"Astoria"`)}}}}
	j := Join{Lookup: l, Field: "id", Columns: []Rename{{"Zone", "zone"}}}
	for _, tc := range []struct {
		in, out string
		ok      bool
	}{
		{`{"id":7}`, `{"id":7,"zone":"Astoria"}`, true},
		{`{"id":7.0} `, `{"id":7.0,"zone":"Astoria"}`, true},
		{`{"id":"7"}`, `{"id":"7","zone":"Astoria"}`, true},
		{`{"id":8}`, `{"id":8,"zone":null}`, false},
		{`{"id":null}`, `{"id":null,"zone":null}`, false},
		{`{ }`, `{"zone":null}`, false},
	} {
		out, ok, err := j.Apply([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.out, string(out)); diff != "" || ok != tc.ok {
			t.Errorf("%s: matched %v; (-want +got):\n%s", tc.in, ok, diff)
		}
	}
}
