package jobs

import (
	"strings"
	"testing"
)

// FuzzModels feeds model files, which users write, to the parser and the
// graph: any text is a model or an error, never a crash, and the graph of
// what parses is an order or a cycle named.
func FuzzModels(f *testing.F) {
	f.Add("{{ config(materialized='table') }} SELECT * FROM {{ ref('b') }} -- a", "SELECT 'a''b', \"a\" /* b */ FROM a")
	f.Add("SELECT * FROM b", "SELECT * FROM a")
	f.Add("'", "/*")
	f.Fuzz(func(t *testing.T, a, b string) {
		var models []Model
		for _, m := range []struct{ name, text string }{{"a", a}, {"b", b}} {
			if m, err := Parse(m.name, m.text); err == nil {
				models = append(models, m)
			}
		}
		if err := link(models); err != nil && !strings.Contains(err.Error(), "cycle") {
			t.Fatalf("link: %v", err)
		}
		for _, sel := range []string{"a+", "+b", ""} {
			Select(models, sel)
		}
	})
}
