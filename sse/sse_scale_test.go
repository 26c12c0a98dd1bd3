package sse

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/internal/scaletest"
)

// The clients of BenchmarkSSEScale run in a child process (this test
// binary, started again with scaleChildEnv set), so that the benchmark's
// process holds only the server side of the connections and its memory
// and goroutines are the server's alone.
const (
	scaleChildEnv = "SSE_SCALE_CHILD_URL" // the URL the child connects to
	scaleChildN   = "SSE_SCALE_CHILD_N"   // how many connections
)

func init() {
	if url := os.Getenv(scaleChildEnv); url != "" {
		n, _ := strconv.Atoi(os.Getenv(scaleChildN))
		os.Exit(sseScaleClients(url, n))
	}
}

const (
	scaleStreams   = 10_000
	scaleHeartbeat = time.Second
	scaleHold      = 3 * time.Second // 3 heartbeats on every stream
)

// BenchmarkSSEScale holds 10,000 concurrent server-sent event streams open
// over loopback, idle but for a heartbeat comment every second, and
// reports what each costs the server, as medians of the iterations:
//
//   - heap-B/conn: live heap per connection after a full collection
//     (net/http's connection and buffers included);
//   - stack-B/conn: goroutine stacks per connection;
//   - goroutines/conn: goroutines per connection;
//   - idle-cpu-%: the server process's CPU time during the 3 idle seconds,
//     in percent of one core (10,000 heartbeats a second);
//   - beats/conn: heartbeats each client received in those 3 seconds
//     (proof that they flowed).
//
// /raw is a hand-written SSE handler (headers, Flush, a time.Ticker writing
// ": heartbeat" comments, waiting for the request's context); /stream is
// a Stream with WithHeartbeat and a rolling write deadline
// (WithWriteTimeout), waiting for its context. The clients are raw TCP
// connections in a child process (one goroutine each, reading). ns/op is
// the whole cycle: connect all, idle, measure, disconnect all.
//
// It needs 10,000 file descriptors and raises the soft limit if it can. A
// benchmark, not a test, so that `go test` does not run it:
//
//	go test -run '^$' -bench '^BenchmarkSSEScale$' -benchtime 1x -count 3 ./sse/
func BenchmarkSSEScale(b *testing.B) {
	scaletest.RaiseNoFile(b, scaleStreams+1000)
	b.Run("raw", func(b *testing.B) {
		sseScale(b, func(active *atomic.Int64) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				h.Set("Content-Type", "text/event-stream")
				h.Set("Cache-Control", "no-cache")
				w.WriteHeader(http.StatusOK)
				f := w.(http.Flusher)
				f.Flush()
				active.Add(1)
				defer active.Add(-1)
				t := time.NewTicker(scaleHeartbeat)
				defer t.Stop()
				for {
					select {
					case <-r.Context().Done():
						return
					case <-t.C:
						if _, err := w.Write(heartbeat); err != nil {
							return
						}
						f.Flush()
					}
				}
			}
		})
	})
	b.Run("stream", func(b *testing.B) {
		sseScale(b, func(active *atomic.Int64) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				s, err := New(w, r, WithHeartbeat(scaleHeartbeat), WithWriteTimeout(10*time.Second))
				if err != nil {
					b.Error(err)
					return
				}
				active.Add(1)
				defer active.Add(-1)
				<-s.Context().Done()
				s.End(nil)
			}
		})
	})
}

func sseScale(b *testing.B, handler func(*atomic.Int64) http.HandlerFunc) {
	var heap, stack, gs, cpu, beats []float64
	for b.Loop() {
		var active atomic.Int64
		ts := httptest.NewServer(handler(&active))
		h0, s0, g0 := scaletest.Mem()

		child := scaletest.StartChild(b, scaleChildEnv+"="+ts.URL, scaleChildN+"="+strconv.Itoa(scaleStreams))
		scaletest.WaitFor(b, "every stream to start", func() bool { return active.Load() == scaleStreams })
		c0 := scaletest.CPUTime(b)
		n0 := child.Count(b)
		t0 := time.Now()
		time.Sleep(scaleHold)
		beats = append(beats, float64(child.Count(b)-n0)/scaleStreams)
		cpu = append(cpu, 100*float64(scaletest.CPUTime(b)-c0)/float64(time.Since(t0)))
		h1, s1, g1 := scaletest.Mem()
		heap = append(heap, float64(h1-h0)/scaleStreams)
		stack = append(stack, float64(s1-s0)/scaleStreams)
		gs = append(gs, float64(g1-g0)/scaleStreams)

		child.Stop(b)
		scaletest.WaitFor(b, "every stream to end", func() bool { return active.Load() == 0 })
		ts.Close()
	}
	b.ReportMetric(scaletest.Median(heap), "heap-B/conn")
	b.ReportMetric(scaletest.Median(stack), "stack-B/conn")
	b.ReportMetric(scaletest.Median(gs), "goroutines/conn")
	b.ReportMetric(scaletest.Median(cpu), "idle-cpu-%")
	b.ReportMetric(scaletest.Median(beats), "beats/conn")
}

// sseScaleClients is the child process: it opens n streams at url over
// raw TCP, reads their response headers, prints "ready", then reads every
// stream (counting heartbeats) until its stdin is closed, printing the
// count so far for every line it reads there; then it closes them all.
func sseScaleClients(url string, n int) int {
	addr := strings.TrimPrefix(url, "http://")
	req := []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n\r\n")
	conns := make([]net.Conn, n)
	var beats atomic.Int64
	var readers sync.WaitGroup
	var failed atomic.Value
	sem := make(chan struct{}, 64)
	var dials sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		dials.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 30*time.Second)
			if err != nil {
				failed.Store(err)
				return
			}
			conns[i] = c
			if _, err := c.Write(req); err != nil {
				failed.Store(err)
				return
			}
			br := bufio.NewReaderSize(c, 512)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					failed.Store(err)
					return
				}
				if line == "\r\n" {
					break
				}
			}
			readers.Go(func() {
				buf := make([]byte, 512)
				for {
					k, err := br.Read(buf)
					beats.Add(int64(bytes.Count(buf[:k], []byte("heartbeat"))))
					if err != nil {
						return
					}
				}
			})
		})
	}
	dials.Wait()
	if err := failed.Load(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() { // "count" until stdin is closed
		fmt.Println(beats.Load())
	}
	for _, c := range conns {
		c.Close()
	}
	readers.Wait()
	return 0
}
