package aggregator

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/bus"
	"github.com/sluicehq/sluice/internal/window"
)

// FuzzParse: no record value, however broken, panics a parser or the
// event-time reader; what parses has every declared CSV field typed.
func FuzzParse(f *testing.F) {
	f.Add([]byte("A002,R051,02-00-00,59 ST,NQR456W,BMT,05/27/2023,00:00:00,REGULAR,2040,985"))
	f.Add([]byte(`C/A,UNIT,SCP,STATION,LINENAME,DIVISION,DATE,TIME,DESC,ENTRIES,EXITS   `))
	f.Add([]byte(`"A,002",R051,"x""y",,,,05/27/2023,00:00:00,,1,`))
	f.Add([]byte(`{"event_type":"yellow_taxi_trip","payload":{"tpep_pickup_datetime":"2025-01-01T00:18:38","fare_amount":10}}`))
	f.Add([]byte(`{"payload":[1,2]}`))
	st := slots{}
	for _, n := range []string{"DATE", "TIME", "ENTRIES", "C/A", "tpep_pickup_datetime", "fare_amount"} {
		st.add(n)
	}
	csvP := newCSVParser(mtaColumns, st)
	jsonP := jsonParser{eventType: "yellow_taxi_trip", slots: st}
	f.Fuzz(func(t *testing.T, value []byte) {
		fs := make(fields, len(st))
		if err := csvP.parse(value, fs); err == nil {
			if _, err := newTimeReader(TimeLayout("MM/DD/YYYY HH:mm:ss")).read(fs, []string{"DATE", "TIME"}, []int{st["DATE"], st["TIME"]}); err != nil && !strings.Contains(err.Error(), "time") {
				t.Errorf("event time error without saying so: %v", err)
			}
			number(fs[st["ENTRIES"]])
		}
		if err := jsonP.parse(value, fs); err == nil {
			_, _ = newTimeReader(TimeLayout("")).read(fs, []string{"tpep_pickup_datetime"}, []int{st["tpep_pickup_datetime"]})
			number(fs[st["fare_amount"]])
		}
	})
}

// TestEventTimeRange: a time windows cannot hold is a bad time, not one
// wrapped around to another century.
func TestEventTimeRange(t *testing.T) {
	st := slots{}
	st.add("t")
	for in, ok := range map[string]bool{
		"2023-05-27T00:00:00Z": true, "1700-01-01T00:00:00Z": true, "2199-12-31T23:59:59Z": true,
		"3023-05-27T00:00:00Z": false, "1600-01-01T00:00:00Z": false, "2200-01-01T00:00:00Z": false,
	} {
		fs := make(fields, 1)
		fs[0] = field{s: in, ok: true}
		_, err := newTimeReader(TimeLayout("")).read(fs, []string{"t"}, []int{st["t"]})
		if (err == nil) != ok {
			t.Errorf("%s: err %v, want ok %v", in, err, ok)
		}
	}
}

// TestCSVFields: quoting as RFC 4180 has it, stray quotes as they are,
// spaces trimmed, empty fields null; the header and broken lines refused.
func TestCSVFields(t *testing.T) {
	cols := []Column{{"a", "string"}, {"b", "int"}, {"c", "string"}}
	st := slots{}
	for _, c := range cols {
		st.add(c.Name)
	}
	p := newCSVParser(cols, st)
	for in, want := range map[string]string{
		`x,1,y`:                `x|1|y`,
		`"x,1",2,"say ""hi"""`: `x,1|2|say "hi"`,
		` x , 3 ,` + "\r\n":    `x|3|<null>`,
		`x"y,4,z`:              `x"y|4|z`,
		`"x"y",5,z`:            `x"y|5|z`,
		`a,b,c`:                `skip`,
		`x,one,y`:              `error: b: "one" is not an int`,
		`x,1`:                  `error: csv: 2 fields, the schema declares 3 (a,b,c)`,
		`"x,1,y`:               `error: csv: field 1: a quoted field is not closed`,
	} {
		f := make(fields, len(st))
		err := p.parse([]byte(in), f)
		var got string
		switch {
		case errors.Is(err, errSkip):
			got = "skip"
		case err != nil:
			got = "error: " + err.Error()
		default:
			var vs []string
			for _, v := range f {
				if !v.ok {
					v.s = "<null>"
				}
				vs = append(vs, v.s)
			}
			got = strings.Join(vs, "|")
		}
		if got != want {
			t.Errorf("%q: got %s, want %s", in, got, want)
		}
	}
}

// FuzzReadParsed: a repartitioned record in the parsed form reads back as
// the event it was parsed into, with the input after it; any other value
// under the header is refused (and parsed from the input), never a panic.
func FuzzReadParsed(f *testing.F) {
	f.Add([]byte("A002,R051,02-00-00,59 ST,NQR456W,BMT,05/27/2023,00:00:00,REGULAR,2040,985"))
	f.Add([]byte(`"A,002",R051,"x""y",,,,05/27/2023,00:00:00,,1,`))
	f.Add([]byte{0x80, 0x80})
	a, err := New(mtaConfig(), bus.ClientConfig{}, nil, nil, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	header := []kgo.RecordHeader{{Key: headerParsed, Value: []byte(parsedVersion)}}
	f.Fuzz(func(t *testing.T, value []byte) {
		var e window.Event
		a.readParsed(&kgo.Record{Value: value, Headers: header}, &e)
		fs, at, _ := a.read(&kgo.Record{Value: value}, make(fields, len(a.slots)))
		if fs == nil {
			return
		}
		var want window.Event
		a.event(&want, fs, at, 0)
		rec, _ := a.route(&kgo.Record{Value: value}, "repartition", make(fields, len(a.slots)))
		orig, ok := a.readParsed(rec, &e)
		if !ok {
			t.Fatalf("%q: its parsed form is refused", value)
		}
		if diff := cmp.Diff(e, want, cmpopts.EquateNaNs()); diff != "" {
			t.Errorf("%q: parsed form reads back (-got +want):\n%s", value, diff)
		}
		if !bytes.Equal(orig, value) {
			t.Errorf("%q: the input after the parsed form is %q", value, orig)
		}
	})
}

// FuzzDigitLayout: a layout of numbers and separators reads a time as
// time.Parse would, or leaves it to time.Parse.
func FuzzDigitLayout(f *testing.F) {
	for _, s := range []string{"05/27/2023 00:00:00", "02/29/2024 23:59:59", "02/29/2023 12:00:00", "13/01/2023 00:00:00",
		"05/27/2023 24:00:00", "05/27/2023 7:00:00", "05/27/2023 07:00:00.5", "2023-05-27 00:00:00", "0000-01-01T00:00:00"} {
		f.Add(s)
	}
	layouts := []string{"01/02/2006 15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04:05", "02.01.2006 15:04:05", "2006/01/02"}
	f.Fuzz(func(t *testing.T, s string) {
		for _, layout := range layouts {
			got, ok := newDigitLayout(layout).parse([]byte(s))
			if !ok {
				continue
			}
			want, err := time.Parse(layout, s)
			if err != nil || !got.Equal(want) {
				t.Errorf("layout %q, %q: got %v, time.Parse %v, %v", layout, s, got, want, err)
			}
		}
	})
}

// TestDigitLayout: which layouts are read digit by digit, and which
// times they leave to time.Parse.
func TestDigitLayout(t *testing.T) {
	for layout, want := range map[string]bool{
		"01/02/2006 15:04:05": true, "2006-01-02T15:04:05": true, "2006-01-02 15:04:05": true,
		time.RFC3339Nano: false, "01/02/2006 03:04:05 PM": false, "02.01.2006 15:04:05": false,
		"2006-01-02": false, "01/02/06 15:04:05": false, "2006-01-02 15:04:05 2006": false,
	} {
		if got := newDigitLayout(layout) != nil; got != want {
			t.Errorf("%q read digit by digit: %v, want %v", layout, got, want)
		}
	}
	l := newDigitLayout("01/02/2006 15:04:05")
	for in, want := range map[string]bool{
		"05/27/2023 00:00:00": true, "02/29/2024 23:59:59": true,
		"02/29/2023 12:00:00": false, "13/01/2023 00:00:00": false, "05/27/2023 24:00:00": false,
		"05/27/2023 7:00:00": false, "05/27/2023 07:00:00.5": false, "05-27-2023 07:00:00": false, "": false,
	} {
		got, ok := l.parse([]byte(in))
		if ok != want {
			t.Errorf("%q: read %v, want %v", in, ok, want)
		}
		if tp, err := time.Parse("01/02/2006 15:04:05", in); ok && (err != nil || !tp.Equal(got)) {
			t.Errorf("%q: got %v, time.Parse %v, %v", in, got, tp, err)
		}
	}
	// What it leaves, time.Parse still reads.
	r := newTimeReader("01/02/2006 15:04:05")
	st := slots{}
	st.add("d")
	st.add("t")
	fs := fields{{s: "05/27/2023", ok: true}, {s: "7:00:00.250", ok: true}}
	got, err := r.read(fs, []string{"d", "t"}, []int{st["d"], st["t"]})
	if want := time.Date(2023, 5, 27, 7, 0, 0, 250e6, time.UTC); err != nil || !got.Equal(want) {
		t.Errorf("a one-digit hour and a fraction: got %v, %v; want %v", got, err, want)
	}
}
