package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// composeService is what the test reads of a docker-compose.yml service.
type composeService struct {
	Image           string            `json:"image"`
	Command         []string          `json:"command"`
	Environment     map[string]string `json:"environment"`
	Ports           []string          `json:"ports"`
	StopGracePeriod string            `json:"stop_grace_period"`
	Build           map[string]any    `json:"build"`
}

// TestCompose checks the shape of compose/docker-compose.yml, which no
// Docker engine here can run: Kafka without topic auto-creation, S3 and an
// Iceberg REST catalog, two collectors behind nginx on port 8095, and the
// enricher, loader and aggregator, each a sluice process with an instance
// id of its own, and a config every one of them accepts.
func TestCompose(t *testing.T) {
	src, err := os.ReadFile("compose/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]composeService `json:"services"`
	}
	// Anchors and merge keys (x-sluice) are resolved by the YAML reader.
	if err := yaml.Unmarshal(src, &file); err != nil {
		t.Fatal(err)
	}
	s := file.Services
	for _, name := range []string{"kafka", "minio", "iceberg-rest", "collector-1", "collector-2", "load-balancer", "enricher", "loader", "aggregator"} {
		if _, ok := s[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	if !strings.HasPrefix(s["kafka"].Image, "apache/kafka:4.") || s["kafka"].Environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] != "false" {
		t.Errorf("kafka: %s with auto-creation %q, want Apache Kafka 4 with it off", s["kafka"].Image, s["kafka"].Environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"])
	}
	stages := map[string][]string{"collector-1": {"collector"}, "collector-2": {"collector"}, "enricher": {"enricher"},
		"loader": {"loader", "lake"}, "aggregator": {"aggregator"}}
	ids := map[string]string{}
	for name, cmd := range stages {
		svc := s[name]
		if svc.Image != "sluice:dev" || svc.Build["context"] != "../.." || !slices.Equal(svc.Command, cmd) {
			t.Errorf("%s: image %s, build %v, command %v; want sluice:dev built from the repository, running %v", name, svc.Image, svc.Build, svc.Command, cmd)
		}
		id := svc.Environment["SLUICE_INSTANCE_ID"]
		if id == "" || ids[id] != "" {
			t.Errorf("%s: instance id %q, want one of its own", name, id)
		}
		ids[id] = name
	}
	for _, name := range []string{"collector-1", "collector-2"} {
		if g, err := time.ParseDuration(s[name].StopGracePeriod); err != nil || g <= 30*time.Second {
			t.Errorf("%s: stop_grace_period %q, want longer than the collector's 30s shutdown timeout", name, s[name].StopGracePeriod)
		}
	}
	if !slices.Contains(s["load-balancer"].Ports, "8095:8095") {
		t.Errorf("load balancer ports %v, want 8095", s["load-balancer"].Ports)
	}
	conf, err := os.ReadFile("compose/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	servers := regexp.MustCompile(`(?m)^\s*server\s+([\w.-]+:\d+)`).FindAllStringSubmatch(string(conf), -1)
	var upstreams []string
	for _, m := range servers {
		upstreams = append(upstreams, m[1])
	}
	if want := []string{"collector-1:8080", "collector-2:8080"}; !slices.Equal(upstreams, want) {
		t.Errorf("nginx upstreams %v, want %v", upstreams, want)
	}
	if !regexp.MustCompile(`(?m)^\s*listen 8095;`).Match(conf) {
		t.Error("nginx does not listen on 8095")
	}

	// Every process accepts the config file with its environment.
	bin := buildSluice(t)
	for name := range stages {
		configCheck(t, bin, "compose/sluice.yaml", s[name].Environment)
	}
}

// configCheck runs `sluice config check file` with a process's environment
// (its SLUICE_CONFIG aside: the file is the one checked).
func configCheck(t *testing.T, bin, file string, env map[string]string) {
	t.Helper()
	check := exec.Command(bin, "config", "check", file)
	check.Env = os.Environ()
	for k, v := range env {
		if k != "SLUICE_CONFIG" {
			check.Env = append(check.Env, k+"="+v)
		}
	}
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("sluice config check %s: %v\n%s", file, err, out)
	}
}

// buildSluice builds the repository's sluice binary, once for every test
// that needs it.
func buildSluice(t *testing.T) string {
	t.Helper()
	sluiceOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-deploy-test")
		if err != nil {
			sluiceErr = err
			return
		}
		sluiceBin = filepath.Join(dir, "sluice")
		build := exec.Command("go", "build", "-o", sluiceBin, "./cmd/sluice")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			sluiceErr = fmt.Errorf("build sluice: %v\n%s", err, out)
		}
	})
	if sluiceErr != nil {
		t.Fatal(sluiceErr)
	}
	return sluiceBin
}

var (
	sluiceOnce sync.Once
	sluiceBin  string
	sluiceErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sluiceBin != "" {
		os.RemoveAll(filepath.Dir(sluiceBin))
	}
	os.Exit(code)
}
