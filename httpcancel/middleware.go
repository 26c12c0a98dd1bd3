package httpcancel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// An Option configures the middleware.
type Option func(*config) error

type config struct {
	timeout   time.Duration
	budget    string // header name; "" when clients may not ask
	budgetMax time.Duration
	name      func(*http.Request) string
	registry  *cancel.Registry
	opOptions []cancel.Option
	status    func(cancel.Reason) int
	respond   func(w http.ResponseWriter, r *http.Request, status int, reason cancel.Reason)
	drain     *Drain
	grace     time.Duration
}

// WithTimeout sets the timeout of every request; a route's Timeout
// overrides it. It does not apply to requests that switch protocols
// (websockets): they become connections, which their handler bounds; a
// route's own Timeout does. A request that asks to switch (an Upgrade
// header, an HTTP/2 CONNECT) has until the timeout to do so: its handler
// is cancelled with ReasonTimeout, and answered, if by then it has neither
// switched (hijacked the connection, or answered 101; 2xx to an HTTP/2
// CONNECT) nor returned, so that a client cannot lift the timeout with a
// header. Zero means none.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("httpcancel: WithTimeout: negative timeout %v", d)
		}
		c.timeout = d
		return nil
	}
}

// WithClientBudget lets clients shorten the timeout of their request (not
// of a protocol switch) with a budget in the header named header
// (DefaultBudgetHeader if empty; a name no request can have is an error),
// as ParseBudget reads it, capped at max. A budget that does not parse is
// ignored, reported as a progress report of the request, and never trusted.
func WithClientBudget(header string, max time.Duration) Option {
	return func(c *config) error {
		if max <= 0 {
			return fmt.Errorf("httpcancel: WithClientBudget: max must be positive, got %v", max)
		}
		if header == "" {
			header = DefaultBudgetHeader
		}
		if !validHeaderName(header) {
			return fmt.Errorf("httpcancel: WithClientBudget: %q is not a valid header name", header)
		}
		c.budget, c.budgetMax = http.CanonicalHeaderKey(header), max
		return nil
	}
}

// WithName names the request operations: by default the pattern of the
// ServeMux route (r.Pattern), or just the method when there is none. Never
// return the raw path: names are metric labels.
func WithName(name func(r *http.Request) string) Option {
	return func(c *config) error {
		if name == nil {
			return errors.New("httpcancel: WithName: nil function")
		}
		c.name = name
		return nil
	}
}

// WithRegistry lists every request operation in r.
func WithRegistry(r *cancel.Registry) Option {
	return func(c *config) error {
		if r == nil {
			return errors.New("httpcancel: WithRegistry: nil registry")
		}
		c.registry = r
		return nil
	}
}

// WithOperationOptions adds options to every request operation (observers,
// attributes, sources). An invalid one (see cancel.CheckOptions) is an
// error of New. A cancellation by a source given here is answered
// when the handler returns, unless the handler runs on a goroutine of its
// own (see Middleware).
func WithOperationOptions(opts ...cancel.Option) Option {
	return func(c *config) error {
		for i, o := range opts {
			if o == nil {
				return fmt.Errorf("httpcancel: WithOperationOptions: option %d is nil", i)
			}
		}
		if err := cancel.CheckOptions(opts...); err != nil {
			// Else every request's operation would fail at its start.
			return fmt.Errorf("httpcancel: WithOperationOptions: %w", err)
		}
		c.opOptions = append(c.opOptions, opts...)
		return nil
	}
}

// WithStatus replaces DefaultStatus, the status of a cancelled request the
// handler wrote nothing for. For a reason it returns zero (or any status
// outside 200-999) for, DefaultStatus's is used: map only the reasons you
// care about.
func WithStatus(status func(cancel.Reason) int) Option {
	return func(c *config) error {
		if status == nil {
			return errors.New("httpcancel: WithStatus: nil function")
		}
		c.status = status
		return nil
	}
}

// WithResponder replaces WriteProblem, the response to a cancelled request
// the handler wrote nothing for. It is not called for ReasonDisconnect: the
// client is gone, and only the status is recorded. A panic in it goes on
// up to net/http, as a handler's would; the request's operation still
// ends, with its cancellation.
func WithResponder(respond func(w http.ResponseWriter, r *http.Request, status int, reason cancel.Reason)) Option {
	return func(c *config) error {
		if respond == nil {
			return errors.New("httpcancel: WithResponder: nil function")
		}
		c.respond = respond
		return nil
	}
}

// WithDrain cancels the requests in flight with ReasonShutdown when d says
// the server is shutting down (see OnShutdown).
func WithDrain(d *Drain) Option {
	return func(c *config) error {
		if d == nil {
			return errors.New("httpcancel: WithDrain: nil drain")
		}
		c.drain = d
		return nil
	}
}

// DefaultStreamGrace is how long, by default, a handler that has started
// its response gets to end it once its request is cancelled.
const DefaultStreamGrace = time.Second

// WithStreamGrace sets how long a handler that has started its response
// (a stream) gets, once its request is cancelled, to end it by itself (a
// last event saying why, a close frame) before the middleware cuts it.
// Until then its writes go through. It applies when the handler runs on a
// goroutine of its own (see Middleware), and not to a client that went
// away. Zero cuts the stream at once; the default is DefaultStreamGrace.
func WithStreamGrace(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("httpcancel: WithStreamGrace: negative grace %v", d)
		}
		c.grace = d
		return nil
	}
}

func defaultConfig() *config {
	return &config{status: DefaultStatus, respond: writeProblem, grace: DefaultStreamGrace}
}

func writeProblem(w http.ResponseWriter, _ *http.Request, status int, reason cancel.Reason) {
	WriteProblem(w, status, reason)
}

// New returns the middleware, or an error naming the invalid option.
func New(opts ...Option) (func(http.Handler) http.Handler, error) {
	c := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("httpcancel: nil Option")
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return func(next http.Handler) http.Handler { return &handler{next: next, cfg: c} }, nil
}

// Middleware is New for options known when the program is written: it
// panics on an invalid one, like regexp.MustCompile.
//
// Each request becomes a cancel operation named after its route, adopting
// the span otelhttp started for it, with its context as the request's
// context. The operation is cancelled with ReasonDisconnect when the client
// goes away (the request's context ends, or a write fails), ReasonTimeout at
// its timeout, ReasonShutdown when a Drain says so, or by anyone holding it
// (an operator, through a Registry). The client then gets the mapped status
// (504, 503 with Retry-After; 499 is only recorded) if the handler had
// written nothing; a response the handler had started is cut off (the
// connection is closed, or the HTTP/2 stream reset), so that half a
// response never looks whole, once the handler has returned or its grace
// has passed (WithStreamGrace: time for a stream to tell its client why it
// ends). A response that declared its Content-Length and wrote all of it,
// or that has no body (to a HEAD, a 204, a 304), is whole, and goes out:
// set Content-Length on answers written whole. A request cancelled before
// its handler starts (arriving once a Drain cancelled the requests in
// flight, from a client already gone) is answered without running it.
// Nothing is buffered: Flush, Hijack and http.ResponseController work as
// without the middleware.
//
// When the request has a timeout (the middleware's, its route's or a
// client's budget) or the middleware a Drain, the handler runs on a
// goroutine of its own, so that the answer goes out at the deadline even
// if the handler ignores its context; from then on the handler's writes
// fail with http.ErrHandlerTimeout and never reach the client. The request
// returns at once, and the operation ends when the handler does; except at
// shutdown on HTTP/1, where the request waits for its handler, so that
// http.Server.Shutdown still waits for it (a handler still running past an
// earlier timeout, or cancelled at shutdown on HTTP/2, where a response
// ends only when its request returns, is waited for by Drain.Wait only).
// Otherwise the handler runs inline and a cancellation is answered when it
// returns; a handler that answers by itself once its context ends then
// keeps its answer. On a goroutine of its own it keeps it only if it wrote
// before the middleware answered: the middleware does not wait for it.
//
// A panic in the handler ends the operation as failed and goes on up, as
// net/http expects (http.ErrAbortHandler included). A handler answering
// 5xx ends its operation as failed.
//
// Wrap a ServeMux (the route is looked up to name the operation and find
// its Timeout), or the handlers of its routes. Around a ServeMux mounted in
// another ("/api/" with http.StripPrefix), every request is named after
// the outer pattern ("/api/"): wrap the inner ServeMux to name requests
// after its routes. An Admin handler behind the middleware sees its own
// requests (the page reloads itself) in the registry's history: mount it
// outside to keep them out.
func Middleware(opts ...Option) func(http.Handler) http.Handler {
	mw, err := New(opts...)
	if err != nil {
		panic(err)
	}
	return mw
}

// Timeout sets the timeout of the requests of one route, in place of the
// middleware's: mux.Handle("GET /report", httpcancel.Timeout(30*time.Second, h)).
// Zero means none. The middleware finds it when it wraps the ServeMux of
// the route or the Timeout itself; further in (a ServeMux mounted in
// another, behind other middleware) it can only shorten the middleware's
// timeout, and a handler ignoring its context is then answered when it
// returns unless the middleware has a timeout of its own. Around a
// middleware, Timeout sets that middleware's timeout. Served with no
// middleware at all, it is one itself, with that timeout and no other
// option.
func Timeout(d time.Duration, h http.Handler) http.Handler {
	t := &routeTimeout{d: max(d, 0), next: h}
	t.solo = &handler{next: h, cfg: defaultConfig()}
	return t
}

type routeTimeout struct {
	d    time.Duration
	next http.Handler
	solo *handler // serves the route when no middleware does
}

func (t *routeTimeout) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ww := servedBy(r.Context()); ww != nil {
		if ww.route != t && t.d > 0 {
			var stop func()
			r, stop = ww.shorten(r, t.d)
			defer stop()
		}
		t.next.ServeHTTP(w, r)
		return
	}
	if mw, ok := t.next.(*handler); ok {
		mw.serve(w, r, t)
		return
	}
	t.solo.serve(w, r, t)
}

// requestKey marks a request context that the middleware already handles;
// its value is the request's writer.
type requestKey struct{}

// servedContext is the request's context with the writer as the value of
// requestKey: context.WithValue without an allocation of its own.
type servedContext struct {
	context.Context
	ww *writer
}

func (c *servedContext) Value(key any) any {
	if key == (requestKey{}) {
		return c.ww
	}
	return c.Context.Value(key)
}

func servedBy(ctx context.Context) *writer {
	ww, _ := ctx.Value(requestKey{}).(*writer)
	return ww
}

// shorten applies a route Timeout the middleware did not see: it cancels
// the request at d after its start, if that comes before its deadline.
func (w *writer) shorten(r *http.Request, d time.Duration) (*http.Request, func()) {
	at := w.op.StartTime().Add(d)
	if dl, ok := r.Context().Deadline(); ok && !at.Before(dl) {
		return r, func() {}
	}
	op := w.op
	timer := time.AfterFunc(time.Until(at), func() {
		op.Cancel(cancel.ReasonTimeout, "timed out after "+d.String())
	})
	return r.WithContext(deadlineContext{r.Context(), at}), func() { timer.Stop() }
}

// deadlineContext reports an earlier deadline than the context it wraps,
// which is cancelled at that deadline by other means.
type deadlineContext struct {
	context.Context
	at time.Time
}

func (c deadlineContext) Deadline() (time.Time, bool) { return c.at, true }

type handler struct {
	next http.Handler
	cfg  *config
}

// knownMethods keeps the names of requests with an odd method bounded.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodConnect: true,
	http.MethodOptions: true, http.MethodTrace: true,
}

// route names the request and finds the Timeout of its route, if the
// middleware can see it, and the handler to serve it with: the route's
// own when the ServeMux's lookup can stand for its ServeHTTP, else next.
func (h *handler) route(r *http.Request) (name string, rt *routeTimeout, serve http.Handler) {
	routed, serve := h.next, h.next
	pattern := r.Pattern
	if mux, ok := routed.(*http.ServeMux); ok {
		routed, pattern = mux.Handler(r)
		if reflect.TypeOf(routed) == redirectType && muxRedirect(mux, r, routed) {
			// The mux's own redirect, to the route's path with a slash
			// or cleaned, or to a raw path for CONNECT: not the route.
			pattern = ""
		} else if r.Pattern == "" {
			// The mux will set the pattern on our copy of the request only:
			// set it on the one the outer handlers (otelhttp) hold, as the
			// mux does, so that they learn the route too.
			r.Pattern = pattern
		}
		// Serving the mux would look the route up again. The lookup stands
		// for it when the route has no wildcards and the request has its
		// pattern already: ServeHTTP would only set the pattern (path
		// values it cannot: Handler does not give them).
		if pattern != "" && r.Pattern == pattern && !strings.Contains(pattern, "{") && r.RequestURI != "*" {
			serve = routed
		}
	}
	rt, _ = routed.(*routeTimeout)
	switch {
	case h.cfg.name != nil:
		name = h.cfg.name(r)
	case pattern != "":
		name = pattern
	case knownMethods[r.Method]:
		name = r.Method
	default:
		name = "_OTHER"
	}
	return name, rt, serve
}

// redirectType is the type of the handlers of http.RedirectHandler.
var redirectType = reflect.TypeOf(http.RedirectHandler("/", http.StatusTemporaryRedirect))

// muxRedirect tells the mux's own redirect, made afresh at each lookup,
// from a route registered with http.RedirectHandler, which is found again.
func muxRedirect(mux *http.ServeMux, r *http.Request, h http.Handler) bool {
	again, _ := mux.Handler(r)
	return again != h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.serve(w, r, nil) }

// serve serves a request; rt is the route Timeout around the middleware,
// if any.
func (h *handler) serve(w http.ResponseWriter, r *http.Request, rt *routeTimeout) {
	if servedBy(r.Context()) != nil { // wrapped twice: the outer one does the work
		h.next.ServeHTTP(w, r)
		return
	}
	name, found, next := h.route(r)
	if rt == nil {
		rt = found
	}
	timeout, upgrade := h.cfg.timeout, isUpgrade(r)
	var switchBy time.Duration // an upgrade's time to switch protocols
	switch {
	case rt != nil:
		timeout = rt.d
	case upgrade:
		// A websocket's request becomes a connection: its handler governs
		// its lifetime (wscancel's WithMaxLifetime and WithIdleTimeout),
		// not the timeout meant for requests. Until it has switched, it is
		// a request: the header that asks for the switch is the client's,
		// and must not lift the timeout of a handler that never switches.
		switchBy, timeout = timeout, 0
	}
	var badBudget error
	if h.cfg.budget != "" && !upgrade {
		if v := r.Header.Get(h.cfg.budget); v != "" {
			if d, err := ParseBudget(v); err != nil {
				badBudget = err
			} else if d = min(d, h.cfg.budgetMax); timeout == 0 || d < timeout {
				timeout = d
			}
		}
	}

	var buf [8]cancel.Option // on the stack unless the user adds many
	opts := append(buf[:0], adoptSpan, requestGone)
	if timeout > 0 {
		opts = append(opts, cancel.WithTimeout(timeout))
	}
	if h.cfg.registry != nil {
		opts = append(opts, cancel.WithRegistry(h.cfg.registry))
	}
	if h.cfg.drain != nil {
		opts = append(opts, cancel.WithToken(h.cfg.drain.tok))
	}
	opts = append(opts, h.cfg.opOptions...)
	ww := &writer{w: w, route: rt, next: next, head: r.Method == http.MethodHead}
	ww.served = servedContext{r.Context(), ww}
	// The request's context is the operation's parent; requestGone says
	// what its end means, so that the cause is a *cancel.Error with the
	// right reason.
	ctx, op := cancel.Start(&ww.served, name, opts...)
	ww.op = op
	if badBudget != nil {
		op.Progress("request budget ignored",
			slog.String("header", h.cfg.budget), slog.String("problem", badBudget.Error()))
	}
	ww.req = *r.WithContext(ctx) // the copy WithContext makes stays on the stack
	r = &ww.req
	if err := op.Err(); err != nil {
		// Cancelled before it began (a drained server, a client gone): the
		// answer says the work was not done (503 Retry-After: try another
		// instance), so the handler must not do it.
		h.answerEnding(ww, r, op.Reason())
		op.End(err)
		return
	}
	if switchBy > 0 {
		t := time.AfterFunc(switchBy, func() { ww.switchTimedOut(switchBy, r.ProtoMajor >= 2) })
		defer t.Stop()
	}

	if timeout > 0 || switchBy > 0 || h.cfg.drain != nil {
		h.serveAsync(ww, r)
	} else {
		h.serveInline(ww, r)
	}
}

// errGoexit stands for a handler that called runtime.Goexit.
var errGoexit = errors.New("httpcancel: handler called runtime.Goexit")

func (h *handler) serveInline(ww *writer, r *http.Request) {
	if d := h.cfg.drain; d != nil {
		d.enter()
		defer d.leave()
	}
	returned := false
	defer func() {
		if returned {
			return
		}
		p := recover()
		if p == nil {
			ww.op.End(errGoexit)
			return // let Goexit go on
		}
		ww.op.End(panicError(p))
		panic(p)
	}()
	ww.next.ServeHTTP(ww, r)
	returned = true
	h.finish(ww, r, ww.op.Err() != nil)
}

// finish answers for a handler that returned, and ends the operation.
// cancelled tells whether the operation was cancelled before the handler
// returned.
func (h *handler) finish(ww *writer, r *http.Request, cancelled bool) {
	op := ww.op
	wrote, early, status, hijacked := ww.state()
	if !cancelled {
		if status >= 500 {
			op.End(fmt.Errorf("HTTP %d %s", status, http.StatusText(status)))
			return
		}
		op.End(nil)
		return
	}
	<-op.Done() // a cancellation may still be under way (see switchTimedOut)
	err, reason := op.Err(), op.Reason()
	if !wrote && !hijacked {
		h.answerEnding(ww, r, reason)
	}
	op.End(err)
	if early && !hijacked && reason != cancel.ReasonDisconnect && !ww.whole() {
		// The handler was answering when the cancellation came: half a
		// response must not look whole. Abort the connection (HTTP/1) or
		// reset the stream (HTTP/2). A body that has all of its
		// Content-Length is whole, and goes out.
		cut(ww)
	}
}

// cut ends a response under way so that it cannot look whole. On HTTP/1
// it hijacks the connection (which sends what was buffered) and closes it,
// so that the handlers around the middleware return normally: otelhttp
// records the request in its metrics only then. HTTP/2 has no hijacking:
// the stream is reset by panicking with http.ErrAbortHandler, and otelhttp
// records no metric for it.
func cut(ww *writer) {
	if conn, _, err := http.NewResponseController(ww.w).Hijack(); err == nil {
		conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

// answerEnding is answer for a request whose goroutine ends op: if the
// responder panics, op ends with its cancellation before the panic goes on
// up, so that it does not stay live.
func (h *handler) answerEnding(ww *writer, r *http.Request, reason cancel.Reason) {
	answered := false
	defer func() {
		if !answered {
			ww.op.End(ww.op.Err())
		}
	}()
	h.answer(ww, r, reason)
	answered = true
}

// answer writes the response of a cancelled request on the real writer,
// with the headers set around the middleware only.
func (h *handler) answer(ww *writer, r *http.Request, reason cancel.Reason) {
	w := ww.w
	if ww.outerTaken { // else the handler never touched the headers
		hdr := w.Header()
		clear(hdr)
		for k, v := range ww.outer {
			hdr[k] = v
		}
	}
	status := h.cfg.status(reason)
	if status < 200 || status > 999 {
		// Zero (or any status that cannot end a response): the function
		// leaves this reason to the default; net/http would panic on it
		// and drop the connection.
		status = DefaultStatus(reason)
	}
	if reason == cancel.ReasonDisconnect {
		w.WriteHeader(status) // recorded by wrappers (otelhttp), never sent
		return
	}
	h.cfg.respond(w, r, status, reason)
}

func (h *handler) serveAsync(ww *writer, r *http.Request) {
	op := ww.op
	ww.takeOuter()
	ww.header = ww.w.Header().Clone()
	done := make(chan any, 1) // the handler's panic value, or nil
	if d := h.cfg.drain; d != nil {
		d.enter()
	}
	go h.run(ww, r, done)

	select {
	case p := <-done:
		h.handlerReturned(ww, r, p)
		return
	case <-op.Done():
	}
	if h.cfg.grace > 0 && op.Reason() != cancel.ReasonDisconnect && ww.streaming() {
		// Let a stream end itself with a word on why.
		grace := time.NewTimer(h.cfg.grace)
		select {
		case p := <-done:
			grace.Stop()
			h.handlerReturned(ww, r, p)
			return
		case <-grace.C:
		}
	}
	wrote, hijacked := ww.takeOver()
	reason := op.Reason()
	ww.mu.Lock()
	returned := ww.returned
	// At shutdown, wait for the handler, so that Server.Shutdown does; not
	// on HTTP/2, where the response ends only when the request returns: the
	// client would get the answer but not its end until the handler
	// returned. Drain.Wait waits for that handler.
	wait := returned || reason == cancel.ReasonShutdown && r.ProtoMajor < 2
	ww.handedOver = !wait
	ww.mu.Unlock()
	if returned { // meanwhile
		h.handlerReturned(ww, r, <-done)
		return
	}
	if !wrote && !hijacked {
		if wait {
			h.answerEnding(ww, r, reason)
		} else {
			h.answer(ww, r, reason)
		}
	}
	if !wait { // the handler's goroutine ends op
		if wrote && !hijacked && reason != cancel.ReasonDisconnect && !ww.whole() {
			cut(ww) // see finish
		}
		return
	}
	if !wrote && !hijacked {
		http.NewResponseController(ww.w).Flush() // the answer goes out now
	}
	if p := <-done; p != nil {
		h.panicked(ww, p)
	}
	op.End(op.Err())
	if wrote && !hijacked && !ww.whole() {
		cut(ww)
	}
}

// run runs the handler on its own goroutine and sends its panic value (nil
// if none) to done, unless the request has handed op over, in which case
// it ends op itself.
func (h *handler) run(ww *writer, r *http.Request, done chan<- any) {
	if d := h.cfg.drain; d != nil {
		defer d.leave() // entered by serveAsync, before the goroutine started
	}
	normal := false
	defer func() {
		var p any
		if !normal {
			if p = recover(); p == nil {
				p = errGoexit
			}
		}
		op := ww.op
		ww.mu.Lock()
		ww.returned = true
		// A closed writer is a cancellation under way (see switchTimedOut).
		ww.cancelledFirst = op.Err() != nil || ww.closed != nil
		handedOver := ww.handedOver
		ww.mu.Unlock()
		if !handedOver {
			done <- p
			return
		}
		// The request's goroutine has answered and returned already.
		if p == errGoexit {
			op.End(errGoexit)
			return
		}
		if p != nil {
			slog.Error("httpcancel: handler panicked after its request was cancelled",
				slog.String("operation", op.Name()), slog.Any("panic", p))
			op.End(panicError(p))
			return
		}
		op.End(op.Err())
	}()
	ww.next.ServeHTTP(ww, r)
	normal = true
}

// handlerReturned finishes a request whose handler returned (or
// panicked) on its own goroutine.
func (h *handler) handlerReturned(ww *writer, r *http.Request, p any) {
	if p != nil {
		h.panicked(ww, p)
	}
	ww.mu.Lock()
	cancelled := ww.cancelledFirst
	if !ww.hijacked {
		ww.syncHeaderLocked() // trailers, and the headers of a response with no body
	}
	ww.mu.Unlock()
	h.finish(ww, r, cancelled)
}

// panicked ends op for a handler that panicked on its own goroutine, and
// panics on the request's.
func (h *handler) panicked(ww *writer, p any) {
	if p == errGoexit {
		ww.op.End(errGoexit)
		panic(http.ErrAbortHandler)
	}
	ww.op.End(panicError(p))
	panic(p)
}

func panicError(p any) error {
	if err, ok := p.(error); ok {
		return fmt.Errorf("httpcancel: handler panicked: %w", err)
	}
	return fmt.Errorf("httpcancel: handler panicked: %v", p)
}

// The options every request operation gets, made once.
var (
	adoptSpan   = cancel.AdoptSpan()
	requestGone = cancel.WithParentReason(requestContextEnded)
)

// isUpgrade tells whether r asks to switch protocols (a websocket). An h2c
// upgrade does not count: net/http never performs it, and an h2c handler in
// front of the middleware would have taken the request (curl --http2 asks
// for it on every first request over http://).
func isUpgrade(r *http.Request) bool {
	if r.ProtoMajor == 1 {
		if !headerHasToken(r.Header, "Connection", "upgrade") {
			return false
		}
		for _, v := range r.Header["Upgrade"] {
			for t := range strings.SplitSeq(v, ",") {
				if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, "h2c") {
					return true
				}
			}
		}
		return false
	}
	return r.Method == http.MethodConnect // HTTP/2 tunnels and websockets (RFC 8441)
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// requestContextEnded says why a request's context ended while its
// operation ran: net/http ends it without a cause when the client closes
// the connection (HTTP/1, once the body was read) or resets the stream
// (HTTP/2).
func requestContextEnded(cause error) (cancel.Reason, string) {
	switch {
	case cause == context.Canceled:
		return cancel.ReasonDisconnect, "client went away"
	case errors.Is(cause, context.DeadlineExceeded):
		// A deadline set around the middleware (another timeout
		// middleware, a server base context).
		return cancel.ReasonTimeout, "request context deadline passed"
	default:
		// Someone else's cancellation with a cause: a server base
		// context being cancelled.
		return cancel.ReasonShutdown, "request context cancelled"
	}
}
