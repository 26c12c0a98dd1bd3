package sse

import (
	"bufio"
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// recorder is an EventObserver that keeps what a stream told it.
type recorder struct {
	mu     sync.Mutex
	events []cancel.Event
	counts map[string]int64
	order  []string // event names, counts as "count:name", "end"
	ended  chan *cancel.Operation
}

func newRecorder() *recorder {
	return &recorder{counts: map[string]int64{}, ended: make(chan *cancel.Operation, 16)}
}

func (r *recorder) option() Option {
	return WithOperationOptions(cancel.WithObserver(cancel.Hooks{
		OnEvent: func(_ *cancel.Operation, e cancel.Event) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.events = append(r.events, e)
			r.order = append(r.order, e.Name)
		},
		OnCount: func(_ *cancel.Operation, name string, n int64) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.counts[name] += n
			r.order = append(r.order, "count:"+name)
		},
		OnEnd: func(op *cancel.Operation) {
			r.mu.Lock()
			r.order = append(r.order, "end")
			r.mu.Unlock()
			r.ended <- op
		},
	}))
}

// waitEnd returns the stream's operation once it has ended.
func (r *recorder) waitEnd(t *testing.T) *cancel.Operation {
	t.Helper()
	select {
	case op := <-r.ended:
		return op
	case <-time.After(10 * time.Second):
		t.Fatal("the stream's operation did not end")
		return nil
	}
}

func (r *recorder) event(name string) (cancel.Event, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found cancel.Event
	n := 0
	for _, e := range r.events {
		if e.Name == name {
			found, n = e, n+1
		}
	}
	return found, n
}

func attr(e cancel.Event, key string) slog.Value {
	for _, a := range e.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return slog.Value{}
}

// serve starts a real HTTP server on loopback.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// open GETs url with the headers given as pairs and returns the response
// and a parser of its body.
func open(t *testing.T, url string, header ...string) (*http.Response, *parser) {
	t.Helper()
	ctx, cancelReq := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancelReq)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, newParser(resp.Body)
}

// readAll reads events until the stream ends.
func readAll(t *testing.T, p *parser) []parsed {
	t.Helper()
	var evs []parsed
	for {
		ev, err := p.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatalf("after %d events %+v: %v", len(evs), evs, err)
		}
		evs = append(evs, ev)
	}
}

// next reads one event.
func next(t *testing.T, p *parser) parsed {
	t.Helper()
	ev, err := p.Next()
	if err != nil {
		t.Fatalf("reading an event: %v", err)
	}
	return ev
}

// rawGet opens a TCP connection to ts, sends a GET for path with extra
// header lines, and returns the connection and a reader positioned after
// the response headers, with the headers.
func rawGet(t *testing.T, addr, path string, readBuf int) (net.Conn, *bufio.Reader, http.Header) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if readBuf > 0 {
		conn.(*net.TCPConn).SetReadBuffer(readBuf)
	}
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(conn, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp.Header
}

// serveHTTP2 serves h over HTTP/2 (TLS) on loopback and GETs path from it.
// The server and the response's body are closed when the test ends.
func serveHTTP2(t *testing.T, h http.Handler, path string) (*httptest.Server, *http.Response) {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // resets and TLS chatter
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	resp, err := ts.Client().Get(ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s", resp.Proto)
	}
	return ts, resp
}
