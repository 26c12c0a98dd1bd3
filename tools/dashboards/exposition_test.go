package dashboards

import (
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	seriesLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	labelName  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"`)
)

// The contract the dashboards and alerts are checked against is what the
// library really exposes: every metric of it is there with exactly its
// labels, and no cancel_* metric is missing from it.
func TestContractMatchesExposition(t *testing.T) {
	d := startDemo(t)
	d.traffic(t, 1)
	resp, err := d.client.Get(d.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		m := seriesLine.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(line, "#") {
			continue
		}
		series := m[1]
		name, f, bucket, ok := seriesFamily(series)
		if !ok {
			if strings.HasPrefix(series, "cancel_") {
				t.Errorf("%s is exposed but not in the contract of the tests", series)
			}
			continue
		}
		seen[name] = true
		var labels []string
		for _, l := range labelName.FindAllStringSubmatch(m[2], -1) {
			labels = append(labels, l[1])
		}
		for _, want := range f.labels {
			if !slices.Contains(labels, want) {
				t.Errorf("%s has no label %s: %s", series, want, line)
			}
		}
		for _, l := range labels {
			if !slices.Contains(f.labels, l) && !slices.Contains(f.optional, l) && (!bucket || l != "le") {
				t.Errorf("%s has label %s, not in the contract: %s", series, l, line)
			}
		}
	}
	for name := range contract {
		if !seen[name] {
			t.Errorf("%s is in the contract but not exposed", name)
		}
	}
}

// Strict unmarshalling catches what Grafana would not know.
func TestDashboardsValidateCatches(t *testing.T) {
	files, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(files[0].JSON), `"uid": "cancelable",`, `"uid": "cancelable", "panelz": [],`, 1)
	if bad == string(files[0].JSON) {
		t.Fatal("no uid to put an unknown field after")
	}
	if err := strictDashboard([]byte(bad)); err == nil {
		t.Error("an unknown field passed the strict unmarshal")
	}
}
