package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cancelable-go/cancelable/cancel"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The demo must show every reason, and finish with nothing left running.
func TestDemoShowsEveryReason(t *testing.T) {
	var out bytes.Buffer
	if err := runTour(&out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	summary := out.String()[strings.LastIndex(out.String(), "By reason:"):]
	for _, r := range cancel.Reasons() {
		if !strings.Contains(summary, " "+r.String()+"=") {
			t.Errorf("reason %s missing from the summary %q", r, summary)
		}
	}
	if !strings.Contains(out.String(), "1 completed") {
		t.Errorf("no completed operation:\n%s", out.String())
	}
}
