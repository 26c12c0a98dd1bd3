package httpcancel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// Flush reaches the client at once: the client reads the first chunk while
// the handler waits for it to do so.
func TestFlushPassesThrough(t *testing.T) {
	for _, m := range modes {
		for _, p := range protos {
			t.Run(m.name+"/"+p.name, func(t *testing.T) {
				e := newEnds()
				gotFirst := make(chan struct{})
				flushErr := make(chan error, 1)
				ts := p.serve(t, Middleware(append(m.opts, e.option())...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if _, ok := w.(http.Flusher); !ok {
						t.Error("the writer is no http.Flusher")
					}
					w.Write([]byte("first\n"))
					w.(http.Flusher).Flush()
					select {
					case <-gotFirst:
					case <-time.After(guard):
					}
					w.Write([]byte("second\n"))
					flushErr <- http.NewResponseController(w).Flush()
				})))
				resp, err := ts.Client().Get(ts.URL)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				if line := readLine(t, br); line != "first\n" {
					t.Fatalf("first chunk %q", line)
				}
				close(gotFirst)
				if line := readLine(t, br); line != "second\n" {
					t.Fatalf("second chunk %q", line)
				}
				if err := wait(t, flushErr, "the handler"); err != nil {
					t.Errorf("ResponseController.Flush: %v", err)
				}
				checkEnded(t, e.next(t), cancel.StatusCompleted, 0)
			})
		}
	}
}

// Hijack hands the connection over: the handler speaks raw on it.
func TestHijackPassesThrough(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnds()
			after := make(chan error, 1)
			ts := serve(t, Middleware(append(m.opts, e.option())...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, ok := w.(http.Hijacker); !ok {
					t.Error("the writer is no http.Hijacker")
				}
				conn, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("Hijack: %v", err)
					return
				}
				defer conn.Close()
				brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
				brw.Flush()
				line, _ := brw.ReadString('\n')
				brw.WriteString("echo: " + line)
				brw.Flush()
				_, err = w.Write([]byte("no"))
				after <- err
			})))
			conn := dial(t, ts)
			fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			fmt.Fprint(conn, "ping\n")
			if line := readLine(t, br); line != "echo: ping\n" {
				t.Errorf("got %q", line)
			}
			if err := wait(t, after, "the handler"); !errors.Is(err, http.ErrHijacked) {
				t.Errorf("Write after Hijack: %v, want http.ErrHijacked", err)
			}
			checkEnded(t, e.next(t), cancel.StatusCompleted, 0)
		})
	}
}

// SetReadDeadline reaches the connection: a read past it fails.
func TestReadDeadlinePassesThrough(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			type result struct{ set, read error }
			res := make(chan result, 1)
			ts := serve(t, Middleware(m.opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				set := http.NewResponseController(w).SetReadDeadline(time.Now().Add(-time.Second))
				_, read := io.ReadAll(r.Body)
				res <- result{set, read}
			})))
			conn := dial(t, ts)
			// A body that never comes.
			fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
			r := wait(t, res, "the handler")
			if r.set != nil {
				t.Fatalf("SetReadDeadline: %v", r.set)
			}
			if !errors.Is(r.read, os.ErrDeadlineExceeded) {
				t.Errorf("reading past the deadline: %v, want os.ErrDeadlineExceeded", r.read)
			}
		})
	}
}

// SetWriteDeadline reaches the connection: a write past it fails.
func TestWriteDeadlinePassesThrough(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			type result struct{ set, write error }
			res := make(chan result, 1)
			ts := serve(t, Middleware(m.opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				set := rc.SetWriteDeadline(time.Now().Add(-time.Second))
				_, err := w.Write(make([]byte, 64<<10))
				if err == nil {
					err = rc.Flush()
				}
				res <- result{set, err}
			})))
			resp, err := ts.Client().Get(ts.URL)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			r := wait(t, res, "the handler")
			if r.set != nil {
				t.Fatalf("SetWriteDeadline: %v", r.set)
			}
			if !errors.Is(r.write, os.ErrDeadlineExceeded) {
				t.Errorf("writing past the deadline: %v, want os.ErrDeadlineExceeded", r.write)
			}
		})
	}
}

// EnableFullDuplex lets an HTTP/1.1 handler read the body while it writes:
// an echo, line by line, with the client waiting for each echo before
// sending the next line.
func TestFullDuplexPassesThrough(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnds()
			ts := serve(t, Middleware(append(m.opts, e.option())...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				if err := rc.EnableFullDuplex(); err != nil {
					t.Errorf("EnableFullDuplex: %v", err)
					return
				}
				w.WriteHeader(200)
				rc.Flush()
				sc := bufio.NewScanner(r.Body)
				for sc.Scan() {
					fmt.Fprintf(w, "echo %s\n", sc.Text())
					if err := rc.Flush(); err != nil {
						t.Errorf("Flush: %v", err)
						return
					}
				}
				if err := sc.Err(); err != nil {
					t.Errorf("reading the body: %v", err)
				}
			})))
			conn := dial(t, ts)
			fmt.Fprint(conn, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body := bufio.NewReader(resp.Body)
			for _, word := range []string{"hello", "world"} {
				fmt.Fprintf(conn, "%x\r\n%s\n\r\n", len(word)+1, word)
				if line := readLine(t, body); line != "echo "+word+"\n" {
					t.Fatalf("got %q", line)
				}
			}
			fmt.Fprint(conn, "0\r\n\r\n")
			if rest, err := io.ReadAll(body); err != nil || len(rest) != 0 {
				t.Errorf("end of the echo: %q, %v", rest, err)
			}
			checkEnded(t, e.next(t), cancel.StatusCompleted, 0)
		})
	}
}

// A 103 Early Hints reaches the client before the handler goes on.
func TestEarlyHintsPassThrough(t *testing.T) {
	for _, m := range modes {
		for _, p := range protos {
			t.Run(m.name+"/"+p.name, func(t *testing.T) {
				got103 := make(chan textproto.MIMEHeader, 1)
				seen := make(chan struct{})
				ts := p.serve(t, Middleware(m.opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Link", "</app.css>; rel=preload; as=style")
					w.WriteHeader(http.StatusEarlyHints)
					select {
					case <-seen:
					case <-time.After(guard):
					}
					w.Header().Del("Link")
					w.Header().Set("Content-Type", "text/plain")
					w.Write([]byte("page"))
				})))
				trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
					if code == http.StatusEarlyHints {
						got103 <- h
						close(seen)
					}
					return nil
				}}
				ctx, cancelReq := context.WithTimeout(httptrace.WithClientTrace(context.Background(), trace), guard)
				defer cancelReq()
				req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL, nil)
				resp, err := ts.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if h := wait(t, got103, "the 103"); h.Get("Link") != "</app.css>; rel=preload; as=style" {
					t.Errorf("103 headers %v", h)
				}
				if resp.StatusCode != 200 || string(body) != "page" {
					t.Errorf("final response %d %q", resp.StatusCode, body)
				}
				if l := resp.Header.Get("Link"); l != "" {
					t.Errorf("the final response has the Link the handler deleted: %q", l)
				}
			})
		}
	}
}

// Headers reach the client as the handler leaves them, also when it runs
// on a goroutine of its own: set, deleted (even one set around the
// middleware), on a response without a body, and trailers set after the
// body.
func TestHeadersAndTrailers(t *testing.T) {
	for _, m := range modes {
		for _, p := range protos {
			t.Run(m.name+"/"+p.name, func(t *testing.T) {
				outer := func(next http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						w.Header().Set("X-Outer", "kept")
						w.Header().Set("X-Outer-Dropped", "by the handler")
						next.ServeHTTP(w, r)
					})
				}
				mux := http.NewServeMux()
				mux.HandleFunc("GET /body", func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("X-Handler", "yes")
					w.Header().Del("X-Outer-Dropped")
					w.Header().Set("Trailer", "X-Checksum")
					w.Write([]byte("body"))
					w.(http.Flusher).Flush()
					w.Header().Set("X-Checksum", "abc")
					w.Header().Set(http.TrailerPrefix+"X-Undeclared", "late")
				})
				mux.HandleFunc("GET /nobody", func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("X-Count", "0")
					w.Header().Del("X-Outer-Dropped")
				})
				ts := p.serve(t, outer(Middleware(m.opts...)(mux)))

				resp, body := get(t, ts, "GET", "/body")
				if body != "body" {
					t.Errorf("body %q", body)
				}
				for k, want := range map[string]string{"X-Handler": "yes", "X-Outer": "kept", "X-Outer-Dropped": ""} {
					if got := resp.Header.Get(k); got != want {
						t.Errorf("/body: header %s = %q, want %q", k, got, want)
					}
				}
				for k, want := range map[string]string{"X-Checksum": "abc", "X-Undeclared": "late"} {
					if got := resp.Trailer.Get(k); got != want {
						t.Errorf("/body: trailer %s = %q, want %q", k, got, want)
					}
				}

				resp, _ = get(t, ts, "GET", "/nobody")
				for k, want := range map[string]string{"X-Count": "0", "X-Outer": "kept", "X-Outer-Dropped": ""} {
					if got := resp.Header.Get(k); got != want {
						t.Errorf("/nobody: header %s = %q, want %q", k, got, want)
					}
				}
			})
		}
	}
}

// A handler that answers by itself once its context ends keeps its answer:
// it knew of the cancellation, so its response is whole.
func TestHandlerOwnAnswerAfterCancel(t *testing.T) {
	reg := new(cancel.Registry)
	started := make(chan *cancel.Operation, 1)
	ts := serve(t, Middleware(WithRegistry(reg))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- cancel.FromContext(r.Context())
		<-r.Context().Done()
		http.Error(w, "stopped: "+cancel.ReasonOf(context.Cause(r.Context())).String(), http.StatusConflict)
	})))
	res := goFetch(ts, "GET", "/")
	reg.Cancel(startedOp(t, started).ID(), cancel.ReasonManual, "operator")
	resp, body := wait(t, res, "the response").check(t)
	if resp.StatusCode != http.StatusConflict || strings.TrimSpace(body) != "stopped: manual" {
		t.Errorf("got %d %q, want the handler's own answer", resp.StatusCode, body)
	}
}

// A cancellation that comes while an inline handler streams cuts the
// stream too, when the handler returns.
func TestInlineCancelCutsStream(t *testing.T) {
	reg := new(cancel.Registry)
	e := newEnds()
	started := make(chan *cancel.Operation, 1)
	ts := serve(t, Middleware(WithRegistry(reg), e.option())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first\n"))
		w.(http.Flusher).Flush()
		started <- cancel.FromContext(r.Context())
		<-r.Context().Done()
	})))
	resp, err := ts.Client().Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readLine(t, br)
	reg.Cancel(startedOp(t, started).ID(), cancel.ReasonManual, "")
	if rest, err := io.ReadAll(br); err == nil {
		t.Errorf("the cancelled stream ended cleanly (after %q)", rest)
	}
	checkEnded(t, e.next(t), cancel.StatusCancelled, cancel.ReasonManual)
}
