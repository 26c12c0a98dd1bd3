package httpcancel

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// drained serves h with the middleware and a Drain of grace on a server of
// proto, and returns the server and its drain.
func drained(t *testing.T, p func(*testing.T, http.Handler) *httptest.Server, grace time.Duration, e ends, h http.Handler) (*httptest.Server, *Drain) {
	t.Helper()
	var d *Drain
	ts := p(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Middleware(WithDrain(d), e.option())(h).ServeHTTP(w, r)
	}))
	d = OnShutdown(ts.Config, grace)
	return ts, d
}

func shutdown(ts *httptest.Server) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancelShutdown := context.WithTimeout(context.Background(), guard)
		defer cancelShutdown()
		done <- ts.Config.Shutdown(ctx)
	}()
	return done
}

// A request still running grace after Shutdown began is cancelled with
// ReasonShutdown; having written nothing, it gets 503 with Retry-After;
// Shutdown returns once its handler has.
func TestShutdownCancelsAfterGrace(t *testing.T) {
	const grace = 50 * time.Millisecond
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			e := newEnds()
			started := make(chan struct{}, 1)
			seen := make(chan seenCause, 1)
			ended := make(chan time.Time, 1)
			returned := make(chan struct{})
			ts, d := drained(t, p.serve, grace, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(returned)
				started <- struct{}{}
				ctx := r.Context()
				<-ctx.Done()
				ended <- time.Now()
				seen <- seenCause{ctx.Err(), context.Cause(ctx)}
			}))
			res := goFetch(ts, "GET", "/work")
			wait(t, started, "the handler to start")
			begin := time.Now()
			shut := shutdown(ts)

			resp, body := wait(t, res, "the response").check(t)
			checkProblem(t, resp, body, http.StatusServiceUnavailable, cancel.ReasonShutdown)
			if at := wait(t, ended, "the handler's context to end"); at.Sub(begin) < grace {
				t.Errorf("cancelled %v after Shutdown began, before the grace of %v", at.Sub(begin), grace)
			}
			s := wait(t, seen, "the handler")
			var ce *cancel.Error
			if !errors.As(s.cause, &ce) || ce.Reason != cancel.ReasonShutdown {
				t.Errorf("context.Cause = %v, want reason shutdown", s.cause)
			}
			if err := wait(t, shut, "Shutdown"); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			select {
			case <-returned:
			default:
				t.Error("Shutdown returned before the handler did")
			}
			select {
			case <-d.Done():
			default:
				t.Error("Drain.Done not closed after the grace")
			}
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonShutdown)
		})
	}
}

// A handler that ignores its context still gets its client the whole 503
// at the end of the grace, and Shutdown waits for it (on HTTP/2, where the
// response ends only when the request returns, Drain.Wait does).
func TestShutdownWaitsForIgnoringHandler(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			e := newEnds()
			started := make(chan struct{}, 1)
			release, doRelease := releaser()
			defer doRelease()
			late := make(chan error, 1)
			ts, d := drained(t, p.serve, 10*time.Millisecond, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				<-release
				_, err := w.Write([]byte("late"))
				late <- err
			}))
			res := goFetch(ts, "GET", "/work")
			wait(t, started, "the handler to start")
			shut := shutdown(ts)
			// The whole 503, its end included, while the handler still runs.
			resp, body := wait(t, res, "the 503").check(t)
			checkProblem(t, resp, body, http.StatusServiceUnavailable, cancel.ReasonShutdown)
			waited := make(chan error, 1)
			go func() { waited <- d.Wait(context.Background()) }()

			// Neither Shutdown (HTTP/1: on HTTP/2 a response ends only when
			// its request returns, which it did at once) nor Drain.Wait may
			// return while the handler runs. A wrong one returns within
			// milliseconds of the 503; a right one never does until release.
			var early <-chan error
			if p.major == 1 {
				early = shut
			}
			select {
			case err := <-early:
				t.Fatalf("Shutdown returned (%v) while a handler still ran", err)
			case err := <-waited:
				t.Fatalf("Drain.Wait returned (%v) while a handler still ran", err)
			case <-time.After(300 * time.Millisecond):
			}
			doRelease()
			if err := wait(t, late, "the handler"); !errors.Is(err, http.ErrHandlerTimeout) {
				t.Errorf("late write: %v", err)
			}
			if err := wait(t, shut, "Shutdown"); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			if err := wait(t, waited, "Drain.Wait"); err != nil {
				t.Errorf("Drain.Wait: %v", err)
			}
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonShutdown)
		})
	}
}

// A request that finishes within the grace is not touched.
func TestShutdownWithinGrace(t *testing.T) {
	e := newEnds()
	started := make(chan struct{}, 1)
	release, doRelease := releaser()
	defer doRelease()
	ts, d := drained(t, serve, time.Hour, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		w.Write([]byte("done"))
	}))
	res := goFetch(ts, "GET", "/work")
	wait(t, started, "the handler to start")
	shut := shutdown(ts)
	// Shutdown has begun once the listener refuses connections.
	for deadline := time.Now().Add(guard); ; {
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener never closed")
		}
		time.Sleep(time.Millisecond) // polling the listener, nothing to wait on
	}
	doRelease()
	resp, body := wait(t, res, "the response").check(t)
	if resp.StatusCode != 200 || body != "done" {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
	if err := wait(t, shut, "Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	checkEnded(t, e.next(t), cancel.StatusCompleted, 0)
	select {
	case <-d.Done():
		t.Error("the drain fired within its grace")
	default:
	}
}

// A stream that is running at the end of the grace is cut.
func TestShutdownCutsStream(t *testing.T) {
	e := newEnds()
	ts, _ := drained(t, serve, 10*time.Millisecond, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("event 1\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	resp, err := ts.Client().Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readLine(t, br)
	shut := shutdown(ts)
	if rest, err := io.ReadAll(br); err == nil {
		t.Errorf("the stream ended cleanly at shutdown (after %q)", rest)
	}
	if err := wait(t, shut, "Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonShutdown)
}

// Once drained, a request that still arrives (on a connection that was
// open) is answered 503 at once.
func TestDrainedRequestRefused(t *testing.T) {
	e := newEnds()
	var d *Drain
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Middleware(WithDrain(d), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		})).ServeHTTP(w, r)
	}))
	d = OnShutdown(ts.Config, 0)
	d.Start()
	wait(t, d.Done(), "the drain")
	resp, body := get(t, ts, "GET", "/late")
	checkProblem(t, resp, body, http.StatusServiceUnavailable, cancel.ReasonShutdown)
	checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonShutdown)
}

// Shutdown does not wait for a handler that hijacked its connection (a
// websocket); Drain.Wait does: it returns once the handler has, after its
// cancellation with ReasonShutdown.
func TestDrainWaitsForHijackedHandlers(t *testing.T) {
	e := newEnds()
	hijacked := make(chan struct{})
	release := make(chan struct{})
	returned := make(chan struct{})
	ts, d := drained(t, serve, 0, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		close(hijacked)
		<-r.Context().Done()
		<-release // closing the connection takes a while
	}))
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
	wait(t, hijacked, "the handler to hijack")

	if err := wait(t, shutdown(ts), "Shutdown"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-returned:
		t.Fatal("the handler returned before it was released: the test shows nothing")
	default:
	}
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	if err := d.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with the handler still running = %v, want the context's error", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- d.Wait(context.Background()) }()
	close(release)
	if err := wait(t, waited, "Wait"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-returned:
	default:
		t.Fatal("Wait returned before the handler did")
	}
	checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonShutdown)
	if err := d.Wait(context.Background()); err != nil {
		t.Errorf("Wait with nothing running = %v", err)
	}
}

// A handler whose request timed out before the shutdown was handed over:
// its request has returned, so Shutdown cannot wait for it and returns
// while it still runs; Drain.Wait waits for it, as documented.
func TestShutdownLeavesTimedOutHandlerToWait(t *testing.T) {
	e := newEnds()
	started := make(chan struct{}, 1)
	returned := make(chan struct{})
	release, doRelease := releaser()
	defer doRelease()
	var d *Drain
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Middleware(WithTimeout(20*time.Millisecond), WithDrain(d), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(returned)
			started <- struct{}{}
			<-release // ignores its context
		})).ServeHTTP(w, r)
	}))
	d = OnShutdown(ts.Config, time.Hour)
	res := goFetch(ts, "GET", "/work")
	wait(t, started, "the handler to start")
	resp, _ := wait(t, res, "the 504").check(t)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
	if err := wait(t, shutdown(ts), "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-returned:
		t.Fatal("the handler returned before its release")
	default: // Shutdown returned while the handler still runs (as documented now)
	}
	// Drain.Wait does wait for it.
	done, stop := context.WithCancel(context.Background())
	stop()
	if err := d.Wait(done); err == nil {
		t.Error("Drain.Wait returned nil while the handler still ran")
	}
	doRelease()
	if err := d.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-returned:
	default:
		t.Error("Drain.Wait returned before the handler did")
	}
	e.next(t)
}

// A request arriving once the drain has cancelled the requests in flight
// is answered 503 with Retry-After, "not done, try another instance": its
// handler must not run, or a retried POST would be done twice.
func TestDrainedRequestNotRun(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			e := newEnds()
			ran := make(chan struct{}, 1)
			ts, d := drained(t, p.serve, 0, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ran <- struct{}{} // a side effect, done although the context is cancelled
			}))
			d.Start()
			wait(t, d.Done(), "the drain")
			resp, body := get(t, ts, "POST", "/orders")
			checkProblem(t, resp, body, http.StatusServiceUnavailable, cancel.ReasonShutdown)
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonShutdown)
			select {
			case <-ran:
				t.Error("the handler ran for a request answered 503 Retry-After")
			default:
			}
		})
	}
}
