package dashboards

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"go.yaml.in/yaml/v3"
)

// prometheusDir holds the Prometheus configuration, alerts and their tests.
var prometheusDir = filepath.Join("..", "..", "dashboards", "prometheus")

// need returns the path of a program the test needs: the test is skipped
// without it, unless it runs in CI (env CI set), where it fails.
func need(t *testing.T, program, why string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (%v): CI must install Debian's prometheus package (%s)", program, err, why)
		}
		t.Skipf("%s not found (%v); install Debian's prometheus package to %s", program, err, why)
	}
	return path
}

func promtool(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(need(t, "promtool", "check the rules"), args...)
	cmd.Dir = prometheusDir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
}

func TestPromtoolCheckRules(t *testing.T) { promtool(t, "check", "rules", "alerts.yml") }

func TestPromtoolTestRules(t *testing.T) { promtool(t, "test", "rules", "alerts_test.yml") }

func TestPromtoolCheckConfig(t *testing.T) { promtool(t, "check", "config", "prometheus.yml") }

// loadAlerts parses alerts.yml as Prometheus does.
func loadAlerts(t *testing.T) []rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(filepath.Join(prometheusDir, "alerts.yml"), false, model.LegacyValidation, promqlParser, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil {
		t.FailNow()
	}
	var rules []rulefmt.Rule
	for _, g := range groups.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

// Every alert reads only the contract's metrics, has a severity and says
// what it means and what to do.
func TestAlerts(t *testing.T) {
	rules := loadAlerts(t)
	var names []string
	for _, r := range rules {
		if r.Alert == "" {
			t.Errorf("recording rule %q: the tests expect alerts only", r.Record)
			continue
		}
		names = append(names, r.Alert)
		if _, err := checkQuery(r.Expr); err != nil {
			t.Errorf("%s: %v\n%s", r.Alert, err, r.Expr)
		}
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		if r.For == 0 {
			t.Errorf("%s: no for: one bad evaluation should not page", r.Alert)
		}
	}
	for _, want := range []string{"CancelRateHigh", "TimeoutSpike", "DisconnectSpike", "StopLatencyHigh"} {
		if !slices.Contains(names, want) {
			t.Errorf("no alert %s", want)
		}
	}
}

// The parts of alerts_test.yml this test reads.
type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name  string `yaml:"name"`
		Cases []struct {
			Alert     string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// Every alert has a test where it fires and one where it must not.
func TestAlertsTested(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(prometheusDir, "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rt ruleTests
	if err := yaml.Unmarshal(b, &rt); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rt.RuleFiles, "alerts.yml") {
		t.Errorf("alerts_test.yml tests %v, not alerts.yml", rt.RuleFiles)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range rt.Tests {
		for _, c := range tc.Cases {
			if len(c.ExpAlerts) > 0 {
				fires[c.Alert] = true
			} else {
				quiet[c.Alert] = true
			}
		}
	}
	for _, r := range loadAlerts(t) {
		if !fires[r.Alert] {
			t.Errorf("%s: no test where it fires", r.Alert)
		}
		if !quiet[r.Alert] {
			t.Errorf("%s: no test where it must not fire", r.Alert)
		}
	}
}
