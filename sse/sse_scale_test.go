package sse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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
	raiseNoFile(b, scaleStreams+1000)
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
		h0, s0, g0 := scaleMem()

		child := startScaleChild(b, ts.URL, scaleStreams)
		waitFor(b, "every stream to start", func() bool { return active.Load() == scaleStreams })
		c0 := cpuTime(b)
		n0 := child.count(b)
		t0 := time.Now()
		time.Sleep(scaleHold)
		beats = append(beats, float64(child.count(b)-n0)/scaleStreams)
		cpu = append(cpu, 100*float64(cpuTime(b)-c0)/float64(time.Since(t0)))
		h1, s1, g1 := scaleMem()
		heap = append(heap, float64(h1-h0)/scaleStreams)
		stack = append(stack, float64(s1-s0)/scaleStreams)
		gs = append(gs, float64(g1-g0)/scaleStreams)

		child.stop(b)
		waitFor(b, "every stream to end", func() bool { return active.Load() == 0 })
		ts.Close()
	}
	b.ReportMetric(scaleMedian(heap), "heap-B/conn")
	b.ReportMetric(scaleMedian(stack), "stack-B/conn")
	b.ReportMetric(scaleMedian(gs), "goroutines/conn")
	b.ReportMetric(scaleMedian(cpu), "idle-cpu-%")
	b.ReportMetric(scaleMedian(beats), "beats/conn")
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

// scaleChild is a running client process.
type scaleChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// startScaleChild starts the clients' process and waits until all n
// connections are open.
func startScaleChild(b *testing.B, url string, n int) *scaleChild {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), scaleChildEnv+"="+url, scaleChildN+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &scaleChild{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	if !c.out.Scan() || c.out.Text() != "ready" {
		stdin.Close()
		cmd.Wait()
		b.Fatalf("client process: %q, want ready", c.out.Text())
	}
	return c
}

// stop has the child close its connections and waits for it to exit.
func (c *scaleChild) stop(b *testing.B) {
	b.Helper()
	c.stdin.Close()
	for c.out.Scan() { // until the child exits
	}
	if err := c.cmd.Wait(); err != nil {
		b.Fatalf("client process: %v", err)
	}
}

// count returns how many heartbeats the child's connections received so far.
func (c *scaleChild) count(b *testing.B) int64 {
	b.Helper()
	if _, err := io.WriteString(c.stdin, "count\n"); err != nil {
		b.Fatal(err)
	}
	if !c.out.Scan() {
		b.Fatal("client process: no count")
	}
	n, err := strconv.ParseInt(c.out.Text(), 10, 64)
	if err != nil {
		b.Fatalf("client process: %v", err)
	}
	return n
}

// raiseNoFile raises the soft limit of open files to at least n, or skips
// the benchmark when the hard limit is lower.
func raiseNoFile(b *testing.B, n uint64) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Fatal(err)
	}
	if l.Cur >= n {
		return
	}
	if l.Max < n {
		b.Skipf("needs %d open files; the hard limit is %d", n, l.Max)
	}
	l.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Skipf("needs %d open files: %v", n, err)
	}
}

// waitFor waits up to a minute for cond.
func waitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scaleMem returns the live heap, the goroutine stacks in use and the
// number of goroutines, after a full collection.
func scaleMem() (heap, stack, goroutines int64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.StackInuse), int64(runtime.NumGoroutine())
}

// cpuTime returns the CPU time the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func scaleMedian(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
