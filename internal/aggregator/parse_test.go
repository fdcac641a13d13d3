package aggregator

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

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
			if _, err := eventTime(fs, []string{"DATE", "TIME"}, []int{st["DATE"], st["TIME"]}, TimeLayout("MM/DD/YYYY HH:mm:ss")); err != nil && !strings.Contains(err.Error(), "time") {
				t.Errorf("event time error without saying so: %v", err)
			}
			number(fs[st["ENTRIES"]])
		}
		if err := jsonP.parse(value, fs); err == nil {
			_, _ = eventTime(fs, []string{"tpep_pickup_datetime"}, []int{st["tpep_pickup_datetime"]}, TimeLayout(""))
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
		_, err := eventTime(fs, []string{"t"}, []int{st["t"]}, TimeLayout(""))
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
