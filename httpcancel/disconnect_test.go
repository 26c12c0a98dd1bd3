package httpcancel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// seenCause is what a handler saw of its context once it ended.
type seenCause struct {
	err, cause error
}

func checkDisconnectCause(t *testing.T, s seenCause) *cancel.Error {
	t.Helper()
	var ce *cancel.Error
	if !errors.As(s.cause, &ce) || ce.Reason != cancel.ReasonDisconnect {
		t.Fatalf("context.Cause = %v, want a *cancel.Error with reason disconnect", s.cause)
	}
	if !errors.Is(s.err, context.Canceled) {
		t.Errorf("ctx.Err() = %v, want context.Canceled", s.err)
	}
	return ce
}

// A raw HTTP/1.1 client sends a GET and closes the connection while the
// handler waits on its context.
func TestDisconnectHTTP1(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnds()
			codes := make(chan int, 4)
			started := make(chan struct{})
			seen := make(chan seenCause, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				ctx := r.Context()
				<-ctx.Done()
				seen <- seenCause{ctx.Err(), context.Cause(ctx)}
			})
			ts := serve(t, statusRecorder(codes, Middleware(append(m.opts, e.option())...)(h)))
			conn := dial(t, ts)
			fmt.Fprint(conn, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
			wait(t, started, "the handler to start")
			conn.Close()

			checkDisconnectCause(t, wait(t, seen, "the handler to see the client go"))
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonDisconnect)
			if code := wait(t, codes, "a status"); code != StatusClientClosedRequest {
				t.Errorf("recorded status %d, want 499", code)
			}
		})
	}
}

// An HTTP/2 client cancels its request: the stream is reset and the
// handler's context ends at once.
func TestDisconnectHTTP2(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnds()
			codes := make(chan int, 4)
			started := make(chan int, 1)
			seen := make(chan seenCause, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				started <- r.ProtoMajor
				ctx := r.Context()
				<-ctx.Done()
				seen <- seenCause{ctx.Err(), context.Cause(ctx)}
			})
			ts := serveH2(t, statusRecorder(codes, Middleware(append(m.opts, e.option())...)(h)))
			ctx, cancelReq := context.WithCancel(context.Background())
			defer cancelReq()
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/wait", nil)
			errc := make(chan error, 1)
			go func() {
				resp, err := ts.Client().Do(req)
				if err == nil {
					resp.Body.Close()
				}
				errc <- err
			}()
			if proto := wait(t, started, "the handler to start"); proto != 2 {
				t.Fatalf("served over HTTP/%d", proto)
			}
			cancelReq()
			if err := wait(t, errc, "the client"); !errors.Is(err, context.Canceled) {
				t.Errorf("client error %v", err)
			}

			checkDisconnectCause(t, wait(t, seen, "the handler to see the client go"))
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonDisconnect)
			if code := wait(t, codes, "a status"); code != StatusClientClosedRequest {
				t.Errorf("recorded status %d, want 499", code)
			}
		})
	}
}

// A POST whose body the handler never reads: net/http does not watch the
// connection (the body is unread), so the client hanging up is noticed at
// the next failed write, and that is a disconnect too. The handler's
// context must not end before that write fails, and must have ended when
// the write returns.
func TestDisconnectUnreadBodyWriteFails(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnds()
			type outcome struct {
				writeErr    error
				ctxEndFirst bool
				afterWrite  seenCause
			}
			done := make(chan outcome, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				chunk := bytes.Repeat([]byte("x"), 4096)
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				giveUp := time.After(guard)
				for {
					_, err := w.Write(chunk)
					if err == nil {
						err = http.NewResponseController(w).Flush()
					}
					if err != nil {
						done <- outcome{writeErr: err, afterWrite: seenCause{ctx.Err(), context.Cause(ctx)}}
						return
					}
					select {
					case <-tick.C:
					case <-ctx.Done():
						done <- outcome{ctxEndFirst: true}
						return
					case <-giveUp:
						done <- outcome{}
						return
					}
				}
			})
			ts := serve(t, Middleware(append(m.opts, e.option())...)(h))
			conn := dial(t, ts)
			fmt.Fprint(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n")
			conn.Write(bytes.Repeat([]byte("y"), 1024))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			conn.Close() // hang up with the body unsent and the response unread

			o := wait(t, done, "the handler")
			switch {
			case o.ctxEndFirst:
				t.Fatal("the context ended before a write failed: test premise broken")
			case o.writeErr == nil:
				t.Fatal("the handler's writes never failed")
			}
			// The failed write cancels the request: the writer says so, and
			// net/http itself cancels the connection's context on a write
			// error; whichever comes first, it is a disconnect.
			ce := checkDisconnectCause(t, o.afterWrite)
			if ce.Message != "client went away" && !strings.HasPrefix(ce.Message, "write failed") {
				t.Errorf("cancellation message %q", ce.Message)
			}
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonDisconnect)
		})
	}
}

// HTTP/1.1 notices a client going away once the body was read to EOF.
func TestDisconnectAfterBodyRead(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnds()
			read := make(chan string, 1)
			seen := make(chan seenCause, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				read <- string(b)
				ctx := r.Context()
				<-ctx.Done()
				seen <- seenCause{ctx.Err(), context.Cause(ctx)}
			})
			ts := serve(t, Middleware(append(m.opts, e.option())...)(h))
			conn := dial(t, ts)
			fmt.Fprint(conn, "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
			if b := wait(t, read, "the handler to read the body"); b != "hello" {
				t.Fatalf("body %q", b)
			}
			conn.Close()
			checkDisconnectCause(t, wait(t, seen, "the handler to see the client go"))
			checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonDisconnect)
		})
	}
}

// The Python original marked every finished request as cancelled: a client
// closing its connection after the response must not touch the request.
func TestNoDisconnectAfterResponse(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnds()
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Write([]byte("ok"))
			})
			ts := serve(t, Middleware(append(m.opts, e.option())...)(h))
			conn := dial(t, ts)
			br := bufio.NewReader(conn)
			for i := range 5 {
				fmt.Fprintf(conn, "POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", i)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				if string(b) != "ok" {
					t.Fatalf("body %q", b)
				}
				checkEnded(t, e.next(t), cancel.StatusCompleted, 0)
			}
		})
	}
}

// The responder is not asked to answer a client that is gone; the status
// is recorded.
func TestDisconnectSkipsResponder(t *testing.T) {
	called := make(chan cancel.Reason, 1)
	codes := make(chan int, 4)
	started := make(chan struct{})
	returned := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		close(returned)
	})
	mw := Middleware(WithResponder(func(w http.ResponseWriter, r *http.Request, status int, reason cancel.Reason) {
		called <- reason
	}))
	ts := serve(t, statusRecorder(codes, mw(h)))
	conn := dial(t, ts)
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	wait(t, started, "the handler")
	conn.Close()
	wait(t, returned, "the handler to return")
	if code := wait(t, codes, "the status"); code != StatusClientClosedRequest {
		t.Errorf("status %d", code)
	}
	select {
	case r := <-called:
		t.Errorf("responder called for %v", r)
	default:
	}
}
