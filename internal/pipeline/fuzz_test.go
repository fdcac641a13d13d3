package pipeline

import (
	"bytes"
	"os"
	"testing"
)

// FuzzConfig reads arbitrary bytes as a config file: nothing panics, and a
// file that reads is written back (config print) as YAML that reads again.
func FuzzConfig(f *testing.F) {
	for _, name := range []string{"testdata/full.good.yml", "testdata/invalid.bad.yml", "testdata/bad_sink_type.bad.yml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("sinks: [{type: lake, tables: {t: {columns: {a: json}}}}]\naggregations: [{name: x, window: {size: 0}}]"))
	f.Add([]byte("kafka: &k {brokers: [a:1]}\nbroker: *k\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := Default()
		if err := cfg.LoadYAML(b); err != nil {
			return
		}
		_ = cfg.Validate()
		var out bytes.Buffer
		if err := cfg.Write(&out); err != nil {
			t.Fatalf("a config that reads does not write: %v", err)
		}
		back := Default()
		if err := back.LoadYAML(out.Bytes()); err != nil {
			t.Fatalf("config print wrote YAML that does not read back: %v\n%s", err, out.Bytes())
		}
	})
}
