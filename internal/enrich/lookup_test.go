package enrich

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/event"
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
		members, _, err := event.ObjectMembers(row, "", nil, nil)
		if err != nil {
			return err
		}
		out, members, ok1, err := pickup.Apply(row, members)
		if err != nil {
			return err
		}
		out, _, ok2, err := dropoff.Apply(out, members)
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
		{`{"id":7,"id":null}`, `{"id":7,"id":null,"zone":"Astoria"}`, true},
		{`{"id":"x","id":7e0}`, `{"id":"x","id":7e0,"zone":"Astoria"}`, true},
	} {
		members, _, err := event.ObjectMembers([]byte(tc.in), "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, joined, ok, err := j.Apply([]byte(tc.in), members)
		if err != nil {
			t.Fatal(err)
		}
		// The members returned are those of the output, as a new pass finds them.
		again, _, err := event.ObjectMembers(out, "", nil, nil)
		if err != nil {
			t.Fatalf("%s: joined %s is no object: %v", tc.in, out, err)
		}
		if diff := cmp.Diff(again, joined); diff != "" {
			t.Errorf("%s: members (-reparsed +returned):\n%s", tc.in, diff)
		}
		if diff := cmp.Diff(tc.out, string(out)); diff != "" || ok != tc.ok {
			t.Errorf("%s: matched %v; (-want +got):\n%s", tc.in, ok, diff)
		}
	}
}

// TestJoinOnJoined joins on a column an earlier join added, and refuses a
// payload that is no object.
func TestJoinOnJoined(t *testing.T) {
	zones := &Lookup{rows: map[string][]Field{"7": {{"Zone", []byte(`"Astoria"`)}}}}
	boroughs := &Lookup{rows: map[string][]Field{"Astoria": {{"Borough", []byte(`"Queens"`)}}}}
	first := Join{Lookup: zones, Field: "id", Columns: []Rename{{"Zone", "zone"}}}
	second := Join{Lookup: boroughs, Field: "zone", Columns: []Rename{{"Borough", "borough"}}}
	in := []byte(`{"id":7}`)
	members, _, err := event.ObjectMembers(in, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, members, _, err := first.Apply(in, members)
	if err != nil {
		t.Fatal(err)
	}
	out, _, ok, err := second.Apply(out, members)
	if err != nil || !ok {
		t.Fatalf("matched %v, error %v", ok, err)
	}
	if diff := cmp.Diff(`{"id":7,"zone":"Astoria","borough":"Queens"}`, string(out)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, in := range []string{`[7]`, `"x"`, `7`, ``} {
		if _, _, _, err := first.Apply([]byte(in), nil); !errors.Is(err, event.ErrNotObject) {
			t.Errorf("%q: error %v, want %v", in, err, event.ErrNotObject)
		}
	}
}
