//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestBrowserAdminAndTracez renders the demo's pages in headless Chromium
// (Debian's chromium package): the operations admin page, with a live job
// reporting progress and a job an operator cancelled, and the embedded
// trace view (zpages' tracez), with the spans of the demo's routes and the
// cancel.requested event of the cancelled job. Each page is checked in the
// DOM Chromium ends with and in its screenshot, which $SCREENSHOT_DIR
// keeps when set.
func TestBrowserAdminAndTracez(t *testing.T) {
	chromium := browserChromium(t)
	demo := browserStartDemo(t)
	dir := t.TempDir()

	// A live job reporting progress, and one an operator cancels.
	var live, victim browserOp
	demo.mustJSON(t, http.MethodPost, "/jobs?s=60", "", http.StatusAccepted, &live)
	demo.mustJSON(t, http.MethodPost, "/jobs?s=60", "", http.StatusAccepted, &victim)
	demo.waitFor(t, "the live job's first progress report", func() (bool, error) {
		var op browserOp
		code, b, err := demo.get("/admin/operations/" + strconv.FormatUint(live.ID, 10))
		if err != nil || code != http.StatusOK {
			return false, fmt.Errorf("status %d, %v: %s", code, err, b)
		}
		if err := json.Unmarshal(b, &op); err != nil {
			return false, err
		}
		return op.LastProgress != nil && op.LastProgress.Message != "", nil
	})
	const cancelMessage = "stopped from the browser test"
	var cancelled struct {
		Cancelled bool `json:"cancelled"`
	}
	demo.mustJSON(t, http.MethodPost, "/admin/operations/"+strconv.FormatUint(victim.ID, 10)+"/cancel",
		`{"message":"`+cancelMessage+`"}`, http.StatusOK, &cancelled)
	if !cancelled.Cancelled {
		t.Fatalf("cancelling job %d: not cancelled", victim.ID)
	}

	// Spans of the routes: work that completes, a route timeout (about
	// half of /slow's requests), a call through the Transport.
	for _, p := range []string{"/work?ms=20", "/work?ms=20", "/slow", "/slow", "/slow", "/slow", "/chain?ms=20"} {
		if _, _, err := demo.get(p); err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
	}
	// The cancelled job has ended, in the registry's history and as a span
	// with its error (its End records both).
	jobErrors := "/debug/tracez?zspanname=job&ztype=2&zlatencybucket=0"
	demo.waitFor(t, "the cancelled job's span in tracez", func() (bool, error) {
		code, b, err := demo.get(jobErrors)
		return code == http.StatusOK && strings.Contains(string(b), "cancel.requested"), err
	})
	var ended browserOp
	demo.mustJSON(t, http.MethodGet, "/admin/operations/"+strconv.FormatUint(victim.ID, 10), "", http.StatusOK, &ended)
	if ended.Status != "cancelled" || ended.Reason != "manual" {
		t.Fatalf("job %d after its cancellation: status %q, reason %q; want cancelled, manual", victim.ID, ended.Status, ended.Reason)
	}
	// The live job's last progress message, as the page should show it.
	var now browserOp
	demo.mustJSON(t, http.MethodGet, "/admin/operations/"+strconv.FormatUint(live.ID, 10), "", http.StatusOK, &now)
	if now.Status != "running" || now.LastProgress == nil {
		t.Fatalf("job %d: status %q, progress %v; want running with progress", live.ID, now.Status, now.LastProgress)
	}
	progress := now.LastProgress.Message

	t.Run("admin", func(t *testing.T) {
		page := browserRender(t, chromium, dir, "browser-admin", demo.base+"/admin/")
		browserKeep(t, page.PNG, strings.TrimSuffix(page.PNG, ".png")+".dom.html")
		browserCheckPNG(t, page.PNG)
		checkAdminPage(t, page.DOM, live, victim, progress, cancelMessage)
	})
	t.Run("tracez", func(t *testing.T) {
		page := browserRender(t, chromium, dir, "browser-tracez", demo.base+"/debug/tracez")
		browserKeep(t, page.PNG, strings.TrimSuffix(page.PNG, ".png")+".dom.html")
		browserCheckPNG(t, page.PNG)
		var names []string
		for _, r := range browserRows(page.DOM) {
			if len(r.Cells) > 0 {
				names = append(names, r.Cells[0])
			}
		}
		for _, want := range []string{"GET /work", "GET /slow", "GET /chain", "call GET /work", "POST /jobs", "job"} {
			if !slices.Contains(names, want) {
				t.Errorf("tracez has no row for the span %q; its rows: %q", want, names)
			}
		}
	})
	t.Run("tracez-job", func(t *testing.T) {
		page := browserRender(t, chromium, dir, "browser-tracez-job", demo.base+jobErrors)
		browserKeep(t, page.PNG, strings.TrimSuffix(page.PNG, ".png")+".dom.html")
		browserCheckPNG(t, page.PNG)
		text := browserText(page.DOM)
		for _, want := range []string{
			"Span Name: job",
			"cancel.operation.id=" + strconv.FormatUint(victim.ID, 10),
			"cancel.reason=manual",
			"cancel.progress",
			"cancel.requested Attributes:{cancel.message=" + cancelMessage + ", cancel.reason=manual}",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("tracez's error samples of job do not show %q:\n%s", want, text)
			}
		}
	})
}

// checkAdminPage checks the admin page's DOM: the live job in the live
// table with its last progress and a cancel button, the cancelled job in
// the history with reason manual, and the counts.
func checkAdminPage(t *testing.T, dom string, live, victim browserOp, progress, cancelMessage string) {
	t.Helper()
	text := browserText(dom)
	for _, want := range []string{"Operations", "Live", "Recent history", "reason manual: 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("admin page: no %q in its text:\n%s", want, text)
		}
	}
	rows := browserRows(dom)
	find := func(id uint64) []browserRow {
		var found []browserRow
		for _, r := range rows {
			if len(r.Cells) > 0 && r.Cells[0] == strconv.FormatUint(id, 10) {
				found = append(found, r)
			}
		}
		return found
	}

	// Live: ID, Name, Parent, Status, Running for, Last progress,
	// Cancellation, and the cancel button.
	switch found := find(live.ID); {
	case len(found) != 1:
		t.Errorf("admin page: %d rows for the live job %d, want 1: %v", len(found), live.ID, found)
	case len(found[0].Cells) != 8:
		t.Errorf("admin page: the live job's row has %d cells, want the 8 of the live table: %v", len(found[0].Cells), found[0])
	default:
		r := found[0]
		// The last progress: its message, then its attributes (which move
		// on while the job runs: only their keys are checked).
		last := r.Cells[5]
		if r.Cells[1] != live.Name || r.Cells[3] != "running" || !strings.HasPrefix(last, progress) ||
			!strings.Contains(last, "step=") || !strings.Contains(last, "percent=") || r.Cells[6] != "" {
			t.Errorf("admin page: live job row %v; want name %q, status running, last progress %q with step= and percent=, no cancellation", r, live.Name, progress)
		}
		action := `action="operations/` + strconv.FormatUint(live.ID, 10) + `/cancel"`
		if r.Cells[7] != "Cancel" || !strings.Contains(r.HTML, action) || !strings.Contains(r.HTML, `<button type="submit">Cancel</button>`) {
			t.Errorf("admin page: the live job's row has no cancel button posting to %s:\n%s", action, r.HTML)
		}
	}

	// History: ID, Name, Status, Reason, Duration, Ended, Error.
	switch found := find(victim.ID); {
	case len(found) != 1:
		t.Errorf("admin page: %d rows for the cancelled job %d, want 1 (in the history): %v", len(found), victim.ID, found)
	case len(found[0].Cells) != 7:
		t.Errorf("admin page: the cancelled job's row has %d cells, want the 7 of the history: %v", len(found[0].Cells), found[0])
	default:
		r := found[0]
		if r.Cells[1] != victim.Name || r.Cells[2] != "cancelled" || r.Cells[3] != "manual: "+cancelMessage ||
			!strings.Contains(r.Cells[6], "cancelled (manual)") {
			t.Errorf("admin page: history row %v; want name %q, status cancelled, reason %q and the error", r, victim.Name, "manual: "+cancelMessage)
		}
		if !strings.Contains(r.HTML, `class="cancelled"`) {
			t.Errorf("admin page: the cancelled job's status is not marked cancelled (red):\n%s", r.HTML)
		}
	}
}
