package schema

import (
	"bytes"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// otherSchema uses every keyword the fast check knows that the bundled
// schemas do not.
const otherSchema = `{"type":"object","additionalProperties":{"type":"integer","exclusiveMaximum":10},
	"properties":{"s":{"type":"string","minLength":1,"maxLength":5,"pattern":"^h"},"n":{"type":["integer","null"],"exclusiveMinimum":2.5},
	"a":{"type":"array","items":{"type":"number","maximum":1.5},"minItems":1,"maxItems":3}},"required":["s"]}`

// FuzzFastAgrees: whatever payload the fast check passes, jsonschema
// finds valid too, for each bundled schema and a few of other keywords.
func FuzzFastAgrees(f *testing.F) {
	for _, s := range []string{
		tlcRow,
		`{"VendorID":2,"tpep_pickup_datetime":"2025-02-01 00:00:00","tpep_dropoff_datetime":"2025-02-01 00:10:00","passenger_count":null,"trip_distance":0,"RatecodeID":null,"store_and_fwd_flag":null,"PULocationID":1,"DOLocationID":265,"payment_type":0,"fare_amount":-5,"total_amount":-5}`,
		`{"VendorID":1.0,"tpep_pickup_datetime":"2025-01-01T00:18:38","tpep_dropoff_datetime":"2025-01-01T00:26:59","trip_distance":-0.0,"PULocationID":265.0000000000000001,"DOLocationID":1e0,"payment_type":6,"fare_amount":1e400,"total_amount":18}`,
		`{"VendorID":0.99999999999999999999,"tpep_pickup_datetime":"2025-13-01T00:18:38","trip_distance":-1e-400,"store_and_fwd_flag":"Y","PULocationID":266}`,
		`{"C/A":"A002","UNIT":"R051","SCP":"02-00-00","STATION":"59 ST","LINENAME":"NQR456W","DIVISION":"BMT","DATE":"05/27/2023","TIME":"00:00:00","DESC":"REGULAR","ENTRIES":2040,"EXITS":985}`,
		`{"form_id":"xU6Ctd4U","form_title":"Demo","event_happened_at":"2025-01-01T00:00:00Z","event_type":"form_updated"}`,
		`{"s":"héllo","n":3,"a":[1,2],"x":1}`, `{"s":"x"}`, `{"n":3}`, `{"s":"h","x":10}`, `{"s":"h","a":[1.6]}`, `{"s":"","n":2.5,"a":[1,2,3,4]}`, `true`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	// The valid trip with one thing wrong each.
	for _, change := range [][2]string{
		{`"trip_distance":1.6`, `"trip_distance":-0.0000001`}, {`"PULocationID":229`, `"PULocationID":266`},
		{`"PULocationID":229`, `"PULocationID":265.00000000000001`}, {`"store_and_fwd_flag":"N"`, `"store_and_fwd_flag":"n"`},
		{`"VendorID":1`, `"VendorID":"1"`}, {`"VendorID":1`, `"VendorID":1.5`}, {`"tpep_pickup_datetime":"2025-01-01T00:18:38"`, `"tpep_pickup_datetime":"2025-01-01X00:18:38"`},
		{`"tpep_pickup_datetime":"2025-01-01T00:18:38"`, `"tpep_pickup_datetime":"2025-01-01T25:18:38"`}, {`"VendorID":1,`, ``},
		{`"fare_amount":10.0`, `"fare_amount":null`}, {`"payment_type":1`, `"payment_type":6.000000000000001`},
	} {
		f.Add([]byte(strings.Replace(tlcRow, change[0], change[1], 1)))
	}
	r := bundled(f)
	extra, err := Load(fstest.MapFS{"other/1-0-0.json": {Data: []byte(otherSchema)}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, reg := range []*Registry{r, extra} {
			for _, k := range reg.Keys() {
				e := reg.get(k)
				if e.fast == nil || !e.fast.valid(b) {
					continue
				}
				doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
				if err != nil {
					t.Fatalf("%s: %s passes the fast check, but is no JSON: %v", k, b, err)
				}
				if err := e.schema.Validate(doc); err != nil {
					t.Errorf("%s: %s passes the fast check, but jsonschema says %v", k, b, err)
				}
			}
		}
	})
}

// TestFastCoverage: the bundled schemas are checked fast, and their valid
// payloads pass it; schemas with other keywords are not, so jsonschema
// alone judges them.
func TestFastCoverage(t *testing.T) {
	r := bundled(t)
	for _, k := range r.Keys() {
		if r.get(k).fast == nil {
			t.Errorf("%s: no fast check", k)
		}
	}
	for k, payload := range map[Key]string{
		tlc:  tlcRow,
		mta:  `{"C/A":"A002","UNIT":"R051","SCP":"02-00-00","STATION":"59 ST","LINENAME":"NQR456W","DIVISION":"BMT","DATE":"05/27/2023","TIME":"00:00:00","DESC":"REGULAR","ENTRIES":2040,"EXITS":985}`,
		form: `{"form_id":"xU6Ctd4U","form_title":"Demo","event_happened_at":"2025-01-01T00:00:00Z","event_type":"form_updated"}`,
	} {
		if !r.get(k).fast.valid([]byte(payload)) {
			t.Errorf("%s: a valid payload does not pass the fast check", k)
		}
	}
	for _, s := range []string{
		`{"type":"number","multipleOf":0.5}`,
		`{"allOf":[{"type":"string"}]}`,
		`{"properties":{"a":{"$ref":"#/$defs/x"}},"$defs":{"x":{"type":"string"}}}`,
		`{"enum":[1,2]}`,
		`{"const":"x"}`,
		`{"patternProperties":{"^a":{"type":"string"}}}`,
		`{"properties":{"a":{"not":{"type":"string"}}}}`,
		`false`,
	} {
		reg, err := Load(fstest.MapFS{"x/1-0-0.json": {Data: []byte(s)}})
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if reg.get(Key{"x", "1-0-0"}).fast != nil {
			t.Errorf("%s: checked fast; want jsonschema alone", s)
		}
	}
}

// TestFastScan: the one pass over the bytes decides as jsonschema would
// on these, except a repeated name, which it checks every time.
func TestFastScan(t *testing.T) {
	reg, err := Load(fstest.MapFS{"other/1-0-0.json": {Data: []byte(otherSchema)}})
	if err != nil {
		t.Fatal(err)
	}
	f := reg.get(Key{"other", "1-0-0"}).fast
	for in, want := range map[string]bool{
		`{"s":"hi"}`:                   true,
		` {"s":"hi"} `:                 true,
		`{"\u0073":"hi"}`:              true,
		`{"s":"h\u00e9"}`:              true,
		`{"s":"hi","n":null,"z":9}`:    true,
		`{"s":"hi","a":[1,1.5]}`:       true,
		`{"s":"hi","n":3}`:             true,
		`{"s":"hi","n":2}`:             false,
		`{"s":"hi","s":"x"}`:           false,
		`{"s":"x","s":"hi"}`:           false, // jsonschema: valid; decided there
		`{"n":3}`:                      false,
		`{}`:                           false,
		`{"s":"hi","a":[]}`:            false,
		`{"s":"hi","a":[1,2]}`:         false,
		`{"s":"hi","a":[1,1,1,1]}`:     false,
		`{"s":"hi","z":10}`:            false,
		`{"s":"hi","z":1.0}`:           false, // an integer to JSON Schema; decided there
		`{"s":"hi"} x`:                 false,
		`{"s":"hi",}`:                  false,
		`{"s":"hi","a":[1,]}`:          false,
		`{"s":"hello!"}`:               false,
		`{"s":"hi","z":01}`:            false,
		`{"s":"hi","z":{"deep":true}}`: false,
		`["s"]`:                        false,
		``:                             false,
	} {
		if got := f.valid([]byte(in)); got != want {
			t.Errorf("%s: valid %v, want %v", in, got, want)
		}
	}
}
