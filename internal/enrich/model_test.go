package enrich

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/sample"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// formDoc is what the enricher models for a form event: the event's
// payload, the form it fetched, and when.
func formDoc(t testing.TB, file string) []byte {
	t.Helper()
	def, err := fs.ReadFile(sample.FS(), "forms/"+file)
	if err != nil {
		t.Fatal(err)
	}
	var form struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(def, &form); err != nil {
		t.Fatal(err)
	}
	return fmt.Appendf(nil, `{"event":{"form_id":%q,"event_happened_at":"2025-03-01T12:00:00Z","event_type":"form_updated"},"form":%s,"retrieved_timestamp":"2025-03-01T12:00:01Z"}`, form.ID, def)
}

var formColumns = []string{"id", "type", "title", "settings_language", "settings_progress_bar",
	"settings_show_time_to_complete", "settings_show_number_of_submissions",
	"settings_redirect_after_submit_url", "retrieved_timestamp", "event_happened_at", "event_type"}

var fieldColumns = []string{"id", "title", "reference", "validations_required", "type", "attachment_type",
	"attachment_href", "properties_default_country_code"}

// TestFormModelGolden models every bundled form and compares the rows with
// testdata/<form>.golden.ndjson (go test -update rewrites them), and checks
// the seed's columns one by one.
func TestFormModelGolden(t *testing.T) {
	entries, err := fs.ReadDir(sample.FS(), "forms")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			doc := formDoc(t, e.Name())
			rows, err := FormModel.Rows(doc)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			for _, r := range rows {
				fmt.Fprintf(&got, "%s\t%s\n", r.Table, r.JSON())
			}
			golden := filepath.Join("testdata", strings.TrimSuffix(e.Name(), ".json")+".golden.ndjson")
			if *update {
				os.WriteFile(golden, got.Bytes(), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if diff := cmp.Diff(string(want), got.String()); diff != "" {
				t.Errorf("rows differ from %s (-want +got):\n%s", golden, diff)
			}

			// The form row: exactly the seed's columns, in order.
			if rows[0].Table != "form" || rows[0].Fields[0].Name != "id" {
				t.Fatalf("first row %s %s, want the form", rows[0].Table, rows[0].JSON())
			}
			var names []string
			for _, f := range rows[0].Fields {
				names = append(names, f.Name)
			}
			if diff := cmp.Diff(formColumns, names); diff != "" {
				t.Errorf("form columns (-want +got):\n%s", diff)
			}
			// Every field row: the seed's columns first, parent_id, and
			// the form's columns prefixed form_; every value is JSON.
			fields := countFields(t, doc)
			if len(rows)-1 != fields {
				t.Errorf("%d form_field rows, want %d (every field, nested ones included)", len(rows)-1, fields)
			}
			for _, r := range rows[1:] {
				has := map[string]bool{}
				for _, f := range r.Fields {
					if has[f.Name] {
						t.Errorf("row %s: column %s twice", r.JSON(), f.Name)
					}
					has[f.Name] = true
				}
				for _, c := range append(append(append([]string{}, fieldColumns...), "parent_id"), prefixed(formColumns)...) {
					if !has[c] {
						t.Errorf("form_field row lacks %s: %s", c, r.JSON())
					}
				}
				var m map[string]any
				if err := json.Unmarshal(r.JSON(), &m); err != nil {
					t.Fatalf("row is not JSON: %v\n%s", err, r.JSON())
				}
				if _, ok := m["properties_fields"]; ok {
					t.Errorf("nested fields kept as a column, not rows: %s", r.JSON())
				}
			}
		})
	}
}

func prefixed(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = "form_" + c
	}
	return out
}

// countFields counts a form's fields, nested ones included, with
// encoding/json, independently of the model.
func countFields(t *testing.T, doc []byte) int {
	var d struct {
		Form struct {
			Fields []json.RawMessage `json:"fields"`
		} `json:"form"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	var count func([]json.RawMessage) int
	count = func(fs []json.RawMessage) int {
		n := 0
		for _, f := range fs {
			n++
			var x struct {
				Properties struct {
					Fields []json.RawMessage `json:"fields"`
				} `json:"properties"`
			}
			json.Unmarshal(f, &x)
			n += count(x.Properties.Fields)
		}
		return n
	}
	return count(d.Form.Fields)
}

// TestNestedRowsHaveTheirParent: fields of a group carry the group's id.
func TestNestedRowsHaveTheirParent(t *testing.T) {
	rows, err := FormModel.Rows(formDoc(t, "MatrixExample.json"))
	if err != nil {
		t.Fatal(err)
	}
	var matrixID string
	parents := map[string]int{}
	for _, r := range rows[1:] {
		var m map[string]any
		json.Unmarshal(r.JSON(), &m)
		if m["type"] == "matrix" {
			matrixID = m["id"].(string)
		}
		if p, ok := m["parent_id"].(string); ok {
			parents[p]++
		}
	}
	if matrixID == "" || parents[matrixID] != 5 {
		t.Errorf("matrix %q has children %v, want 5", matrixID, parents)
	}
}

// FuzzFormModel models arbitrary API responses: no input crashes it, and
// every row is a JSON object.
func FuzzFormModel(f *testing.F) {
	f.Add([]byte(`{"id":"a","fields":[{"id":"g","properties":{"fields":[{"id":"c","ref":"r"}]}}]}`))
	f.Add([]byte(`{"id":"a","settings":{"language":"en"},"fields":[1,{"x":[1,{"y":2}]}]}`))
	f.Fuzz(func(t *testing.T, form []byte) {
		doc := append(append([]byte(`{"event":{"event_type":"x"},"retrieved_timestamp":"t","form":`), form...), '}')
		rows, err := FormModel.Rows(doc)
		if err != nil {
			return
		}
		for _, r := range rows {
			var m map[string]any
			if err := json.Unmarshal(r.JSON(), &m); err != nil {
				t.Fatalf("row is not a JSON object: %v\n%s", err, r.JSON())
			}
		}
	})
}

// TestOptionalArray: with optional, an event with no items, or null ones,
// has no rows of the table; without it, it fails, saying where.
func TestOptionalArray(t *testing.T) {
	items := TableModel{Name: "checkout_item", From: "event.items", Columns: []string{"sku"}}
	for doc, want := range map[string]int{
		`{"event":{"items":[{"sku":"a"},{"sku":"b"}]}}`: 2,
		`{"event":{"items":[]}}`:                        0,
		`{"event":{"items":null}}`:                      0,
		`{"event":{}}`:                                  0,
	} {
		optional := items
		optional.Optional = true
		rows, err := Model{Tables: []TableModel{optional}}.Rows([]byte(doc))
		if err != nil || len(rows) != want {
			t.Errorf("optional, %s: %d rows, %v; want %d", doc, len(rows), err, want)
		}
		rows, err = Model{Tables: []TableModel{items}}.Rows([]byte(doc))
		switch {
		case doc == `{"event":{}}`:
			if err == nil || !strings.Contains(err.Error(), `nothing at "event.items"`) {
				t.Errorf("required, %s: %v, want nothing at event.items", doc, err)
			}
		case doc == `{"event":{"items":null}}`:
			if err == nil {
				t.Errorf("required, %s: no error", doc)
			}
		case err != nil || len(rows) != want:
			t.Errorf("required, %s: %d rows, %v; want %d", doc, len(rows), err, want)
		}
	}
}

// BenchmarkFormModel models one form event as the enricher does, with the
// largest bundled form (HealthHistoryV3, 37 KB): the cost per event of the
// forms pipeline, warm cache.
func BenchmarkFormModel(b *testing.B) {
	doc := formDoc(b, "HealthHistoryV3.json")
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := FormModel.Rows(doc); err != nil {
			b.Fatal(err)
		}
	}
}
