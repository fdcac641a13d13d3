package event

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestReplaceNonFinite(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		found   []NonFinite
	}{
		{in: `{"a":1}`},
		{in: `{"s":"NaN and Infinity"}`},
		{in: `{"payload":{"fare":NaN,"tip":-Infinity,"x":[1,Infinity]}}`,
			out:   `{"payload":{"fare":null,"tip":null,"x":[1,null]}}`,
			found: []NonFinite{{"NaN", "/payload/fare", 19}, {"-Infinity", "/payload/tip", 29}, {"Infinity", "/payload/x/1", 46}}},
		// Python's json.dumps spacing, and keys that need escaping.
		{in: `{"a/b": NaN, "c~d": [NaN, 2]}`, out: `{"a/b": null, "c~d": [null, 2]}`,
			found: []NonFinite{{"NaN", "/a~1b", 8}, {"NaN", "/c~0d/0", 21}}},
		// A batch: the path starts with the element's index.
		{in: `[{"p":{"v":1}},{"p":{"v":NaN}}]`, out: `[{"p":{"v":1}},{"p":{"v":null}}]`,
			found: []NonFinite{{"NaN", "/1/p/v", 25}}},
		// Not tokens: words that start like them, and numbers around them.
		{in: `{"a":NaNa,"b":1NaN,"c":xInfinity}`},
		{in: `NaN`, out: `null`, found: []NonFinite{{"NaN", "", 0}}},
	} {
		out, found := ReplaceNonFinite([]byte(tc.in))
		if string(out) != tc.out {
			t.Errorf("ReplaceNonFinite(%s) = %s, want %s", tc.in, out, tc.out)
		}
		if diff := cmp.Diff(tc.found, found); diff != "" {
			t.Errorf("ReplaceNonFinite(%s) found (-want +got):\n%s", tc.in, diff)
		}
		// The whole output maps back to the whole input.
		if start, end := Original(found, 0, len(out)); len(found) > 0 && (start != 0 || end != len(tc.in)) {
			t.Errorf("Original(0, %d) = %d, %d; want 0, %d", len(out), start, end, len(tc.in))
		}
	}
}

// FuzzReplaceNonFinite checks, on any input, that valid JSON has nothing to
// replace, that a second pass finds nothing, and that when the result is
// JSON every path found names a null in it.
func FuzzReplaceNonFinite(f *testing.F) {
	for _, s := range []string{`{"a":NaN}`, `[1,-Infinity,{"b":[Infinity]}]`, `{"s":"\"NaN"}`, `{"a~/":[NaN]}`, `NaN`, `{"a":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, found := ReplaceNonFinite(b)
		if json.Valid(b) && len(found) > 0 {
			t.Fatalf("valid JSON %q has non-finite numbers %v", b, found)
		}
		if len(found) == 0 {
			return
		}
		if start, end := Original(found, 0, len(out)); start != 0 || end != len(b) {
			t.Fatalf("%q: the output maps back to [%d,%d), not the whole input", b, start, end)
		}
		if again, more := ReplaceNonFinite(out); len(more) > 0 {
			t.Fatalf("a second pass over %q found %v (%q)", out, more, again)
		}
		var doc any
		if !utf8.Valid(out) || json.Unmarshal(out, &doc) != nil {
			return // the parser refuses it; encoding/json would rewrite its keys
		}
		for _, nf := range found {
			v, ok := resolve(doc, nf.Path)
			if !ok || v != nil {
				t.Fatalf("%q: %s at %q, where %q holds %v (%v)", b, nf.Token, nf.Path, out, v, ok)
			}
		}
	})
}

// resolve follows a JSON Pointer into a decoded document. Duplicate keys
// make a pointer ambiguous; the last one wins, as in encoding/json.
func resolve(doc any, pointer string) (any, bool) {
	if pointer == "" {
		return doc, true
	}
	for _, tok := range strings.Split(pointer[1:], "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch v := doc.(type) {
		case map[string]any:
			var ok bool
			if doc, ok = v[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v) {
				return nil, false
			}
			doc = v[i]
		default:
			return nil, false
		}
	}
	return doc, true
}
