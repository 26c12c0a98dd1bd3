package sse

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

var (
	benchIDs = func() (ids [1024]string) {
		for i := range ids {
			ids[i] = "evt-" + strconv.Itoa(i)
		}
		return ids
	}()
	benchPayload = `{"symbol":"ACME","price":123.45,"volume":1000}`
)

// rawEvents is what a hand-written SSE handler does: fmt.Fprintf and
// http.Flusher.
func rawEvents(w http.ResponseWriter, n int) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	f := w.(http.Flusher)
	f.Flush()
	for i := range n {
		fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", benchIDs[i&1023], "tick", benchPayload)
		f.Flush()
	}
}

func writerEvents(b *testing.B, w http.ResponseWriter, r *http.Request, n int, opts ...Option) {
	s, err := New(w, r, opts...)
	if err != nil {
		b.Error(err)
		return
	}
	for i := range n {
		if err := s.Send(Event{ID: benchIDs[i&1023], Type: "tick", Data: benchPayload}); err != nil {
			b.Error(err)
			break
		}
	}
	s.End(nil)
}

// BenchmarkSSE measures one event written and flushed to a client over
// loopback (a real net/http server and client), by hand and by a Stream.
func BenchmarkSSE(b *testing.B) {
	run := func(b *testing.B, h func(w http.ResponseWriter, r *http.Request, n int)) {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, b.N) }))
		defer ts.Close()
		b.ReportAllocs()
		b.ResetTimer()
		resp, err := http.Get(ts.URL)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.Run("raw", func(b *testing.B) {
		run(b, func(w http.ResponseWriter, _ *http.Request, n int) { rawEvents(w, n) })
	})
	b.Run("writer", func(b *testing.B) {
		run(b, func(w http.ResponseWriter, r *http.Request, n int) { writerEvents(b, w, r, n) })
	})
	// With a rolling write deadline and heartbeats: two more clock reads
	// and a deadline set on the socket per event.
	b.Run("writer+deadline", func(b *testing.B) {
		run(b, func(w http.ResponseWriter, r *http.Request, n int) {
			writerEvents(b, w, r, n, WithWriteTimeout(10*time.Second), WithHeartbeat(15*time.Second))
		})
	})
}

// discard is an in-process ResponseWriter that flushes nothing anywhere:
// what is left is the cost of the writer itself.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Flush()                      {}

// BenchmarkSSEInProcess is BenchmarkSSE without the network: the CPU cost
// of encoding and flushing one event.
func BenchmarkSSEInProcess(b *testing.B) {
	r := httptest.NewRequest("GET", "/", nil)
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		rawEvents(&discard{h: http.Header{}}, b.N)
	})
	b.Run("writer", func(b *testing.B) {
		b.ReportAllocs()
		writerEvents(b, &discard{h: http.Header{}}, r, b.N)
	})
}
