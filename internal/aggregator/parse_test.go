package aggregator

import (
	"strings"
	"testing"
)

// FuzzParse: no record value, however broken, panics a parser or the
// event-time reader; what parses has every declared CSV field typed.
func FuzzParse(f *testing.F) {
	f.Add([]byte("A002,R051,02-00-00,59 ST,NQR456W,BMT,05/27/2023,00:00:00,REGULAR,2040,985"))
	f.Add([]byte(`C/A,UNIT,SCP,STATION,LINENAME,DIVISION,DATE,TIME,DESC,ENTRIES,EXITS   `))
	f.Add([]byte(`"A,002",R051,"x""y",,,,05/27/2023,00:00:00,,1,`))
	f.Add([]byte(`{"event_type":"yellow_taxi_trip","payload":{"tpep_pickup_datetime":"2025-01-01T00:18:38","fare_amount":10}}`))
	f.Add([]byte(`{"payload":[1,2]}`))
	csvP := csvParser{cols: mtaColumns}
	jsonP := jsonParser{eventType: "yellow_taxi_trip"}
	f.Fuzz(func(t *testing.T, value []byte) {
		if fs, err := csvP.parse(value); err == nil {
			if _, err := eventTime(fs, []string{"DATE", "TIME"}, TimeLayout("MM/DD/YYYY HH:mm:ss")); err != nil && !strings.Contains(err.Error(), "time") {
				t.Errorf("event time error without saying so: %v", err)
			}
			number(fs, "ENTRIES")
		}
		if fs, err := jsonP.parse(value); err == nil {
			_, _ = eventTime(fs, []string{"tpep_pickup_datetime"}, TimeLayout(""))
			number(fs, "fare_amount")
		}
	})
}
