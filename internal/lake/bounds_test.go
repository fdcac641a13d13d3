package lake

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestStringBound cuts string bounds as Iceberg's truncate(16) does: a
// lower bound is a prefix, an upper bound a prefix raised above every
// value it stands for.
func TestStringBound(t *testing.T) {
	for _, tc := range []struct {
		in, lower, upper string
		noUpper          bool
	}{
		{in: "short", lower: "short", upper: "short"},
		{in: "0123456789abcdefXYZ", lower: "0123456789abcdef", upper: "0123456789abcdeg"},
		// Characters, not bytes: 17 two-byte characters.
		{in: "ééééééééééééééééé", lower: "éééééééééééééééé", upper: "éééééééééééééééê"},
		// The last character cannot grow: the one before it does.
		{in: "0123456789abcde\U0010FFFFz", lower: "0123456789abcde\U0010FFFF", upper: "0123456789abcdf"},
		// Past U+D7FF comes U+E000: UTF-8 has no surrogates.
		{in: "0123456789abcde\uD7FFz", lower: "0123456789abcde\uD7FF", upper: "0123456789abcde\uE000"},
		{in: "\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF!",
			lower: "\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF\U0010FFFF", noUpper: true},
	} {
		lower, ok := stringBound([]byte(tc.in), false)
		if !ok || string(lower) != tc.lower {
			t.Errorf("lower bound of %q = %q, %v; want %q", tc.in, lower, ok, tc.lower)
		}
		upper, ok := stringBound([]byte(tc.in), true)
		if tc.noUpper {
			if ok {
				t.Errorf("upper bound of %q = %q; want none", tc.in, upper)
			}
			continue
		}
		if diff := cmp.Diff(tc.upper, string(upper)); !ok || diff != "" {
			t.Errorf("upper bound of %q (ok %v) (-want +got):\n%s", tc.in, ok, diff)
		}
		if string(upper) < tc.in && len(tc.in) > 0 {
			t.Errorf("upper bound %q is below %q", upper, tc.in)
		}
	}
	if _, ok := stringBound([]byte{0xff, 'a'}, false); ok {
		t.Error("a bound of bytes that are not UTF-8")
	}
}
