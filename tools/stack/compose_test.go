package stack

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

// repoRoot is the repository this module sits in.
var repoRoot = func() string {
	abs, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	return abs
}()

// load loads a compose file as docker compose would, with the repository
// as the working directory.
func load(t *testing.T, file string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(repoRoot),
		cli.WithName("cancelable"),
		cli.WithResolvedPaths(true),
		cli.WithEnv([]string{}), // nothing from this machine leaks in
	)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

func loadOK(t *testing.T) *types.Project {
	t.Helper()
	p, err := load(t, filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func TestComposeServices(t *testing.T) {
	p := loadOK(t)
	want := []string{"demo", "grafana", "jaeger", "loadgen", "prometheus"}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionHealthy && p.Services[dep].HealthCheck == nil {
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %d on %q: only loopback, please", name, port.Target, port.HostIP)
			}
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s, which does not exist: %v", name, v.Source, err)
			}
		}
	}
}

// The demo is built from the repository's Dockerfile, and the load
// generator runs the same image against the demo's address.
func TestComposeDemoAndLoad(t *testing.T) {
	p := loadOK(t)
	demo, load := p.Services["demo"], p.Services["loadgen"]
	if demo.Build == nil {
		t.Fatal("demo is not built")
	}
	if _, err := os.Stat(filepath.Join(demo.Build.Context, dockerfileOf(demo.Build))); err != nil {
		t.Errorf("demo's Dockerfile: %v", err)
	}
	if load.Image != demo.Image || load.Image == "" {
		t.Errorf("loadgen runs image %q, demo is %q: want the same", load.Image, demo.Image)
	}
	addr := flagValue(t, demo.Command, "-addr")
	target, err := url.Parse(flagValue(t, load.Command, "-target"))
	if err != nil {
		t.Fatal(err)
	}
	if target.Host != "demo"+addr {
		t.Errorf("loadgen targets %s, demo listens on %s", target.Host, addr)
	}
	if demo.HealthCheck == nil || !slices.Contains(demo.HealthCheck.Test, "health") {
		t.Errorf("demo's healthcheck %v does not use canceldemo health", demo.HealthCheck)
	}
}

// Traces go to the Jaeger service, on a port it opens.
func TestComposeTracesReachJaeger(t *testing.T) {
	p := loadOK(t)
	ep := p.Services["demo"].Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
	if ep == nil {
		t.Fatal("demo has no OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	u, err := url.Parse(*ep)
	if err != nil {
		t.Fatal(err)
	}
	if u.Hostname() != "jaeger" || u.Port() != "4318" {
		t.Errorf("OTLP endpoint %s, want the jaeger service on 4318 (OTLP/HTTP)", *ep)
	}
	if _, ok := p.Services["demo"].DependsOn["jaeger"]; !ok {
		t.Error("demo does not depend on jaeger")
	}
}

// Prometheus scrapes the demo where it listens and loads rule files that
// exist; Grafana's datasources point at the services of the stack.
func TestComposeMonitoringConfig(t *testing.T) {
	p := loadOK(t)
	prom := p.Services["prometheus"]
	conf := mountedFile(t, prom, flagValue(t, prom.Command, "--config.file"))
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, conf, &cfg)
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	if want := "demo" + flagValue(t, p.Services["demo"].Command, "-addr"); !slices.Contains(targets, want) {
		t.Errorf("Prometheus scrapes %v, not the demo at %s", targets, want)
	}
	if len(cfg.RuleFiles) == 0 {
		t.Error("Prometheus loads no alert rules")
	}
	for _, rf := range cfg.RuleFiles {
		if !filepath.IsAbs(rf) {
			rf = filepath.Join(filepath.Dir(flagValue(t, prom.Command, "--config.file")), rf)
		}
		mountedFile(t, prom, rf)
	}
	if !slices.Contains(prom.Command, "--enable-feature=exemplar-storage") {
		t.Error("Prometheus keeps no exemplars: the latency panels cannot link to traces")
	}

	graf := p.Services["grafana"]
	dsDir := mountedFile(t, graf, "/etc/grafana/provisioning/datasources")
	entries, err := os.ReadDir(dsDir)
	if err != nil {
		t.Fatal(err)
	}
	urls := map[string]bool{}
	for _, e := range entries {
		var ds struct {
			Datasources []struct {
				Type string `yaml:"type"`
				URL  string `yaml:"url"`
			} `yaml:"datasources"`
		}
		readYAML(t, filepath.Join(dsDir, e.Name()), &ds)
		for _, d := range ds.Datasources {
			urls[d.Type+" "+d.URL] = true
		}
	}
	for _, want := range []string{"prometheus http://prometheus:9090", "jaeger http://jaeger:16686"} {
		if !urls[want] {
			t.Errorf("no Grafana datasource %q among %v", want, urls)
		}
	}
	if home := graf.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != nil {
		mountedFile(t, graf, *home)
	}
}

// compose-go really checks what it is given: mistakes fail to load.
func TestComposeRejectsMistakes(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to string }{
		{"unknown key", "    healthcheck:\n      test: [\"CMD\", \"/canceldemo\"", "    helthcheck:\n      test: [\"CMD\", \"/canceldemo\""},
		{"missing service", "      jaeger:\n        condition: service_started\n    stop_grace_period", "      jager:\n        condition: service_started\n    stop_grace_period"},
		{"bad condition", "condition: service_healthy", "condition: service_happy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(string(orig), tc.from, tc.to, 1)
			if bad == string(orig) {
				t.Fatalf("the compose file no longer contains %q", tc.from)
			}
			file := filepath.Join(t.TempDir(), "docker-compose.yml")
			if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := load(t, file); err == nil {
				t.Error("loaded without error")
			}
		})
	}
}

// mountedFile returns the file of the repository that service s sees at
// path, through its bind mounts, and fails if it does not exist.
func mountedFile(t *testing.T, s types.ServiceConfig, path string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if rel, err := filepath.Rel(v.Target, path); err == nil && !strings.HasPrefix(rel, "..") {
			local := filepath.Join(v.Source, rel)
			if _, err := os.Stat(local); err != nil {
				t.Fatalf("%s sees %s as %s: %v", s.Name, path, local, err)
			}
			return local
		}
	}
	t.Fatalf("%s has nothing mounted at %s", s.Name, path)
	return ""
}

func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	t.Fatalf("no %s in %q", name, args)
	return ""
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func dockerfileOf(b *types.BuildConfig) string {
	if b.Dockerfile == "" {
		return "Dockerfile"
	}
	return b.Dockerfile
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
