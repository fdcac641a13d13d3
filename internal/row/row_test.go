package row

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCoerce(t *testing.T) {
	ts := func(s string) Cell {
		tm, _ := ParseTime(s)
		return Cell{Kind: KindTimestamp, I: tm.UnixMicro()}
	}
	str := func(s string) Cell { return Cell{Kind: KindString, B: []byte(s)} }
	for _, tc := range []struct {
		in   Cell
		want Kind
		out  Cell
		ok   bool
	}{
		{str("2025-01-01T00:18:38"), KindTimestamp, ts("2025-01-01T00:18:38Z"), true},
		{str("2025-01-01 00:18:38.5"), KindTimestamp, ts("2025-01-01T00:18:38.5Z"), true},
		{Cell{Kind: KindInt, I: 1735690718}, KindTimestamp, ts("2025-01-01T00:18:38Z"), true},
		{Cell{Kind: KindInt, I: 1735690718123}, KindTimestamp, ts("2025-01-01T00:18:38.123Z"), true},
		{str("soon"), KindTimestamp, str("soon"), false},
		{Cell{Kind: KindInt, I: 3}, KindFloat, Cell{Kind: KindFloat, F: 3}, true},
		{str("2.5"), KindFloat, Cell{Kind: KindFloat, F: 2.5}, true},
		{Cell{Kind: KindFloat, F: 4}, KindInt, Cell{Kind: KindInt, I: 4}, true},
		{Cell{Kind: KindFloat, F: 4.5}, KindInt, Cell{Kind: KindFloat, F: 4.5}, false},
		{str("7"), KindInt, Cell{Kind: KindInt, I: 7}, true},
		{str("true"), KindBool, Cell{Kind: KindBool, I: 1}, true},
		{Cell{Kind: KindInt, I: 7}, KindString, str("7"), true},
		{str(`a"b`), KindJSON, Cell{Kind: KindJSON, B: []byte(`"a\"b"`)}, true},
		{Cell{}, KindInt, Cell{}, true},
	} {
		out, ok := Coerce(tc.in, tc.want)
		if diff := cmp.Diff(tc.out, out); diff != "" || ok != tc.ok {
			t.Errorf("Coerce(%v %q, %v) = ok %v, want %v; cell (-want +got):\n%s", tc.in.Kind, tc.in.Text(), tc.want, ok, tc.ok, diff)
		}
	}
	if _, err := ParseKind("timestamp"); err != nil {
		t.Error(err)
	}
	if _, err := ParseKind("varchar"); err == nil {
		t.Error("ParseKind accepted varchar")
	}
}

// TestParseFloat checks the fast path against strconv on the decimals it
// takes and on those it hands over.
func TestParseFloat(t *testing.T) {
	inputs := []string{"0.0", "-0.0", "1.6", "18.0", "0.1", "-3.75", "123456789012.345", "999999999999999.9",
		"0.000000000000001", "9007199254740993.0", "1e5", "1.5E-3", "12345678901234567890.5", "-", "1.", ".5", "00.5"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		digits := strconv.FormatUint(rng.Uint64N(1_000_000_000_000_000), 10)
		p := 1 + rng.IntN(len(digits))
		s := digits[:p] + "." + digits[p:] + "0"
		if rng.IntN(2) == 0 {
			s = "-" + s
		}
		inputs = append(inputs, s)
	}
	for _, in := range inputs {
		want, wantErr := strconv.ParseFloat(in, 64)
		got, err := parseFloat([]byte(in))
		if (err != nil) != (wantErr != nil) || math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("parseFloat(%q) = %v, %v; strconv: %v, %v", in, got, err, want, wantErr)
		}
	}
}

func FuzzParseFloat(f *testing.F) {
	for _, s := range []string{"1.6", "-0.0", "999999999999999.9", "1e5", "0.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		want, wantErr := strconv.ParseFloat(in, 64)
		got, err := parseFloat([]byte(in))
		if (err != nil) != (wantErr != nil) || (err == nil && math.Float64bits(got) != math.Float64bits(want)) {
			t.Errorf("parseFloat(%q) = %v, %v; strconv: %v, %v", in, got, err, want, wantErr)
		}
	})
}

// FuzzParseTime: the fast path for common times reads what the layouts
// read, to the nanosecond and the zone.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2025-01-01T00:18:38", "2025-01-01 00:18:38.000000000", "2024-02-29T23:59:59.5Z",
		"2023-02-29T00:00:00", "2025-01-01T24:00:00", "2025-01-01T00:18:38.1234567891", "2025-01-01T00:18:38.", "0000-01-01 00:00:00Z",
		"2022-01-01 00:35:40+00:00", "05/27/2023 00:00:00", "2025-01-01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseCommonTime(s)
		if !ok {
			return
		}
		for _, layout := range timeLayouts {
			if want, err := time.Parse(layout, s); err == nil {
				if !got.Equal(want) || got.Location() != want.UTC().Location() {
					t.Errorf("%q: fast %v, layout %q %v", s, got, layout, want)
				}
				return
			}
		}
		t.Errorf("%q: fast %v, but no layout reads it", s, got)
	})
}
