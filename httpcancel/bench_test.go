package httpcancel_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
	"github.com/cancelable-go/cancelable/otelcancel"
)

// discardExporter exports spans nowhere: the benchmarks measure recording,
// not a network.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// benchProviders returns an SDK tracer provider sampling everything with a
// discarding exporter, and a meter provider with a manual reader.
func benchProviders(b *testing.B) (*sdktrace.TracerProvider, *sdkmetric.MeterProvider) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSyncer(discardExporter{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		tp.Shutdown(context.Background())
		mp.Shutdown(context.Background())
	})
	return tp, mp
}

var helloBody = []byte("hello, world\n")

// hello is the trivial handler every variant wraps.
func hello(w http.ResponseWriter, _ *http.Request) { w.Write(helloBody) }

// benchCase is one way of serving hello.
type benchCase struct {
	name  string
	build func(b *testing.B, h http.Handler) http.Handler
}

func otelhttpHandler(b *testing.B, h http.Handler) http.Handler {
	tp, mp := benchProviders(b)
	return otelhttp.NewHandler(h, "bench", otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp))
}

var benchCases = []benchCase{
	{"bare", func(_ *testing.B, h http.Handler) http.Handler { return h }},
	{"otelhttp", otelhttpHandler},
	{"otelhttp+httpcancel", func(b *testing.B, h http.Handler) http.Handler {
		tp, mp := benchProviders(b)
		obs, err := otelcancel.New(otelcancel.WithTracerProvider(tp), otelcancel.WithMeterProvider(mp))
		if err != nil {
			b.Fatal(err)
		}
		inner := httpcancel.Middleware(httpcancel.WithOperationOptions(cancel.WithObserver(obs)))(h)
		return otelhttp.NewHandler(inner, "bench", otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp))
	}},
	{"httpcancel", func(_ *testing.B, h http.Handler) http.Handler { return httpcancel.Middleware()(h) }},
	{"httpcancel+timeout", func(_ *testing.B, h http.Handler) http.Handler {
		return httpcancel.Middleware(httpcancel.WithTimeout(time.Minute))(h)
	}},
	{"timeouthandler", func(_ *testing.B, h http.Handler) http.Handler {
		return http.TimeoutHandler(h, time.Minute, "")
	}},
}

// cpuTime returns the CPU time the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs body b.N times and reports, beside ns/op, the CPU time of the
// whole process (client and server) per operation, GC included: steadier
// than wall time on a shared machine.
func loop(b *testing.B, body func()) {
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		body()
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// loopback serves h on a real loopback server and returns a keep-alive
// client for it; both are closed when the benchmark ends.
func loopback(b *testing.B, h http.Handler) (*httptest.Server, *http.Client) {
	ts := httptest.NewServer(h)
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	b.Cleanup(func() {
		tr.CloseIdleConnections()
		ts.Close()
	})
	return ts, &http.Client{Transport: tr}
}

// get sends one GET and reads and closes the body, so that the connection
// goes back to the pool.
func get(b *testing.B, c *http.Client, url string, want int) {
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != want {
		b.Fatalf("status %d, want %d", resp.StatusCode, want)
	}
}

// BenchmarkMiddleware serves a trivial handler through a real loopback
// server with keep-alive, one request at a time (sequential, one
// connection), bare and behind each middleware. The client's own time and
// allocations are in every figure alike.
func BenchmarkMiddleware(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			ts, c := loopback(b, bc.build(b, http.HandlerFunc(hello)))
			url := ts.URL + "/" + bc.name
			get(b, c, url, http.StatusOK) // dial outside the measurement
			loop(b, func() { get(b, c, url, http.StatusOK) })
		})
	}
}

// BenchmarkMiddlewareHandler is BenchmarkMiddleware without the network:
// ServeHTTP called directly with a recorder (one allocation per request
// here) and a prebuilt request. The server side's own cost. As net/http
// does, each request gets a context of its own, cancelled once the handler
// returned (two allocations here): the middleware watches it, and watching
// a cancelable context costs more than watching context.Background.
func BenchmarkMiddlewareHandler(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			h := bc.build(b, http.HandlerFunc(hello))
			req := httptest.NewRequest(http.MethodGet, "/"+bc.name, nil)
			loop(b, func() {
				ctx, done := context.WithCancel(context.Background())
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req.WithContext(ctx))
				done()
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			})
		})
	}
}

// percentiles reports the p50 and p99 (nearest rank) of samples, in
// microseconds.
func percentiles(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	at := func(p int) time.Duration {
		i := (p*len(samples)+99)/100 - 1
		return samples[max(i, 0)]
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(at(50)), "p50-us")
	b.ReportMetric(us(at(99)), "p99-us")
	b.ReportMetric(us(samples[len(samples)-1]), "max-us")
	b.ReportMetric(float64(len(samples)), "samples")
}

// BenchmarkTimeoutLateness measures how late after the deadline the answer
// to a request whose handler ignores its context reaches the client: the
// time the response's headers arrive minus (the time the request was sent
// + the timeout). One sample per iteration; run with -benchtime 200x.
func BenchmarkTimeoutLateness(b *testing.B) {
	const timeout = 20 * time.Millisecond
	cases := []struct {
		name   string
		status int
		build  func(h http.Handler) http.Handler
	}{
		{"httpcancel", http.StatusGatewayTimeout, func(h http.Handler) http.Handler {
			mux := http.NewServeMux()
			mux.Handle("GET /slow", httpcancel.Timeout(timeout, h))
			return httpcancel.Middleware()(mux)
		}},
		{"timeouthandler", http.StatusServiceUnavailable, func(h http.Handler) http.Handler {
			mux := http.NewServeMux()
			mux.Handle("GET /slow", http.TimeoutHandler(h, timeout, ""))
			return mux
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			// The handler ignores its context and stays until the end. The
			// client counts it in before sending its request: nothing orders
			// the handler's start before the answer at the deadline.
			release := make(chan struct{})
			var handlers sync.WaitGroup
			ignoring := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				defer handlers.Done()
				<-release
			})
			ts, c := loopback(b, tc.build(ignoring))
			b.Cleanup(func() { // runs before loopback's cleanup
				close(release)
				handlers.Wait()
			})
			get(b, c, ts.URL+"/", http.StatusNotFound) // dial outside the measurement
			url := ts.URL + "/slow"
			var samples []time.Duration
			for b.Loop() {
				handlers.Add(1)
				start := time.Now()
				resp, err := c.Get(url)
				arrived := time.Now()
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.status {
					b.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
				}
				samples = append(samples, arrived.Sub(start.Add(timeout)))
			}
			percentiles(b, samples)
		})
	}
	// The floor: how late a time.Sleep of the same length wakes up in this
	// process (the runtime's timer resolution on this machine).
	b.Run("sleep", func(b *testing.B) {
		var samples []time.Duration
		for b.Loop() {
			start := time.Now()
			time.Sleep(timeout)
			samples = append(samples, time.Since(start)-timeout)
		}
		percentiles(b, samples)
	})
}

// BenchmarkDisconnectDetection measures how long after a client hangs up
// the handler's context ends: a raw HTTP/1.1 GET on a fresh connection, the
// client closing it as soon as the handler started, and the handler waiting
// on its context. One sample per iteration; run with -benchtime 200x.
func BenchmarkDisconnectDetection(b *testing.B) {
	cases := []struct {
		name string
		wrap func(http.Handler) http.Handler
	}{
		{"bare", func(h http.Handler) http.Handler { return h }}, // net/http alone
		{"httpcancel", httpcancel.Middleware()},
		{"httpcancel+timeout", httpcancel.Middleware(httpcancel.WithTimeout(time.Minute))},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			started := make(chan struct{})
			ended := make(chan time.Time)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				<-r.Context().Done()
				ended <- time.Now()
			})
			ts := httptest.NewServer(tc.wrap(h))
			defer ts.Close()
			addr := ts.Listener.Addr().String()
			var samples []time.Duration
			for b.Loop() {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.WriteString(conn, "GET /gone HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
					b.Fatal(err)
				}
				<-started
				closed := time.Now()
				conn.Close()
				select {
				case end := <-ended:
					samples = append(samples, end.Sub(closed))
				case <-time.After(10 * time.Second):
					b.Fatal("the handler's context did not end within 10s of the client hanging up")
				}
			}
			percentiles(b, samples)
		})
	}
}
