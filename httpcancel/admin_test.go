package httpcancel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
)

// admServer serves the admin handler of reg under /admin/ on a real
// server, and returns the URL of the handler's root (without the slash).
func admServer(t *testing.T, reg *cancel.Registry, opts ...httpcancel.AdminOption) (*httptest.Server, string) {
	t.Helper()
	h, err := httpcancel.NewAdmin(reg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, srv.URL + "/admin"
}

// admLive starts a live operation in reg, ended when the test ends.
func admLive(t *testing.T, ctx context.Context, reg *cancel.Registry, name string) (context.Context, *cancel.Operation) {
	t.Helper()
	ctx, op := cancel.Start(ctx, name, cancel.WithRegistry(reg))
	t.Cleanup(func() { op.End(nil) })
	return ctx, op
}

// admEnded runs an operation in reg to its end, with err.
func admEnded(reg *cancel.Registry, name string, err error) *cancel.Operation {
	_, op := cancel.Start(context.Background(), name, cancel.WithRegistry(reg))
	op.End(err)
	return op
}

type admResponse struct {
	status int
	header http.Header
	body   []byte
}

func admDo(t *testing.T, srv *httptest.Server, method, url, contentType, body string, header ...string) admResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := *srv.Client() // a copy: srv.Client is shared
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return admResponse{resp.StatusCode, resp.Header, b}
}

func admGet(t *testing.T, srv *httptest.Server, url string) admResponse {
	t.Helper()
	return admDo(t, srv, http.MethodGet, url, "", "")
}

type admList struct {
	Operations []cancel.Info `json:"operations"`
	More       bool          `json:"more"`
}

func (r admResponse) list(t *testing.T) admList {
	t.Helper()
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q, body %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var l admList
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	if l.Operations == nil {
		t.Fatalf("operations is not a list: %s", r.body)
	}
	return l
}

func (l admList) names() []string {
	var names []string
	for _, i := range l.Operations {
		names = append(names, i.Name)
	}
	return names
}

// problem checks r is a problem document with the status whose detail
// starts with detail.
func (r admResponse) problem(t *testing.T, status int, detail string) {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d, Content-Type %q, body %s; want %d problem+json", r.status, r.header.Get("Content-Type"), r.body, status)
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	if p.Status != status || p.Title != http.StatusText(status) || !strings.HasPrefix(p.Detail, detail) {
		t.Errorf("problem = %+v, want status %d and a detail starting %q", p, status, detail)
	}
}

func TestAdminListOperations(t *testing.T) {
	reg := &cancel.Registry{}
	srv, base := admServer(t, reg)
	exportCtx, export := admLive(t, context.Background(), reg, "export")
	export.Progress("half way")
	_, part := admLive(t, exportCtx, reg, "export/part")
	_, imp := admLive(t, context.Background(), reg, "import")
	imp.Cancel(cancel.ReasonShutdown, "draining") // still live until it ends
	admEnded(reg, "export-old", nil)
	admLive(t, context.Background(), &cancel.Registry{}, "elsewhere") // another registry

	l := admGet(t, srv, base+"/operations").list(t)
	if got := l.names(); !slices.Equal(got, []string{"export", "export/part", "import"}) || l.More {
		t.Fatalf("operations = %v (more %v), want the live ones oldest first", got, l.More)
	}
	first := l.Operations[0]
	if first.ID != export.ID() || first.Status != cancel.StatusRunning || first.LastProgress == nil ||
		first.LastProgress.Message != "half way" || first.Duration <= 0 {
		t.Errorf("export = %+v", first)
	}
	if p := l.Operations[1]; p.ID != part.ID() || p.ParentID != export.ID() {
		t.Errorf("part = %+v, want parent %d", p, export.ID())
	}
	if i := l.Operations[2]; i.Reason != cancel.ReasonShutdown || i.Message != "draining" {
		t.Errorf("import = %+v, want its cancellation request", i)
	}

	for _, tc := range []struct {
		query string
		want  []string
		more  bool
	}{
		{"name=export", []string{"export", "export/part"}, false},
		{"name=nothing", nil, false},
		{"status=running", []string{"export", "export/part", "import"}, false},
		{"status=completed", nil, false},
		{"reason=shutdown", []string{"import"}, false},
		{fmt.Sprintf("parent=%d", export.ID()), []string{"export/part"}, false},
		{"limit=2", []string{"export", "export/part"}, true},
		{"limit=0", []string{"export"}, true},  // clamped to 1
		{"limit=-7", []string{"export"}, true}, // clamped to 1
		{"limit=-99999999999999999999999", []string{"export"}, true},
		{"limit=99999999999999999999999", []string{"export", "export/part", "import"}, false}, // clamped to 1000
		{"since=1h", []string{"export", "export/part", "import"}, false},
		{"since=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339Nano)), nil, false},
		{"name=export&limit=1&status=running", []string{"export"}, true},
	} {
		l := admGet(t, srv, base+"/operations?"+tc.query).list(t)
		if !slices.Equal(l.names(), tc.want) || l.More != tc.more {
			t.Errorf("?%s: operations = %v (more %v), want %v (more %v)", tc.query, l.names(), l.More, tc.want, tc.more)
		}
	}
}

func TestAdminBadParameters(t *testing.T) {
	reg := &cancel.Registry{}
	srv, base := admServer(t, reg)
	for _, path := range []string{"/operations", "/history"} {
		for _, tc := range []struct{ query, param string }{
			{"status=bogus", "status:"},
			{"status=Running", "status:"},
			{"reason=bogus", "reason:"},
			{"parent=x", "parent:"},
			{"parent=-1", "parent:"},
			{"parent=0", "parent:"}, // no operation has ID 0: it listed every one
			{"limit=ten", "limit:"},
			{"limit=1.5", "limit:"},
			{"since=yesterday", "since:"},
			{"since=-5m", "since:"},
		} {
			t.Run(path+"?"+tc.query, func(t *testing.T) {
				admGet(t, srv, base+path+"?"+tc.query).problem(t, http.StatusBadRequest, tc.param)
			})
		}
	}
}

func TestAdminGetOperation(t *testing.T) {
	reg := &cancel.Registry{}
	srv, base := admServer(t, reg)
	_, live := admLive(t, context.Background(), reg, "live")
	ended := admEnded(reg, "ended", errors.New("disk full"))

	for _, tc := range []struct {
		op     *cancel.Operation
		status cancel.Status
	}{{live, cancel.StatusRunning}, {ended, cancel.StatusFailed}} {
		r := admGet(t, srv, fmt.Sprintf("%s/operations/%d", base, tc.op.ID()))
		var info cancel.Info
		if r.status != http.StatusOK || json.Unmarshal(r.body, &info) != nil {
			t.Fatalf("GET %s: %d %s", tc.op.Name(), r.status, r.body)
		}
		if info.ID != tc.op.ID() || info.Name != tc.op.Name() || info.Status != tc.status {
			t.Errorf("GET %s = %+v, want status %v", tc.op.Name(), info, tc.status)
		}
	}
	if info, _ := reg.Lookup(ended.ID()); info.Error != "disk full" {
		t.Errorf("history error = %q", info.Error)
	}
	admGet(t, srv, base+"/operations/987654321012").problem(t, http.StatusNotFound, "no operation 987654321012")
	admGet(t, srv, base+"/operations/abc").problem(t, http.StatusBadRequest, "id:")
	admGet(t, srv, base+"/operations/-1").problem(t, http.StatusBadRequest, "id:")
	admGet(t, srv, base+"/operations/99999999999999999999999").problem(t, http.StatusBadRequest, "id:")
}

// admCause waits for op's context and returns its *cancel.Error.
func admCause(t *testing.T, ctx context.Context) *cancel.Error {
	t.Helper()
	select {
	case <-ctx.Done():
	default:
		t.Fatal("operation not cancelled")
	}
	var ce *cancel.Error
	if !errors.As(context.Cause(ctx), &ce) {
		t.Fatalf("cause = %v, want a *cancel.Error", context.Cause(ctx))
	}
	return ce
}

func admNotCancelled(t *testing.T, op *cancel.Operation) {
	t.Helper()
	if err := op.Err(); err != nil {
		t.Fatalf("operation cancelled: %v", err)
	}
}

func TestAdminCancel(t *testing.T) {
	reg := &cancel.Registry{}
	srv, base := admServer(t, reg)
	cancelURL := func(op *cancel.Operation) string { return fmt.Sprintf("%s/operations/%d/cancel", base, op.ID()) }
	cancelled := func(t *testing.T, r admResponse, want bool) {
		t.Helper()
		var res struct{ Cancelled *bool }
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(r.body, &res) != nil || res.Cancelled == nil || *res.Cancelled != want {
			t.Fatalf("answer %d %s, want 200 {\"cancelled\":%v}", r.status, r.body, want)
		}
	}

	t.Run("JSON", func(t *testing.T) {
		ctx, op := admLive(t, context.Background(), reg, "job")
		r := admDo(t, srv, http.MethodPost, cancelURL(op), "application/json; charset=utf-8",
			`{"reason":"shutdown","message":"deploy"}`)
		cancelled(t, r, true)
		if ce := admCause(t, ctx); ce.Reason != cancel.ReasonShutdown || ce.Message != "deploy" || ce.OpID != op.ID() {
			t.Errorf("cause = %+v", ce)
		}
		// Asked again: nothing to do, the first request stands.
		cancelled(t, admDo(t, srv, http.MethodPost, cancelURL(op), "application/json", `{"reason":"timeout"}`), false)
		if op.Reason() != cancel.ReasonShutdown {
			t.Errorf("reason = %v after a second request", op.Reason())
		}
	})
	t.Run("form", func(t *testing.T) {
		ctx, op := admLive(t, context.Background(), reg, "job")
		cancelled(t, admDo(t, srv, http.MethodPost, cancelURL(op), "application/x-www-form-urlencoded",
			"reason=condition&message=quota+reached"), true)
		if ce := admCause(t, ctx); ce.Reason != cancel.ReasonCondition || ce.Message != "quota reached" {
			t.Errorf("cause = %+v", ce)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		for _, ct := range []string{"", "application/json"} {
			ctx, op := admLive(t, context.Background(), reg, "job")
			cancelled(t, admDo(t, srv, http.MethodPost, cancelURL(op), ct, ""), true)
			if ce := admCause(t, ctx); ce.Reason != cancel.ReasonManual || ce.Message == "" {
				t.Errorf("Content-Type %q: cause = %+v, want manual with a message", ct, ce)
			}
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		_, op := admLive(t, context.Background(), reg, "job")
		for _, tc := range []struct {
			contentType, body, detail string
		}{
			{"application/json", `{"reason":"bogus"}`, "reason:"},
			{"application/json", `{"reason":"Manual"}`, "reason:"},
			{"application/x-www-form-urlencoded", "reason=later", "reason:"},
			// disconnect says the peer went away: the request would get no
			// answer, its stream end as if whole, its websocket a bare 1006.
			{"application/json", `{"reason":"disconnect"}`, "reason: disconnect"},
			{"application/x-www-form-urlencoded", "reason=disconnect", "reason: disconnect"},
			{"application/json", `{"reason":`, "body:"},
			{"application/json", `["manual"]`, "body:"},
			{"application/json", `{"message":"` + strings.Repeat("x", 501) + `"}`, "message:"},
			{"application/json", `{"message":"` + strings.Repeat("x", 70<<10) + `"}`, "body:"},
		} {
			admDo(t, srv, http.MethodPost, cancelURL(op), tc.contentType, tc.body).problem(t, http.StatusBadRequest, tc.detail)
			admNotCancelled(t, op)
		}
		admDo(t, srv, http.MethodPost, base+"/operations/x/cancel", "", "").problem(t, http.StatusBadRequest, "id:")
		// The reasons an unknown one is told to pick from are those it
		// takes: not disconnect, which it refuses.
		if r := admDo(t, srv, http.MethodPost, cancelURL(op), "application/json", `{"reason":"bogus"}`); strings.Contains(string(r.body), "disconnect") {
			t.Errorf("an unknown reason is told to use one the endpoint refuses: %s", r.body)
		}
		admNotCancelled(t, op)
	})
	t.Run("not live", func(t *testing.T) {
		ended := admEnded(reg, "ended", nil)
		admDo(t, srv, http.MethodPost, cancelURL(ended), "", "").problem(t, http.StatusNotFound, "no live operation")
		admDo(t, srv, http.MethodPost, base+"/operations/987654321012/cancel", "", "").problem(t, http.StatusNotFound, "no live operation")
	})
	t.Run("GET refused", func(t *testing.T) {
		_, op := admLive(t, context.Background(), reg, "job")
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete} {
			r := admDo(t, srv, m, cancelURL(op), "", "")
			if r.status != http.StatusMethodNotAllowed || !strings.Contains(r.header.Get("Allow"), http.MethodPost) {
				t.Errorf("%s: status %d, Allow %q; want 405 allowing POST", m, r.status, r.header.Get("Allow"))
			}
			if m != http.MethodHead { // errors are problem documents
				r.problem(t, http.StatusMethodNotAllowed, "method "+m+" not allowed here; allowed: ")
			}
		}
		admNotCancelled(t, op)
	})
	t.Run("unknown path", func(t *testing.T) {
		for _, path := range []string{"/nope", "/operations/1/cancel/more", "/stats/"} {
			admGet(t, srv, base+path).problem(t, http.StatusNotFound, "no such endpoint")
		}
	})
	t.Run("cross-origin refused", func(t *testing.T) {
		_, op := admLive(t, context.Background(), reg, "job")
		admDo(t, srv, http.MethodPost, cancelURL(op), "", "", "Sec-Fetch-Site", "cross-site").
			problem(t, http.StatusForbidden, "cross-origin")
		admDo(t, srv, http.MethodPost, cancelURL(op), "", "", "Origin", "https://evil.example").
			problem(t, http.StatusForbidden, "cross-origin")
		admNotCancelled(t, op)
		// The browser's own page may.
		cancelled(t, admDo(t, srv, http.MethodPost, cancelURL(op), "", "", "Sec-Fetch-Site", "same-origin"), true)
	})
}

func TestAdminTrustedOrigin(t *testing.T) {
	reg := &cancel.Registry{}
	p := http.NewCrossOriginProtection()
	if err := p.AddTrustedOrigin("https://ops.example"); err != nil {
		t.Fatal(err)
	}
	srv, base := admServer(t, reg, httpcancel.AdminCrossOriginProtection(p))
	_, op := admLive(t, context.Background(), reg, "job")
	r := admDo(t, srv, http.MethodPost, fmt.Sprintf("%s/operations/%d/cancel", base, op.ID()), "", "",
		"Sec-Fetch-Site", "cross-site", "Origin", "https://ops.example")
	if r.status != http.StatusOK || op.Reason() != cancel.ReasonManual {
		t.Errorf("trusted origin: %d %s, reason %v", r.status, r.body, op.Reason())
	}
}

func TestAdminAuthorize(t *testing.T) {
	reg := &cancel.Registry{}
	var (
		mu    sync.Mutex
		asked []string
	)
	srv, base := admServer(t, reg, httpcancel.AdminAuthorize(func(r *http.Request) bool {
		mu.Lock()
		asked = append(asked, r.Method+" "+r.URL.Path)
		mu.Unlock()
		return r.Header.Get("X-Role") == "operator"
	}))
	_, op := admLive(t, context.Background(), reg, "job")
	cancelURL := fmt.Sprintf("%s/operations/%d/cancel", base, op.ID())

	admDo(t, srv, http.MethodPost, cancelURL, "", "").problem(t, http.StatusForbidden, "not allowed")
	admDo(t, srv, http.MethodPost, cancelURL, "", "", "X-Role", "viewer").problem(t, http.StatusForbidden, "not allowed")
	admNotCancelled(t, op)
	// Denied before anything else is looked at: an unknown operation is no
	// different.
	admDo(t, srv, http.MethodPost, base+"/operations/987654321012/cancel", "", "").problem(t, http.StatusForbidden, "not allowed")
	// Reads are not its business.
	if r := admGet(t, srv, base+"/operations"); r.status != http.StatusOK {
		t.Errorf("GET /operations: %d", r.status)
	}
	r := admDo(t, srv, http.MethodPost, cancelURL, "", "", "X-Role", "operator")
	if r.status != http.StatusOK || op.Reason() != cancel.ReasonManual {
		t.Errorf("operator: %d %s, reason %v", r.status, r.body, op.Reason())
	}
	want := fmt.Sprintf("POST /operations/%d/cancel", op.ID())
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 4 || asked[0] != want {
		t.Errorf("authorize asked %q, want 4 cancel requests, the first %q", asked, want)
	}
}

func TestAdminHistory(t *testing.T) {
	reg := &cancel.Registry{}
	srv, base := admServer(t, reg)
	admEnded(reg, "a", nil)
	_, op := cancel.Start(context.Background(), "b", cancel.WithRegistry(reg))
	op.Cancel(cancel.ReasonTimeout, "slow")
	op.End(op.Err())
	between := time.Now()
	admEnded(reg, "c", errors.New("boom"))
	admLive(t, context.Background(), reg, "live")

	l := admGet(t, srv, base+"/history").list(t)
	if got := l.names(); !slices.Equal(got, []string{"c", "b", "a"}) || l.More {
		t.Fatalf("history = %v (more %v), want the ended ones newest first", got, l.More)
	}
	if b := l.Operations[1]; b.Status != cancel.StatusCancelled || b.Reason != cancel.ReasonTimeout || b.Ended.IsZero() {
		t.Errorf("b = %+v", b)
	}
	for _, tc := range []struct {
		query string
		want  []string
		more  bool
	}{
		{"status=cancelled", []string{"b"}, false},
		{"status=failed", []string{"c"}, false},
		{"status=running", nil, false},
		{"reason=timeout", []string{"b"}, false},
		{"name=a", []string{"a"}, false},
		{"limit=2", []string{"c", "b"}, true},
		{"since=" + url.QueryEscape(between.Format(time.RFC3339Nano)), []string{"c"}, false},
		{"since=1h", []string{"c", "b", "a"}, false},
	} {
		l := admGet(t, srv, base+"/history?"+tc.query).list(t)
		if !slices.Equal(l.names(), tc.want) || l.More != tc.more {
			t.Errorf("?%s: history = %v (more %v), want %v (more %v)", tc.query, l.names(), l.More, tc.want, tc.more)
		}
	}
}

func TestAdminStats(t *testing.T) {
	reg := &cancel.Registry{}
	srv, base := admServer(t, reg)
	admLive(t, context.Background(), reg, "live")
	admEnded(reg, "ok", nil)
	admEnded(reg, "ok", nil)
	_, op := cancel.Start(context.Background(), "stopped", cancel.WithRegistry(reg))
	op.Cancel(cancel.ReasonDisconnect, "")
	op.End(op.Err())

	r := admGet(t, srv, base+"/stats")
	var s struct {
		Active      int              `json:"active"`
		ByStatus    map[string]int64 `json:"by_status"`
		ByReason    map[string]int64 `json:"by_reason"`
		HistorySize int              `json:"history_size"`
		Completed   int64            `json:"completed"`
		AvgDuration *int64           `json:"avg_duration_ns"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &s) != nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if s.Active != 1 || s.ByStatus["running"] != 1 || s.ByStatus["completed"] != 2 || s.ByStatus["cancelled"] != 1 ||
		s.ByReason["disconnect"] != 1 || s.HistorySize != 3 || s.Completed != 2 || s.AvgDuration == nil {
		t.Errorf("stats = %s", r.body)
	}
}

var admFormRE = regexp.MustCompile(`<form method="post" action="([^"]+)">(.*?)</form>`)
var admInputRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// admForm finds the cancel form of the operation with the given ID in a
// page, and returns its action and fields.
func admForm(t *testing.T, page string, id uint64) (string, url.Values) {
	t.Helper()
	for _, m := range admFormRE.FindAllStringSubmatch(page, -1) {
		action := html.UnescapeString(m[1])
		if action != fmt.Sprintf("operations/%d/cancel", id) {
			continue
		}
		fields := url.Values{}
		for _, in := range admInputRE.FindAllStringSubmatch(m[2], -1) {
			fields.Add(html.UnescapeString(in[1]), html.UnescapeString(in[2]))
		}
		return action, fields
	}
	t.Fatalf("no cancel form for operation %d in the page:\n%s", id, page)
	return "", nil
}

func TestAdminPage(t *testing.T) {
	reg := &cancel.Registry{}
	srv, base := admServer(t, reg)
	_, evil := admLive(t, context.Background(), reg, `<script>alert("x")</script>`)
	evil.Progress(`<img src=x onerror=alert(1)> copied 10 files`, slog.Int("files", 10), slog.String("<b>dir</b>", "/tmp/<x>"))
	_, asked := admLive(t, context.Background(), reg, "asked-to-stop")
	asked.Cancel(cancel.ReasonShutdown, "deploy <b>now</b>")
	admEnded(reg, "finished-job", nil)
	admEnded(reg, `</td><script>bad()</script>`, errors.New(`<i>failed</i>`))

	r := admGet(t, srv, base+"/")
	page := string(r.body)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("status %d, Content-Type %q", r.status, r.header.Get("Content-Type"))
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") ||
		!strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	for _, bad := range []string{"<script", "<img", "<b>now", "<i>", "</td><script"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q unescaped", bad)
		}
	}
	for _, want := range []string{
		"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;",
		"&lt;img src=x onerror=alert(1)&gt; copied 10 files",
		`<span class="attrs">files=10</span>`,
		`<span class="attrs">&lt;b&gt;dir&lt;/b&gt;=/tmp/&lt;x&gt;</span>`,
		"shutdown: deploy &lt;b&gt;now&lt;/b&gt;",
		"finished-job",
		"&lt;/td&gt;&lt;script&gt;bad()&lt;/script&gt;",
		"&lt;i&gt;failed&lt;/i&gt;",
		`<meta http-equiv="refresh" content="5; url=./">`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, external := range []string{"http://", "https://", `src="`, `href="`, "<link"} {
		if strings.Contains(page, external) {
			t.Errorf("page refers to something outside (%q)", external)
		}
	}
	admForm(t, page, evil.ID()) // a button for the live operation
	if strings.Contains(page, fmt.Sprintf(`action="operations/%d/cancel"`, asked.ID())) {
		t.Error("a cancel button for an operation already asked to stop")
	}

	_, noRefresh := admServer(t, reg, httpcancel.AdminRefresh(0))
	if page := string(admGet(t, srv, noRefresh+"/").body); strings.Contains(page, "refresh") {
		t.Error("AdminRefresh(0): the page still refreshes")
	}
}

func TestAdminPageHistoryIsRecent(t *testing.T) {
	reg := &cancel.Registry{}
	srv, base := admServer(t, reg)
	for i := range 60 {
		admEnded(reg, fmt.Sprintf("job-%02d", i), nil)
	}
	page := string(admGet(t, srv, base+"/").body)
	if !strings.Contains(page, "job-59") || !strings.Contains(page, "job-10") || strings.Contains(page, "job-09") {
		t.Error("the page does not show the last 50 ended operations exactly")
	}
	if !strings.Contains(page, "No live operations.") {
		t.Error("the page does not say there are no live operations")
	}
}

// The button on the page cancels the operation, and brings the browser
// back to the page.
func TestAdminCancelButton(t *testing.T) {
	reg := &cancel.Registry{}
	srv, base := admServer(t, reg)
	ctx, op := admLive(t, context.Background(), reg, "nightly-export")
	_, other := admLive(t, context.Background(), reg, "other")
	ended := admEnded(reg, "ended", nil)

	pageURL := base + "/"
	page := string(admGet(t, srv, pageURL).body)
	action, fields := admForm(t, page, op.ID())
	target, err := url.Parse(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	target = target.ResolveReference(&url.URL{Path: action})

	resp, err := srv.Client().PostForm(target.String(), fields) // follows the 303 with a GET
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.Method != http.MethodGet || resp.Request.URL.Path != "/admin/" {
		t.Fatalf("after the button: %d at %s %s, want 200 back at the page", resp.StatusCode, resp.Request.Method, resp.Request.URL)
	}
	if want := fmt.Sprintf("Operation %d cancelled.", op.ID()); !strings.Contains(string(back), want) {
		t.Errorf("page after the button lacks %q", want)
	}
	if ce := admCause(t, ctx); ce.Reason != cancel.ReasonManual || ce.OpID != op.ID() {
		t.Errorf("cause = %+v, want manual", ce)
	}
	admNotCancelled(t, other)

	// A button pressed for an operation that has ended meanwhile.
	r := admDo(t, srv, http.MethodPost, fmt.Sprintf("%s/operations/%d/cancel", base, ended.ID()),
		"application/x-www-form-urlencoded", "redirect=page")
	if loc := r.header.Get("Location"); r.status != http.StatusSeeOther || !strings.HasPrefix(loc, "../../?") {
		t.Fatalf("status %d, Location %q; want 303 back to the page", r.status, loc)
	}
	back2 := admGet(t, srv, base+"/?"+strings.TrimPrefix(r.header.Get("Location"), "../../?")).body
	if want := fmt.Sprintf("Operation %d is not running", ended.ID()); !strings.Contains(string(back2), want) {
		t.Errorf("page lacks %q", want)
	}
	// The notice shows nothing of the query but the number.
	for _, q := range []string{"op=%3Cb%3E1%3C/b%3E&result=cancelled", "op=1&result=%3Cb%3Ehi%3C/b%3E"} {
		if p := string(admGet(t, srv, base+"/?"+q).body); strings.Contains(p, `class="notice"`) {
			t.Errorf("?%s: a notice", q)
		}
	}
}

func TestAdminMounting(t *testing.T) {
	reg := &cancel.Registry{}
	_, op := admLive(t, context.Background(), reg, "job")
	h := httpcancel.Admin(reg)
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", h))
	mux.Handle("/ops", http.StripPrefix("/ops", h))
	mux.Handle("/slash/", http.StripPrefix("/slash/", h)) // a trailing slash in the prefix
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	r := admGet(t, srv, srv.URL+"/ops?x=1")
	if r.status != http.StatusMovedPermanently || r.header.Get("Location") != "ops/?x=1" {
		t.Errorf("GET /ops: %d, Location %q; want 301 to ops/?x=1", r.status, r.header.Get("Location"))
	}
	for _, u := range []string{"/ops/", "/slash/"} {
		if r := admGet(t, srv, srv.URL+u); r.status != http.StatusOK || !strings.Contains(string(r.body), ">job<") {
			t.Errorf("GET %s: %d", u, r.status)
		}
	}
	if l := admGet(t, srv, srv.URL+"/slash/operations").list(t); !slices.Equal(l.names(), []string{"job"}) {
		t.Errorf("GET /slash/operations = %v", l.names())
	}
	r = admDo(t, srv, http.MethodPost, fmt.Sprintf("%s/slash/operations/%d/cancel", srv.URL, op.ID()), "", "")
	if r.status != http.StatusOK || op.Reason() != cancel.ReasonManual {
		t.Errorf("POST under /slash/: %d %s", r.status, r.body)
	}
	if r := admGet(t, srv, srv.URL+"/ops/nothing"); r.status != http.StatusNotFound {
		t.Errorf("GET /ops/nothing: %d", r.status)
	}
}

func TestNewAdminInvalidOptions(t *testing.T) {
	reg := &cancel.Registry{}
	if h, err := httpcancel.NewAdmin(nil); err == nil || h != nil || !strings.Contains(err.Error(), "nil registry") {
		t.Errorf("NewAdmin(nil) = %v, %v", h, err)
	}
	for _, tc := range []struct {
		opt  httpcancel.AdminOption
		want string
	}{
		{httpcancel.AdminAuthorize(nil), "AdminAuthorize"},
		{httpcancel.AdminRefresh(-time.Second), "AdminRefresh"},
		{httpcancel.AdminCrossOriginProtection(nil), "AdminCrossOriginProtection"},
		{nil, "nil AdminOption"},
	} {
		h, err := httpcancel.NewAdmin(reg, tc.opt)
		if err == nil || h != nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewAdmin = %v, %v; want an error naming %s", h, err, tc.want)
		}
		func() {
			defer func() {
				if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), tc.want) {
					t.Errorf("Admin panicked with %v, want an error naming %s", p, tc.want)
				}
			}()
			httpcancel.Admin(reg, tc.opt)
		}()
	}
}

// An operator cancels an HTTP request in flight: its client gets the
// middleware's answer.
func TestAdminCancelsRequest(t *testing.T) {
	reg := &cancel.Registry{}
	adminSrv, admin := admServer(t, reg)
	started := make(chan uint64, 1)
	app := httptest.NewServer(httpcancel.Middleware(httpcancel.WithRegistry(reg))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			started <- cancel.FromContext(r.Context()).ID()
			<-r.Context().Done()
		})))
	t.Cleanup(app.Close)

	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := app.Client().Get(app.URL + "/report")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode, body: string(b)}
	}()
	id := <-started
	resp, err := adminSrv.Client().Post(fmt.Sprintf("%s/operations/%d/cancel", admin, id), "application/json", strings.NewReader(`{"message":"too slow"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	res := <-done
	if res.err != nil || res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, `"reason":"manual"`) {
		t.Errorf("client got %d %q %v, want 503 with reason manual", res.status, res.body, res.err)
	}
	if info, ok := reg.Lookup(id); !ok || info.Reason != cancel.ReasonManual || info.Message != "too slow" {
		t.Errorf("request operation = %+v", info)
	}
}

func ExampleNewAdmin() {
	reg := &cancel.Registry{}
	ctx, op := cancel.Start(context.Background(), "nightly-export", cancel.WithRegistry(reg))
	op.Progress("exported 1200 rows")

	admin, err := httpcancel.NewAdmin(reg, httpcancel.AdminAuthorize(func(r *http.Request) bool {
		return r.Header.Get("X-Role") == "operator" // set by your authentication in front
	}))
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", admin)) // behind your own authentication
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL + "/admin/operations?status=running")
	if err != nil {
		panic(err)
	}
	var list struct{ Operations []cancel.Info }
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	for _, i := range list.Operations {
		fmt.Println(i.Name, i.Status, i.LastProgress.Message)
	}

	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/admin/operations/%d/cancel", srv.URL, op.ID()),
		strings.NewReader(`{"reason":"manual","message":"export not needed"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Role", "operator")
	resp, err = srv.Client().Do(req)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, strings.TrimSpace(string(body)))

	<-ctx.Done()
	fmt.Println(op.End(ctx.Err()))
	// Output:
	// nightly-export running exported 1200 rows
	// 200 OK {"cancelled":true}
	// nightly-export: cancelled (manual): export not needed
}
