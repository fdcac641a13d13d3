package lake

import (
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hamba/avro/v2/ocf"

	"github.com/sluicehq/sluice/internal/row"
)

// Formats a table can be written in; the first is the default. The name is
// also the data files' extension.
var Formats = []string{"parquet", "csv.gz", "avro"}

// ValidFormat reports whether format is one of Formats.
func ValidFormat(format string) bool {
	for _, f := range Formats {
		if f == format {
			return true
		}
	}
	return false
}

// Write writes the buffer as a file of the given format, returning how many
// values were written as strings because their column's types conflicted.
func (b *Buffer) Write(w io.Writer, format string) (conflicts int, err error) {
	switch format {
	case "parquet", "":
		return b.WriteParquet(w)
	case "csv.gz":
		return b.writeCSVGz(w)
	case "avro":
		return b.writeAvro(w)
	}
	return 0, fmt.Errorf("format %q: want one of %s", format, strings.Join(Formats, ", "))
}

// conflicts counts the values that a column's resolved type turns into
// strings.
func (b *Buffer) conflicts() int {
	n := 0
	for _, c := range b.order {
		if c.conflict() {
			c.eachKind(func(k row.Kind) {
				if k != row.KindNull && k != row.KindString {
					n++
				}
			})
		}
	}
	return n
}

// writeCSVGz writes a header line, then one line per row: values as text,
// null as an empty field, timestamps in RFC 3339.
func (b *Buffer) writeCSVGz(w io.Writer) (int, error) {
	zw := gzip.NewWriter(w)
	cw := csv.NewWriter(zw)
	rec := make([]string, len(b.order))
	its := make([]cells, len(b.order))
	for j, c := range b.order {
		rec[j], its[j] = c.name, cells{c: c}
	}
	if err := cw.Write(rec); err != nil {
		return 0, fmt.Errorf("write csv: %w", err)
	}
	for r := 0; r < b.rows; r++ {
		for j := range its {
			rec[j] = its[j].next().Text()
		}
		if err := cw.Write(rec); err != nil {
			return 0, fmt.Errorf("write csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return 0, fmt.Errorf("write csv: %w", err)
	}
	if err := zw.Close(); err != nil {
		return 0, fmt.Errorf("close gzip: %w", err)
	}
	return b.conflicts(), nil
}

// avroName makes a column name a valid Avro name: letters, digits and
// underscores, not starting with a digit.
func avroName(s string) string {
	var out strings.Builder
	for i, r := range s {
		switch {
		case r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			out.WriteRune(r)
		case r >= '0' && r <= '9':
			if i == 0 {
				out.WriteByte('_')
			}
			out.WriteRune(r)
		default:
			out.WriteByte('_')
		}
	}
	if out.Len() == 0 {
		return "_"
	}
	return out.String()
}

// writeAvro writes an Avro object container file, zstd-compressed, every
// field nullable.
func (b *Buffer) writeAvro(w io.Writer) (int, error) {
	type field struct {
		Name    string `json:"name"`
		Type    []any  `json:"type"`
		Default any    `json:"default"`
	}
	fields := make([]field, len(b.order))
	names := make([]string, len(b.order))
	kinds := make([]row.Kind, len(b.order))
	its := make([]cells, len(b.order))
	for i, c := range b.order {
		k := c.kind()
		its[i] = cells{c: c}
		var t any
		switch k {
		case row.KindBool:
			t = "boolean"
		case row.KindInt:
			t = "long"
		case row.KindFloat:
			t = "double"
		case row.KindTimestamp:
			t = map[string]string{"type": "long", "logicalType": "timestamp-micros"}
		default:
			t = "string"
		}
		names[i], kinds[i] = avroName(c.name), k
		fields[i] = field{Name: names[i], Type: []any{"null", t}}
	}
	schema, err := json.Marshal(map[string]any{"type": "record", "name": "row", "namespace": "sluice", "fields": fields})
	if err != nil {
		return 0, err
	}
	enc, err := ocf.NewEncoder(string(schema), w, ocf.WithCodec(ocf.ZStandard))
	if err != nil {
		return 0, fmt.Errorf("avro schema: %w", err)
	}
	row := make(map[string]any, len(b.order))
	for r := 0; r < b.rows; r++ {
		for j := range its {
			row[names[j]] = avroValue(its[j].next(), kinds[j])
		}
		if err := enc.Encode(row); err != nil {
			return 0, fmt.Errorf("write avro: %w", err)
		}
	}
	if err := enc.Close(); err != nil {
		return 0, fmt.Errorf("close avro: %w", err)
	}
	return b.conflicts(), nil
}

func avroValue(c row.Cell, col row.Kind) any {
	if c.Kind == row.KindNull {
		return nil
	}
	switch col {
	case row.KindBool:
		return c.I != 0
	case row.KindInt:
		return c.I
	case row.KindFloat:
		if c.Kind == row.KindInt {
			return float64(c.I)
		}
		return c.F
	case row.KindTimestamp:
		return time.UnixMicro(c.I).UTC()
	}
	return c.Text()
}
