package event

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestObjectMembers(t *testing.T) {
	type kv struct{ Key, Value string }
	for _, tc := range []struct {
		name       string
		in         string
		top, inner []kv
		err        bool
	}{
		{name: "flat", in: `{"a":1,"b":"x"}`, top: []kv{{"a", "1"}, {"b", `"x"`}}},
		{name: "payload lifted", in: `{"a":{"z":0},"payload":{"x":1,"y":[1,{"q":2}]},"c":[{"r":3}]}`,
			top:   []kv{{"a", `{"z":0}`}, {"payload", `{"x":1,"y":[1,{"q":2}]}`}, {"c", `[{"r":3}]`}},
			inner: []kv{{"x", "1"}, {"y", `[1,{"q":2}]`}}},
		{name: "last payload wins", in: `{"payload":{"x":1},"payload":{"y":2}}`,
			top: []kv{{"payload", `{"x":1}`}, {"payload", `{"y":2}`}}, inner: []kv{{"y", "2"}}},
		{name: "escaped key", in: `{"pay\u006coad":{"x":1}}`, top: []kv{{"payload", `{"x":1}`}}, inner: []kv{{"x", "1"}}},
		{name: "last payload not an object", in: `{"payload":{"x":1},"payload":""}`, top: []kv{{"payload", `{"x":1}`}, {"payload", `""`}}},
		{name: "payload not an object", in: `{"payload":[{"x":1}]}`, top: []kv{{"payload", `[{"x":1}]`}}},
		{name: "not an object", in: `[{"payload":{"x":1}}]`, err: true},
		{name: "invalid", in: `{"payload":{"x":1}`, err: true},
		{name: "invalid utf-8", in: "{\"a\":\"\xff\"}", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top, inner, err := ObjectMembers([]byte(tc.in), FieldPayload, nil, nil)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error: %v", err, tc.err)
			}
			if err != nil {
				if len(inner) != 0 {
					t.Errorf("inner members after an error: %q", inner)
				}
				return
			}
			got := func(ms []Member) (out []kv) {
				for _, m := range ms {
					out = append(out, kv{m.Name(), string(m.Value)})
				}
				return out
			}
			if diff := cmp.Diff(tc.top, got(top)); diff != "" {
				t.Errorf("top (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.inner, got(inner)); diff != "" {
				t.Errorf("inner (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzObjectMembers holds ObjectMembers to encoding/json: it accepts exactly
// the objects json accepts, with the same keys, and payload's last object.
func FuzzObjectMembers(f *testing.F) {
	for _, s := range []string{`{"a":1,"payload":{"x":[1,2],"y":{"z":null}}}`, `{"payload":{"a":1},"payload":{"b":2}}`, `[1]`, `{"\u0061":"\n"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		top, inner, err := ObjectMembers(b, FieldPayload, nil, nil)
		var obj map[string]json.RawMessage
		jerr := json.Unmarshal(b, &obj)
		if !utf8.Valid(b) {
			if err == nil {
				t.Fatalf("accepted invalid UTF-8 %q", b)
			}
			return // json would replace the bad bytes instead
		}
		if jerr != nil || obj == nil {
			if err == nil {
				t.Fatalf("accepted %q, which json refuses (%v) or is not an object", b, jerr)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrNotObject) || obj != nil {
				t.Fatalf("refused %q: %v", b, err)
			}
		}
		keys := map[string]bool{}
		for _, m := range top {
			keys[m.Name()] = true
		}
		if len(keys) != len(obj) {
			t.Fatalf("%q: %d distinct keys, json has %d", b, len(keys), len(obj))
		}
		var payload map[string]json.RawMessage
		if json.Unmarshal(obj[FieldPayload], &payload) == nil && payload != nil {
			names := map[string]bool{}
			for _, m := range inner {
				names[m.Name()] = true
			}
			if len(names) != len(payload) {
				t.Fatalf("%q: payload members %d, json has %d", b, len(names), len(payload))
			}
		} else if len(inner) != 0 {
			t.Fatalf("%q: payload members %q, but payload is not an object", b, inner)
		}
	})
}
