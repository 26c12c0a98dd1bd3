package httpcancel

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// An AdminOption configures NewAdmin.
type AdminOption func(*adminConfig) error

type adminConfig struct {
	authorize func(*http.Request) bool
	refresh   time.Duration
	origins   *http.CrossOriginProtection
}

// AdminAuthorize sets a check for cancel requests: when allow returns
// false, the request is refused with 403 Forbidden and nothing is
// cancelled. It is called after the user's own authentication (which must
// be in front of the handler, see NewAdmin) with the request, to decide
// who may cancel, beyond who may look.
func AdminAuthorize(allow func(r *http.Request) bool) AdminOption {
	return func(c *adminConfig) error {
		if allow == nil {
			return errors.New("httpcancel: AdminAuthorize: nil function")
		}
		c.authorize = allow
		return nil
	}
}

// AdminRefresh sets how often the HTML page reloads itself: every 5
// seconds by default, never with zero.
func AdminRefresh(every time.Duration) AdminOption {
	return func(c *adminConfig) error {
		if every < 0 {
			return fmt.Errorf("httpcancel: AdminRefresh: negative interval %v", every)
		}
		c.refresh = every
		return nil
	}
}

// AdminCrossOriginProtection replaces the protection against cross-site
// request forgery of cancel requests: by default, an
// http.CrossOriginProtection with no trusted origins, which refuses
// cross-origin requests from browsers with 403 Forbidden. Give one with
// trusted origins if another site of yours posts cancel requests.
func AdminCrossOriginProtection(p *http.CrossOriginProtection) AdminOption {
	return func(c *adminConfig) error {
		if p == nil {
			return errors.New("httpcancel: AdminCrossOriginProtection: nil protection")
		}
		c.origins = p
		return nil
	}
}

// Limits of the lists the admin handler returns.
const (
	adminDefaultLimit = 100  // without a limit parameter
	adminMaxLimit     = 1000 // larger limits are clamped to this
	adminPageHistory  = 50   // ended operations on the HTML page
	adminPageLive     = 500  // live operations on the HTML page
	adminMaxMessage   = 500  // bytes of a cancel message
	adminMaxBody      = 64 << 10
)

// adminDefaultMessage is the message of a cancellation requested without one.
const adminDefaultMessage = "cancelled by an operator"

// NewAdmin returns a handler to inspect and cancel the operations of reg,
// or an error naming the invalid option.
//
// Security: the handler has no authentication of its own. Anyone who can
// reach it sees what the service is doing (operation names, progress
// messages and attributes, errors) and can cancel any live operation. Mount
// it only behind your own authentication, on an internal listener or
// behind a middleware that checks who is asking; use AdminAuthorize to
// decide who may cancel. Cancel requests must be POSTs, and cross-origin
// POSTs from browsers are refused (see AdminCrossOriginProtection), so a
// page of another site cannot make an operator's browser cancel work.
//
// Mount it under a prefix with http.StripPrefix:
//
//	mux.Handle("/debug/operations/", http.StripPrefix("/debug/operations", requireAdmin(httpcancel.Admin(reg))))
//
// It serves, relative to that prefix:
//
//	GET  /                        HTML page: live operations with their last progress
//	                              and a cancel button, the last 50 ended ones
//	GET  /operations              live operations, oldest first, as JSON
//	GET  /operations/{id}         one operation, live or in the history
//	POST /operations/{id}/cancel  cancel a live operation
//	GET  /history                 ended operations, newest first
//	GET  /stats                   the registry's counts (cancel.Stats)
//
// Lists answer {"operations": [...], "more": bool} with cancel.Info
// snapshots; more tells that the limit cut the list short. They take the
// query parameters status, name (a substring), reason, parent (an ID),
// since (an RFC 3339 time, or a duration such as 15m meaning that long
// ago; the start of live operations, the end of ended ones) and limit
// (100 by default, clamped to 1..1000).
//
// A cancel request may name a reason (ReasonManual by default; any but
// ReasonDisconnect, which says the client went away) and a message, as
// form fields or as a JSON object {"reason": "manual", "message": "..."}.
// It answers {"cancelled": true} if it cancelled the operation, false if
// the operation's cancellation had already been requested, and 404 if
// there is no such live operation. The page's
// buttons send the form field redirect: those requests are answered with
// 303 See Other back to the page, which tells what happened.
//
// Errors are application/problem+json documents whose detail names the
// parameter at fault. Any other method on the cancel path is refused with
// 405 Method Not Allowed.
func NewAdmin(reg *cancel.Registry, opts ...AdminOption) (http.Handler, error) {
	if reg == nil {
		return nil, errors.New("httpcancel: NewAdmin: nil registry")
	}
	a := &admin{reg: reg, cfg: adminConfig{refresh: 5 * time.Second}}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("httpcancel: NewAdmin: nil AdminOption")
		}
		if err := o(&a.cfg); err != nil {
			return nil, err
		}
	}
	if a.cfg.origins == nil {
		a.cfg.origins = http.NewCrossOriginProtection()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.page)
	mux.HandleFunc("GET /operations", a.list)
	mux.HandleFunc("GET /operations/{id}", a.get)
	mux.HandleFunc("POST /operations/{id}/cancel", a.cancel)
	mux.HandleFunc("GET /history", a.history)
	mux.HandleFunc("GET /stats", a.stats)
	a.mux = mux
	return a, nil
}

// Admin is NewAdmin for options known when the program is written: it
// panics on an invalid one, like regexp.MustCompile. Read NewAdmin's
// security note: the handler must sit behind your own authentication.
func Admin(reg *cancel.Registry, opts ...AdminOption) http.Handler {
	h, err := NewAdmin(reg, opts...)
	if err != nil {
		panic(err)
	}
	return h
}

type admin struct {
	reg *cancel.Registry
	cfg adminConfig
	mux *http.ServeMux
}

func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; !strings.HasPrefix(p, "/") {
		// Mounted with http.StripPrefix("/ops/", ...), or asked for "/ops"
		// under StripPrefix("/ops", ...). The page's links are relative:
		// it must be served at "/ops/".
		if p == "" {
			if orig := requestPath(r); orig != "" && !strings.HasSuffix(orig, "/") {
				target := path.Base(orig) + "/"
				if r.URL.RawQuery != "" {
					target += "?" + r.URL.RawQuery
				}
				w.Header().Set("Location", target)
				w.WriteHeader(http.StatusMovedPermanently)
				return
			}
		}
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = "/" + u.Path
		if u.RawPath != "" {
			u.RawPath = "/" + u.RawPath
		}
		r2.URL = &u
		r = r2
	}
	if _, pattern := a.mux.Handler(r); pattern == "" {
		// No route: the mux answers 404 or 405 in plain text. Errors are
		// problem documents.
		w = &muxError{ResponseWriter: w, method: r.Method}
	}
	a.mux.ServeHTTP(w, r)
}

// muxError turns the ServeMux's own errors (no such path, a method the
// path does not take) into problem documents.
type muxError struct {
	http.ResponseWriter
	method string
	done   bool // the problem is written: the mux's text is dropped
}

func (w *muxError) WriteHeader(code int) {
	if code < 400 || w.done {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.done = true
	detail := "no such endpoint: see NewAdmin for those the handler serves"
	if code == http.StatusMethodNotAllowed {
		detail = "method " + w.method + " not allowed here; allowed: " + w.Header().Get("Allow")
	}
	writeAdminError(w.ResponseWriter, code, detail)
}

func (w *muxError) Write(p []byte) (int, error) {
	if w.done {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// requestPath returns the path the client asked for, before any prefix
// was stripped.
func requestPath(r *http.Request) string {
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		return ""
	}
	return u.Path
}

// listResponse is the body of the list endpoints.
type listResponse struct {
	Operations []cancel.Info `json:"operations"`
	More       bool          `json:"more"`
}

func (a *admin) list(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		writeAdminError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := f.Limit
	f.Limit++ // one more, to know if there are more
	ops := a.reg.List(f)
	res := listResponse{Operations: make([]cancel.Info, 0, min(len(ops), limit))}
	for i, op := range ops {
		if i == limit {
			res.More = true
			break
		}
		res.Operations = append(res.Operations, op.Info())
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *admin) history(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		writeAdminError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := f.Limit
	f.Limit++
	infos := a.reg.History(f)
	res := listResponse{Operations: infos}
	if len(infos) > limit {
		res.Operations, res.More = infos[:limit], true
	}
	if res.Operations == nil {
		res.Operations = []cancel.Info{}
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *admin) get(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r)
	if err != nil {
		writeAdminError(w, http.StatusBadRequest, err.Error())
		return
	}
	info, ok := a.reg.Lookup(id)
	if !ok {
		writeAdminError(w, http.StatusNotFound, fmt.Sprintf("no operation %d, live or in the history", id))
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// cancelRequest is the JSON body of a cancel request.
type cancelRequest struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (a *admin) cancel(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.origins.Check(r); err != nil {
		writeAdminError(w, http.StatusForbidden, "cross-origin cancel request refused")
		return
	}
	if a.cfg.authorize != nil && !a.cfg.authorize(r) {
		writeAdminError(w, http.StatusForbidden, "not allowed to cancel operations")
		return
	}
	id, err := parseID(r)
	if err != nil {
		writeAdminError(w, http.StatusBadRequest, err.Error())
		return
	}
	req, toPage, err := parseCancel(w, r)
	if err != nil {
		writeAdminError(w, http.StatusBadRequest, err.Error())
		return
	}
	reason := cancel.ReasonManual
	if req.Reason != "" {
		if reason, err = cancel.ParseReason(req.Reason); err != nil || reason == 0 {
			writeAdminError(w, http.StatusBadRequest, fmt.Sprintf("reason: unknown reason %q; want one of %s", req.Reason, reasonNames(cancel.ReasonDisconnect)))
			return
		}
		if reason == cancel.ReasonDisconnect {
			// It says the peer went away: the middleware would not answer
			// the request nor cut its response (which would look whole),
			// a websocket would get no close frame, a stream no last event.
			writeAdminError(w, http.StatusBadRequest, "reason: disconnect says the client went away, which an operator cannot; use manual")
			return
		}
	}
	if len(req.Message) > adminMaxMessage {
		writeAdminError(w, http.StatusBadRequest, fmt.Sprintf("message: longer than %d bytes", adminMaxMessage))
		return
	}
	if req.Message == "" {
		req.Message = adminDefaultMessage
	}
	op := a.reg.Get(id)
	cancelled := op != nil && op.Cancel(reason, req.Message)
	if toPage {
		// Back to the page, from <prefix>/operations/{id}/cancel: a
		// relative Location, as the prefix is not known here.
		result := "ended"
		switch {
		case cancelled:
			result = "cancelled"
		case op != nil:
			result = "already"
		}
		w.Header().Set("Location", "../../?op="+strconv.FormatUint(id, 10)+"&result="+result)
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	if op == nil {
		writeAdminError(w, http.StatusNotFound, fmt.Sprintf("no live operation %d", id))
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Cancelled bool `json:"cancelled"`
	}{cancelled})
}

// parseCancel reads the reason and message of a cancel request from its
// JSON body or its form, and whether the answer is a redirect to the page.
func parseCancel(w http.ResponseWriter, r *http.Request) (req cancelRequest, toPage bool, err error) {
	r.Body = http.MaxBytesReader(w, r.Body, adminMaxBody)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&req); err != nil && err != io.EOF {
			return req, false, fmt.Errorf("body: not a JSON object with reason and message: %v", err)
		}
		return req, false, nil
	}
	if err := r.ParseForm(); err != nil {
		return req, false, fmt.Errorf("body: %v", err)
	}
	req.Reason, req.Message = r.Form.Get("reason"), r.Form.Get("message")
	return req, r.Form.Get("redirect") != "", nil
}

// adminStats is the body of GET /stats.
type adminStats struct {
	Active      int                     `json:"active"`
	ByStatus    map[cancel.Status]int64 `json:"by_status"`
	ByReason    map[cancel.Reason]int64 `json:"by_reason"`
	HistorySize int                     `json:"history_size"`
	Completed   int64                   `json:"completed"`
	AvgDuration time.Duration           `json:"avg_duration_ns"`
}

func (a *admin) stats(w http.ResponseWriter, r *http.Request) {
	s := a.reg.Stats()
	writeJSON(w, http.StatusOK, adminStats{
		Active: s.Active, ByStatus: s.ByStatus, ByReason: s.ByReason,
		HistorySize: s.HistorySize, Completed: s.Completed, AvgDuration: s.AvgDuration,
	})
}

func parseID(r *http.Request) (uint64, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("id: %q is not an operation ID (a positive integer)", s)
	}
	return id, nil
}

// parseFilter reads a filter from the query parameters of a list request.
// The limit is always set.
func parseFilter(q url.Values) (cancel.Filter, error) {
	f := cancel.Filter{Name: q.Get("name"), Limit: adminDefaultLimit}
	var err error
	if s := q.Get("status"); s != "" {
		if f.Status, err = cancel.ParseStatus(s); err != nil || f.Status == 0 {
			return f, fmt.Errorf("status: unknown status %q; want one of %s", s, statusNames())
		}
	}
	if s := q.Get("reason"); s != "" {
		if f.Reason, err = cancel.ParseReason(s); err != nil || f.Reason == 0 {
			return f, fmt.Errorf("reason: unknown reason %q; want one of %s", s, reasonNames())
		}
	}
	if s := q.Get("parent"); s != "" {
		// Zero is no ID: the filter would not apply, and list everything.
		if f.Parent, err = strconv.ParseUint(s, 10, 64); err != nil || f.Parent == 0 {
			return f, fmt.Errorf("parent: %q is not an operation ID (a positive integer)", s)
		}
	}
	if s := q.Get("since"); s != "" {
		if f.Since, err = parseSince(s); err != nil {
			return f, err
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			if !isDigits(s) {
				return f, fmt.Errorf("limit: %q is not a number", s)
			}
			n = adminMaxLimit // too many digits for an int: clamped below
			if s[0] == '-' {
				n = 1
			}
		}
		f.Limit = min(max(n, 1), adminMaxLimit)
	}
	return f, nil
}

func isDigits(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func parseSince(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("since: %q is neither an RFC 3339 time nor a duration such as 15m", s)
}

func statusNames() string {
	var names []string
	for _, s := range cancel.Statuses() {
		names = append(names, s.String())
	}
	return strings.Join(names, ", ")
}

// reasonNames lists the reasons, but for those excluded.
func reasonNames(exclude ...cancel.Reason) string {
	var names []string
	for _, r := range cancel.Reasons() {
		if !slices.Contains(exclude, r) {
			names = append(names, r.String())
		}
	}
	return strings.Join(names, ", ")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeAdminError(w, http.StatusInternalServerError, "encoding the answer failed")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeAdminError answers with an RFC 9457 problem document. Unlike
// WriteProblem's, its detail is meant for the operator.
func writeAdminError(w http.ResponseWriter, status int, detail string) {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{"about:blank", http.StatusText(status), status, detail})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

//go:embed admin.html
var adminHTML string

var adminPage = template.Must(template.New("admin").Funcs(template.FuncMap{
	"duration": func(d time.Duration) string {
		switch {
		case d >= time.Minute:
			return d.Round(time.Second).String()
		case d >= time.Second:
			return d.Round(10 * time.Millisecond).String()
		case d >= time.Microsecond:
			return d.Round(time.Microsecond).String()
		}
		return d.String()
	},
	"clock": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000Z") },
}).Parse(adminHTML))

// pageData is what the HTML page shows.
type pageData struct {
	Refresh  int // seconds; 0 for none
	Notice   string
	Counts   []pageCount
	Live     []cancel.Info
	LiveMore bool
	History  []cancel.Info
}

func (a *admin) page(w http.ResponseWriter, r *http.Request) {
	d := pageData{Refresh: int((a.cfg.refresh + time.Second - 1) / time.Second), Notice: pageNotice(r.URL.Query())}
	s := a.reg.Stats()
	d.Counts = []pageCount{{"live", int64(s.Active)}}
	for _, st := range []cancel.Status{cancel.StatusCompleted, cancel.StatusCancelled, cancel.StatusFailed} {
		d.Counts = append(d.Counts, pageCount{st.String(), s.ByStatus[st]})
	}
	for _, rs := range cancel.Reasons() {
		if n := s.ByReason[rs]; n > 0 {
			d.Counts = append(d.Counts, pageCount{"reason " + rs.String(), n})
		}
	}
	ops := a.reg.List(cancel.Filter{Limit: adminPageLive + 1})
	for i, op := range ops {
		if i == adminPageLive {
			d.LiveMore = true
			break
		}
		d.Live = append(d.Live, pageInfo(op.Info()))
	}
	d.History = a.reg.History(cancel.Filter{Limit: adminPageHistory})

	var b strings.Builder
	if err := adminPage.Execute(&b, d); err != nil {
		writeAdminError(w, http.StatusInternalServerError, "rendering the page failed")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy",
		"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	io.WriteString(w, b.String())
}

// pageInfo resolves the attributes of i's last progress report, as the
// JSON API and slog do: the page shows a value that implements
// slog.LogValuer (to redact itself, say) as what LogValue returns, never
// the raw value.
func pageInfo(i cancel.Info) cancel.Info {
	if p := i.LastProgress; p != nil && len(p.Attrs) > 0 {
		q := *p // p.Attrs is the operation's: not changed in place
		q.Attrs = resolveAttrs(p.Attrs)
		i.LastProgress = &q
	}
	return i
}

func resolveAttrs(attrs []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(attrs))
	for k, a := range attrs {
		v := a.Value.Resolve()
		if v.Kind() == slog.KindGroup {
			v = slog.GroupValue(resolveAttrs(v.Group())...)
		}
		out[k] = slog.Attr{Key: a.Key, Value: v}
	}
	return out
}

type pageCount struct {
	Name string
	N    int64
}

// pageNotice tells the result of the cancel button the page was
// redirected from. Nothing of the query is shown but a number.
func pageNotice(q url.Values) string {
	id, err := strconv.ParseUint(q.Get("op"), 10, 64)
	if err != nil {
		return ""
	}
	switch q.Get("result") {
	case "cancelled":
		return fmt.Sprintf("Operation %d cancelled.", id)
	case "already":
		return fmt.Sprintf("Operation %d was already being cancelled.", id)
	case "ended":
		return fmt.Sprintf("Operation %d is not running: it ended, or never was.", id)
	}
	return ""
}
