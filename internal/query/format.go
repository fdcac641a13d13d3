package query

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// Formats Write takes.
var Formats = []string{"table", "csv", "json"}

// Write prints a result as an aligned table, CSV with a header, or JSON
// lines (one object per row).
func Write(w io.Writer, res Result, format string) error {
	switch format {
	case "table":
		return writeTable(w, res)
	case "csv":
		cw := csv.NewWriter(w)
		if err := cw.Write(res.Columns); err != nil {
			return err
		}
		rec := make([]string, len(res.Columns))
		for _, row := range res.Rows {
			for i, v := range row {
				if v == nil {
					rec[i] = ""
				} else {
					rec[i] = text(v, res.typ(i))
				}
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	case "json":
		enc := json.NewEncoder(w)
		for _, row := range res.Rows {
			obj := make(orderedRow, len(row))
			for i, v := range row {
				obj[i] = field{res.Columns[i], jsonValue(v, res.typ(i))}
			}
			if err := enc.Encode(obj); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("format %q: want one of %s", format, strings.Join(Formats, ", "))
}

func writeTable(w io.Writer, res Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(res.Columns, "\t"))
	for _, row := range res.Rows {
		cells := make([]string, len(row))
		for i, v := range row {
			if v == nil {
				cells[i] = "NULL"
			} else {
				cells[i] = truncate(strings.NewReplacer("\t", " ", "\n", " ").Replace(text(v, res.typ(i))), 60)
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	noun := "rows"
	if len(res.Rows) == 1 {
		noun = "row"
	}
	_, err := fmt.Fprintf(w, "(%d %s)\n", len(res.Rows), noun)
	return err
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func (r Result) typ(i int) string {
	if i < len(r.Types) {
		return r.Types[i]
	}
	return ""
}

// text renders a value the driver returned, given its column's type.
func text(v any, typ string) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case time.Time:
		switch typ {
		case "DATE":
			return x.Format(time.DateOnly)
		case "TIME":
			return x.Format("15:04:05.999999")
		}
		return x.UTC().Format("2006-01-02 15:04:05.999999")
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32)
	case *big.Int:
		return x.String()
	case fmt.Stringer:
		return x.String()
	}
	if b, err := json.Marshal(v); err == nil && (strings.HasPrefix(string(b), "{") || strings.HasPrefix(string(b), "[")) {
		return string(b)
	}
	return fmt.Sprint(v)
}

func jsonValue(v any, typ string) any {
	switch x := v.(type) {
	case string:
		if typ == "JSON" && json.Valid([]byte(x)) {
			return json.RawMessage(x) // as the lake holds it, keys in order
		}
	case []byte:
		return string(x)
	case time.Time:
		return text(x, typ)
	case *big.Int:
		return json.Number(x.String())
	}
	return v
}

type field struct {
	key   string
	value any
}

// orderedRow encodes as a JSON object keeping the query's column order.
type orderedRow []field

func (o orderedRow) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.key)
		v, err := json.Marshal(f.value)
		if err != nil {
			v, _ = json.Marshal(fmt.Sprint(f.value))
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// Text is a value as CSV writes it, given its column's type; "" for NULL.
func Text(v any, typ string) string {
	if v == nil {
		return ""
	}
	return text(v, typ)
}

// JSONValues are a row's values as the JSON format writes them; floats
// that JSON cannot hold (NaN, infinities) become their names as strings.
func JSONValues(res Result, row []any) []any {
	out := make([]any, len(row))
	for i, v := range row {
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			out[i] = strconv.FormatFloat(f, 'g', -1, 64)
			continue
		}
		out[i] = jsonValue(v, res.typ(i))
	}
	return out
}
