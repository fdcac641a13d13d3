package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type testSettings struct {
	Name    string              `yaml:"name" flag:"name" doc:"A name. More about it."`
	Wait    time.Duration       `yaml:"wait" flag:"wait"`
	Size    ByteSize            `yaml:"size"`
	Tags    []string            `yaml:"tags" flag:"tag"`
	Secret  string              `yaml:"secret" secret:"true"`
	Inner   testInner           `yaml:"inner"`
	Items   []testItem          `yaml:"items"`
	ByName  map[string]testItem `yaml:"by_name"`
	Ignored string              `yaml:"-"`
}

type testInner struct {
	Embedded `yaml:",inline"`
	N        int `yaml:"n"`
}

type Embedded struct {
	On bool `yaml:"on"`
}

type testItem struct {
	A int `yaml:"a"`
	B int `yaml:"b"`
}

func (i *testItem) SetDefaults() { i.B = 7 }

func TestDecode(t *testing.T) {
	got := testSettings{Name: "kept", Size: 1}
	err := DecodeYAML([]byte(`
wait: 0
size: 2KiB
tags: [a, b]
inner: {on: true, n: 3}
items: [{a: 1}, {a: 2, b: 3}]
by_name: {x: {a: 4}}
`), &got)
	if err != nil {
		t.Fatal(err)
	}
	want := testSettings{Name: "kept", Size: 2 << 10, Tags: []string{"a", "b"}, Inner: testInner{Embedded{true}, 3},
		Items: []testItem{{1, 7}, {2, 3}}, ByName: map[string]testItem{"x": {4, 7}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
}

// TestDecodeReportsEveryError checks that each problem of a file is one
// error, with its path and line.
func TestDecodeReportsEveryError(t *testing.T) {
	var s testSettings
	err := DecodeYAML([]byte(`
nam: x
wait: 5
size: lots
inner: {on: maybe, m: 1}
items: [{a: x}]
tags: one
`), &s)
	want := []string{
		"nam: unknown setting; did you mean name? (known here: by_name, inner, items, name, secret, size, tags, wait) (line 2)",
		"wait: want a duration with a unit, such as 5s, got 5 (line 3)",
		`size: want a size such as 65536, 64KiB or 1MiB, got "lots" (line 4)`,
		"inner.on: want true or false, got `maybe` (line 5)",
		"inner.m: unknown setting; did you mean n? (known here: n, on) (line 5)",
		"items[0].a: want a whole number, got `x` (line 6)",
		"tags: want a list, got a value (line 7)",
	}
	var got []string
	for _, e := range Errors(err) {
		got = append(got, e.Error())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestEncodeMasksSecrets(t *testing.T) {
	b, err := EncodeYAML(testSettings{Name: "n", Wait: 1500 * time.Millisecond, Size: 64 << 10, Secret: "hunter2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"wait: 1.5s", "size: 64KiB", "secret: '*****'"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("encoded lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "hunter2") {
		t.Errorf("the secret shows:\n%s", b)
	}
}

// TestFlagSet checks defaults < file < environment < flags for settings
// and for a command's own values, and lists replaced rather than grown.
func TestFlagSet(t *testing.T) {
	load := func(c *testSettings, path string) error { return DecodeYAML([]byte("name: file\ntags: [f]\n"), c) }
	fs := NewFlagSet("test", "Usage: test", &bytes.Buffer{}, func() testSettings { return testSettings{Name: "default"} }, load)
	fs.Section(func(c *testSettings) any { return c })
	n := 3
	fs.Int(&n, "n", "a number of the command's own")
	t.Setenv("SLUICE_NAME", "env")
	t.Setenv("SLUICE_TAG", "e1,e2")
	t.Setenv("SLUICE_N", "4")
	cfg, err := fs.Parse([]string{"--config", "x.yml", "pos", "--tag", "g1", "--wait", "2s"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "env" || !cmp.Equal(cfg.Tags, []string{"g1"}) || cfg.Wait != 2*time.Second || n != 4 {
		t.Errorf("resolved %+v, n %d", cfg, n)
	}
	if diff := cmp.Diff([]string{"pos"}, fs.Args()); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	var help bytes.Buffer
	fs2 := NewFlagSet("test", "Usage: test", &help, func() testSettings { return testSettings{Name: "default"} }, load)
	fs2.Section(func(c *testSettings) any { return c })
	if _, err := fs2.Parse([]string{"-h"}); !IsHelp(err) {
		t.Fatalf("-h = %v", err)
	}
	for _, want := range []string{"A name (env SLUICE_NAME)", "(default default)", "SLUICE_WAIT"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, help.String())
		}
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"65536": 65536, "64KiB": 64 << 10, "1MiB": 1 << 20, "16MB": 16_000_000, "1.5GiB": 3 << 29, "2g": 2 << 30, "10 b": 10,
	} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "MiB", "1TiB", "1e30"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

func TestCAPool(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CAPool(notPEM); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("CAPool of a file without PEM = %v", err)
	}
	if _, err := CAPool(filepath.Join(dir, "missing.pem")); err == nil || !strings.Contains(err.Error(), "read CA file") {
		t.Errorf("CAPool of a missing file = %v", err)
	}
}
