package wscancel_test

import (
	"bufio"
	"context"
	"fmt"
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

	"github.com/coder/websocket"

	"github.com/cancelable-go/cancelable/wscancel"
)

// The clients of BenchmarkWSScale run in a child process (this test
// binary, started again with wsScaleChildEnv set), so that the benchmark's
// process holds only the server side of the connections and its memory
// and goroutines are the server's alone.
const (
	wsScaleChildEnv = "WS_SCALE_CHILD_URL" // the URL the child connects to
	wsScaleChildN   = "WS_SCALE_CHILD_N"   // how many connections
)

func init() {
	if url := os.Getenv(wsScaleChildEnv); url != "" {
		n, _ := strconv.Atoi(os.Getenv(wsScaleChildN))
		os.Exit(wsScaleClients(url, n))
	}
}

const (
	wsScaleConns     = 10_000
	wsScaleHeartbeat = time.Second
	wsScaleLimit     = 5 * time.Second
	wsScaleHold      = 3 * time.Second // 3 pings on every connection
)

// BenchmarkWSScale holds 10,000 concurrent websocket connections open over
// loopback, idle but for a ping from the server every second (answered by
// the client's pong), and reports what each costs the server, as medians
// of the iterations:
//
//   - heap-B/conn: live heap per connection after a full collection
//     (net/http's hijacked connection and buffers included);
//   - stack-B/conn: goroutine stacks per connection;
//   - goroutines/conn: goroutines per connection;
//   - idle-cpu-%: the server process's CPU time during the 3 idle seconds,
//     in percent of one core (10,000 pings a second);
//   - pings/conn: pings each client received in those 3 seconds (proof
//     that they flowed).
//
// /raw is coder/websocket alone, the way its documentation keeps a
// connection alive: CloseRead (a goroutine reading, for the pongs and the
// peer's close) and a time.Ticker calling Ping with a timeout. /wscancel is
// a Handler with WithHeartbeat(1s, 5s) whose function waits for its
// context. The clients are coder/websocket connections in a child process
// (a goroutine each, reading: that is how coder/websocket answers pings),
// which close normally at the end. ns/op is the whole cycle: connect all,
// idle, measure, disconnect all.
//
// It needs 10,000 file descriptors and raises the soft limit if it can. A
// benchmark, not a test, so that `go test` does not run it:
//
//	go test -run '^$' -bench '^BenchmarkWSScale$' -benchtime 1x -count 3 ./wscancel/
func BenchmarkWSScale(b *testing.B) {
	scaletest.RaiseNoFile(b, wsScaleConns+1000)
	b.Run("raw", func(b *testing.B) {
		wsScale(b, func(active *atomic.Int64) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := websocket.Accept(w, r, nil)
				if err != nil {
					return
				}
				defer c.CloseNow()
				active.Add(1)
				defer active.Add(-1)
				ctx := c.CloseRead(r.Context())
				t := time.NewTicker(wsScaleHeartbeat)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						pctx, cancelPing := context.WithTimeout(ctx, wsScaleLimit)
						err := c.Ping(pctx)
						cancelPing()
						if err != nil {
							return
						}
					}
				}
			})
		})
	})
	b.Run("wscancel", func(b *testing.B) {
		wsScale(b, func(active *atomic.Int64) http.Handler {
			return wscancel.Handler(func(ctx context.Context, _ *wscancel.Conn) error {
				active.Add(1)
				defer active.Add(-1)
				<-ctx.Done()
				return nil
			}, wscancel.WithHeartbeat(wsScaleHeartbeat, wsScaleLimit))
		})
	})
}

func wsScale(b *testing.B, handler func(*atomic.Int64) http.Handler) {
	var heap, stack, gs, cpu, pings []float64
	for b.Loop() {
		var active atomic.Int64
		ts := httptest.NewServer(handler(&active))
		h0, s0, g0 := scaletest.Mem()

		child := scaletest.StartChild(b, wsScaleChildEnv+"=ws"+strings.TrimPrefix(ts.URL, "http"), wsScaleChildN+"="+strconv.Itoa(wsScaleConns))
		scaletest.WaitFor(b, "every connection to start", func() bool { return active.Load() == wsScaleConns })
		c0 := scaletest.CPUTime(b)
		n0 := child.Count(b)
		t0 := time.Now()
		time.Sleep(wsScaleHold)
		pings = append(pings, float64(child.Count(b)-n0)/wsScaleConns)
		cpu = append(cpu, 100*float64(scaletest.CPUTime(b)-c0)/float64(time.Since(t0)))
		h1, s1, g1 := scaletest.Mem()
		heap = append(heap, float64(h1-h0)/wsScaleConns)
		stack = append(stack, float64(s1-s0)/wsScaleConns)
		gs = append(gs, float64(g1-g0)/wsScaleConns)

		child.Stop(b)
		scaletest.WaitFor(b, "every connection to end", func() bool { return active.Load() == 0 })
		ts.Close()
	}
	b.ReportMetric(scaletest.Median(heap), "heap-B/conn")
	b.ReportMetric(scaletest.Median(stack), "stack-B/conn")
	b.ReportMetric(scaletest.Median(gs), "goroutines/conn")
	b.ReportMetric(scaletest.Median(cpu), "idle-cpu-%")
	b.ReportMetric(scaletest.Median(pings), "pings/conn")
}

// wsScaleClients is the child process: it opens n websocket connections
// to url, prints "ready", then reads them all (answering and counting
// pings) until its stdin is closed, printing the count so far for every
// line it reads there; then it closes them all normally.
func wsScaleClients(url string, n int) int {
	conns := make([]*websocket.Conn, n)
	var pings atomic.Int64
	var readers sync.WaitGroup
	var failed atomic.Value
	client := &http.Client{Transport: &http.Transport{}}
	opts := &websocket.DialOptions{
		HTTPClient: client,
		OnPingReceived: func(context.Context, []byte) bool {
			pings.Add(1)
			return true // answer it
		},
	}
	sem := make(chan struct{}, 64)
	var dials sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		dials.Go(func() {
			defer func() { <-sem }()
			ctx, cancelDial := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancelDial()
			c, _, err := websocket.Dial(ctx, url, opts)
			if err != nil {
				failed.Store(err)
				return
			}
			conns[i] = c
			readers.Go(func() {
				for {
					if _, _, err := c.Read(context.Background()); err != nil {
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
		fmt.Println(pings.Load())
	}
	var closes sync.WaitGroup
	for _, c := range conns {
		sem <- struct{}{}
		closes.Go(func() {
			defer func() { <-sem }()
			c.Close(websocket.StatusNormalClosure, "")
		})
	}
	closes.Wait()
	readers.Wait()
	return 0
}
