// Package source reads files of rows (Parquet, CSV, CSV.gz, NDJSON; a local
// path or an http(s) URL, streamed) as JSON objects, one a row. Replay sends
// them as events; the enricher loads them as lookup tables.
package source

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"

	"github.com/sluicehq/sluice/internal/event"
)

// DefaultTimeLayout writes Parquet timestamps as ISO 8601 without a zone,
// with fractional seconds only when there are any: 2025-01-01T00:18:38.
const DefaultTimeLayout = "2006-01-02T15:04:05.999999999"

// ParquetRows reads a flat Parquet file and calls fn with each row as a JSON
// object: integers stay integers, floats keep a decimal point (so a column
// of whole doubles stays a double downstream), NaN and ±Inf become null,
// nulls stay null, timestamps and dates are strings in timeLayout, and
// strings are strings. It reads one row group at a time, never the whole
// file.
func ParquetRows(r io.ReaderAt, size int64, timeLayout string, fn func(row []byte) error) error {
	return parquetRows(r, size, timeLayout, nil, fn)
}

// parquetRows is ParquetRows telling total, when not nil, the file's row
// count first.
func parquetRows(r io.ReaderAt, size int64, timeLayout string, total func(int64), fn func(row []byte) error) error {
	f, err := parquet.OpenFile(r, size)
	if err != nil {
		return fmt.Errorf("open parquet: %w", err)
	}
	if total != nil {
		total(f.NumRows())
	}
	fields := f.Schema().Fields()
	conv := make([]converter, len(fields))
	names := make([][]byte, len(fields))
	for i, field := range fields {
		if !field.Leaf() {
			return fmt.Errorf("column %s is nested; only flat Parquet files can be replayed", field.Name())
		}
		if conv[i], err = converterFor(field, timeLayout); err != nil {
			return err
		}
		names[i] = event.AppendString(nil, field.Name())
	}
	reader := parquet.NewReader(r, f.Schema())
	defer reader.Close()
	rows := make([]parquet.Row, 256)
	var buf []byte
	for {
		n, err := reader.ReadRows(rows)
		for _, row := range rows[:n] {
			buf = append(buf[:0], '{')
			for j, v := range row {
				col := v.Column()
				if j > 0 {
					buf = append(buf, ',')
				}
				buf = append(buf, names[col]...)
				buf = append(buf, ':')
				if v.IsNull() {
					buf = append(buf, "null"...)
				} else {
					buf = conv[col](buf, v)
				}
			}
			buf = append(buf, '}')
			if ferr := fn(buf); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read parquet rows: %w", err)
		}
	}
}

type converter func(dst []byte, v parquet.Value) []byte

func converterFor(field parquet.Field, layout string) (converter, error) {
	t := field.Type()
	lt := t.LogicalType()
	switch t.Kind() {
	case parquet.Boolean:
		return func(dst []byte, v parquet.Value) []byte { return strconv.AppendBool(dst, v.Boolean()) }, nil
	case parquet.Int32, parquet.Int64:
		if lt != nil {
			switch x := lt.Value.(type) {
			case *format.TimestampType:
				unit := timeUnit(x.Unit)
				return func(dst []byte, v parquet.Value) []byte {
					return event.AppendString(dst, time.Unix(0, 0).UTC().Add(time.Duration(v.Int64())*unit).Format(layout))
				}, nil
			case *format.DateType:
				return func(dst []byte, v parquet.Value) []byte {
					return event.AppendString(dst, time.Unix(int64(v.Int32())*86400, 0).UTC().Format(time.DateOnly))
				}, nil
			}
		}
		if ct := t.ConvertedType(); ct != nil && *ct == deprecated.TimestampMicros {
			return func(dst []byte, v parquet.Value) []byte {
				return event.AppendString(dst, time.UnixMicro(v.Int64()).UTC().Format(layout))
			}, nil
		}
		if t.Kind() == parquet.Int32 {
			return func(dst []byte, v parquet.Value) []byte { return strconv.AppendInt(dst, int64(v.Int32()), 10) }, nil
		}
		return func(dst []byte, v parquet.Value) []byte { return strconv.AppendInt(dst, v.Int64(), 10) }, nil
	case parquet.Int96:
		return func(dst []byte, v parquet.Value) []byte {
			return event.AppendString(dst, int96Time(v.Int96()).Format(layout))
		}, nil
	case parquet.Float:
		return func(dst []byte, v parquet.Value) []byte { return appendFloat(dst, float64(v.Float()), 32) }, nil
	case parquet.Double:
		return func(dst []byte, v parquet.Value) []byte { return appendFloat(dst, v.Double(), 64) }, nil
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return func(dst []byte, v parquet.Value) []byte { return event.AppendString(dst, string(v.ByteArray())) }, nil
	}
	return nil, fmt.Errorf("column %s: Parquet type %s is not supported", field.Name(), t)
}

func timeUnit(u format.TimeUnit) time.Duration {
	switch u.Value.(type) {
	case *format.MilliSeconds:
		return time.Millisecond
	case *format.NanoSeconds:
		return time.Nanosecond
	}
	return time.Microsecond
}

// int96Time decodes the legacy Impala/Spark timestamp: nanoseconds of the
// day in the low 8 bytes, the Julian day in the high 4.
func int96Time(v deprecated.Int96) time.Time {
	nanos := int64(v[1])<<32 | int64(v[0])
	const unixEpochJulianDay = 2440588
	return time.Unix((int64(v[2])-unixEpochJulianDay)*86400, nanos).UTC()
}

// appendFloat writes a float that always reads back as a float: 1 is
// written 1.0. NaN and infinities, which JSON cannot hold, are null.
func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, 'g', -1, bits)
	if !strings.ContainsAny(string(dst[start:]), ".e") {
		dst = append(dst, ".0"...)
	}
	return dst
}
