package httpcancel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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
}

// WithTimeout sets the timeout of every request; a route's Timeout
// overrides it. Zero means none.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("httpcancel: WithTimeout: negative timeout %v", d)
		}
		c.timeout = d
		return nil
	}
}

// WithClientBudget lets clients shorten the timeout of their request with a
// budget in the header named header (DefaultBudgetHeader if empty), as
// ParseBudget reads it, capped at max. A budget that does not parse is
// ignored, reported as a progress report of the request, and never trusted.
func WithClientBudget(header string, max time.Duration) Option {
	return func(c *config) error {
		if max <= 0 {
			return fmt.Errorf("httpcancel: WithClientBudget: max must be positive, got %v", max)
		}
		if header == "" {
			header = DefaultBudgetHeader
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
// attributes, sources).
func WithOperationOptions(opts ...cancel.Option) Option {
	return func(c *config) error {
		c.opOptions = append(c.opOptions, opts...)
		return nil
	}
}

// WithStatus replaces DefaultStatus, the status of a cancelled request the
// handler wrote nothing for.
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
// client is gone, and only the status is recorded.
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

// New returns the middleware, or an error naming the invalid option.
func New(opts ...Option) (func(http.Handler) http.Handler, error) {
	c := &config{status: DefaultStatus}
	c.respond = func(w http.ResponseWriter, _ *http.Request, status int, reason cancel.Reason) {
		WriteProblem(w, status, reason)
	}
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
// (an operator, through a Registry). When that happens while the handler
// runs and before it wrote anything, the client gets the mapped status at
// once (504, 503 with Retry-After; 499 is only recorded); when the handler
// was streaming, the stream is cut off. The handler's later writes fail
// with http.ErrHandlerTimeout. Nothing is buffered: Flush, Hijack and
// http.ResponseController work as without the middleware.
//
// To time requests out, or to drain them, the handler runs on a goroutine
// of its own and the request's goroutine waits for it or for the
// cancellation; otherwise it runs inline. A panic in the handler ends the
// operation as failed and goes on up, as net/http expects. A handler
// answering 5xx ends its operation as failed.
//
// Wrap a ServeMux (the route is looked up to name the operation and find
// its Timeout), or the handlers of its routes.
func Middleware(opts ...Option) func(http.Handler) http.Handler {
	mw, err := New(opts...)
	if err != nil {
		panic(err)
	}
	return mw
}

// Timeout sets the timeout of the requests of one route, in place of the
// middleware's: mux.Handle("GET /report", httpcancel.Timeout(30*time.Second, h)).
// Served without the middleware around it, it is one itself, with that
// timeout and no other option.
func Timeout(d time.Duration, h http.Handler) http.Handler {
	return &routeTimeout{d: max(d, 0), next: h}
}

type routeTimeout struct {
	d    time.Duration
	next http.Handler
}

func (t *routeTimeout) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if served(r.Context()) {
		t.next.ServeHTTP(w, r) // the middleware applied t.d
		return
	}
	(&handler{next: t, cfg: &config{timeout: t.d, status: DefaultStatus, respond: func(w http.ResponseWriter, _ *http.Request, status int, reason cancel.Reason) {
		WriteProblem(w, status, reason)
	}}}).ServeHTTP(w, r)
}

// servedKey marks a request context that the middleware already handles.
type servedKey struct{}

func served(ctx context.Context) bool { return ctx.Value(servedKey{}) != nil }

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

// route names the request and finds its timeout.
func (h *handler) route(r *http.Request) (name string, timeout time.Duration) {
	timeout = h.cfg.timeout
	routed := h.next
	pattern := r.Pattern
	if mux, ok := routed.(*http.ServeMux); ok {
		routed, pattern = mux.Handler(r)
	}
	if t, ok := routed.(*routeTimeout); ok {
		timeout = t.d
	}
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
	return name, timeout
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if served(r.Context()) { // wrapped twice: the outer one does the work
		h.next.ServeHTTP(w, r)
		return
	}
	name, timeout := h.route(r)
	var badBudget error
	if h.cfg.budget != "" {
		if v := r.Header.Get(h.cfg.budget); v != "" {
			if d, err := ParseBudget(v); err != nil {
				badBudget = err
			} else if d = min(d, h.cfg.budgetMax); timeout == 0 || d < timeout {
				timeout = d
			}
		}
	}

	opts := make([]cancel.Option, 0, 5+len(h.cfg.opOptions))
	opts = append(opts, cancel.AdoptSpan(), cancel.WithSource(clientGone{r.Context()}))
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
	// The operation cancels its context itself (clientGone watches the
	// request's), so that the cause is always a *cancel.Error.
	ctx, op := cancel.Start(context.WithValue(context.WithoutCancel(r.Context()), servedKey{}, true), name, opts...)
	if badBudget != nil {
		op.Progress("request budget ignored",
			slog.String("header", h.cfg.budget), slog.String("problem", badBudget.Error()))
	}
	r = r.WithContext(ctx)

	if timeout > 0 || h.cfg.drain != nil {
		h.serveAsync(w, r, op)
	} else {
		h.serveInline(w, r, op)
	}
}

func (h *handler) serveInline(w http.ResponseWriter, r *http.Request, op *cancel.Operation) {
	ww := &writer{w: w, op: op}
	defer func() {
		if p := recover(); p != nil {
			op.End(panicError(p))
			panic(p)
		}
	}()
	h.next.ServeHTTP(ww, r)
	h.finish(ww, r, op)
}

// finish answers for a handler that returned without writing anything
// after a cancellation, and ends the operation.
func (h *handler) finish(ww *writer, r *http.Request, op *cancel.Operation) {
	wrote, status, hijacked := ww.state()
	if err := op.Err(); err != nil {
		if !wrote && !hijacked {
			h.answer(ww.w, r, op.Reason())
		}
		op.End(err)
		return
	}
	if status >= 500 {
		op.End(fmt.Errorf("HTTP %d %s", status, http.StatusText(status)))
		return
	}
	op.End(nil)
}

// answer writes the response of a cancelled request on the real writer.
func (h *handler) answer(w http.ResponseWriter, r *http.Request, reason cancel.Reason) {
	status := h.cfg.status(reason)
	if reason == cancel.ReasonDisconnect {
		w.WriteHeader(status) // recorded by wrappers (otelhttp), never sent
		return
	}
	h.cfg.respond(w, r, status, reason)
}

func (h *handler) serveAsync(w http.ResponseWriter, r *http.Request, op *cancel.Operation) {
	ww := &writer{w: w, op: op, header: w.Header().Clone()}
	done := make(chan any, 1) // the handler's panic value, or nil
	// Who ends op: this goroutine if the handler returned before the
	// cancellation took over, the handler's goroutine otherwise. Both
	// flags are under ww.mu.
	var returned, handedOver bool
	go func() {
		var p any
		func() {
			defer func() { p = recover() }()
			h.next.ServeHTTP(ww, r)
		}()
		ww.mu.Lock()
		mine := handedOver
		returned = true
		ww.mu.Unlock()
		if !mine {
			done <- p
			return
		}
		// The request's goroutine has answered and returned already.
		if p != nil {
			op.End(panicError(p))
			slog.Error("httpcancel: handler panicked after its request was cancelled",
				slog.String("operation", op.Name()), slog.Any("panic", p))
			return
		}
		op.End(op.Err())
	}()

	select {
	case p := <-done:
		if p != nil {
			op.End(panicError(p))
			panic(p)
		}
		h.finish(ww, r, op)
	case <-op.Done():
		wrote, hijacked := ww.takeOver()
		ww.mu.Lock()
		handlerReturned := returned
		handedOver = !returned
		ww.mu.Unlock()
		if handlerReturned {
			if p := <-done; p != nil {
				op.End(panicError(p))
				panic(p)
			}
		}
		if !wrote && !hijacked {
			h.answer(w, r, op.Reason())
		}
		if handlerReturned {
			op.End(op.Err())
			return
		}
		if wrote && !hijacked && op.Reason() != cancel.ReasonDisconnect {
			// Half a response must not look whole: abort the connection
			// (HTTP/1) or reset the stream (HTTP/2).
			panic(http.ErrAbortHandler)
		}
	}
}

func panicError(p any) error {
	if err, ok := p.(error); ok {
		return fmt.Errorf("httpcancel: handler panicked: %w", err)
	}
	return fmt.Errorf("httpcancel: handler panicked: %v", p)
}

// clientGone cancels a request operation with ReasonDisconnect when the
// request's context ends while the handler runs: net/http ends it when the
// client closes the connection (HTTP/1, once the body was read) or resets
// the stream (HTTP/2).
type clientGone struct{ ctx context.Context }

func (c clientGone) Watch(_ context.Context, fire func(cancel.Reason, string)) func() {
	stop := context.AfterFunc(c.ctx, func() {
		if cause := context.Cause(c.ctx); cause != context.Canceled {
			// Someone else's cancellation with a cause: a server base
			// context being cancelled, a test's deadline.
			fire(cancel.ReasonShutdown, "request context cancelled: "+cause.Error())
			return
		}
		fire(cancel.ReasonDisconnect, "client went away")
	})
	return func() { stop() }
}
