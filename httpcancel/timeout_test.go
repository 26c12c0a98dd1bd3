package httpcancel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// lateWrites is what a handler that ignored its context got from the
// writer once it woke up after the deadline.
type lateWrites struct {
	write, flush, deadline, hijack error
}

// ignoring is a handler that ignores its context until release is closed,
// then tries to answer.
func ignoring(started chan<- struct{}, release <-chan struct{}, late chan<- lateWrites) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		w.Header().Set("X-Late", "1")
		w.WriteHeader(http.StatusTeapot)
		_, werr := w.Write([]byte("LATE-BYTES"))
		ferr := http.NewResponseController(w).Flush()
		derr := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Hour))
		conn, _, herr := http.NewResponseController(w).Hijack()
		if herr == nil {
			conn.Close() // the connection was no longer the handler's to take
		}
		late <- lateWrites{werr, ferr, derr, herr}
	}
}

func checkLate(t *testing.T, l lateWrites) {
	t.Helper()
	if !errors.Is(l.write, http.ErrHandlerTimeout) {
		t.Errorf("late Write returned %v, want http.ErrHandlerTimeout", l.write)
	}
	if !errors.Is(l.flush, http.ErrHandlerTimeout) {
		t.Errorf("late Flush returned %v, want http.ErrHandlerTimeout", l.flush)
	}
	if !errors.Is(l.deadline, http.ErrHandlerTimeout) {
		t.Errorf("late SetWriteDeadline returned %v, want http.ErrHandlerTimeout", l.deadline)
	}
	if !errors.Is(l.hijack, http.ErrHandlerTimeout) {
		t.Errorf("late Hijack returned %v, want http.ErrHandlerTimeout", l.hijack)
	}
}

// A handler that ignores its context: the client gets 504 at the deadline,
// long before the handler returns; its later writes fail and none of their
// bytes reach the client (the next response on the connection is intact).
func TestTimeoutIgnoringHandlerHTTP1(t *testing.T) {
	e := newEnds()
	started, late := make(chan struct{}, 1), make(chan lateWrites, 1)
	release, doRelease := releaser()
	defer doRelease()
	mux := http.NewServeMux()
	mux.Handle("GET /slow", ignoring(started, release, late))
	mux.HandleFunc("GET /next", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("next")) })
	ts := serve(t, Middleware(WithTimeout(50*time.Millisecond), e.option())(mux))

	conn := dial(t, ts)
	br := bufio.NewReader(conn)
	begin := time.Now()
	fmt.Fprint(conn, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	wait(t, started, "the handler to start")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 50*time.Millisecond {
		t.Errorf("504 after %v, before the deadline", d)
	}
	checkProblem(t, resp, string(body), http.StatusGatewayTimeout, cancel.ReasonTimeout)
	select {
	case <-late:
		t.Fatal("the handler returned before the 504 arrived")
	default: // the handler still waits on release: the 504 came without it
	}

	doRelease()
	checkLate(t, wait(t, late, "the handler's late writes"))
	op := e.next(t)
	if op.Name() != "GET /slow" {
		t.Fatalf("ended %q first", op.Name())
	}
	checkEnded(t, op, cancel.StatusCancelled, cancel.ReasonTimeout)
	if op.Duration() < 50*time.Millisecond {
		t.Errorf("the operation ended after %v, before its handler returned", op.Duration())
	}

	fmt.Fprint(conn, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the connection after the 504: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "next" || resp.Header.Get("X-Late") != "" {
		t.Errorf("the next response on the connection is %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestTimeoutIgnoringHandlerHTTP2(t *testing.T) {
	e := newEnds()
	started, late := make(chan struct{}, 1), make(chan lateWrites, 1)
	release, doRelease := releaser()
	defer doRelease()
	ts := serveH2(t, Middleware(WithTimeout(50*time.Millisecond), e.option())(ignoring(started, release, late)))
	res := goFetch(ts, "GET", "/slow")
	wait(t, started, "the handler to start")
	resp, body := wait(t, res, "the 504").check(t)
	if resp.ProtoMajor != 2 {
		t.Fatalf("served over %s", resp.Proto)
	}
	checkProblem(t, resp, body, http.StatusGatewayTimeout, cancel.ReasonTimeout)
	select {
	case <-late:
		t.Fatal("the handler returned before the 504 arrived")
	default:
	}
	doRelease()
	checkLate(t, wait(t, late, "the handler's late writes"))
	checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
}

// A handler that honours its context and returns without writing: 504,
// with the cause of the timeout in its context.
func TestTimeoutCooperativeHandler(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			e := newEnds()
			seen := make(chan seenCause, 1)
			ts := p.serve(t, Middleware(WithTimeout(30*time.Millisecond), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				<-ctx.Done()
				seen <- seenCause{ctx.Err(), context.Cause(ctx)}
			})))
			resp, body := get(t, ts, "GET", "/")
			checkProblem(t, resp, body, http.StatusGatewayTimeout, cancel.ReasonTimeout)
			s := wait(t, seen, "the handler")
			var ce *cancel.Error
			if !errors.As(s.cause, &ce) || ce.Reason != cancel.ReasonTimeout {
				t.Errorf("context.Cause = %v, want a *cancel.Error with reason timeout", s.cause)
			}
			if s.err != context.DeadlineExceeded || !errors.Is(s.cause, context.DeadlineExceeded) {
				t.Errorf("ctx.Err() = %v, cause %v: want context.DeadlineExceeded", s.err, s.cause)
			}
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
		})
	}
}

// A streaming handler that wrote and flushed before the deadline: the
// client gets the bytes, then the stream is cut: it must not look like a
// whole response. Whether the handler ignores its context, returns when it
// ends, or returns while the cancellation is being requested (before its
// context is even done: the middleware then learns of both at once).
func TestTimeoutCutsStream(t *testing.T) {
	for _, p := range protos {
		for _, how := range []string{"ignores", "honours", "returns-during-cancel"} {
			t.Run(p.name+"/"+how, func(t *testing.T) {
				e := newEnds()
				release, doRelease := releaser()
				defer doRelease()
				type gates struct{ cancelling, returning chan struct{} }
				var gate atomic.Pointer[gates]
				hook := cancel.Hooks{OnCancel: func(op *cancel.Operation, _ *cancel.Error) {
					if g := gate.Load(); g != nil {
						close(g.cancelling)
						select {
						case <-g.returning:
						case <-time.After(guard):
						}
						// Widen the window in which the handler's return
						// reaches the middleware before the cancellation
						// does; the outcome must not depend on it.
						time.Sleep(2 * time.Millisecond)
					}
				}}
				ts := p.serve(t, Middleware(WithTimeout(20*time.Millisecond), e.option(),
					WithOperationOptions(cancel.WithObserver(hook)))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "text/plain")
					w.Write([]byte("first\n"))
					w.(http.Flusher).Flush()
					switch how {
					case "ignores":
						<-release
					case "honours":
						<-r.Context().Done()
					default:
						g := gate.Load()
						<-g.cancelling
						close(g.returning)
					}
				})))
				runs := 10
				if how == "ignores" {
					runs = 1
				}
				for range runs {
					if how == "returns-during-cancel" {
						gate.Store(&gates{make(chan struct{}), make(chan struct{})})
					}
					resp, err := ts.Client().Get(ts.URL)
					if err != nil {
						t.Fatal(err)
					}
					br := bufio.NewReader(resp.Body)
					if line, err := br.ReadString('\n'); line != "first\n" {
						t.Fatalf("first line %q, %v", line, err)
					}
					rest, err := io.ReadAll(br)
					resp.Body.Close()
					if err == nil {
						t.Fatalf("the stream cut at the deadline ended cleanly (after %q)", rest)
					}
					if how == "ignores" {
						doRelease()
					}
					checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
				}
			})
		}
	}
}

// A route's Timeout replaces the middleware's, shorter or longer; Timeout(0)
// removes it.
func TestRouteTimeout(t *testing.T) {
	deadlines := make(chan time.Duration, 1)
	report := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, ok := r.Context().Deadline()
		if !ok {
			deadlines <- 0
			return
		}
		deadlines <- time.Until(d)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /default", report)
	mux.Handle("GET /long", Timeout(time.Hour, report))
	mux.Handle("GET /none", Timeout(0, report))
	mux.Handle("GET /short", Timeout(20*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})))
	e := newEnds()
	ts := serve(t, Middleware(WithTimeout(time.Minute), e.option())(mux))

	for _, c := range []struct {
		path     string
		min, max time.Duration
	}{
		{"/default", 50 * time.Second, time.Minute},
		{"/long", 59 * time.Minute, time.Hour},
		{"/none", 0, 0},
	} {
		resp, _ := get(t, ts, "GET", c.path)
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", c.path, resp.StatusCode)
		}
		if d := wait(t, deadlines, "the handler"); d < c.min || d > c.max {
			t.Errorf("%s: deadline in %v, want within [%v, %v]", c.path, d, c.min, c.max)
		}
		checkEnded(t, e.next(t), cancel.StatusCompleted, 0)
	}
	resp, body := get(t, ts, "GET", "/short")
	checkProblem(t, resp, body, http.StatusGatewayTimeout, cancel.ReasonTimeout)
	op := e.next(t)
	checkEnded(t, op, cancel.StatusCancelled, cancel.ReasonTimeout)
	if op.Name() != "GET /short" {
		t.Errorf("named %q", op.Name())
	}
}

// Per-route wrapping: the middleware finds the Timeout it wraps.
func TestRouteTimeoutPerRoute(t *testing.T) {
	e := newEnds()
	mw := Middleware(WithTimeout(time.Hour), e.option())
	mux := http.NewServeMux()
	mux.Handle("GET /short", mw(Timeout(20*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))))
	ts := serve(t, mux)
	resp, body := get(t, ts, "GET", "/short")
	checkProblem(t, resp, body, http.StatusGatewayTimeout, cancel.ReasonTimeout)
	checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
}

// Timeout served without the middleware is one itself.
func TestTimeoutStandalone(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			names := make(chan string, 1)
			started, late := make(chan struct{}, 1), make(chan lateWrites, 1)
			release, doRelease := releaser()
			defer doRelease()
			mux := http.NewServeMux()
			mux.Handle("GET /report/{id}", Timeout(30*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				op := cancel.FromContext(r.Context())
				if op == nil {
					names <- ""
				} else {
					names <- op.Name()
				}
				ignoring(started, release, late)(w, r)
			})))
			ts := p.serve(t, mux)
			res := goFetch(ts, "GET", "/report/7")
			wait(t, started, "the handler")
			resp, body := wait(t, res, "the response").check(t)
			checkProblem(t, resp, body, http.StatusGatewayTimeout, cancel.ReasonTimeout)
			doRelease()
			checkLate(t, wait(t, late, "the late writes"))
			if n := wait(t, names, "the name"); n != "GET /report/{id}" {
				t.Errorf("operation named %q", n)
			}
		})
	}
}

// Timeout around a Middleware (rather than inside) must keep that
// middleware's options: here its registry and observer.
func TestTimeoutAroundMiddleware(t *testing.T) {
	reg := new(cancel.Registry)
	e := newEnds()
	listed := make(chan bool, 1)
	mux := http.NewServeMux()
	mux.Handle("GET /r", Timeout(20*time.Millisecond, Middleware(WithRegistry(reg), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		listed <- len(reg.List(cancel.Filter{})) == 1
		<-r.Context().Done()
	}))))
	ts := serve(t, mux)
	resp, body := get(t, ts, "GET", "/r")
	checkProblem(t, resp, body, http.StatusGatewayTimeout, cancel.ReasonTimeout)
	if !wait(t, listed, "the handler") {
		t.Error("the request is not in the middleware's registry")
	}
	checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
}

// A route Timeout behind something the middleware cannot see through (a
// mux mounted with StripPrefix in another) still applies: it shortens the
// request's deadline. With the middleware inline, a handler honouring its
// context gets its client 504; with the middleware timing requests out,
// even one that ignores it does, at the deadline.
func TestRouteTimeoutNestedMux(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnds()
			deadline := make(chan time.Duration, 1)
			release, doRelease := releaser()
			defer doRelease()
			api := http.NewServeMux()
			api.Handle("GET /slow", Timeout(20*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				d, _ := r.Context().Deadline()
				deadline <- time.Until(d)
				if m.opts == nil {
					<-r.Context().Done()
				} else {
					<-release // ignores its context
				}
			})))
			root := http.NewServeMux()
			root.Handle("/api/", http.StripPrefix("/api", api))
			ts := serve(t, Middleware(append(m.opts, e.option())...)(root))
			res := goFetch(ts, "GET", "/api/slow")
			if d := wait(t, deadline, "the handler"); d > 20*time.Millisecond {
				t.Errorf("the handler's deadline is %v away, want the route's 20ms at most", d)
			}
			var r response
			select {
			case r = <-res:
			case <-time.After(2 * time.Second):
				t.Fatal("the route's 20ms Timeout was ignored")
			}
			resp, body := r.check(t)
			checkProblem(t, resp, body, http.StatusGatewayTimeout, cancel.ReasonTimeout)
			doRelease()
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
		})
	}
}

// A handler blocked in a Write to a client that reads nothing holds no one
// up at the deadline: its write fails, the stream is cut.
func TestTimeoutUnblocksStuckWrite(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			e := newEnds()
			writeErr := make(chan error, 1)
			ts := p.serve(t, Middleware(WithTimeout(100*time.Millisecond), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				chunk := make([]byte, 256<<10)
				for {
					if _, err := w.Write(chunk); err != nil {
						writeErr <- err
						return
					}
				}
			})))
			resp, err := ts.Client().Get(ts.URL) // and never read the body
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if err := wait(t, writeErr, "the stuck write to fail"); err == nil {
				t.Error("no error")
			}
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
			if _, err := io.Copy(io.Discard, resp.Body); err == nil {
				t.Error("the cut stream ended cleanly")
			}
		})
	}
}

// A handler that panics after the middleware answered for it cannot reach
// net/http any more: the panic is logged, and the operation ends with it
// (cancelled, as the core records an error that follows a cancellation).
func TestPanicAfterTimeoutIsLogged(t *testing.T) {
	var logged strings.Builder
	var mu sync.Mutex
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil)))
	defer slog.SetDefault(prev)

	e := newEnds()
	release, doRelease := releaser()
	defer doRelease()
	ts := serve(t, Middleware(WithTimeout(20*time.Millisecond), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		panic("late boom")
	})))
	resp, body := get(t, ts, "GET", "/")
	checkProblem(t, resp, body, http.StatusGatewayTimeout, cancel.ReasonTimeout)
	doRelease()
	op := e.next(t)
	checkEnded(t, op, cancel.StatusCancelled, cancel.ReasonTimeout)
	if !strings.Contains(fmt.Sprint(op.Cause()), "late boom") {
		t.Errorf("cause %v does not tell of the panic", op.Cause())
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logged.String(), "late boom") {
		t.Errorf("the panic was not logged: %q", logged.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Handler and middleware touch the writer and the header from two
// goroutines at the deadline: -race checks they never do so unsynchronised.
func TestTimeoutNoRace(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			ts := p.serve(t, Middleware(WithTimeout(2*time.Millisecond))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for i := 0; r.Context().Err() == nil && i < 1000; i++ {
					w.Header().Set("X-I", fmt.Sprint(i))
					if i%10 == 9 {
						w.Write([]byte("x"))
						http.NewResponseController(w).Flush()
					}
				}
				for range 100 { // after the deadline
					w.Header().Set("X-After", "1")
					w.Write([]byte("y"))
				}
			})))
			for range 30 {
				resp, err := ts.Client().Get(ts.URL)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 && resp.StatusCode != 504 {
						t.Errorf("status %d", resp.StatusCode)
					}
				}
			}
		})
	}
}

// A deadline set around the middleware (another timeout middleware) ends
// the request with ReasonTimeout and 504, not as a client gone.
func TestOuterDeadlineIsTimeout(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnds()
			outer := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					ctx, cancelOuter := context.WithTimeout(r.Context(), 20*time.Millisecond)
					defer cancelOuter()
					next.ServeHTTP(w, r.WithContext(ctx))
				})
			}
			ts := serve(t, outer(Middleware(append(m.opts, e.option())...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			}))))
			resp, body := get(t, ts, "GET", "/")
			checkProblem(t, resp, body, http.StatusGatewayTimeout, cancel.ReasonTimeout)
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
		})
	}
}

// A handler that hijacked its connection keeps it past the deadline: the
// middleware writes nothing on it.
func TestTimeoutAfterHijack(t *testing.T) {
	e := newEnds()
	ts := serve(t, Middleware(WithTimeout(20*time.Millisecond), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		defer conn.Close()
		<-r.Context().Done() // the timeout
		brw.WriteString("still mine: " + cancel.ReasonOf(context.Cause(r.Context())).String() + "\n")
		brw.Flush()
	})))
	conn := dial(t, ts)
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	all, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if string(all) != "still mine: timeout\n" {
		t.Errorf("the hijacked connection carried %q", all)
	}
	checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
}

// A stream cancelled at its timeout gets the grace to say why before it is
// cut: its last words reach the client, and the stream still does not look
// whole. A disconnect is not waited for.
func TestStreamGraceLastWords(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			e := newEnds()
			lastWrite := make(chan error, 1)
			ts := p.serve(t, Middleware(WithTimeout(20*time.Millisecond), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte("first\n"))
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				_, err := w.Write([]byte("bye: " + cancel.ReasonOf(context.Cause(r.Context())).String() + "\n"))
				w.(http.Flusher).Flush()
				lastWrite <- err
			})))
			resp, err := ts.Client().Get(ts.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			for _, want := range []string{"first\n", "bye: timeout\n"} {
				if line, err := br.ReadString('\n'); line != want {
					t.Fatalf("line %q, %v; want %q", line, err, want)
				}
			}
			if err := wait(t, lastWrite, "the last write"); err != nil {
				t.Errorf("the last write failed within the grace: %v", err)
			}
			if rest, err := io.ReadAll(br); err == nil {
				t.Fatalf("the cancelled stream ended cleanly (after %q)", rest)
			}
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
		})
	}
}

// Past the grace, a stream whose handler ignores the cancellation is cut
// and the handler's writes fail.
func TestStreamGraceExpires(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			e := newEnds()
			release, doRelease := releaser()
			defer doRelease()
			lateWrite := make(chan error, 1)
			ts := p.serve(t, Middleware(WithTimeout(20*time.Millisecond), WithStreamGrace(30*time.Millisecond), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte("first\n"))
				w.(http.Flusher).Flush()
				<-release
				_, err := w.Write([]byte("too late\n"))
				lateWrite <- err
			})))
			resp, err := ts.Client().Get(ts.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if rest, err := io.ReadAll(resp.Body); err == nil || string(rest) != "first\n" {
				t.Fatalf("read %q, %v; want the first line, then a cut", rest, err)
			}
			doRelease()
			if err := wait(t, lateWrite, "the late write"); !errors.Is(err, http.ErrHandlerTimeout) {
				t.Errorf("late write: %v, want http.ErrHandlerTimeout", err)
			}
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
		})
	}
}

// A request asking to switch protocols (a websocket) becomes a
// connection: the middleware's timeout and the client's budget do not
// apply to it, a route's own Timeout does.
func TestUpgradeRequestsHaveNoRequestTimeout(t *testing.T) {
	e := newEnds()
	deadlines := make(chan bool, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ok := r.Context().Deadline()
		deadlines <- ok
	})
	mux := http.NewServeMux()
	mux.Handle("GET /ws", h)
	mux.Handle("GET /ws-limited", Timeout(time.Hour, h))
	ts := serve(t, Middleware(WithTimeout(time.Minute), WithClientBudget("", time.Minute), e.option())(mux))
	for _, tc := range []struct {
		path    string
		upgrade bool
		want    bool
	}{
		{"/ws", true, false},
		{"/ws", false, true},
		{"/ws-limited", true, true},
	} {
		req, _ := http.NewRequest("GET", ts.URL+tc.path, nil)
		req.Header.Set(DefaultBudgetHeader, "5s")
		if tc.upgrade {
			req.Header.Set("Connection", "keep-alive, Upgrade")
			req.Header.Set("Upgrade", "websocket")
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := wait(t, deadlines, "the handler"); got != tc.want {
			t.Errorf("%s upgrade=%v: deadline %v, want %v", tc.path, tc.upgrade, got, tc.want)
		}
		e.next(t)
	}
}

// A handler that wrote its whole body (all of its Content-Length) just
// before the deadline keeps its answer, whether it returns at the
// cancellation or ignores its context past the stream grace: the response
// cannot look whole when it is not, so it is not cut, even while it still
// sits unsent in the server's buffer.
func TestTimeoutKeepsWholeResponse(t *testing.T) {
	for _, c := range []struct {
		name    string
		grace   time.Duration
		ignores bool // the handler ignores its context until released
	}{
		{"returns", DefaultStreamGrace, false},
		{"ignores/grace=0", 0, true},
		{"ignores/grace=20ms", 20 * time.Millisecond, true},
	} {
		for _, p := range protos {
			t.Run(p.name+"/"+c.name, func(t *testing.T) {
				e := newEnds()
				release, doRelease := releaser()
				defer doRelease()
				ts := p.serve(t, Middleware(WithTimeout(20*time.Millisecond), WithStreamGrace(c.grace), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Length", "5")
					w.Write([]byte("hello")) // whole, buffered, not flushed
					if c.ignores {
						<-release // slow bookkeeping that ignores ctx
					} else {
						<-r.Context().Done()
					}
				})))
				resp, err := ts.Client().Get(ts.URL)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || string(body) != "hello" {
					t.Errorf("got %d %q, %v; want 200 hello", resp.StatusCode, body, err)
				}
				doRelease()
				checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
			})
		}
	}
}

// A response that can have no body (to a HEAD, or a 204 or 304) is whole
// once its header is written: it goes out, and is not cut, when the
// handler ignores its context past the timeout.
func TestBodylessResponseGoesOutPastTheTimeout(t *testing.T) {
	for _, c := range []struct {
		method string
		status int
	}{
		{http.MethodHead, http.StatusOK},
		{http.MethodGet, http.StatusNoContent},
		{http.MethodGet, http.StatusNotModified},
	} {
		for _, p := range protos {
			t.Run(fmt.Sprintf("%s/%s/%d", p.name, c.method, c.status), func(t *testing.T) {
				e := newEnds()
				release, doRelease := releaser()
				defer doRelease()
				ts := p.serve(t, Middleware(WithTimeout(20*time.Millisecond), WithStreamGrace(0), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(c.status)
					<-release // ignores its context
				})))
				req, err := http.NewRequest(c.method, ts.URL, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := ts.Client().Do(req)
				if err != nil {
					t.Fatalf("%s: %v; want %d", c.method, err, c.status)
				}
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Errorf("%s: status %d, want %d", c.method, resp.StatusCode, c.status)
				}
				doRelease()
				checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
			})
		}
	}
}

// A client cannot escape the request timeout by asking to switch protocols
// on a route that does not: the handler, which ignores its context and
// never switches, is answered 504 at the deadline.
func TestUpgradeHeaderDoesNotLiftTimeout(t *testing.T) {
	e := newEnds()
	started, late := make(chan struct{}, 1), make(chan lateWrites, 1)
	release, doRelease := releaser()
	defer doRelease()
	ts := serve(t, Middleware(WithTimeout(50*time.Millisecond), e.option())(ignoring(started, release, late)))
	conn := dial(t, ts)
	io.WriteString(conn, "GET /report HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	wait(t, started, "the handler to start")
	// The answer comes at the deadline, not when the handler returns.
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer at the deadline (the Upgrade header lifted the request timeout): %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkProblem(t, resp, string(body), http.StatusGatewayTimeout, cancel.ReasonTimeout)
	doRelease()
	checkLate(t, wait(t, late, "the handler's late writes"))
	checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
}

// An h2c upgrade (what curl --http2 asks on its first request over
// http://) is no protocol switch net/http or the middleware's handler
// performs (an h2c handler in front would have taken it): the request is
// a request, with its deadline, its client budget and its timeout.
func TestH2CUpgradeIsARequest(t *testing.T) {
	deadlines := make(chan bool, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ok := r.Context().Deadline()
		deadlines <- ok
		<-r.Context().Done()
	})
	ts := serve(t, Middleware(WithTimeout(time.Minute), WithClientBudget("", time.Minute))(h))
	conn := dial(t, ts)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
		"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nRequest-Timeout: 30ms\r\n\r\n")
	if !wait(t, deadlines, "the handler") {
		t.Error("the handler's context has no deadline")
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkProblem(t, resp, string(body), http.StatusGatewayTimeout, cancel.ReasonTimeout)
}

// On HTTP/2 the protocol switch is a CONNECT (a tunnel, an RFC 8441
// websocket): a CONNECT the handler does not take up (2xx) is answered 504
// at the deadline too.
func TestConnectDoesNotLiftTimeoutHTTP2(t *testing.T) {
	e := newEnds()
	started, late := make(chan struct{}, 1), make(chan lateWrites, 1)
	release, doRelease := releaser()
	defer doRelease()
	ts := serveH2(t, Middleware(WithTimeout(50*time.Millisecond), e.option())(ignoring(started, release, late)))
	host := strings.TrimPrefix(ts.URL, "https://")
	body, closeBody := io.Pipe() // the tunnel's client half, never written
	defer closeBody.Close()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "https", Host: host}, Host: host,
		Header: http.Header{}, Body: body}
	answered := make(chan response, 1)
	go func() {
		resp, err := ts.Client().Transport.RoundTrip(req)
		if err != nil {
			answered <- response{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- response{resp: resp, body: string(b), err: err}
	}()
	wait(t, started, "the handler to start")
	// The answer comes at the deadline, not when the handler returns.
	resp, b := wait(t, answered, "the answer").check(t)
	checkProblem(t, resp, b, http.StatusGatewayTimeout, cancel.ReasonTimeout)
	doRelease()
	checkLate(t, wait(t, late, "the handler's late writes"))
	checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
}

// A handler that switches protocols in time keeps its connection past the
// request timeout: the timeout bounded only the switch.
func TestUpgradeOutlivesTimeoutOnceSwitched(t *testing.T) {
	e := newEnds()
	const timeout = 30 * time.Millisecond
	ts := serve(t, Middleware(WithTimeout(timeout), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
		brw.Flush()
		// Outlive the timeout several times over (what is measured here is
		// that nothing happens), then say whether the context still holds.
		<-time.After(5 * timeout)
		if r.Context().Err() != nil {
			brw.WriteString("cancelled\n")
		} else {
			brw.WriteString("alive\n")
		}
		brw.Flush()
	})))
	conn := dial(t, ts)
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "alive\n" {
		t.Fatalf("after the timeout the connection said %q (%v), want alive", line, err)
	}
	checkEnded(t, e.next(t), cancel.StatusCompleted, 0)
}

// A handler that answers 101 just as its time to switch protocols runs out
// (once the middleware has found it had not switched, before its context
// is done) must not get its client a 101 on a connection then closed,
// which looks like a switch that failed later (a websocket's 1006): the
// switch came too late, and the client gets the 504.
func TestSwitchJustTooLate(t *testing.T) {
	e := newEnds()
	toSwitch, switched := make(chan struct{}), make(chan struct{})
	release, doRelease := releaser()
	defer doRelease()
	hijacked := make(chan error, 1)
	// Observers hear of a cancellation before the context ends: the
	// handler switches in between.
	hook := cancel.Hooks{OnCancel: func(*cancel.Operation, *cancel.Error) {
		close(toSwitch)
		<-switched
	}}
	ts := serve(t, Middleware(WithTimeout(50*time.Millisecond), e.option(),
		WithOperationOptions(cancel.WithObserver(hook)))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-toSwitch
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "test")
		w.WriteHeader(http.StatusSwitchingProtocols) // as coder/websocket does, then hijacks
		close(switched)
		<-release
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		hijacked <- err
	})))
	conn := dial(t, ts)
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkProblem(t, resp, string(body), http.StatusGatewayTimeout, cancel.ReasonTimeout)
	doRelease()
	if err := wait(t, hijacked, "the handler's late Hijack"); !errors.Is(err, http.ErrHandlerTimeout) {
		t.Errorf("late Hijack returned %v, want http.ErrHandlerTimeout", err)
	}
	checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonTimeout)
}
