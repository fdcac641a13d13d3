// Package nginx runs nginx as the load balancer in front of collectors, on
// loopback, with the Compose setup's configuration
// (deploy/compose/nginx.conf): the multi-instance test and the balancing
// benchmark use it. The binary is Debian's, unpacked by testenv/nginx;
// nothing is installed.
package nginx

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Find returns the nginx to run: $SLUICE_NGINX, testenv/nginx's, or the
// PATH's.
func Find() (string, error) {
	home, _ := os.UserHomeDir()
	cache := cmp.Or(os.Getenv("SLUICE_TESTENV_CACHE"), filepath.Join(home, ".cache", "sluice"))
	for _, p := range []string{os.Getenv("SLUICE_NGINX"), filepath.Join(cache, "nginx", "usr", "sbin", "nginx")} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	return "", errors.New("no nginx: run testenv/nginx (make test-deps)")
}

// Server is a running nginx.
type Server struct {
	Addr string // host:port it listens on
	cmd  *exec.Cmd
	log  string
}

// Start runs bin with conf (deploy/compose/nginx.conf's text) balancing
// over upstreams (host:port each) on listen, with its state and log in
// dir. It returns once nginx accepts connections.
func Start(bin, conf, dir, listen string, upstreams []string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o777) // its workers run as nobody when it runs as root
	// The Compose file's servers become upstreams; its state moves from
	// /var to dir.
	var servers, state strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "    server %s max_fails=1 fail_timeout=2s;\n", u)
	}
	state.WriteString("http {\n")
	for _, k := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&state, "  %s_temp_path %s;\n", k, filepath.Join(dir, k))
	}
	state.WriteString("  access_log off;\n")
	var out []string
	replaced := false
	for _, line := range strings.SplitAfter(conf, "\n") {
		switch t := strings.TrimSpace(line); {
		case strings.HasPrefix(t, "server ") && strings.Contains(t, ":8080"):
			if !replaced {
				out = append(out, servers.String())
				replaced = true
			}
		case t == "listen 8095;":
			out = append(out, "    listen "+listen+";\n")
		case t == "http {":
			out = append(out, state.String())
		default:
			out = append(out, line)
		}
	}
	if !replaced || !strings.Contains(strings.Join(out, ""), "listen "+listen) {
		return nil, errors.New("deploy/compose/nginx.conf no longer has the collector upstreams on :8080 and 'listen 8095;' this replaces")
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(out, "")), 0o644); err != nil {
		return nil, err
	}
	s := &Server{Addr: listen, log: filepath.Join(dir, "nginx.log")}
	log, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	// One process (the Compose file's one worker, without a master),
	// which Pdeathsig ends with its parent.
	s.cmd = exec.Command(bin, "-p", dir, "-c", confPath, "-e", "stderr",
		"-g", "daemon off; master_process off; pid "+filepath.Join(dir, "nginx.pid")+"; error_log stderr;")
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			b, _ := os.ReadFile(s.log)
			return nil, fmt.Errorf("nginx does not listen on %s: %v\n%s", listen, err, b)
		}
	}
}

// Pid is the nginx process's.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop ends nginx gracefully.
func (s *Server) Stop() {
	s.cmd.Process.Signal(syscall.SIGQUIT)
	s.cmd.Wait()
}
