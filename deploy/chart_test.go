package deploy

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite kubernetes/sluice.yaml from the chart's defaults")

// manifestsPath is the plain manifests, rendered from the chart's defaults.
const manifestsPath = "kubernetes/sluice.yaml"

// render renders the chart as `helm template sluice deploy/helm/sluice`
// with values set, and returns the manifests in template file order.
func render(t *testing.T, values map[string]any) string {
	t.Helper()
	out, err := renderChart(values)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// renderChart is render, returning the chart's own errors (such as a
// required value missing).
func renderChart(values map[string]any) (string, error) {
	ch, err := loader.Load("helm/sluice")
	if err != nil {
		return "", fmt.Errorf("load chart: %w", err)
	}
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{Name: "sluice", Namespace: "sluice", IsInstall: true},
		chartutil.DefaultCapabilities)
	if err != nil {
		return "", fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return "", fmt.Errorf("render: %w", err)
	}
	// In Helm's install order, as `helm template` prints them, so that
	// `kubectl apply -f` makes the namespace first.
	for name := range files {
		if !strings.HasSuffix(name, ".yaml") {
			delete(files, name) // NOTES.txt and the helpers
		}
	}
	_, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return "", fmt.Errorf("sort manifests: %w", err)
	}
	var out strings.Builder
	for _, m := range manifests {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", m.Name, strings.TrimSpace(m.Content))
	}
	return out.String(), nil
}

// objects are the rendered manifests decoded with the Kubernetes API
// types, strictly: a field the type does not have is an error.
type objects struct {
	namespaces   []corev1.Namespace
	configMaps   []corev1.ConfigMap
	secrets      []corev1.Secret
	accounts     []corev1.ServiceAccount
	services     []corev1.Service
	deployments  []appsv1.Deployment
	statefulSets []appsv1.StatefulSet
	budgets      []policyv1.PodDisruptionBudget
	autoscalers  []autoscalingv2.HorizontalPodAutoscaler
	monitors     []serviceMonitor
}

// serviceMonitor is the Prometheus Operator's type, as far as the chart
// uses it; its module is not worth a dependency.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func decode(t *testing.T, manifests string) objects {
	t.Helper()
	var o objects
	for doc := range strings.SplitSeq(manifests, "\n---\n") {
		doc = strings.TrimPrefix(doc, "---\n")
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("%v in:\n%s", err, doc)
		}
		var err error
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Namespace":
			err = add(&o.namespaces, doc)
		case "v1 ConfigMap":
			err = add(&o.configMaps, doc)
		case "v1 Secret":
			err = add(&o.secrets, doc)
		case "v1 ServiceAccount":
			err = add(&o.accounts, doc)
		case "v1 Service":
			err = add(&o.services, doc)
		case "apps/v1 Deployment":
			err = add(&o.deployments, doc)
		case "apps/v1 StatefulSet":
			err = add(&o.statefulSets, doc)
		case "policy/v1 PodDisruptionBudget":
			err = add(&o.budgets, doc)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			err = add(&o.autoscalers, doc)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			err = add(&o.monitors, doc)
		default:
			t.Fatalf("unexpected object %s %s:\n%s", tm.APIVersion, tm.Kind, doc)
		}
		if err != nil {
			t.Fatalf("%s %s does not decode strictly: %v\n%s", tm.APIVersion, tm.Kind, err, doc)
		}
	}
	return o
}

// add decodes doc strictly and appends it to list.
func add[T any](list *[]T, doc string) error {
	var v T
	if err := yaml.UnmarshalStrict([]byte(doc), &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// TestManifestsAreRenderedFromTheChart keeps kubernetes/sluice.yaml what
// the chart renders with its defaults; go test -update rewrites it.
func TestManifestsAreRenderedFromTheChart(t *testing.T) {
	got := "# Rendered from deploy/helm/sluice with its default values by\n" +
		"# `cd deploy && go test -run TestManifestsAreRenderedFromTheChart -update`; do not edit.\n" +
		render(t, nil)
	if *update {
		if err := os.WriteFile(manifestsPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(manifestsPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("%s is not the chart's rendering; run: cd deploy && go test -run TestManifestsAreRenderedFromTheChart -update", manifestsPath)
	}
}

// TestSeedShape checks the default rendering against the seed deployment:
// a namespace; the collector, 2 replicas, behind a Service on port 80 and
// a LoadBalancer on 8095, with /readyz and /healthz probes, a disruption
// budget and a grace period longer than its produce timeout; each other
// stage its own workload, with its pod name as instance id.
func TestSeedShape(t *testing.T) {
	o := decode(t, render(t, nil))
	if len(o.namespaces) != 1 || o.namespaces[0].Name != "sluice" {
		t.Errorf("namespaces %v, want sluice", o.namespaces)
	}
	collector := deployment(t, o, "sluice-collector")
	if collector.Spec.Replicas == nil || *collector.Spec.Replicas != 2 {
		t.Errorf("collector replicas %v, want 2", collector.Spec.Replicas)
	}
	pod := collector.Spec.Template
	c := pod.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"collector"}) {
		t.Errorf("collector args %v", c.Args)
	}
	probe(t, "collector readiness", c.ReadinessProbe, "/readyz", "http")
	probe(t, "collector liveness", c.LivenessProbe, "/healthz", "http")
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= 30*time.Second || grace <= 5*time.Second {
		t.Errorf("collector grace period %v, want longer than its shutdown (30s) and produce (5s) timeouts", grace)
	}
	if pod.Annotations["checksum/config"] == "" {
		t.Error("collector pods have no config checksum: a config change would not roll them")
	}
	instanceFromPodName(t, "collector", c)

	selects := func(s map[string]string, labels map[string]string) bool {
		for k, v := range s {
			if labels[k] != v {
				return false
			}
		}
		return len(s) > 0
	}
	ports := map[corev1.ServiceType]int32{}
	for _, s := range o.services {
		if selects(s.Spec.Selector, pod.Labels) {
			ports[s.Spec.Type] = s.Spec.Ports[0].Port
			if tp := s.Spec.Ports[0].TargetPort.String(); tp != "http" {
				t.Errorf("service %s targets %s, want the collector's http port", s.Name, tp)
			}
		}
	}
	if want := map[corev1.ServiceType]int32{corev1.ServiceTypeClusterIP: 80, corev1.ServiceTypeLoadBalancer: 8095}; !maps(ports, want) {
		t.Errorf("collector services by type and port %v, want %v", ports, want)
	}
	if len(o.budgets) != 1 || !selects(o.budgets[0].Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("want one PodDisruptionBudget over the collector pods, got %d", len(o.budgets))
	}
	if len(o.autoscalers) != 0 || len(o.monitors) != 0 {
		t.Error("the autoscaler and the ServiceMonitor are rendered, though off by default")
	}
	for name, args := range map[string][]string{"enricher": {"enricher"}, "loader": {"loader", "lake"}, "aggregator": {"aggregator"}} {
		ss := statefulSet(t, o, "sluice-"+name)
		c := ss.Spec.Template.Spec.Containers[0]
		if !slices.Equal(c.Args, args) {
			t.Errorf("%s args %v, want %v", name, c.Args, args)
		}
		probe(t, name+" readiness", c.ReadinessProbe, "/readyz", "ops")
		probe(t, name+" liveness", c.LivenessProbe, "/healthz", "ops")
		instanceFromPodName(t, name, c)
	}
	if len(o.secrets) != 1 || len(o.secrets[0].StringData) != 0 {
		t.Errorf("want one Secret with nothing in it by default, got %+v", o.secrets)
	}
}

func maps[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func deployment(t *testing.T, o objects, name string) appsv1.Deployment {
	t.Helper()
	for _, d := range o.deployments {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment %s", name)
	return appsv1.Deployment{}
}

func statefulSet(t *testing.T, o objects, name string) appsv1.StatefulSet {
	t.Helper()
	for _, s := range o.statefulSets {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no StatefulSet %s", name)
	return appsv1.StatefulSet{}
}

func probe(t *testing.T, what string, p *corev1.Probe, path, port string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != port {
		t.Errorf("%s probe %+v, want GET %s on port %s", what, p, path, port)
	}
}

func instanceFromPodName(t *testing.T, stage string, c corev1.Container) {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == "SLUICE_INSTANCE_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			return
		}
	}
	t.Errorf("%s: SLUICE_INSTANCE_ID does not come from the pod's name", stage)
}

// TestValueSets renders the chart with the options users turn on, each
// decoded strictly.
func TestValueSets(t *testing.T) {
	t.Run("autoscaling", func(t *testing.T) {
		o := decode(t, render(t, map[string]any{"collector": map[string]any{"autoscaling": map[string]any{"enabled": true}}}))
		if len(o.autoscalers) != 1 || o.autoscalers[0].Spec.ScaleTargetRef.Name != "sluice-collector" || o.autoscalers[0].Spec.MaxReplicas != 6 {
			t.Errorf("autoscalers %+v", o.autoscalers)
		}
		if r := deployment(t, o, "sluice-collector").Spec.Replicas; r != nil {
			t.Errorf("an autoscaled collector has replicas %d set, which every upgrade would reset", *r)
		}
	})
	t.Run("secrets", func(t *testing.T) {
		o := decode(t, render(t, map[string]any{
			"apiKeys": []any{"k1", "k2"},
			"kafka": map[string]any{"saslMechanism": "SCRAM-SHA-512", "saslUser": "sluice", "saslPassword": "pw", "tls": true,
				"tlsCA": "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"},
		}))
		if len(o.secrets) != 1 {
			t.Fatalf("secrets %+v", o.secrets)
		}
		if got := o.secrets[0].StringData; got["SLUICE_API_KEY"] != "k1,k2" || got["SLUICE_KAFKA_SASL_PASSWORD"] != "pw" || got["kafka-ca.pem"] == "" {
			t.Errorf("secret data %v", got)
		}
		c := deployment(t, o, "sluice-collector").Spec.Template.Spec.Containers[0]
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				env[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			}
		}
		for k, v := range map[string]string{"SLUICE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "SLUICE_KAFKA_TLS": "true",
			"SLUICE_KAFKA_TLS_CA_FILE": "/etc/sluice/secrets/kafka-ca.pem", "SLUICE_API_KEY": "secret:sluice-secrets/SLUICE_API_KEY",
			"SLUICE_KAFKA_SASL_PASSWORD": "secret:sluice-secrets/SLUICE_KAFKA_SASL_PASSWORD"} {
			if env[k] != v {
				t.Errorf("env %s = %q, want %q", k, env[k], v)
			}
		}
		if strings.Contains(render(t, map[string]any{"apiKeys": []any{"k1"}}), "value: k1") {
			t.Error("an API key is in a container's environment in the clear")
		}
	})
	t.Run("existing-secret", func(t *testing.T) {
		o := decode(t, render(t, map[string]any{"existingSecret": "mine"}))
		if len(o.secrets) != 0 {
			t.Errorf("the chart made a Secret beside the existing one")
		}
		for _, e := range statefulSet(t, o, "sluice-loader").Spec.Template.Spec.Containers[0].Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != "mine" {
				t.Errorf("env %s reads secret %s, want mine", e.Name, e.ValueFrom.SecretKeyRef.Name)
			}
		}
	})
	t.Run("monitoring", func(t *testing.T) {
		o := decode(t, render(t, map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}}))
		if len(o.monitors) != 1 || o.monitors[0].Labels["release"] != "prom" || len(o.monitors[0].Spec.Endpoints) != 2 {
			t.Errorf("monitors %+v", o.monitors)
		}
	})
	t.Run("search", func(t *testing.T) {
		values := map[string]any{"search": map[string]any{"enabled": true, "urls": []any{"https://opensearch.search:9200"},
			"username": "sluice", "password": "pw"}}
		o := decode(t, render(t, values))
		s := statefulSet(t, o, "sluice-search")
		c := s.Spec.Template.Spec.Containers[0]
		if !slices.Equal(c.Args, []string{"loader", "search"}) {
			t.Errorf("search args %v", c.Args)
		}
		secret := false
		for _, e := range c.Env {
			secret = secret || e.Name == "SLUICE_SEARCH_PASSWORD" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef.Key == "SLUICE_SEARCH_PASSWORD"
		}
		if !secret || o.secrets[0].StringData["SLUICE_SEARCH_PASSWORD"] != "pw" {
			t.Error("the search password is not passed from the Secret")
		}
		cfg := o.configMaps[0].Data["sluice.yaml"]
		if !strings.Contains(cfg, "type: lake") || !strings.Contains(cfg, "name: search") || strings.Contains(cfg, "pw") {
			t.Errorf("config with search:\n%s", cfg)
		}
		if _, err := renderChart(map[string]any{"search": map[string]any{"enabled": true}}); err == nil || !strings.Contains(err.Error(), "search.urls") {
			t.Errorf("search without urls: %v, want an error asking for them", err)
		}
	})
	t.Run("jobs", func(t *testing.T) {
		values := map[string]any{"jobs": map[string]any{"enabled": true,
			"models":    map[string]any{"daily.sql": "SELECT 1 AS x", "daily.yml": "checks:\n  - type: not_null\n    columns: [x]\n"},
			"schedules": []any{map[string]any{"name": "nightly", "cron": "30 2 * * *", "upkeep": []any{"compact"}}}}}
		o := decode(t, render(t, values))
		s := statefulSet(t, o, "sluice-jobs")
		spec := s.Spec.Template.Spec
		if !slices.Equal(spec.Containers[0].Args, []string{"jobs"}) {
			t.Errorf("jobs args %v", spec.Containers[0].Args)
		}
		mounted := false
		for _, m := range spec.Containers[0].VolumeMounts {
			mounted = mounted || m.Name == "models" && m.MountPath == "/etc/sluice/models"
		}
		fromMap := false
		for _, v := range spec.Volumes {
			fromMap = fromMap || v.Name == "models" && v.ConfigMap != nil && v.ConfigMap.Name == "sluice-models"
		}
		if !mounted || !fromMap {
			t.Errorf("the models are not mounted from sluice-models: %+v %+v", spec.Containers[0].VolumeMounts, spec.Volumes)
		}
		var cfg, models map[string]string
		for _, c := range o.configMaps {
			switch c.Name {
			case "sluice-config":
				cfg = c.Data
			case "sluice-models":
				models = c.Data
			}
		}
		if models["daily.sql"] != "SELECT 1 AS x" || !strings.Contains(models["daily.yml"], "not_null") {
			t.Errorf("models config map %v", models)
		}
		if !strings.Contains(cfg["sluice.yaml"], "models: /etc/sluice/models") || !strings.Contains(cfg["sluice.yaml"], "name: nightly") {
			t.Errorf("config with jobs:\n%s", cfg["sluice.yaml"])
		}
		if _, err := renderChart(map[string]any{"jobs": map[string]any{"enabled": true}}); err == nil || !strings.Contains(err.Error(), "jobs.models") {
			t.Errorf("jobs without models: %v, want an error asking for them", err)
		}
	})
	t.Run("no-aggregations", func(t *testing.T) {
		o := decode(t, render(t, map[string]any{"config": map[string]any{"aggregations": nil}, "createNamespace": false}))
		for _, s := range o.statefulSets {
			if s.Name == "sluice-aggregator" {
				t.Error("an aggregator without aggregations is rendered: it would only fail to start")
			}
		}
		if len(o.namespaces) != 0 {
			t.Error("createNamespace false still makes the namespace")
		}
	})
	t.Run("no-catalog", func(t *testing.T) {
		if _, err := renderChart(map[string]any{"lake": map[string]any{"catalogUri": ""}}); err == nil || !strings.Contains(err.Error(), "REST catalog") {
			t.Errorf("rendering without a catalog: %v, want an error asking for the REST catalog", err)
		}
	})
	t.Run("collector-port", func(t *testing.T) {
		c := deployment(t, decode(t, render(t, map[string]any{"collector": map[string]any{"port": 9000}})), "sluice-collector").Spec.Template.Spec.Containers[0]
		var addr string
		for _, e := range c.Env {
			if e.Name == "SLUICE_HTTP_ADDR" {
				addr = e.Value
			}
		}
		if addr != "0.0.0.0:9000" || c.Ports[0].ContainerPort != 9000 {
			t.Errorf("collector on port 9000: SLUICE_HTTP_ADDR %q, container port %d", addr, c.Ports[0].ContainerPort)
		}
	})
	t.Run("config-change-rolls-pods", func(t *testing.T) {
		sum := func(values map[string]any) string {
			return deployment(t, decode(t, render(t, values)), "sluice-collector").Spec.Template.Annotations["checksum/config"]
		}
		if sum(nil) == sum(map[string]any{"collector": map[string]any{"produceTimeout": "7s"}}) {
			t.Error("the config checksum did not change with the config")
		}
	})
}

// TestConfigIsValid checks the ConfigMap's sluice.yaml with the binary's
// own `sluice config check`, for the defaults and a REST catalog lake.
func TestConfigIsValid(t *testing.T) {
	bin := buildSluice(t)
	for name, values := range map[string]map[string]any{"defaults": nil,
		"rest-catalog": {"lake": map[string]any{"catalogUri": "https://polaris.example/api/catalog", "catalogWarehouse": "lake"}},
		"search":       {"search": map[string]any{"enabled": true, "urls": []any{"https://opensearch.search:9200"}}},
		"jobs": {"jobs": map[string]any{"enabled": true, "models": map[string]any{"daily.sql": "SELECT 1 AS x"},
			"schedules": []any{map[string]any{"name": "hourly", "cron": "@hourly"}}}}} {
		t.Run(name, func(t *testing.T) {
			o := decode(t, render(t, values))
			i := slices.IndexFunc(o.configMaps, func(c corev1.ConfigMap) bool { return c.Name == "sluice-config" })
			if i < 0 {
				t.Fatalf("no sluice-config among %d config maps", len(o.configMaps))
			}
			file := filepath.Join(t.TempDir(), "sluice.yaml")
			if err := os.WriteFile(file, []byte(o.configMaps[i].Data["sluice.yaml"]), 0o644); err != nil {
				t.Fatal(err)
			}
			// The stages' environment, as the pods have it.
			env := map[string]string{}
			for _, e := range deployment(t, o, "sluice-collector").Spec.Template.Spec.Containers[0].Env {
				if e.ValueFrom == nil {
					env[e.Name] = e.Value
				}
			}
			configCheck(t, bin, file, env)
		})
	}
}

// TestChartLints runs `helm lint`'s rules; informational messages (such as
// "icon is recommended") pass.
func TestChartLints(t *testing.T) {
	l := lint.All("helm/sluice", nil, "sluice", false)
	for _, m := range l.Messages {
		if m.Severity > support.InfoSev {
			t.Errorf("helm lint: %s", m)
		}
	}
}
