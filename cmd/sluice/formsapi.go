package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/sluicehq/sluice/internal/formsapi"
	"github.com/sluicehq/sluice/internal/pipeline"
	"github.com/sluicehq/sluice/internal/sample"
)

const formsAPIUsage = `Usage: sluice forms-api [--dir DIR] [--addr ADDR] [--latency 20ms --jitter 10ms --fail-rate 0.05 --status 503]

Serves form definitions (Typeform-style JSON files, keyed by their "id") at
GET /forms/{id}: the internal API the form enrichment calls. By default the
bundled forms. Latency and failures can be injected for tests and demos.
`

func runFormsAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := pipeline.NewFlagSet("forms-api", formsAPIUsage, stderr)
	var dir string
	addr := "127.0.0.1:8090"
	cfg := formsapi.Config{Status: 503}
	fset.String(&dir, "dir", "directory of form definitions (*.json); default: the bundled forms")
	fset.String(&addr, "addr", "address to listen on")
	fset.Duration(&cfg.Latency, "latency", "delay every answer this long")
	fset.Duration(&cfg.Jitter, "jitter", "vary the delay by up to this much either way")
	fset.Float(&cfg.FailRate, "fail-rate", "share of requests answered with --status instead (0 to 1)")
	fset.Int(&cfg.Status, "status", "the status of injected failures")
	logFlags(fset)
	_, logger, err := setup(fset, args, stderr)
	if err != nil {
		return err
	}
	cfg.Forms, _ = fs.Sub(sample.FS(), "forms")
	if dir != "" {
		cfg.Forms = os.DirFS(dir)
	}
	s, err := formsapi.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (pass --addr)", addr, err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "forms API on http://%s/forms/{id}, %d forms (e.g. http://%s/forms/%s). Ctrl-C stops it.\n",
		ln.Addr(), len(s.IDs()), ln.Addr(), s.IDs()[0])
	logger.Info("forms api listening", "addr", ln.Addr().String(), "forms", len(s.IDs()))
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
