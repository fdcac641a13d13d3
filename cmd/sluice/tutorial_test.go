package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite docs/tutorial/checkouts.ndjson.gz")

// checkouts writes the tutorial's made-up web shop orders: n checkouts,
// sorted by ts, 1 to 6 seconds apart from 2025-06-02T10:00:00Z, in four
// currencies of which CHF is rare (a quiet group), with 1 to 4 items
// each. The same seed gives the same file.
func checkouts(n int) []byte {
	r := mrand.New(mrand.NewPCG(2025, 6))
	type product struct {
		sku   string
		price float64
	}
	catalog := []product{
		{"mug-blue", 12.5}, {"mug-red", 12.5}, {"tea-earl-grey", 6.9}, {"tea-sencha", 8.4},
		{"teapot-cast-iron", 49}, {"kettle", 39.9}, {"coasters-4", 9.95}, {"honey-jar", 7.2},
		{"infuser", 4.5}, {"gift-card-25", 25}, {"tray-oak", 34}, {"cup-espresso-2", 14.8},
	}
	type item struct {
		SKU   string  `json:"sku"`
		Qty   int     `json:"qty"`
		Price float64 `json:"price"`
	}
	type checkout struct {
		OrderID  string  `json:"order_id"`
		Email    string  `json:"customer_email"`
		TS       string  `json:"ts"`
		Amount   float64 `json:"amount"`
		Currency string  `json:"currency"`
		Items    []item  `json:"items"`
	}
	var b bytes.Buffer
	ts := time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)
	for range n {
		ts = ts.Add(time.Duration(1+r.IntN(6)) * time.Second)
		c := checkout{
			OrderID: fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", r.Uint32(), r.IntN(1<<16), r.IntN(1<<12),
				0x8000|r.IntN(1<<14), r.Uint64()&(1<<48-1)),
			Email: fmt.Sprintf("customer%d@example.com", 1+r.IntN(400)),
			TS:    ts.Format(time.RFC3339),
		}
		switch x := r.IntN(100); {
		case x < 50:
			c.Currency = "EUR"
		case x < 80:
			c.Currency = "USD"
		case x < 98:
			c.Currency = "GBP"
		default:
			c.Currency = "CHF"
		}
		cents := 0
		for range 1 + r.IntN(4) {
			p := catalog[r.IntN(len(catalog))]
			it := item{p.sku, 1 + r.IntN(3), p.price}
			c.Items = append(c.Items, it)
			cents += it.Qty * int(p.price*100+0.5)
		}
		c.Amount = float64(cents) / 100
		line, _ := json.Marshal(c)
		b.Write(line)
		b.WriteByte('\n')
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(b.Bytes())
	zw.Close()
	return gz.Bytes()
}

// TestTutorialData: docs/tutorial/checkouts.ndjson.gz is what checkouts
// makes (go test -run TestTutorialData -update rewrites it).
func TestTutorialData(t *testing.T) {
	file := filepath.Join(repoDir, "docs/tutorial/checkouts.ndjson.gz")
	want := checkouts(2000)
	if *update {
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// The rows, not the gzip bytes, which another Go may compress
	// differently.
	if !bytes.Equal(gunzip(t, got), gunzip(t, want)) {
		t.Errorf("%s is not what the generator makes; run go test ./cmd/sluice -run TestTutorialData -update", file)
	}
	if n := bytes.Count(gunzip(t, got), []byte("\n")); n != 2000 {
		t.Errorf("%d checkouts, want 2000", n)
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTutorial runs docs/tutorial.md as a reader would: every sh block in
// order, in one working directory that a cd carries to the next block,
// each checked against the text block after it, if any. In the expected
// text, … stands for anything on its line, and a line of … alone for any
// lines. Queries are run again until they succeed and match (the lake and
// the windows fill within seconds), other commands once. HTML comments steer
// what the prose asks of the reader: "tutorial: background" runs the next
// block until "tutorial: stop", which is Ctrl-C; "tutorial: file PATH"
// checks that the next block is the tutorial's file PATH.
//
// The tutorial uses the default ports, and HOME is a temporary directory,
// so that ~/shop and what go install writes stay out of the way.
func TestTutorial(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:9092"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("the tutorial uses the default ports, and %s is taken: %v", addr, err)
		}
		l.Close()
	}
	doc, err := os.ReadFile(filepath.Join(repoDir, "docs/tutorial.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps := tutorialSteps(string(doc))

	tmp := t.TempDir()
	home, bin := filepath.Join(tmp, "home"), filepath.Join(tmp, "bin")
	os.MkdirAll(home, 0o755)
	env := os.Environ()
	// The module and build caches stay where they are, or go install
	// would download and compile everything again under the new HOME.
	for _, v := range []string{"GOPATH", "GOMODCACHE", "GOCACHE"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, v+"="+strings.TrimSpace(string(out)))
	}
	env = append(env, "HOME="+home, "GOBIN="+bin, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"GOFLAGS=", "NO_COLOR=1")

	dir := repoDir
	var up *exec.Cmd
	var upLog *lockedBuffer
	upExited := make(chan error, 1)
	t.Cleanup(func() {
		if up != nil && up.ProcessState == nil {
			up.Process.Kill()
		}
	})
	for _, s := range steps {
		switch {
		case s.directive == "stop":
			if up == nil {
				t.Fatalf("line %d: stop, but nothing runs", s.line)
			}
			up.Process.Signal(os.Interrupt)
			select {
			case err := <-upExited:
				if err != nil {
					t.Fatalf("line %d: sluice up exited with %v after Ctrl-C:\n%s", s.line, err, upLog)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("line %d: sluice up did not stop within 60s of Ctrl-C:\n%s", s.line, upLog)
			}
			if strings.Contains(upLog.String(), `"level":"ERROR"`) {
				t.Errorf("line %d: sluice up logged errors:\n%s", s.line, upLog)
			}
			up = nil
		case strings.HasPrefix(s.directive, "file "):
			want, err := os.ReadFile(filepath.Join(repoDir, "docs/tutorial", strings.TrimPrefix(s.directive, "file ")))
			if err != nil {
				t.Fatalf("line %d: %v", s.line, err)
			}
			if diff := cmp.Diff(string(want), s.code); diff != "" {
				t.Errorf("line %d: the block is not %s (-file +block):\n%s", s.line, s.directive, diff)
			}
		case s.info != "sh":
		case s.directive == "background":
			upLog = &lockedBuffer{}
			up = exec.Command("bash", "-c", "exec "+s.code)
			up.Dir, up.Env, up.Stdout, up.Stderr = dir, env, upLog, upLog
			if err := up.Start(); err != nil {
				t.Fatal(err)
			}
			go func(cmd *exec.Cmd) { upExited <- cmd.Wait() }(up)
			waitReady(t, s.line, upExited, upLog)
		default:
			retry := strings.HasPrefix(s.code, "sluice query")
			deadline := time.Now().Add(60 * time.Second)
			for {
				out, next, err := runBlock(dir, env, s.code)
				if err == nil && (s.want == nil || s.want.MatchString(normalize(out)+"\n")) {
					if testing.Verbose() {
						t.Logf("line %d:\n%s", s.line, out)
					}
					dir = next
					break
				}
				if !retry || time.Now().After(deadline) {
					if err != nil {
						t.Fatalf("line %d: %s\n%v\n%s", s.line, s.code, err, out)
					}
					t.Fatalf("line %d: %s\noutput:\n%s\nwant:\n%s", s.line, s.code, out, s.wantText)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	}
	if up != nil {
		t.Fatal("the tutorial leaves sluice up running")
	}

	// Every window is what DuckDB computes from the file and the two good
	// events sent with curl; only the one of the last (12:00) is open.
	data := filepath.Join(home, "shop", "sluice-data")
	got, code := sluice(t, "query", "--data-dir", data, "--format", "csv",
		"SELECT window_start, currency, orders, round(revenue, 2) AS revenue FROM agg_revenue_5m ORDER BY ALL")
	want, code2 := sluice(t, "query", "--data-dir", data, "--format", "csv", `
		WITH checkouts AS (
			SELECT ts::TIMESTAMPTZ AS ts, currency, amount FROM read_json('`+filepath.Join(home, "shop", "checkouts.ndjson.gz")+`')
			UNION ALL SELECT TIMESTAMPTZ '2025-06-02 09:59:00Z', 'EUR', 25
			UNION ALL SELECT TIMESTAMPTZ '2025-06-02 12:01:00Z', 'USD', 12.5)
		SELECT time_bucket(INTERVAL 5 minute, ts) AS window_start, currency, count(*) AS orders, round(sum(amount), 2) AS revenue
		FROM checkouts WHERE ts < TIMESTAMPTZ '2025-06-02 12:00:00Z' GROUP BY ALL ORDER BY ALL`)
	if code != 0 || code2 != 0 || strings.Count(want, "\n") != 89 {
		t.Fatalf("queries failed (%d, %d):\n%s\n%s", code, code2, got, want)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("agg_revenue_5m differs from DuckDB over the input (-duckdb +sluice):\n%s", diff)
	}
}

// tutorialStep is a fenced block of the tutorial, with the directive
// before it and the expected output after it, or a directive alone.
type tutorialStep struct {
	line      int
	directive string
	info      string
	code      string
	want      *regexp.Regexp
	wantText  string
}

func tutorialSteps(doc string) []tutorialStep {
	var (
		steps     []tutorialStep
		directive string
		fence     *tutorialStep
		body      []string
	)
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		switch {
		case fence != nil && l == "```":
			fence.code = strings.Join(body, "\n") + "\n"
			if fence.info == "text" && len(steps) > 0 && steps[len(steps)-1].info == "sh" {
				prev := &steps[len(steps)-1]
				prev.wantText, prev.want = fence.code, expectation(fence.code)
			} else {
				steps = append(steps, *fence)
			}
			fence, body = nil, nil
		case fence != nil:
			body = append(body, l)
		case strings.HasPrefix(l, "```"):
			fence = &tutorialStep{line: i + 1, directive: directive, info: strings.TrimPrefix(l, "```")}
			directive = ""
		case strings.HasPrefix(l, "<!-- tutorial: "):
			d := strings.TrimSuffix(strings.TrimPrefix(l, "<!-- tutorial: "), " -->")
			if d == "stop" {
				steps = append(steps, tutorialStep{line: i + 1, directive: d})
			} else {
				directive = d
			}
		}
	}
	return steps
}

// expectation is the expected text as a pattern: … anything on a line, a
// line of … alone any lines.
func expectation(text string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`^`)
	for _, l := range strings.Split(normalize(text), "\n") {
		if l == "…" {
			b.WriteString(`(?:[^\n]*\n)*?`)
			continue
		}
		parts := strings.Split(l, "…")
		for i, p := range parts {
			if i > 0 {
				b.WriteString(`[^\n]*`)
			}
			b.WriteString(regexp.QuoteMeta(p))
		}
		b.WriteString(`\n`)
	}
	return regexp.MustCompile(b.String() + `$`)
}

// normalize drops trailing spaces and blank lines at the end.
func normalize(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n "), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	return strings.Join(lines, "\n")
}

// runBlock runs a block with bash, stdout and stderr together, and says
// where it left the working directory.
func runBlock(dir string, env []string, code string) (string, string, error) {
	state, err := os.CreateTemp("", "tutorial-pwd")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(state.Name())
	state.Close()
	cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", code+"\npwd > "+state.Name())
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), "", err
	}
	next, err := os.ReadFile(state.Name())
	return string(out), strings.TrimSpace(string(next)), err
}

// waitReady waits until the collector of the sluice up just started
// answers /readyz with 200.
func waitReady(t *testing.T, line int, exited chan error, log *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("line %d: sluice up exited: %v\n%s", line, err, log)
		default:
		}
		if res, err := http.Get("http://127.0.0.1:8080/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("line %d: sluice up not ready within 60s:\n%s", line, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
