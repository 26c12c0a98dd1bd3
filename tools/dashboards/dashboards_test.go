package dashboards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// committedDir holds the dashboards Grafana provisions.
var committedDir = filepath.Join("..", "..", "dashboards", "grafana", "dashboards")

// The parts of a dashboard's JSON the tests read.
type dashboardJSON struct {
	UID        string      `json:"uid"`
	Title      string      `json:"title"`
	Panels     []panelJSON `json:"panels"`
	Templating struct {
		List []variableJSON `json:"list"`
	} `json:"templating"`
}

type panelJSON struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource *refJSON         `json:"datasource"`
	Targets    []targetJSON     `json:"targets"`
	Panels     []panelJSON      `json:"panels"` // of a collapsed row
	GridPos    *struct{ W int } `json:"gridPos"`
}

type targetJSON struct {
	RefID      string   `json:"refId"`
	Expr       string   `json:"expr"`
	Exemplar   bool     `json:"exemplar"`
	Datasource *refJSON `json:"datasource"`
}

type refJSON struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variableJSON struct {
	Name       string   `json:"name"`
	Type       string   `json:"type"`
	Query      string   `json:"query"`
	Datasource *refJSON `json:"datasource"`
	AllValue   string   `json:"allValue"`
}

// A panelQuery is one query of one panel.
type panelQuery struct {
	dashboard, panel string
	expr             string
}

// generated returns the dashboards the generator writes, parsed.
func generated(t *testing.T) map[string]dashboardJSON {
	t.Helper()
	files, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dashboardJSON{}
	for _, f := range files {
		var d dashboardJSON
		if err := json.Unmarshal(f.JSON, &d); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		out[f.Name] = d
	}
	return out
}

// panels returns the panels of d, those of collapsed rows included, rows
// left out.
func (d dashboardJSON) panels() []panelJSON {
	var out []panelJSON
	var walk func([]panelJSON)
	walk = func(ps []panelJSON) {
		for _, p := range ps {
			if p.Type != "row" {
				out = append(out, p)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// allQueries returns every query of every panel of the dashboards.
func allQueries(t *testing.T) []panelQuery {
	t.Helper()
	var out []panelQuery
	for name, d := range generated(t) {
		for _, p := range d.panels() {
			for _, q := range p.Targets {
				out = append(out, panelQuery{dashboard: name, panel: p.Title, expr: q.Expr})
			}
		}
	}
	slices.SortFunc(out, func(a, b panelQuery) int {
		if c := cmpString(a.dashboard, b.dashboard); c != 0 {
			return c
		}
		return cmpString(a.panel, b.panel)
	})
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// The committed JSON is what the generator writes: change the Go code and
// run `go run ./cmd/gen`, never the JSON.
func TestCommittedDashboardsAreGenerated(t *testing.T) {
	files, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, f := range files {
		want[f.Name] = true
		got, err := os.ReadFile(filepath.Join(committedDir, f.Name))
		if err != nil {
			t.Errorf("%v: run `go run ./cmd/gen` in tools/dashboards", err)
			continue
		}
		if !bytes.Equal(got, f.JSON) {
			t.Errorf("%s differs from the generator's output: run `go run ./cmd/gen` in tools/dashboards (and edit the Go code, not the JSON)", f.Name)
		}
	}
	committed, err := filepath.Glob(filepath.Join(committedDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range committed {
		if !want[filepath.Base(path)] {
			t.Errorf("%s is no dashboard of the generator: delete it, or build it in tools/dashboards", path)
		}
	}
}

// Generating twice gives the same bytes.
func TestGeneratorIsDeterministic(t *testing.T) {
	a, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if !bytes.Equal(a[i].JSON, b[i].JSON) {
			t.Errorf("%s: two generations differ", a[i].Name)
		}
	}
}

// sdkError returns err, or nil for the empty cog.BuildErrors the SDK
// returns on success.
func sdkError(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// The SDK reads the JSON back strictly (no unknown fields) and validates it.
func TestDashboardsValidate(t *testing.T) {
	files, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := strictDashboard(f.JSON); err != nil {
			t.Errorf("%s: %v", f.Name, err)
		}
	}
}

// strictDashboard reads a dashboard with the SDK, strictly, and validates
// it.
func strictDashboard(b []byte) error {
	plugins.RegisterDefaultPlugins()
	var d dashboard.Dashboard
	if err := sdkError(d.UnmarshalJSONStrict(b)); err != nil {
		return fmt.Errorf("strict unmarshal: %w", err)
	}
	return sdkError(d.Validate())
}

func TestPanels(t *testing.T) {
	for name, d := range generated(t) {
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: no uid or title", name)
		}
		ids := map[int]bool{}
		titles := map[string]bool{}
		var walk func([]panelJSON)
		walk = func(ps []panelJSON) {
			for _, p := range ps {
				if ids[p.ID] || p.ID == 0 {
					t.Errorf("%s: panel %q: id %d zero or taken", name, p.Title, p.ID)
				}
				ids[p.ID] = true
				walk(p.Panels)
			}
		}
		walk(d.Panels)
		for _, p := range d.panels() {
			if titles[p.Title] {
				t.Errorf("%s: two panels titled %q", name, p.Title)
			}
			titles[p.Title] = true
			if p.Datasource == nil || p.Datasource.UID != DatasourceUID {
				t.Errorf("%s: panel %q: datasource %+v, want uid %q", name, p.Title, p.Datasource, DatasourceUID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", name, p.Title)
			}
			refs := map[string]bool{}
			for _, q := range p.Targets {
				if q.RefID == "" || refs[q.RefID] {
					t.Errorf("%s: panel %q: refId %q empty or taken", name, p.Title, q.RefID)
				}
				refs[q.RefID] = true
				if q.Datasource == nil || q.Datasource.UID != DatasourceUID {
					t.Errorf("%s: panel %q: query datasource %+v, want uid %q", name, p.Title, q.Datasource, DatasourceUID)
				}
			}
		}
	}
}

// Every query parses, reads only metrics and labels of the contract, and
// uses $__rate_interval for its windows; latency panels ask for exemplars.
func TestPanelQueries(t *testing.T) {
	want, err := time.ParseDuration(allVars.rateInterval)
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range generated(t) {
		for _, p := range d.panels() {
			for _, q := range p.Targets {
				info, err := checkQuery(allVars.substitute(q.Expr))
				if err != nil {
					t.Errorf("%s: panel %q, query %s: %v\n%s", name, p.Title, q.RefID, err, q.Expr)
					continue
				}
				for _, r := range info.ranges {
					if r != want {
						t.Errorf("%s: panel %q, query %s: window %v, not $__rate_interval\n%s", name, p.Title, q.RefID, r, q.Expr)
					}
				}
			}
			exemplars := false
			for _, q := range p.Targets {
				exemplars = exemplars || q.Exemplar
			}
			if len(p.Targets) > 0 && regexp.MustCompile(`cancel_(operation_duration|stop_latency)_seconds_bucket`).MatchString(p.Targets[0].Expr) && !exemplars {
				t.Errorf("%s: panel %q: a latency panel without exemplars", name, p.Title)
			}
		}
	}
}

// Every metric of the contract has a panel.
func TestDashboardsCoverContract(t *testing.T) {
	used := map[string]bool{}
	for _, q := range allQueries(t) {
		info, err := checkQuery(allVars.substitute(q.expr))
		if err != nil {
			continue // TestPanelQueries reports it
		}
		for _, s := range info.series {
			name, _, _, _ := seriesFamily(s)
			used[name] = true
		}
	}
	for name := range contract {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}

// labelValues is a query variable's query: label_values(selector, label).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

func TestVariables(t *testing.T) {
	for name, d := range generated(t) {
		got := map[string]bool{}
		for _, v := range d.Templating.List {
			got[v.Name] = true
			if v.Datasource == nil || v.Datasource.UID != DatasourceUID {
				t.Errorf("%s: variable %s: datasource %+v", name, v.Name, v.Datasource)
			}
			m := labelValues.FindStringSubmatch(v.Query)
			if m == nil {
				t.Errorf("%s: variable %s: query %q is no label_values(selector, label)", name, v.Name, v.Query)
				continue
			}
			info, err := checkQuery(allVars.substitute(m[1]))
			if err != nil {
				t.Errorf("%s: variable %s: %v", name, v.Name, err)
				continue
			}
			for _, s := range info.series {
				if !labelAllowed(s, m[2]) {
					t.Errorf("%s: variable %s: %s has no label %s", name, v.Name, s, m[2])
				}
			}
			if v.AllValue != ".*" {
				t.Errorf("%s: variable %s: All is %q, want .* (the queries match it as a regex)", name, v.Name, v.AllValue)
			}
		}
		for _, v := range []string{"route", "instance"} {
			if !got[v] {
				t.Errorf("%s: no variable %s", name, v)
			}
		}
	}
}

// The checks fail on what they should catch.
func TestCheckQueryCatches(t *testing.T) {
	for _, expr := range []string{
		`rate(cancel_operations_total[1m]`,                             // does not parse
		`rate(cancel_operation_total[1m])`,                             // no such metric
		`sum by (cancel_route) (rate(cancel_operations_total[1m]))`,    // no such label
		`rate(cancel_operations_total{cancel_status="cancelled"}[1m])`, // no such label
		`cancel_operation_active{le="1"}`,                              // le of a gauge
		`rate(cancel_operations_total{cancel_operation_name=~"$job"}[1m])`,
		`vector(1)`,
	} {
		if _, err := checkQuery(expr); err == nil {
			t.Errorf("checkQuery(%s) passed", expr)
		}
	}
}
