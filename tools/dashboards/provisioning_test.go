package dashboards

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var provisioningDir = filepath.Join("..", "..", "dashboards", "grafana", "provisioning")

type datasourcesYAML struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name     string `yaml:"name"`
		Type     string `yaml:"type"`
		UID      string `yaml:"uid"`
		URL      string `yaml:"url"`
		JSONData struct {
			TimeInterval      string `yaml:"timeInterval"`
			ExemplarTraceIDDs []struct {
				Name          string `yaml:"name"`
				DatasourceUID string `yaml:"datasourceUid"`
			} `yaml:"exemplarTraceIdDestinations"`
			TracesToMetrics *struct {
				DatasourceUID string `yaml:"datasourceUid"`
				Tags          []struct {
					Key   string `yaml:"key"`
					Value string `yaml:"value"`
				} `yaml:"tags"`
				Queries []struct {
					Name  string `yaml:"name"`
					Query string `yaml:"query"`
				} `yaml:"queries"`
			} `yaml:"tracesToMetrics"`
		} `yaml:"jsonData"`
	} `yaml:"datasources"`
}

// The data sources are where the dashboards and the compose stack expect
// them, exemplars link to Jaeger by the label the exporter writes, and the
// span-to-metrics queries parse and read the contract's metrics.
func TestDatasources(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(provisioningDir, "datasources", "datasources.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds datasourcesYAML
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	if ds.APIVersion != 1 {
		t.Errorf("apiVersion %d, want 1", ds.APIVersion)
	}
	byUID := map[string]string{}
	for _, d := range ds.Datasources {
		byUID[d.UID] = d.Type + " " + d.URL
	}
	if got, want := byUID[DatasourceUID], "prometheus http://prometheus:9090"; got != want {
		t.Errorf("data source %q: %q, want %q", DatasourceUID, got, want)
	}
	if got, want := byUID["jaeger"], "jaeger http://jaeger:16686"; got != want {
		t.Errorf(`data source "jaeger": %q, want %q`, got, want)
	}
	for _, d := range ds.Datasources {
		switch d.Type {
		case "prometheus":
			if len(d.JSONData.ExemplarTraceIDDs) != 1 || d.JSONData.ExemplarTraceIDDs[0].Name != "trace_id" || d.JSONData.ExemplarTraceIDDs[0].DatasourceUID != "jaeger" {
				t.Errorf("%s: exemplarTraceIdDestinations %+v, want trace_id -> jaeger", d.Name, d.JSONData.ExemplarTraceIDDs)
			}
			if d.JSONData.TimeInterval != "5s" {
				t.Errorf("%s: timeInterval %q, want the scrape interval of prometheus.yml, 5s", d.Name, d.JSONData.TimeInterval)
			}
		case "jaeger":
			tm := d.JSONData.TracesToMetrics
			if tm == nil || tm.DatasourceUID != DatasourceUID || len(tm.Queries) == 0 {
				t.Fatalf("%s: tracesToMetrics %+v, want queries on %q", d.Name, tm, DatasourceUID)
			}
			for _, q := range tm.Queries {
				// Grafana reads $$ as $, then replaces $__tags with the
				// matchers of the span's tags, ${__span.name} with its name.
				expr := strings.NewReplacer("$$__tags", `cancel_operation_name="GET /x"`, "$${__span.name}", "GET /x").Replace(q.Query)
				if _, err := checkQuery(expr); err != nil {
					t.Errorf("%s: query %q: %v\n%s", d.Name, q.Name, err, q.Query)
				}
				if strings.Contains(strings.ReplaceAll(q.Query, "$$", ""), "$") {
					t.Errorf("%s: query %q: a single $ (Grafana would expand an environment variable)", d.Name, q.Name)
				}
			}
		}
	}
}

func TestDashboardProvider(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(provisioningDir, "dashboards", "dashboards.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name    string `yaml:"name"`
			Folder  string `yaml:"folder"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.APIVersion != 1 || len(p.Providers) != 1 {
		t.Fatalf("apiVersion %d, %d providers; want 1 and 1", p.APIVersion, len(p.Providers))
	}
	if pr := p.Providers[0]; pr.Type != "file" || pr.Folder == "" || pr.Options.Path == "" {
		t.Errorf("provider %+v: want a file provider with a folder and a path", pr)
	}
}
