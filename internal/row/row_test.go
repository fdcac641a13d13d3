package row

import (
	"testing"

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
