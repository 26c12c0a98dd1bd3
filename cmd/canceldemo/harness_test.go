package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/httpcancel"
)

// The harness, shorter: mixed traffic and faults, a shutdown in the
// middle, and every operation accounted for, exactly, in the metrics, the
// spans (a tracetest.InMemoryExporter too) and the clients' knowledge;
// nothing left running. The long run is canceldemo harness -n 20000.
func TestHarness(t *testing.T) {
	cfg := defaultHarnessConfig()
	cfg.n = 1500
	cfg.concurrency = 64
	cfg.victims = 4
	cfg.paths = 3000
	cfg.grace = 4500 * time.Millisecond // sse-stalled clients take 2.3s, more on a busy machine
	cfg.seed = 7
	cfg.keepSpans = true
	if testing.Short() {
		cfg.n, cfg.paths = 400, 600
	}
	rep, err := runHarness(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep.command = "(go test -run TestHarness)"
	var out bytes.Buffer
	rep.write(&out)
	t.Logf("report:\n%s", out.String())
	for _, f := range rep.failures {
		t.Error(f)
	}
	// Every scenario ran, and the run saw every reason it is meant to.
	for _, sc := range harnessScenarios {
		if len(rep.saw[sc.name]) == 0 {
			t.Errorf("scenario %s never ran", sc.name)
		}
	}
	byReason := map[string]int{}
	for k, n := range rep.metrics {
		byReason[k.Outcome+"/"+k.Reason] += n
	}
	for _, r := range []string{"completed/", "cancelled/timeout", "cancelled/disconnect", "cancelled/manual", "cancelled/shutdown", "cancelled/parent", "cancelled/error"} {
		if byReason[r] == 0 {
			t.Errorf("no operation %s: %v", r, byReason)
		}
	}
}

// The expectations of the bad budgets are httpcancel's: bad ones do not
// parse, good ones do.
func TestHarnessBudgets(t *testing.T) {
	for _, v := range badBudgets {
		if _, err := httpcancel.ParseBudget(v); err == nil {
			t.Errorf("ParseBudget(%q) accepted it; the harness expects it ignored", v)
		}
	}
	for _, v := range goodBudgets {
		if _, err := httpcancel.ParseBudget(v); err != nil {
			t.Errorf("ParseBudget(%q): %v; the harness expects it accepted", v, err)
		}
	}
}

// A failed check fails the command; bad flags are usage errors.
func TestHarnessCommandFlags(t *testing.T) {
	var errOut bytes.Buffer
	if code := mainExit([]string{"harness", "-n", "3"}, io.Discard, &errOut); code != 1 || !strings.Contains(errOut.String(), "-n: at least") {
		t.Errorf("harness -n 3: exit %d, %q", code, errOut.String())
	}
	if code := mainExit([]string{"harness", "-bogus"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("harness -bogus: exit %d, want 2", code)
	}
	if code := mainExit([]string{"harness", "-grace", "10ms"}, io.Discard, io.Discard); code != 1 {
		t.Errorf("harness -grace 10ms: exit %d, want 1", code)
	}
}

func TestParseExposition(t *testing.T) {
	ms, err := parseExposition("# HELP x y\nx_total{a=\"1\",b=\"q\\\"\\\\\\n\"} 3\ny 2.5 1700000000\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].name != "x_total" || ms[0].labels["a"] != "1" || ms[0].labels["b"] != "q\"\\\n" || ms[0].value != 3 ||
		ms[1].name != "y" || ms[1].value != 2.5 {
		t.Errorf("parsed %+v", ms)
	}
}
