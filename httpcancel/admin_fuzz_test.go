package httpcancel_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
)

// Whatever a client sends the admin handler (method, path, query, body,
// content type), it gets a clear answer: never a panic, never a 5xx, and a
// live operation is cancelled only by a POST naming it with a valid reason.
func FuzzAdminRequest(f *testing.F) {
	f.Add("GET", "/operations", "status=running&limit=5", "", "")
	f.Add("POST", "/operations/{id}/cancel", "", `{"reason":"manual","message":"x"}`, "application/json")
	f.Add("POST", "/operations/{id}/cancel", "", "reason=manual&redirect=page", "application/x-www-form-urlencoded")
	f.Add("DELETE", "/operations/{id}", "", "", "")
	f.Add("GET", "/operations", "since=-1h&reason=nope&parent=x&limit=99999999999999999999", "", "")
	f.Add("POST", "/operations/18446744073709551616/cancel", "", "{", "application/json")
	f.Add("GET", "/history", "name=%ff%fe&since=2026-01-01T00:00:00Z", "", "")
	reg := &cancel.Registry{}
	h, err := httpcancel.NewAdmin(reg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path, query, body, contentType string) {
		_, live := cancel.Start(context.Background(), "live", cancel.WithRegistry(reg))
		defer live.End(nil)
		// Aim at the live operation: "{id}" in the path stands for its ID.
		path = strings.ReplaceAll(path, "{id}", strconv.FormatUint(live.ID(), 10))
		req := httptest.NewRequest("GET", "/", strings.NewReader(body))
		req.Method, req.URL.Path, req.URL.RawQuery = method, "/"+strings.TrimPrefix(path, "/"), query
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s?%s (%q, %q): %d %s", method, path, query, contentType, body, rec.Code, rec.Body)
		}
		if live.Err() != nil && (method != http.MethodPost || rec.Code >= 400) {
			t.Fatalf("%s %s (%d) cancelled the live operation", method, path, rec.Code)
		}
	})
}
