package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stackPromDir holds the committed Prometheus configuration and rules.
var stackPromDir = filepath.Join("..", "..", "dashboards", "prometheus")

// stackDashboard is the committed Grafana dashboard.
var stackDashboard = filepath.Join("..", "..", "dashboards", "grafana", "dashboards", "cancelable.json")

// stackEvalInterval is the scrape and rule evaluation interval of the
// test's Prometheus, and the for: of its alerts.
const stackEvalInterval = "1s"

// stackSetKey sets the value of every line `key: value` (or `- key:
// value`) of a YAML document to value, keeping the indentation and any
// comment after the value, and returns how many lines it changed.
func stackSetKey(src, key, value string) (string, int) {
	re := regexp.MustCompile(`(?m)^([ \t]*(?:-[ \t]+)?` + regexp.QuoteMeta(key) + `:[ \t]*)[^#\n]*?([ \t]+#[^\n]*)?$`)
	n := len(re.FindAllStringIndex(src, -1))
	return re.ReplaceAllString(src, "${1}"+value+"${2}"), n
}

// stackCountKey counts the lines that set key outside comments, so that a
// transformation that missed one (a layout stackSetKey does not know) fails.
func stackCountKey(src, key string) int {
	re := regexp.MustCompile(`(^|[\s{,-])` + regexp.QuoteMeta(key) + `:`)
	n := 0
	for _, line := range strings.Split(src, "\n") {
		code, _, _ := strings.Cut(line, "#")
		if re.MatchString(code) {
			n++
		}
	}
	return n
}

// stackPromConfig writes the committed prometheus.yml and alerts.yml into
// dir, transformed for the test, and returns the path of the config.
//
// What changes, and why (everything else is the committed text, byte for
// byte):
//   - the scrape target demo:8080 (the compose service) becomes the demo
//     the test runs on 127.0.0.1;
//   - every scrape_interval, scrape_timeout, evaluation_interval and group
//     interval becomes 1s, so that a test of a minute sees many scrapes and
//     evaluations (the committed 5s/15s would make it slow and flaky);
//   - every alert's for: becomes 1s, so that an alert whose condition holds
//     fires within the test instead of minutes later. The expressions, and
//     their 5m and 1h windows, are untouched: rate() over a window longer
//     than the data works on the data there is.
func stackPromConfig(t *testing.T, dir, target string) string {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(stackPromDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	set := func(file, src, key, value string, min int) string {
		t.Helper()
		out, n := stackSetKey(src, key, value)
		if want := stackCountKey(src, key); n != want || n < min {
			t.Fatalf("%s: %d lines set %s:, %d of them in a layout the test can rewrite (at least %d wanted): update stackPromConfig", file, want, key, n, min)
		}
		return out
	}

	config := read("prometheus.yml")
	if n := strings.Count(config, "demo:8080"); n != 1 {
		t.Fatalf("prometheus.yml: %d scrape targets demo:8080, want 1: update stackPromConfig", n)
	}
	config = strings.Replace(config, "demo:8080", target, 1)
	config = set("prometheus.yml", config, "scrape_interval", stackEvalInterval, 1)
	config = set("prometheus.yml", config, "scrape_timeout", stackEvalInterval, 0)
	config = set("prometheus.yml", config, "evaluation_interval", stackEvalInterval, 1)
	if !regexp.MustCompile(`(?m)^rule_files:\s*\n\s*- "?alerts\.yml"?\s*$`).MatchString(config) {
		t.Fatalf("prometheus.yml: rule_files does not name alerts.yml (relative to the config) alone: update stackPromConfig")
	}

	alerts := read("alerts.yml")
	nAlerts := len(regexp.MustCompile(`(?m)^\s*- alert:`).FindAllStringIndex(alerts, -1))
	alerts = set("alerts.yml", alerts, "interval", stackEvalInterval, 0)
	alerts, n := stackSetKey(alerts, "for", stackEvalInterval)
	if n != nAlerts {
		t.Fatalf("alerts.yml: %d for: lines for %d alerts: update stackPromConfig", n, nAlerts)
	}

	path := filepath.Join(dir, "prometheus.yml")
	for name, text := range map[string]string{"prometheus.yml": config, "alerts.yml": alerts} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// stackProm is the real Prometheus of TestStack.
type stackProm struct {
	url    string
	client *http.Client
	proc   *stackProc
}

// stackStartPrometheus runs Debian's prometheus with the committed
// configuration (see stackPromConfig) scraping target, and exemplar
// storage on, as the compose stack runs it.
func stackStartPrometheus(t *testing.T, target string) *stackProm {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		stackMissing(t, "prometheus not found (%v): install Debian's prometheus package", err)
	}
	dir := t.TempDir()
	config := stackPromConfig(t, dir, target)
	addr := freePort(t)
	p := &stackProm{url: "http://" + addr, client: stackClient(t)}
	p.proc = stackStart(t, "prometheus", os.Environ(), bin,
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--enable-feature=exemplar-storage",
		"--log.level=warn",
	)
	stackPoll(t, "Prometheus ready", time.Minute, func() (bool, error) {
		if err := p.proc.alive(); err != nil {
			return false, stackFatal{err}
		}
		resp, err := p.client.Get(p.url + "/-/ready")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return p
}

// api gets /api/v1/<path> and decodes its data into v; an error status
// or a warning is an error.
func (p *stackProm) api(path string, params url.Values, v any) error {
	resp, err := p.client.Get(p.url + "/api/v1/" + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Warnings  []string        `json:"warnings"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %s: %v", path, resp.Status, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	if len(r.Warnings) > 0 {
		return fmt.Errorf("%s: warnings %v", path, r.Warnings)
	}
	return json.Unmarshal(r.Data, v)
}

type stackSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s stackSample) value() float64 {
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// query runs an instant query whose result is a vector.
func (p *stackProm) query(expr string) ([]stackSample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("result of type %s, want vector", data.ResultType)
	}
	var v []stackSample
	return v, json.Unmarshal(data.Result, &v)
}

// scalar returns the value of a query with one sample, NaN without any.
func (p *stackProm) scalar(expr string) (float64, error) {
	v, err := p.query(expr)
	if err != nil {
		return math.NaN(), err
	}
	switch len(v) {
	case 0:
		return math.NaN(), nil
	case 1:
		return v[0].value(), nil
	}
	return math.NaN(), fmt.Errorf("%s: %d samples, want one", expr, len(v))
}

// lastScrape returns when Prometheus last scraped its only target, and
// the target's health.
func (p *stackProm) lastScrape() (time.Time, string, error) {
	var data struct {
		ActiveTargets []struct {
			Health     string    `json:"health"`
			LastError  string    `json:"lastError"`
			LastScrape time.Time `json:"lastScrape"`
		} `json:"activeTargets"`
	}
	if err := p.api("targets", url.Values{"state": {"active"}}, &data); err != nil {
		return time.Time{}, "", err
	}
	if len(data.ActiveTargets) != 1 {
		return time.Time{}, "", fmt.Errorf("%d active targets, want 1", len(data.ActiveTargets))
	}
	tg := data.ActiveTargets[0]
	if tg.LastError != "" {
		return tg.LastScrape, tg.Health, fmt.Errorf("scraping the demo: %s", tg.LastError)
	}
	return tg.LastScrape, tg.Health, nil
}

// scrapedAfter waits until Prometheus has scraped the demo (successfully)
// after t0, and returns when that scrape started.
func (p *stackProm) scrapedAfter(t *testing.T, t0 time.Time) time.Time {
	t.Helper()
	var last time.Time
	stackPoll(t, "a scrape of the demo", 30*time.Second, func() (bool, error) {
		var health string
		var err error
		last, health, err = p.lastScrape()
		return err == nil && health == "up" && last.After(t0), err
	})
	return last
}

// stackRule is a rule of /api/v1/rules.
type stackRule struct {
	Name           string    `json:"name"`
	Type           string    `json:"type"`
	Health         string    `json:"health"`
	LastError      string    `json:"lastError"`
	LastEvaluation time.Time `json:"lastEvaluation"`
}

func (p *stackProm) rules() ([]stackRule, error) {
	var data struct {
		Groups []struct {
			Rules []stackRule `json:"rules"`
		} `json:"groups"`
	}
	if err := p.api("rules", nil, &data); err != nil {
		return nil, err
	}
	var rules []stackRule
	for _, g := range data.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules, nil
}

// evaluatedAfter waits until every rule has been evaluated after t0, and
// fails the test if one of them did not evaluate cleanly.
func (p *stackProm) evaluatedAfter(t *testing.T, t0 time.Time) []stackRule {
	t.Helper()
	var rules []stackRule
	stackPoll(t, "an evaluation of the rules", 30*time.Second, func() (bool, error) {
		var err error
		if rules, err = p.rules(); err != nil {
			return false, err
		}
		if len(rules) == 0 {
			return false, fmt.Errorf("no rules loaded")
		}
		for _, r := range rules {
			if r.Health == "err" {
				return false, stackFatal{fmt.Errorf("rule %s: %s", r.Name, r.LastError)}
			}
			if r.Health != "ok" || !r.LastEvaluation.After(t0) {
				return false, nil
			}
		}
		return true, nil
	})
	return rules
}

// stackAlert is an alert of /api/v1/alerts.
type stackAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
	Value  string            `json:"value"`
}

// alerts returns the pending and firing alerts named name.
func (p *stackProm) alerts(name string) ([]stackAlert, error) {
	var data struct {
		Alerts []stackAlert `json:"alerts"`
	}
	if err := p.api("alerts", nil, &data); err != nil {
		return nil, err
	}
	var out []stackAlert
	for _, a := range data.Alerts {
		if a.Labels["alertname"] == name {
			out = append(out, a)
		}
	}
	return out, nil
}

// stackPanelQuery is a PromQL query of a panel of the committed dashboard.
type stackPanelQuery struct {
	panel, refID, expr string
}

// stackVariable is a query variable of the dashboard (label_values(...)).
type stackVariable struct {
	name, query string
}

// stackDashboardQueries reads the committed dashboard's panel queries
// (rows and their nested panels included) and its query variables.
func stackDashboardQueries(t *testing.T) ([]stackPanelQuery, []stackVariable) {
	t.Helper()
	b, err := os.ReadFile(stackDashboard)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title      string `json:"title"`
		Datasource *struct {
			Type string `json:"type"`
		} `json:"datasource"`
		Targets []struct {
			RefID      string `json:"refId"`
			Expr       string `json:"expr"`
			Datasource *struct {
				Type string `json:"type"`
			} `json:"datasource"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", stackDashboard, err)
	}
	var queries []stackPanelQuery
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("%s: %v", stackDashboard, err)
			}
			walk(p.Panels)
			for _, q := range p.Targets {
				ds := p.Datasource
				if q.Datasource != nil {
					ds = q.Datasource
				}
				if ds != nil && ds.Type != "prometheus" {
					continue // a Jaeger query, say: not PromQL
				}
				if strings.TrimSpace(q.Expr) == "" {
					t.Errorf("panel %q, query %s: no expr", p.Title, q.RefID)
					continue
				}
				queries = append(queries, stackPanelQuery{panel: p.Title, refID: q.RefID, expr: q.Expr})
			}
		}
	}
	walk(d.Panels)
	var vars []stackVariable
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, ok := v.Query.(string)
		if !ok { // newer Grafana: {"query": "...", "refId": ...}
			if m, isMap := v.Query.(map[string]any); isMap {
				q, _ = m["query"].(string)
			}
		}
		vars = append(vars, stackVariable{name: v.Name, query: q})
	}
	return queries, vars
}

// stackGrafana substitutes Grafana's variables in a query as Grafana would
// with every variable set to All: $route and $instance become .* (their
// allValue), $__rate_interval a window of several scrapes.
var stackGrafana = strings.NewReplacer(
	"$__rate_interval", "30s",
	"${__rate_interval}", "30s",
	"${route}", ".*", "$route", ".*",
	"${instance}", ".*", "$instance", ".*",
)

// stackLeftover finds a variable stackGrafana does not know ($1 in
// label_replace is no variable).
var stackLeftover = regexp.MustCompile(`\$\{?[A-Za-z_]`)

// stackLabelValues matches a label_values(selector, label) variable query.
var stackLabelValues = regexp.MustCompile(`^\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)
