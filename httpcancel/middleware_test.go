package httpcancel

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// guard bounds every wait of these tests: it is never what a test
// measures, only what turns a hang into a failure.
const guard = 10 * time.Second

// modes are the two ways the middleware runs a handler: on the request's
// goroutine (nothing but the client can cancel it), or on a goroutine of
// its own (a timeout could).
var modes = []struct {
	name string
	opts []Option
}{
	{"inline", nil},
	{"goroutine", []Option{WithTimeout(time.Hour)}},
}

// ends receives every request operation as it ends.
type ends chan *cancel.Operation

func newEnds() ends { return make(ends, 64) }

func (e ends) option() Option {
	return WithOperationOptions(cancel.WithObserver(cancel.Hooks{OnEnd: func(op *cancel.Operation) { e <- op }}))
}

func (e ends) next(t *testing.T) *cancel.Operation {
	t.Helper()
	return wait(t, e, "an operation to end")
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(guard):
		t.Fatalf("waited %v for %s", guard, what)
		panic("unreachable")
	}
}

// releaser returns a channel a test closes to let its handlers go on, and
// the func that closes it, once. Tests defer that too (defers run before
// the server's Close in t.Cleanup), so that a failing test leaves no
// handler behind.
func releaser() (<-chan struct{}, func()) {
	ch := make(chan struct{})
	var once sync.Once
	return ch, func() { once.Do(func() { close(ch) }) }
}

func quietServer(ts *httptest.Server) {
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
}

// serve starts an HTTP/1.1 server on loopback, closed at the end of the test.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	quietServer(ts)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// serveH2 starts an HTTP/2 (TLS) server on loopback; ts.Client speaks HTTP/2.
func serveH2(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	quietServer(ts)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

var protos = []struct {
	name  string
	serve func(*testing.T, http.Handler) *httptest.Server
	major int
}{
	{"HTTP/1.1", serve, 1},
	{"HTTP/2", serveH2, 2},
}

// dial opens a raw TCP connection to ts, for a client that really hangs up.
func dial(t *testing.T, ts *httptest.Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(guard))
	t.Cleanup(func() { c.Close() })
	return c
}

// fetch sends a request with ts's client and reads the whole response; it
// may run on any goroutine.
func fetch(ts *httptest.Server, method, path string) (*http.Response, string, error) {
	ctx, cancelReq := context.WithTimeout(context.Background(), guard)
	defer cancelReq()
	req, err := http.NewRequestWithContext(ctx, method, ts.URL+path, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, string(body), fmt.Errorf("%s %s: reading body: %w", method, path, err)
	}
	return resp, string(body), nil
}

// get is fetch for the test's goroutine.
func get(t *testing.T, ts *httptest.Server, method, path string) (*http.Response, string) {
	t.Helper()
	resp, body, err := fetch(ts, method, path)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// response is a response fetched on another goroutine.
type response struct {
	resp *http.Response
	body string
	err  error
}

// goFetch fetches on a goroutine of its own.
func goFetch(ts *httptest.Server, method, path string) <-chan response {
	ch := make(chan response, 1)
	go func() {
		resp, body, err := fetch(ts, method, path)
		ch <- response{resp, body, err}
	}()
	return ch
}

func (r response) check(t *testing.T) (*http.Response, string) {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.resp, r.body
}

// problem is the body WriteProblem writes.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Reason string `json:"reason"`
}

// checkProblem checks that resp is the problem document for status and reason.
func checkProblem(t *testing.T, resp *http.Response, body string, status int, reason cancel.Reason) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p problem
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	want := problem{
		Type:   "https://pkg.go.dev/github.com/cancelable-go/cancelable/cancel#Reason" + strings.ToUpper(reason.String()[:1]) + reason.String()[1:],
		Title:  http.StatusText(status),
		Status: status,
		Reason: reason.String(),
	}
	if p != want {
		t.Errorf("problem %+v, want %+v", p, want)
	}
	if got, want := resp.Header.Get("Retry-After") != "", reason == cancel.ReasonShutdown; got != want {
		t.Errorf("Retry-After %q for reason %v", resp.Header.Get("Retry-After"), reason)
	}
}

func checkEnded(t *testing.T, op *cancel.Operation, status cancel.Status, reason cancel.Reason) {
	t.Helper()
	if op.Status() != status || op.Reason() != reason {
		t.Errorf("operation %q ended %v (reason %v, cause %v), want %v (reason %v)",
			op.Name(), op.Status(), op.Reason(), op.Cause(), status, reason)
	}
}

// statusRecorder records the statuses the middleware writes, as otelhttp's
// wrapper would, passing Flush through.
func statusRecorder(codes chan<- int, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&recordingWriter{ResponseWriter: w, codes: codes}, r)
	})
}

type recordingWriter struct {
	http.ResponseWriter
	codes chan<- int
}

func (w *recordingWriter) WriteHeader(code int) {
	w.codes <- code
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// 1. Naming

func TestNameFromMuxPattern(t *testing.T) {
	reg := new(cancel.Registry)
	e := newEnds()
	type seen struct {
		listed, adopts bool
	}
	inHandler := make(chan seen, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		op := cancel.FromContext(r.Context())
		live := reg.List(cancel.Filter{})
		inHandler <- seen{listed: slices.Contains(live, op), adopts: op.AdoptsSpan()}
	})
	ts := serve(t, Middleware(WithRegistry(reg), e.option())(mux))

	for _, c := range []struct{ method, path, want string }{
		{"GET", "/items/42", "GET /items/{id}"},
		{"HEAD", "/items/7", "GET /items/{id}"},
		{"GET", "/no/such/route", "GET"},      // 404
		{"DELETE", "/items/42", "DELETE"},     // 405
		{"BREW", "/items/42", "_OTHER"},       // odd method: bounded
		{"PURGE", "/no/such/route", "_OTHER"}, // odd method: bounded
	} {
		get(t, ts, c.method, c.path)
		op := e.next(t)
		if op.Name() != c.want {
			t.Errorf("%s %s: operation named %q, want %q", c.method, c.path, op.Name(), c.want)
		}
		checkEnded(t, op, cancel.StatusCompleted, 0)
		if c.want == "GET /items/{id}" {
			s := wait(t, inHandler, "the handler")
			if !s.listed {
				t.Errorf("%s %s: the registry does not list the live request", c.method, c.path)
			}
			if !s.adopts {
				t.Errorf("%s %s: the operation does not adopt the server span", c.method, c.path)
			}
		}
	}
	if live := reg.List(cancel.Filter{}); len(live) != 0 {
		t.Errorf("registry still lists %d operations after the requests", len(live))
	}
	if h := reg.History(cancel.Filter{Name: "/items/{id}"}); len(h) != 2 {
		t.Errorf("history has %d operations of the route, want 2", len(h))
	}
}

// A ServeMux answers some requests with a redirect of its own (to the
// path with a trailing slash, or to the cleaned path), telling the
// redirect's target path as its pattern: a raw path, which must not name
// the operation nor reach the outer handlers' r.Pattern.
func TestNameOfMuxRedirect(t *testing.T) {
	e := newEnds()
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) {}
	mux.HandleFunc("GET /dirs/{name}/", ok)
	mux.HandleFunc("GET /items/{id}", ok)
	patterns := make(chan string, 1)
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Middleware(e.option())(mux).ServeHTTP(w, r)
		patterns <- r.Pattern
	})
	ts := serve(t, outer)
	client := ts.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	for _, path := range []string{"/dirs/abc", "/dirs/x-1", "/items//42"} {
		resp, err := client.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 3 {
			t.Fatalf("GET %s: status %d, want the mux's redirect", path, resp.StatusCode)
		}
		op := e.next(t)
		if op.Name() != "GET" {
			t.Errorf("GET %s (redirected): operation named %q, want %q", path, op.Name(), "GET")
		}
		if p := wait(t, patterns, "the outer handler"); p != "" {
			t.Errorf("GET %s (redirected): the outer handler's r.Pattern is %q, want none", path, p)
		}
	}
}

// The middleware serves a route without wildcards from its own lookup of
// the ServeMux rather than through the mux again: the handler must see the
// request as the mux would have given it, and the rest (path values, 404,
// 405, nested muxes) must still go through the mux.
func TestServedAsTheMuxWould(t *testing.T) {
	type seen struct{ pattern, id string }
	got := make(chan seen, 1)
	record := func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Pattern, r.PathValue("id")}
	}
	inner := http.NewServeMux()
	inner.HandleFunc("GET /api/v1/ping", record)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /plain", record)
	mux.HandleFunc("GET /items/{id}", record)
	mux.Handle("GET /timed", Timeout(time.Minute, http.HandlerFunc(record)))
	mux.Handle("/api/", Middleware()(inner))
	ts := serve(t, Middleware()(mux))

	for _, c := range []struct {
		path   string
		status int
		want   seen
	}{
		{"/plain", 200, seen{pattern: "GET /plain"}},
		{"/items/42", 200, seen{"GET /items/{id}", "42"}},
		{"/timed", 200, seen{pattern: "GET /timed"}},
		{"/api/v1/ping", 200, seen{pattern: "GET /api/v1/ping"}},
		{"/nowhere", 404, seen{}},
	} {
		resp, _ := get(t, ts, "GET", c.path)
		if resp.StatusCode != c.status {
			t.Errorf("GET %s: status %d, want %d", c.path, resp.StatusCode, c.status)
			continue
		}
		if c.status != 200 {
			continue
		}
		if s := wait(t, got, "the handler"); s != c.want {
			t.Errorf("GET %s: the handler saw pattern %q, path value id %q; want %q, %q",
				c.path, s.pattern, s.id, c.want.pattern, c.want.id)
		}
	}
	if resp, _ := get(t, ts, "POST", "/plain"); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Errorf("POST /plain: status %d, Allow %q; want 405 with Allow", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestNamePerRoute(t *testing.T) {
	e := newEnds()
	mw := Middleware(e.option())
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	mux.Handle("POST /orders/{id}/pay", mw(ok))
	mux.Handle("/static/", mw(ok))
	ts := serve(t, mux)

	get(t, ts, "POST", "/orders/123/pay")
	if op := e.next(t); op.Name() != "POST /orders/{id}/pay" {
		t.Errorf("operation named %q, want the route pattern", op.Name())
	}
	get(t, ts, "GET", "/static/app.js")
	if op := e.next(t); op.Name() != "/static/" {
		t.Errorf("operation named %q, want the route pattern", op.Name())
	}
}

func TestWithName(t *testing.T) {
	e := newEnds()
	h := Middleware(e.option(), WithName(func(r *http.Request) string { return "api " + r.Method }))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	ts := serve(t, h)
	get(t, ts, "PUT", "/anything/9")
	if op := e.next(t); op.Name() != "api PUT" {
		t.Errorf("operation named %q, want %q", op.Name(), "api PUT")
	}
}

// Wrapped twice (a ServeMux and one of its routes), a request is still one
// operation, named after the route.
func TestWrappedTwiceIsOneOperation(t *testing.T) {
	e := newEnds()
	mw := Middleware(e.option())
	mux := http.NewServeMux()
	mux.Handle("GET /x/{id}", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	ts := serve(t, mw(mux))
	get(t, ts, "GET", "/x/1")
	if op := e.next(t); op.Name() != "GET /x/{id}" {
		t.Errorf("operation named %q", op.Name())
	}
	select {
	case op := <-e:
		t.Errorf("a second operation %q for the same request", op.Name())
	default:
	}
}

// 6. Status mapping

func TestDefaultStatus(t *testing.T) {
	want := map[cancel.Reason]int{
		cancel.ReasonTimeout:    504,
		cancel.ReasonDisconnect: 499,
		cancel.ReasonShutdown:   503,
		cancel.ReasonManual:     503,
		cancel.ReasonSignal:     503,
		cancel.ReasonCondition:  503,
		cancel.ReasonParent:     503,
		cancel.ReasonError:      503,
	}
	for _, r := range cancel.Reasons() {
		if got := DefaultStatus(r); got != want[r] {
			t.Errorf("DefaultStatus(%v) = %d, want %d", r, got, want[r])
		}
	}
}

// startedOp waits for a handler to send its operation.
func startedOp(t *testing.T, started <-chan *cancel.Operation) *cancel.Operation {
	t.Helper()
	return wait(t, started, "the handler to start")
}

func TestProblemHidesMessage(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			reg := new(cancel.Registry)
			e := newEnds()
			started := make(chan *cancel.Operation, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				started <- cancel.FromContext(r.Context())
				<-r.Context().Done()
			})
			ts := serve(t, Middleware(append(m.opts, WithRegistry(reg), e.option())...)(h))
			res := goFetch(ts, "GET", "/")
			op := startedOp(t, started)
			const secret = "password=hunter2 at db-7.internal"
			if !reg.Cancel(op.ID(), cancel.ReasonManual, secret) {
				t.Fatal("the registry could not cancel the request")
			}
			resp, body := wait(t, res, "the response").check(t)
			checkProblem(t, resp, body, 503, cancel.ReasonManual)
			if strings.Contains(body, "hunter2") || strings.Contains(fmt.Sprint(resp.Header), "hunter2") {
				t.Errorf("the response tells the internal message: %q", body)
			}
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonManual)
		})
	}
}

// Headers the handler set for a response it never wrote must not dress
// the problem document: a Content-Encoding would make it unreadable.
// Headers set around the middleware stay.
func TestProblemDropsHandlerHeaders(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			reg := new(cancel.Registry)
			started := make(chan *cancel.Operation, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Encoding", "gzip")
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("X-Handler", "yes")
				w.Header().Del("X-Outer-Dropped-By-Handler")
				started <- cancel.FromContext(r.Context())
				<-r.Context().Done()
			})
			outer := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("X-Request-Id", "abc")
					next.ServeHTTP(w, r)
				})
			}
			ts := serve(t, outer(Middleware(append(m.opts, WithRegistry(reg))...)(h)))
			res := goFetch(ts, "GET", "/")
			reg.Cancel(startedOp(t, started).ID(), cancel.ReasonCondition, "")
			resp, body := wait(t, res, "the response").check(t)
			checkProblem(t, resp, body, 503, cancel.ReasonCondition)
			for _, k := range []string{"Content-Encoding", "Etag", "X-Handler"} {
				if v := resp.Header.Get(k); v != "" {
					t.Errorf("the problem response has the handler's %s: %q", k, v)
				}
			}
			if resp.Header.Get("X-Request-Id") != "abc" {
				t.Errorf("the problem response lost the header set around the middleware")
			}
		})
	}
}

func TestWithStatusAndResponder(t *testing.T) {
	type call struct {
		status int
		reason cancel.Reason
	}
	calls := make(chan call, 4)
	mw := Middleware(
		WithTimeout(20*time.Millisecond),
		WithStatus(func(r cancel.Reason) int {
			if r == cancel.ReasonTimeout {
				return http.StatusRequestTimeout
			}
			return DefaultStatus(r)
		}),
		WithResponder(func(w http.ResponseWriter, r *http.Request, status int, reason cancel.Reason) {
			calls <- call{status, reason}
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(status)
			fmt.Fprintf(w, "gave up on %s: %v", r.URL.Path, reason)
		}),
	)
	ts := serve(t, mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })))
	resp, body := get(t, ts, "GET", "/slow")
	if resp.StatusCode != http.StatusRequestTimeout || body != "gave up on /slow: timeout" {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
	if c := wait(t, calls, "the responder"); c != (call{http.StatusRequestTimeout, cancel.ReasonTimeout}) {
		t.Errorf("responder called with %+v", c)
	}
}

// A WithStatus function that maps only the reasons it cares about and
// returns zero for the others keeps DefaultStatus's for those: the client
// gets its 503, not a connection dropped by net/http's panic on an invalid
// status.
func TestWithStatusZeroKeepsDefault(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			reg := new(cancel.Registry)
			e := newEnds()
			started := make(chan *cancel.Operation, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				started <- cancel.FromContext(r.Context())
				<-r.Context().Done()
			})
			only408 := WithStatus(func(r cancel.Reason) int {
				if r == cancel.ReasonTimeout {
					return http.StatusRequestTimeout
				}
				return 0
			})
			ts := serve(t, Middleware(append(m.opts, only408, WithRegistry(reg), e.option())...)(h))
			res := goFetch(ts, "GET", "/")
			reg.Cancel(startedOp(t, started).ID(), cancel.ReasonManual, "operator")
			resp, body := wait(t, res, "the response").check(t)
			checkProblem(t, resp, body, http.StatusServiceUnavailable, cancel.ReasonManual)
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonManual)
		})
	}
}

// 7. Panics and failures

func TestPanicReachesNetHTTP(t *testing.T) {
	errBoom := errors.New("boom")
	for _, m := range modes {
		for _, value := range []any{"boom", errBoom, http.ErrAbortHandler} {
			t.Run(fmt.Sprintf("%s/%v", m.name, value), func(t *testing.T) {
				e := newEnds()
				caught := make(chan any, 1)
				recoverer := func(next http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						defer func() {
							p := recover()
							caught <- p
							if p != nil {
								http.Error(w, "caught", http.StatusInternalServerError)
							}
						}()
						next.ServeHTTP(w, r)
					})
				}
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic(value) })
				ts := serve(t, recoverer(Middleware(append(m.opts, e.option())...)(h)))
				resp, body := get(t, ts, "GET", "/")
				if p := wait(t, caught, "the recoverer"); p != value {
					t.Errorf("recovered %#v, want the handler's panic %#v", p, value)
				}
				if resp.StatusCode != 500 || body != "caught\n" {
					t.Errorf("got %d %q", resp.StatusCode, body)
				}
				op := e.next(t)
				checkEnded(t, op, cancel.StatusFailed, 0)
				if op.Cause() == nil || !strings.Contains(op.Cause().Error(), "panic") {
					t.Errorf("cause %v does not tell of the panic", op.Cause())
				}
			})
		}
	}
}

// Without anyone to recover it, net/http aborts the response of a
// panicking handler: the client sees the connection end, not a response.
func TestAbortHandlerAbortsResponse(t *testing.T) {
	for _, m := range modes {
		for _, p := range protos {
			t.Run(m.name+"/"+p.name, func(t *testing.T) {
				e := newEnds()
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Write([]byte("half"))
					w.(http.Flusher).Flush()
					panic(http.ErrAbortHandler)
				})
				ts := p.serve(t, Middleware(append(m.opts, e.option())...)(h))
				resp, err := ts.Client().Get(ts.URL)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err == nil {
					t.Error("the aborted response reads as whole")
				}
				checkEnded(t, e.next(t), cancel.StatusFailed, 0)
			})
		}
	}
}

func TestStatusOutcome(t *testing.T) {
	for _, m := range modes {
		for _, c := range []struct {
			code int
			want cancel.Status
		}{
			{200, cancel.StatusCompleted},
			{204, cancel.StatusCompleted},
			{404, cancel.StatusCompleted},
			{429, cancel.StatusCompleted},
			{500, cancel.StatusFailed},
			{503, cancel.StatusFailed},
		} {
			t.Run(fmt.Sprintf("%s/%d", m.name, c.code), func(t *testing.T) {
				e := newEnds()
				ts := serve(t, Middleware(append(m.opts, e.option())...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(c.code)
				})))
				resp, _ := get(t, ts, "GET", "/")
				if resp.StatusCode != c.code {
					t.Errorf("status %d", resp.StatusCode)
				}
				op := e.next(t)
				checkEnded(t, op, c.want, 0)
				if c.want == cancel.StatusFailed && !strings.Contains(fmt.Sprint(op.Cause()), fmt.Sprint(c.code)) {
					t.Errorf("cause %v does not name the status", op.Cause())
				}
			})
		}
	}
}

// 8. Invalid options

func TestInvalidOptions(t *testing.T) {
	for _, c := range []struct {
		opt  Option
		want string
	}{
		{WithTimeout(-time.Second), "WithTimeout"},
		{WithClientBudget("", 0), "WithClientBudget"},
		{WithClientBudget("X-Budget", -time.Second), "WithClientBudget"},
		{WithClientBudget("Request Timeout", time.Second), "WithClientBudget"}, // no request has such a header
		{WithClientBudget("X-Budget:", time.Second), "WithClientBudget"},
		{WithName(nil), "WithName"},
		{WithRegistry(nil), "WithRegistry"},
		{WithStatus(nil), "WithStatus"},
		{WithResponder(nil), "WithResponder"},
		{WithDrain(nil), "WithDrain"},
		{WithStreamGrace(-time.Second), "WithStreamGrace"},
		{WithOperationOptions(cancel.WithTimeout(time.Second), nil), "WithOperationOptions"},
		// An invalid cancel.Option made every request's operation fail at
		// its start: a handler run with a dead context, 200 and no body.
		{WithOperationOptions(cancel.WithToken(nil)), "WithToken"},
		{WithOperationOptions(cancel.WithCondition("ready", nil, time.Second)), "WithCondition"},
		{nil, "nil Option"},
	} {
		mw, err := New(WithTimeout(time.Second), c.opt)
		if err == nil || mw != nil {
			t.Errorf("New with a bad %s: no error", c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "httpcancel: ") {
			t.Errorf("New with a bad %s: error %q does not name it", c.want, err)
		}
		func() {
			defer func() {
				p := recover()
				if pe, ok := p.(error); !ok || pe.Error() != err.Error() {
					t.Errorf("Middleware with a bad %s panicked with %#v, want %q", c.want, p, err)
				}
			}()
			Middleware(WithTimeout(time.Second), c.opt)
		}()
	}
	if _, err := New(WithTimeout(0), WithClientBudget("", time.Second), WithOperationOptions()); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

// readLine reads one line of a raw HTTP exchange.
func readLine(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	s, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading from the connection: %v (got %q)", err, s)
	}
	return s
}

// A handler calling runtime.Goexit (t.FailNow in a test server, say) ends
// its operation as failed, and its response is aborted.
func TestHandlerGoexit(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnds()
			ts := serve(t, Middleware(append(m.opts, e.option())...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runtime.Goexit()
			})))
			if resp, err := ts.Client().Get(ts.URL); err == nil {
				resp.Body.Close()
				t.Errorf("got a response, %d", resp.StatusCode)
			}
			op := e.next(t)
			checkEnded(t, op, cancel.StatusFailed, 0)
			if !strings.Contains(fmt.Sprint(op.Cause()), "Goexit") {
				t.Errorf("cause %v", op.Cause())
			}
		})
	}
}

// A route the user registered with http.RedirectHandler is a route like
// any other: the operation is named after its pattern and the outer
// handlers (otelhttp) learn it in r.Pattern. Only the mux's own redirects
// (trailing slash, cleaned path) are not routes.
func TestNameOfRegisteredRedirect(t *testing.T) {
	e := newEnds()
	mux := http.NewServeMux()
	mux.Handle("GET /old", http.RedirectHandler("/new", http.StatusMovedPermanently))
	mux.Handle("GET /dir/", http.RedirectHandler("/elsewhere/", http.StatusFound))
	mux.HandleFunc("GET /tree/", func(http.ResponseWriter, *http.Request) {})
	patterns := make(chan string, 1)
	mw := Middleware(e.option())(mux)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mw.ServeHTTP(w, r)
		patterns <- r.Pattern
	}))
	client := ts.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, c := range []struct{ path, name, pattern string }{
		{"/old", "GET /old", "GET /old"},
		{"/dir/x", "GET /dir/", "GET /dir/"},
		{"/tree", "GET", ""}, // the mux's own redirect to /tree/
	} {
		resp, err := client.Get(ts.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 3 {
			t.Fatalf("GET %s: status %d, want a redirect", c.path, resp.StatusCode)
		}
		if op := e.next(t); op.Name() != c.name {
			t.Errorf("GET %s: operation named %q, want %q", c.path, op.Name(), c.name)
		}
		if p := wait(t, patterns, "the outer handler"); p != c.pattern {
			t.Errorf("GET %s: the outer handler's r.Pattern is %q, want %q", c.path, p, c.pattern)
		}
	}
}

// discardResponse is a ResponseWriter that keeps nothing and allocates
// nothing, reused across requests.
type discardResponse struct{ header http.Header }

func (w *discardResponse) Header() http.Header         { return w.header }
func (w *discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardResponse) WriteHeader(int)             {}

// The middleware's allocations per request, with a request context that
// can be cancelled as net/http's: the writer with the request's copy, the
// operation with its context and cancel function, and the watch on the
// request's context (its record, stop function and callback, and the
// request context's Done channel and children map). Issue 4's budget is
// 10.
func TestMiddlewareAllocations(t *testing.T) {
	body := []byte("hello\n")
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })
	perRequest := func(h http.Handler) float64 {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		w := &discardResponse{header: http.Header{}}
		return testing.AllocsPerRun(200, func() {
			ctx, done := context.WithCancel(context.Background())
			h.ServeHTTP(w, req.WithContext(ctx))
			done()
		})
	}
	bare, wrapped := perRequest(hello), perRequest(Middleware()(hello))
	t.Logf("bare %v, with the middleware %v", bare, wrapped)
	if extra := wrapped - bare; extra > 10 {
		t.Errorf("the middleware allocates %v times per request, want at most 10", extra)
	}
}

// A WithResponder function that panics goes on up to net/http, as any
// panic of the request's; but the request's operation still ends, with its
// cancellation: it must not stay live in the registry and the metrics.
func TestResponderPanicEndsOperation(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []Option
		shut bool // cancelled by a Drain (the request waits for its handler)
	}{
		{"inline", []Option{WithOperationOptions(cancel.WithTimeout(20 * time.Millisecond))}, false},
		{"shutdown", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnds()
			caught := make(chan any, 1)
			started := make(chan struct{}, 1)
			var d *Drain
			opts := append(c.opts[:len(c.opts):len(c.opts)], e.option(),
				WithResponder(func(http.ResponseWriter, *http.Request, int, cancel.Reason) { panic("responder bug") }))
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				<-r.Context().Done()
			})
			ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer func() { caught <- recover() }()
				o := opts
				if c.shut {
					o = append(o, WithDrain(d))
				}
				Middleware(o...)(h).ServeHTTP(w, r)
			}))
			d = OnShutdown(ts.Config, 0)
			res := goFetch(ts, "GET", "/")
			wait(t, started, "the handler")
			if c.shut {
				d.Start()
			}
			if p := wait(t, caught, "the panic"); p == nil {
				t.Error("the panic did not go on up")
			}
			op := e.next(t)
			if op.Status() != cancel.StatusCancelled {
				t.Errorf("operation ended %v (%v), want cancelled", op.Status(), op.Cause())
			}
			<-res
		})
	}
}
