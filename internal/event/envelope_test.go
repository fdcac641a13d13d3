package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Invalid
	}{
		{"empty body", ``, Invalid{ReasonInvalidJSON, []FieldError{{"", "body is empty"}}}},
		{"blank body", " \n\t", Invalid{ReasonInvalidJSON, []FieldError{{"", "body is empty"}}}},
		{"truncated", `{"event_type": "a"`, Invalid{ReasonInvalidJSON, []FieldError{{"", "invalid JSON at byte 18: unexpected end of JSON input"}}}},
		{"trailing garbage", `{} x`, Invalid{ReasonInvalidJSON, []FieldError{{"", "invalid JSON at byte 4: invalid character 'x' after top-level value"}}}},
		{"not utf8", "{\"event_type\": \"\xff\"}", Invalid{ReasonInvalidJSON, []FieldError{{"", "body is not valid UTF-8"}}}},
		{"duplicate key", `{"event_type":"a","schema_version":"1","payload":{},"event_type":"b"}`,
			Invalid{ReasonInvalidJSON, []FieldError{{"/event_type", `duplicate key "event_type"`}}}},
		{"array", `[1]`, Invalid{ReasonWrongType, []FieldError{{"", "an event must be a JSON object, got array"}}}},
		{"string", `"x"`, Invalid{ReasonWrongType, []FieldError{{"", "an event must be a JSON object, got string"}}}},
		{"missing everything", `{}`, Invalid{ReasonMissingField, []FieldError{
			{"/event_type", "event_type is required"},
			{"/schema_version", "schema_version is required"},
			{"/payload", "payload is required"},
		}}},
		{"missing payload", `{"event_type":"a","schema_version":"1"}`,
			Invalid{ReasonMissingField, []FieldError{{"/payload", "payload is required"}}}},
		{"event_type number", `{"event_type":1,"schema_version":"1","payload":{}}`,
			Invalid{ReasonWrongType, []FieldError{{"/event_type", "event_type must be a string, got number"}}}},
		{"schema_version null", `{"event_type":"a","schema_version":null,"payload":{}}`,
			Invalid{ReasonWrongType, []FieldError{{"/schema_version", "schema_version must be a string, got null"}}}},
		{"payload array", `{"event_type":"a","schema_version":"1","payload":[]}`,
			Invalid{ReasonWrongType, []FieldError{{"/payload", "payload must be a JSON object, got array"}}}},
		{"payload string", `{"event_type":"a","schema_version":"1","payload":"{}"}`,
			Invalid{ReasonWrongType, []FieldError{{"/payload", "payload must be a JSON object, got string"}}}},
		{"event_id number", `{"event_type":"a","schema_version":"1","payload":{},"event_id":7}`,
			Invalid{ReasonWrongType, []FieldError{{"/event_id", "event_id must be a string, got number"}}}},
		{"empty event_type", `{"event_type":"","schema_version":"1","payload":{}}`,
			Invalid{ReasonEmptyField, []FieldError{{"/event_type", "event_type must not be empty"}}}},
		{"blank schema_version", `{"event_type":"a","schema_version":" \t","payload":{}}`,
			Invalid{ReasonEmptyField, []FieldError{{"/schema_version", "schema_version must not be empty"}}}},
		{"first reason wins", `{"event_type":"","schema_version":true}`, Invalid{ReasonEmptyField, []FieldError{
			{"/event_type", "event_type must not be empty"},
			{"/schema_version", "schema_version must be a string, got boolean"},
			{"/payload", "payload is required"},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, inv := Parse([]byte(tt.body))
			if env != nil {
				t.Fatalf("Parse(%q) accepted an invalid event", tt.body)
			}
			if diff := cmp.Diff(&tt.want, inv); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tt.body, diff)
			}
		})
	}
}

func TestParseValidKeepsClientBytes(t *testing.T) {
	f := func(body, want string) {
		t.Helper()
		env, inv := Parse([]byte(body))
		if inv != nil {
			t.Fatalf("Parse(%q): %v", body, inv)
		}
		got := string(env.AppendStamped(nil, Stamp{
			CollectorTstamp: "2025-01-01T00:00:00.000000Z",
			RootID:          "0194...",
			CollectorID:     "host\"1",
		}))
		if got != want {
			t.Errorf("stamped\n got: %s\nwant: %s", got, want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("stamped event is not valid JSON: %s", got)
		}
	}
	const stamp = `"collector_tstamp":"2025-01-01T00:00:00.000000Z","root_id":"0194...","collector_id":"host\"1"}`
	// Numbers, spacing, key order and unknown members are kept exactly.
	f(`{"event_type":"trip","schema_version":"1-0-0","payload":{"fare":1.50,"b":1e3}}`,
		`{"event_type":"trip","schema_version":"1-0-0","payload":{"fare":1.50,"b":1e3},`+stamp)
	f(" {\n \"payload\" : { \"x\" : [1, 2] } , \"extra\": null, \"event_type\":\"t\", \"schema_version\":\"1\" }\n",
		`{"payload" : { "x" : [1, 2] },"extra": null,"event_type":"t","schema_version":"1",`+stamp)
	// The collector owns its fields: a client's values are replaced.
	f(`{"event_type":"t","schema_version":"1","payload":{},"root_id":"mine","collector_tstamp":1}`,
		`{"event_type":"t","schema_version":"1","payload":{},`+stamp)
}

func TestParseFields(t *testing.T) {
	env, inv := Parse([]byte(`{"event_type":"caf\u00e9","schema_version":"1-0-0","payload":{},"event_id":"f.parquet:7"}`))
	if inv != nil {
		t.Fatal(inv)
	}
	got := [3]string{env.EventType, env.SchemaVersion, env.EventID}
	want := [3]string{"café", "1-0-0", "f.parquet:7"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fields mismatch (-want +got):\n%s", diff)
	}
}

func TestSplitArray(t *testing.T) {
	elems, inv := SplitArray([]byte(` [ {"a":"]"} , 1,"x" ,[[]], {} ] `))
	if inv != nil {
		t.Fatal(inv)
	}
	var got []string
	for _, e := range elems {
		got = append(got, string(e.Bytes()))
	}
	if diff := cmp.Diff([]string{`{"a":"]"}`, `1`, `"x"`, `[[]]`, `{}`}, got); diff != "" {
		t.Errorf("elements mismatch (-want +got):\n%s", diff)
	}
	if _, inv := SplitArray([]byte(`{"a":1}`)); inv == nil || inv.Reason != ReasonWrongType {
		t.Errorf("SplitArray(object) = %v, want wrong_type", inv)
	}
	if _, inv := SplitArray([]byte(`[{"a":1}`)); inv == nil || inv.Reason != ReasonInvalidJSON {
		t.Errorf("SplitArray(truncated) = %v, want invalid_json", inv)
	}
}

func TestSplitLines(t *testing.T) {
	got := SplitLines([]byte("{\"a\":1}\n\n  \r\n{\"b\":2}\r\nnot json"))
	want := []Line{{1, []byte(`{"a":1}`)}, {4, []byte("{\"b\":2}\r")}, {5, []byte("not json")}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines mismatch (-want +got):\n%s", diff)
	}
}

func TestNewFailedKeepsOriginal(t *testing.T) {
	f := func(original, want string) {
		t.Helper()
		b, err := NewFailed(StageCollector, ReasonInvalidJSON, nil, "", []byte(original), testTime).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			Original json.RawMessage `json:"original"`
			Errors   []FieldError    `json:"errors"`
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatalf("failed record is not JSON: %v: %s", err, b)
		}
		if string(rec.Original) != want {
			t.Errorf("original = %s, want %s", rec.Original, want)
		}
		if rec.Errors == nil {
			t.Errorf("errors must be a list, even when empty: %s", b)
		}
	}
	f(`{"a": 1.50}`, `{"a":1.50}`) // compacted, numbers kept as sent
	f(`{"a": `, `"{\"a\": "`)
	f(``, `""`)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"event_type":"trip","schema_version":"1-0-0","payload":{"fare":1.5}}`,
		`{"event_type":"t","schema_version":"1","payload":{},"event_id":"x","root_id":"y"}`,
		`{"event_type":"","payload":[]}`, `[]`, `{`, `"\u0000"`, "{\"a\":\"\\\"}\"}",
		`{"event_type":"trip","schema_version":"1-0-0","payload":{"fare":NaN,"tip":-Infinity}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		env, inv := Parse(body)
		if inv != nil && inv.Reason == ReasonInvalidJSON {
			// The collector reads such a body again with null for its
			// NaN and Infinity: that is a body like any other.
			if fixed, found := ReplaceNonFinite(body); len(found) > 0 {
				body = fixed
				env, inv = Parse(body)
			}
		}
		if (env == nil) == (inv == nil) {
			t.Fatalf("Parse(%q) = %v, %v: want exactly one", body, env, inv)
		}
		if inv != nil {
			if inv.Reason == "" || len(inv.Errors) == 0 {
				t.Fatalf("Parse(%q) rejected without a reason: %+v", body, inv)
			}
			return
		}
		stamped := env.AppendStamped(nil, Stamp{CollectorTstamp: "t", RootID: "r", CollectorID: "c\x01"})
		var m map[string]json.RawMessage
		if err := json.Unmarshal(stamped, &m); err != nil {
			t.Fatalf("stamped event of %q is not a JSON object: %v: %s", body, err, stamped)
		}
		var orig map[string]json.RawMessage
		if err := json.Unmarshal(body, &orig); err != nil {
			t.Fatalf("accepted %q, which encoding/json rejects: %v", body, err)
		}
		for k, v := range orig {
			if reserved(k) {
				continue
			}
			if strings.TrimSpace(string(m[k])) != strings.TrimSpace(string(v)) {
				t.Fatalf("member %q changed: %s -> %s", k, v, m[k])
			}
		}
		if string(m[FieldRootID]) != `"r"` {
			t.Fatalf("root_id not stamped: %s", stamped)
		}
	})
}

func FuzzSplitBatch(f *testing.F) {
	for _, s := range []string{`[]`, `[{"a":1},2,"x",[{}]]`, `[{"event_type":"t","schema_version":"1","payload":{}}]`, "[\n]", `[1,]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		elems, inv := SplitArray(body)
		if inv != nil {
			return
		}
		var want []json.RawMessage
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("SplitArray accepted %q, which encoding/json rejects: %v", body, err)
		}
		if len(elems) != len(want) {
			t.Fatalf("SplitArray(%q) gave %d elements, want %d", body, len(elems), len(want))
		}
		for i, e := range elems {
			if string(e.Bytes()) != string(want[i]) {
				t.Fatalf("element %d = %q, want %q", i, e.Bytes(), want[i])
			}
			// An element parses as the same bytes parsed alone would.
			env, inv := e.Parse()
			alone, aloneInv := Parse(e.Bytes())
			if (env == nil) != (alone == nil) || (inv != nil && inv.Reason != aloneInv.Reason) {
				t.Fatalf("element %q: %v/%v, alone: %v/%v", e.Bytes(), env, inv, alone, aloneInv)
			}
			if env != nil && string(env.AppendStamped(nil, Stamp{})) != string(alone.AppendStamped(nil, Stamp{})) {
				t.Fatalf("element %q stamps differently from the same bytes alone", e.Bytes())
			}
		}
		for _, l := range SplitLines(body) {
			Parse(l.Data)
		}
	})
}

func TestRootIDMatchesUUIDText(t *testing.T) {
	id, err := NewRootID()
	if err != nil {
		t.Fatal(err)
	}
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id || u.Version() != 7 {
		t.Errorf("root id %q: parse %v, version %d; want a UUID v7 in canonical form", id, err, u.Version())
	}
	next, _ := NewRootID()
	if next <= id {
		t.Errorf("root ids do not sort by time: %s then %s", id, next)
	}
}

// FuzzAppendString: any string is appended as one JSON string, after what
// dst held, byte for byte as appending it a byte at a time gives, that
// reads back as the string when it is valid UTF-8 (the bytes of invalid
// UTF-8 are passed through, for readers to replace).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "A002", `59 ST "x"\y`, "a\x00b\nc\x1f", "é\x7f\xff", `\\""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString([]byte("x:"), s)
		if want := appendStringBytewise([]byte("x:"), s); !bytes.Equal(b, want) {
			t.Fatalf("%q: appended %q, a byte at a time %q", s, b, want)
		}
		var got string
		if err := json.Unmarshal(b[2:], &got); err != nil {
			t.Fatalf("%q: %q is no JSON string: %v", s, b[2:], err)
		}
		if utf8.ValidString(s) && got != s {
			t.Errorf("%q reads back as %q", s, got)
		}
	})
}

// appendStringBytewise is AppendString as it was, a byte at a time: the
// fuzz target's reference and the benchmark's baseline.
func appendStringBytewise(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// BenchmarkAppendString quotes the group values of an MTA window (short)
// and a 100-byte value, as AppendString does and a byte at a time.
func BenchmarkAppendString(b *testing.B) {
	inputs := map[string][]string{
		"short": {"A002", "R051", "02-00-00", "59 ST", "NQR456W", "BMT", "05/27/2023", "REGULAR"},
		"long":  {"https://example.com/forms/contact-us?utm_source=newsletter&utm_medium=email&utm_campaign=2026-12"},
	}
	for _, name := range []string{"short", "long"} {
		for _, f := range []struct {
			name   string
			append func([]byte, string) []byte
		}{{"runs", AppendString}, {"bytewise", appendStringBytewise}} {
			b.Run(name+"/"+f.name, func(b *testing.B) {
				buf := make([]byte, 0, 1024)
				for b.Loop() {
					buf = buf[:0]
					for _, s := range inputs[name] {
						buf = f.append(buf, s)
					}
				}
			})
		}
	}
}
