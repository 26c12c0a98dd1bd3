package wscancel_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/wscancel"
)

// BenchmarkWS measures one echo over loopback: the client writes a
// 128-byte message, the server echoes it, the client reads it. raw is
// coder/websocket alone on the server; wscancel is the same handler with
// the wrapper (an operation, its reader goroutine and timers, an
// EventObserver counting the messages). interleaved alternates the two in
// batches of 50 echoes and reports the median of the batches' ratios: on a
// busy machine, where two benchmarks run one after the other see
// different loads, it is the fair comparison.
func BenchmarkWS(b *testing.B) {
	raw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.Background() // the cheapest: no context to watch
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, data); err != nil {
				return
			}
		}
	})
	counting := cancel.WithObserver(cancel.Hooks{OnCount: func(*cancel.Operation, string, int64) {}})
	wrapped := wscancel.Handler(echo, wscancel.WithOperationOptions(counting))

	rawConn := benchClient(b, raw)
	wsConn := benchClient(b, wrapped)
	msg := []byte(strings.Repeat("m", 128))
	echoOnce := func(b *testing.B, c *websocket.Conn) {
		ctx := context.Background()
		if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}

	for _, bc := range []struct {
		name string
		c    *websocket.Conn
	}{{"raw", rawConn}, {"wscancel", wsConn}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				echoOnce(b, bc.c)
			}
		})
	}
	b.Run("interleaved", func(b *testing.B) {
		const batch = 50
		var took [2]time.Duration
		var ratios []float64
		n := 0
		for b.Loop() {
			var pair [2]time.Duration
			for i, c := range []*websocket.Conn{rawConn, wsConn} {
				start := time.Now()
				for range batch {
					echoOnce(b, c)
				}
				pair[i] = time.Since(start)
				took[i] += pair[i]
			}
			ratios = append(ratios, float64(pair[1])/float64(pair[0]))
			n += batch
		}
		slices.Sort(ratios)
		b.ReportMetric(float64(took[0].Nanoseconds())/float64(n), "raw-ns/msg")
		b.ReportMetric(float64(took[1].Nanoseconds())/float64(n), "wscancel-ns/msg")
		b.ReportMetric(ratios[len(ratios)/2], "median-ratio")
	})
}

func benchClient(b *testing.B, h http.Handler) *websocket.Conn {
	ts := httptest.NewServer(h)
	b.Cleanup(ts.Close)
	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(ts.URL, "http"), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(websocket.StatusNormalClosure, "") })
	return c
}
