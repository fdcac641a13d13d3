package event

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	good := []string{
		`0`, `-0`, `1.5e10`, `-1E-2`, `1e+3`, `"a"`, `"\u00e9\n\"\\\/"`, `true`, `false`, `null`,
		`{}`, `[]`, ` { "a" : [ 1 , { "b" : null } ] } `, `[[[]]]`, `{"":""}`, "\t[1,\r\n2]\n",
	}
	bad := []string{
		``, ` `, `01`, `1.`, `.5`, `1e`, `-`, `+1`, `"a`, `"\x"`, `"\u12"`, "\"a\x01\"", `tru`, `nul`,
		`{`, `}`, `[`, `[1,]`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{1:2}`, `[1 2]`, `{} {}`, `[}`, `{]`, `"a" x`,
	}
	for _, s := range good {
		if !valid([]byte(s)) {
			t.Errorf("valid(%q) = false, want true", s)
		}
	}
	for _, s := range bad {
		if valid([]byte(s)) {
			t.Errorf("valid(%q) = true, want false", s)
		}
	}
	deep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	if valid([]byte(deep)) {
		t.Error("valid accepted nesting deeper than encoding/json allows")
	}
	if !valid([]byte(strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth))) {
		t.Error("valid refused nesting encoding/json allows")
	}
}

// tripEvent is a real TLC trip as an envelope, of the size the collector
// sees most.
const tripEvent = `{"event_type":"yellow_taxi_trip","schema_version":"1-0-0","event_id":"yellow_tripdata_2025-01.parquet:1","payload":{"VendorID":1,"tpep_pickup_datetime":"2025-01-01T00:18:38","tpep_dropoff_datetime":"2025-01-01T00:26:59","passenger_count":1.0,"trip_distance":1.6,"RatecodeID":1.0,"store_and_fwd_flag":"N","PULocationID":229,"DOLocationID":237,"payment_type":1,"fare_amount":10.0,"extra":3.5,"mta_tax":0.5,"tip_amount":3.0,"tolls_amount":0.0,"improvement_surcharge":1.0,"total_amount":18.0,"congestion_surcharge":2.5,"Airport_fee":0.0,"cbd_congestion_fee":0.0}}`

// FuzzValid holds valid equal to encoding/json.Valid.
func FuzzValid(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,"x\u0041"],"b":{"c":null}}`, `[true,false]`, `-0.0E+1`, `"\\"`, `{"a" :1 }`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := valid(b), json.Valid(b); got != want {
			t.Fatalf("valid(%q) = %v, encoding/json.Valid = %v", b, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	body := []byte(tripEvent)
	b.Run("sluice", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			valid(body)
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			json.Valid(body)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	body := []byte(tripEvent)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var dst []byte
	for b.Loop() {
		env, inv := Parse(body)
		if inv != nil {
			b.Fatal(inv)
		}
		dst = env.AppendStamped(dst[:0], Stamp{CollectorTstamp: "2025-01-01T00:00:00.000000Z", RootID: "01a20cbb-c728-773d-bbca-2936e168ec47", CollectorID: "c"})
	}
}

func BenchmarkSplitArray(b *testing.B) {
	body := []byte("[" + strings.TrimSuffix(strings.Repeat(tripEvent+",", 500), ",") + "]")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		elems, inv := SplitArray(body)
		if inv != nil {
			b.Fatal(inv)
		}
		for _, e := range elems {
			if _, inv := e.Parse(); inv != nil {
				b.Fatal(inv)
			}
		}
	}
}

// TestStringSpecialAtEveryPosition puts each byte a string scan must stop
// at in every position of a long string, on both sides of the eight-byte
// words the scan reads, with plain and multibyte neighbours: the word
// test must never step over one.
func TestStringSpecialAtEveryPosition(t *testing.T) {
	specials := []byte{'"', '\\'}
	for c := byte(0); c < 0x20; c++ {
		specials = append(specials, c)
	}
	for _, fill := range []string{"abcdefghijklmnopqrstuvwxyz012345", "ééééééééééééééééé\u00ff~~~~~~~~~~~"} {
		for pos := range 24 {
			for _, c := range specials {
				body := []byte(`"` + fill[:pos] + string(c) + fill[pos:] + `"`)
				if got, want := valid(body), json.Valid(body); got != want {
					t.Errorf("valid(%q) = %v, encoding/json.Valid = %v", body, got, want)
				}
			}
		}
	}
}
