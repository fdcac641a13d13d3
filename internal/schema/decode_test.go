package schema

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sluicehq/sluice/internal/sample"
)

// FuzzDecode: what decode reads, jsonschema.UnmarshalJSON reads the same;
// what it refuses is left to that (so a refusal costs time, never a
// different answer).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		tlcRow, `{}`, `[]`, `[1,-0.5e+10,"a\"b\u00e9\ud83d\ude00",true,false,null,{"x":[{}]}]`,
		`{"a":1,"a":2}`, "\"bad \xff utf8\"", `01`, `1.`, `-`, `"\x"`, `{"a" 1}`, `[1,]`, ` 7 `, `"tab	in"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decode(b)
		if !ok {
			return
		}
		want, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%q: decoded %v, but UnmarshalJSON says %v", b, got, err)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("%q (-decode +UnmarshalJSON):\n%s", b, diff)
		}
	})
}

// TestDecodeTakesProducersJSON: the documents producers send take the fast
// way, not the fallback.
func TestDecodeTakesProducersJSON(t *testing.T) {
	for _, s := range []string{tlcRow, `{"name":"Zoë","tags":["a\nb"],"n":-1.5E3,"o":{"x":null}}`} {
		if _, ok := decode([]byte(s)); !ok {
			t.Errorf("%s: refused", s)
		}
	}
}

// BenchmarkValidate is a TLC trip validated against its schema, as the
// enricher does for every event; BenchmarkUnmarshalJSON the decoding it
// replaced, alone.
func BenchmarkValidate(b *testing.B) {
	r, err := Load(sample.Schemas())
	if err != nil {
		b.Fatal(err)
	}
	row := []byte(tlcRow)
	b.ReportAllocs()
	for b.Loop() {
		if errs, err := r.Validate(tlc, row); err != nil || errs != nil {
			b.Fatal(err, errs)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	row := []byte(tlcRow)
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			decode(row)
		}
	})
	b.Run("UnmarshalJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			jsonschema.UnmarshalJSON(bytes.NewReader(row))
		}
	})
}
