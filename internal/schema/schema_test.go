package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/replay"
	"github.com/sluicehq/sluice/internal/row"
	"github.com/sluicehq/sluice/internal/sample"
	"github.com/sluicehq/sluice/internal/source"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func bundled(t testing.TB) *Registry {
	t.Helper()
	r, err := Load(sample.Schemas())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var (
	tlc  = Key{"yellow_taxi_trip", "1-0-0"}
	mta  = Key{"mta_turnstile", "1-0-0"}
	form = Key{"form_event", "1-0-0"}
)

const tlcRow = `{"VendorID":1,"tpep_pickup_datetime":"2025-01-01T00:18:38","tpep_dropoff_datetime":"2025-01-01T00:26:59","passenger_count":1.0,"trip_distance":1.6,"RatecodeID":1.0,"store_and_fwd_flag":"N","PULocationID":229,"DOLocationID":237,"payment_type":1,"fare_amount":10.0,"extra":3.5,"mta_tax":0.5,"tip_amount":3.0,"tolls_amount":0.0,"improvement_surcharge":1.0,"total_amount":18.0,"congestion_surcharge":2.5,"Airport_fee":0.0,"cbd_congestion_fee":0.0}`

// TestValidateGolden checks the violations reported for each kind of bad
// payload against testdata/validate.golden.json (go test -update rewrites it).
func TestValidateGolden(t *testing.T) {
	r := bundled(t)
	cases := []struct {
		name    string
		key     Key
		payload string
	}{
		{"tlc valid", tlc, tlcRow},
		{"tlc nulls where the data has them", tlc, `{"VendorID":2,"tpep_pickup_datetime":"2025-02-01 00:00:00","tpep_dropoff_datetime":"2025-02-01 00:10:00","passenger_count":null,"trip_distance":0,"RatecodeID":null,"store_and_fwd_flag":null,"PULocationID":1,"DOLocationID":265,"payment_type":0,"fare_amount":-5,"total_amount":-5,"congestion_surcharge":null,"Airport_fee":null}`},
		{"tlc wrong type", tlc, `{"VendorID":"1","tpep_pickup_datetime":"2025-01-01T00:18:38","tpep_dropoff_datetime":"2025-01-01T00:26:59","trip_distance":1.6,"PULocationID":229,"DOLocationID":237,"payment_type":1,"fare_amount":10,"total_amount":18}`},
		{"tlc missing required", tlc, `{"VendorID":1,"tpep_pickup_datetime":"2025-01-01T00:18:38","tpep_dropoff_datetime":"2025-01-01T00:26:59","trip_distance":1.6,"PULocationID":229,"DOLocationID":237,"payment_type":1}`},
		{"tlc out of range, enum, pattern and fraction", tlc, `{"VendorID":1,"tpep_pickup_datetime":"yesterday","tpep_dropoff_datetime":"2025-01-01T00:26:59","trip_distance":-1,"store_and_fwd_flag":"X","PULocationID":999,"DOLocationID":237.5,"payment_type":1,"fare_amount":10,"total_amount":18}`},
		{"tlc not an object", tlc, `[1,2]`},
		{"mta valid", mta, `{"C/A":"A002","UNIT":"R051","SCP":"02-00-00","STATION":"59 ST","LINENAME":"NQR456W","DIVISION":"BMT","DATE":"05/27/2023","TIME":"00:00:00","DESC":"REGULAR","ENTRIES":2040,"EXITS":985}`},
		{"mta negative counter and bad unit", mta, `{"C/A":"A002","UNIT":"51","SCP":"02-00-00","STATION":"59 ST","DATE":"2023-05-27","TIME":"00:00:00","DESC":"REGULAR","ENTRIES":-1,"EXITS":985}`},
		{"form valid", form, `{"form_id":"xU6Ctd4U","form_title":"Demo","event_happened_at":"2025-01-01T00:00:00Z","event_type":"form_updated"}`},
		{"form missing id", form, `{"event_happened_at":"2025-01-01T00:00:00Z","event_type":"form_updated"}`},
	}
	got := map[string]any{}
	for _, tc := range cases {
		errs, err := r.Validate(tc.key, []byte(tc.payload))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if errs == nil {
			got[tc.name] = "valid"
		} else {
			got[tc.name] = errs
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(got)
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	golden := filepath.Join("testdata", "validate.golden.json")
	if *update {
		os.WriteFile(golden, append(b, '\n'), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), string(b)+"\n"); diff != "" {
		t.Errorf("violations differ from %s (-want +got):\n%s", golden, diff)
	}
	if _, err := r.Validate(Key{"page_view", "1-0-0"}, []byte(`{}`)); !errors.Is(err, ErrNoSchema) {
		t.Errorf("unknown schema: %v, want ErrNoSchema", err)
	}
}

// TestFormatsAsserted: a value that breaks its declared format is a
// violation, so it never lands in (and retypes) its column; times without a
// zone, as replayed data has them, are date-times.
func TestFormatsAsserted(t *testing.T) {
	r, err := Load(fstest.MapFS{"checkout/1-0-0.json": {Data: []byte(`{"type":"object","properties":{
		"ts":{"type":"string","format":"date-time"},"day":{"type":"string","format":"date"},
		"email":{"type":"string","format":"email"},"order_id":{"type":"string","format":"uuid"},
		"page":{"type":"string","format":"uri"}}}`)}})
	if err != nil {
		t.Fatal(err)
	}
	key := Key{"checkout", "1-0-0"}
	for payload, bad := range map[string]string{
		`{"ts":"2025-01-01T00:18:38Z","day":"2025-01-01","email":"a@b.co","order_id":"0199c5a4-0c66-7a4e-8b1b-2f1e4c0ad2a1","page":"https://shop.example/cart"}`: "",
		`{"ts":"2025-01-01T00:18:38"}`: "",
		`{"ts":"2025-01-01 00:18:38"}`: "",
		`{"ts":"yesterday"}`:           "/payload/ts",
		`{"day":"01/2025"}`:            "/payload/day",
		`{"email":"nobody"}`:           "/payload/email",
		`{"order_id":"12"}`:            "/payload/order_id",
		`{"page":"not a uri at all"}`:  "/payload/page",
	} {
		errs, err := r.Validate(key, []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case bad == "" && errs != nil:
			t.Errorf("%s: %v, want valid", payload, errs)
		case bad != "" && (len(errs) != 1 || errs[0].Path != bad):
			t.Errorf("%s: %v, want one violation at %s", payload, errs, bad)
		}
	}
}

func TestInfos(t *testing.T) {
	r, err := Load(fstest.MapFS{
		"checkout/1-0-0.json": {Data: []byte(`{"type":"object","properties":{"order_id":{"type":"string"},"amount":{"type":"number"},"currency":{"enum":["EUR"]}}}`)},
		"checkout/1-1-0.json": {Data: []byte(`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"order_id":{"type":"string"}}}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Info{
		{Key: Key{"checkout", "1-0-0"}, Draft: "2020-12", File: "checkout/1-0-0.json", Properties: 3},
		{Key: Key{"checkout", "1-1-0"}, Draft: "7", File: "checkout/1-1-0.json", Properties: 1},
	}
	if diff := cmp.Diff(want, r.Infos()); diff != "" {
		t.Errorf("Infos (-want +got):\n%s", diff)
	}
}

// TestBundledDataIsValid replays every bundled row, as `sluice replay`
// makes them, through its schema: the real data must pass.
func TestBundledDataIsValid(t *testing.T) {
	r := bundled(t)
	dir, err := sample.WriteTo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, preset string
		key          Key
	}{
		{filepath.Join(dir, sample.TLCTrips), "tlc-yellow", tlc},
		{"../sample/data/yellow_tripdata_2025-02_sample5000.parquet", "tlc-yellow", tlc},
		{filepath.Join(dir, sample.Turnstiles), "mta-turnstile", mta},
	} {
		src, err := source.New(tc.file, "")
		if err != nil {
			t.Fatal(err)
		}
		src.Columns = replay.Presets[tc.preset].Columns
		rows := 0
		err = src.Rows(t.Context(), nil, func(n int64, row []byte) error {
			rows++
			errs, err := r.Validate(tc.key, row)
			if err != nil || errs != nil {
				t.Fatalf("%s row %d: %v %v\n%s", tc.file, n, err, errs, row)
			}
			return nil
		})
		if err != nil || rows == 0 {
			t.Fatalf("%s: %d rows, %v", tc.file, rows, err)
		}
	}
}

func TestColumns(t *testing.T) {
	r := bundled(t)
	got := r.Columns(tlc)
	want := map[string]row.Kind{
		"VendorID": row.KindInt, "tpep_pickup_datetime": row.KindTimestamp, "passenger_count": row.KindFloat,
		"store_and_fwd_flag": row.KindString, "PULocationID": row.KindInt, "total_amount": row.KindFloat,
	}
	for col, k := range want {
		if got[col] != k {
			t.Errorf("column %s: %v, want %v", col, got[col], k)
		}
	}
	if r.Columns(Key{"nope", "1"}) != nil {
		t.Error("columns for an unknown schema")
	}
}

func TestReloadKeepsOldOnError(t *testing.T) {
	fsys := fstest.MapFS{"ev/1-0-0.json": {Data: []byte(`{"type":"object","properties":{"n":{"type":"integer"}}}`)}}
	r, err := Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	fsys["ev/2-0-0.json"] = &fstest.MapFile{Data: []byte(`{"type": 7}`)}
	if err := r.Reload(); err == nil || !bytes.Contains([]byte(err.Error()), []byte("ev/2-0-0.json")) {
		t.Fatalf("reload of a bad schema: %v, want an error naming the file", err)
	}
	if diff := cmp.Diff([]Key{{"ev", "1-0-0"}}, r.Keys()); diff != "" {
		t.Errorf("after a failed reload (-want +got):\n%s", diff)
	}
	delete(fsys, "ev/2-0-0.json")
	fsys["ev/1-1-0.json"] = &fstest.MapFile{Data: []byte(`{"type":"object"}`)}
	if err := r.Reload(); err != nil || len(r.Keys()) != 2 {
		t.Errorf("reload: %v, keys %v", err, r.Keys())
	}
}

// TestRefsAcrossFiles: a schema may $ref another file of the registry,
// whatever the order they are read in, and a $ref to a file it does not
// have fails the load, naming both.
func TestRefsAcrossFiles(t *testing.T) {
	r, err := Load(fstest.MapFS{
		"a_checkout/1-0-0.json": {Data: []byte(`{"type":"object","properties":{"ship_to":{"$ref":"../z_address/1-0-0.json"},"amount":{"$ref":"#/$defs/money"}},"$defs":{"money":{"type":"number","minimum":0}}}`)},
		"z_address/1-0-0.json":  {Data: []byte(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, payload := range []string{`{"ship_to":{"city":"Lyon"},"amount":3}`, `{"ship_to":{},"amount":-1}`} {
		errs, err := r.Validate(Key{"a_checkout", "1-0-0"}, []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range errs {
			got = append(got, e.Path)
		}
	}
	if diff := cmp.Diff([]string{"/payload/amount", "/payload/ship_to"}, got); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	_, err = Load(fstest.MapFS{"a/1-0-0.json": {Data: []byte(`{"$ref":"../nope/1-0-0.json"}`)}})
	if err == nil || !strings.Contains(err.Error(), "a/1-0-0.json") || !strings.Contains(err.Error(), "nope/1-0-0.json is not in the schema directory") {
		t.Errorf("load with a dangling $ref: %v", err)
	}
}

// TestDocsSchemasCompile: every JSON Schema shown in docs/ compiles, and
// the example of docs/schemas.md is the tutorial's file it says it is.
func TestDocsSchemasCompile(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	fence := regexp.MustCompile("(?s)```json\n(.*?\n)```")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fence.FindAllStringSubmatch(string(b), -1) {
			if !strings.Contains(m[1], `"$schema"`) {
				continue
			}
			n++
			if _, err := Load(fstest.MapFS{"example/1-0-0.json": {Data: []byte(m[1])}}); err != nil {
				t.Errorf("%s: a schema does not compile: %v\n%s", f, err, m[1])
			}
			if filepath.Base(f) == "schemas.md" {
				want, err := os.ReadFile("../../docs/tutorial/schemas/checkout/1-0-0.json")
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(string(want), m[1]); diff != "" {
					t.Errorf("docs/schemas.md's example is not docs/tutorial/schemas/checkout/1-0-0.json (-file +doc):\n%s", diff)
				}
			}
		}
	}
	if n < 2 {
		t.Errorf("found %d schemas in docs/, want the tutorial's and schemas.md's", n)
	}
}
