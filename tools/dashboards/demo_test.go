package dashboards

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
	"github.com/cancelable-go/cancelable/otelcancel"
)

// demo is a stand-in for `canceldemo serve`: the library's real telemetry
// (otelcancel's Prometheus exposition, otelhttp outside httpcancel) on a
// loopback server, and a client producing each kind of traffic the
// dashboards show.
type demo struct {
	addr   string // host:port of the server; /metrics is served there
	url    string
	client *http.Client

	// started is sent the request operation of each request to /hang and
	// /job once its handler runs.
	started chan *cancel.Operation
}

// Route patterns of the demo (the operations are named after them).
const (
	routeFast = "GET /fast"
	routeSlow = "GET /slow"
	routeJob  = "GET /job"
	routeHang = "GET /hang"
	routeWS   = "GET /ws"
	routeSSE  = "GET /events"
	// A route that answers 503 itself (a dependency is down): a failed
	// request, not a cancelled one.
	routeBusy = "GET /busy"
)

// Events and counts the websocket and SSE wrappers record (the contract of
// the package documentation of otelcancel), emitted here by hand so the test depends only on it.
const (
	evWSOpen   = "ws.open"
	evWSClose  = "ws.close"
	evSSEOpen  = "sse.open"
	evSSEClose = "sse.close"
	cntWSIn    = "ws.messages.in"
	cntWSOut   = "ws.messages.out"
	cntSSE     = "sse.events"
)

// startDemo serves the demo on 127.0.0.1 until the end of the test.
func startDemo(t *testing.T) *demo {
	t.Helper()
	prom, err := otelcancel.NewPrometheus()
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	obs, err := otelcancel.New(otelcancel.WithTracerProvider(tp), otelcancel.WithMeterProvider(prom.MeterProvider()))
	if err != nil {
		t.Fatal(err)
	}
	d := &demo{started: make(chan *cancel.Operation, 16)}

	mux := http.NewServeMux()
	mux.HandleFunc(routeFast, func(w http.ResponseWriter, r *http.Request) {
		op := cancel.FromContext(r.Context())
		for i := range 3 {
			op.Progress("step", slog.Int("step", i))
		}
		io.WriteString(w, "ok\n")
	})
	// A handler that ignores its context for 20ms after its timeout: the
	// stop latency the dashboards and alerts watch.
	mux.Handle(routeSlow, httpcancel.Timeout(30*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cancel.FromContext(r.Context()).Progress("working")
		<-r.Context().Done()
		time.Sleep(20 * time.Millisecond)
	})))
	// Requests an operator cancels (Operation.Cancel, as the admin handler
	// does), and requests whose client hangs up.
	wait := func(w http.ResponseWriter, r *http.Request) {
		d.started <- cancel.FromContext(r.Context())
		<-r.Context().Done()
	}
	mux.HandleFunc(routeBusy, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "dependency down", http.StatusServiceUnavailable)
	})
	mux.HandleFunc(routeJob, wait)
	mux.HandleFunc(routeHang, wait)
	// A websocket connection and an SSE stream, each its own operation
	// inside the request's, reporting what wscancel and sse report.
	mux.HandleFunc(routeWS, func(w http.ResponseWriter, r *http.Request) {
		ctx, op := cancel.Start(r.Context(), "ws "+r.Pattern, cancel.WithObserver(obs))
		op.Event(evWSOpen, slog.String("ws.subprotocol", ""))
		op.Count(cntWSIn, 3)
		op.Count(cntWSOut, 5)
		op.Cancel(cancel.ReasonShutdown, "server draining")
		op.Event(evWSClose, slog.Int("ws.close.code", 1001), slog.String("ws.close.by", "local"),
			slog.String("cancel.reason", cancel.ReasonShutdown.String()))
		op.End(ctx.Err())
	})
	mux.HandleFunc(routeSSE, func(w http.ResponseWriter, r *http.Request) {
		ctx, op := cancel.Start(r.Context(), "sse "+r.Pattern, cancel.WithObserver(obs))
		op.Event(evSSEOpen, slog.Bool("sse.resumed", false))
		op.Count(cntSSE, 4)
		op.Cancel(cancel.ReasonTimeout, "stream lifetime")
		op.Event(evSSEClose, slog.String("cancel.reason", cancel.ReasonTimeout.String()), slog.Int64("sse.events", 4))
		op.End(ctx.Err())
	})

	// Prometheus scrapes are not traffic: /metrics is served in front of
	// the instrumented handler. Not by an outer ServeMux: its pattern ("/")
	// would be the http_route otelhttp records for every request.
	instrumented := otelhttp.NewHandler(
		httpcancel.Middleware(httpcancel.WithOperationOptions(cancel.WithObserver(obs)))(mux),
		"canceldemo",
		otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(prom.MeterProvider()),
	)
	metrics := prom.Handler()
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			metrics.ServeHTTP(w, r)
			return
		}
		instrumented.ServeHTTP(w, r)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: root, ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("demo server: %v", err)
		}
	})
	d.addr = l.Addr().String()
	d.url = "http://" + d.addr
	d.client = &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("demo server Shutdown: %v", err)
		}
		wg.Wait()
		d.client.CloseIdleConnections()
		if err := tp.Shutdown(ctx); err != nil {
			t.Errorf("TracerProvider.Shutdown: %v", err)
		}
		if err := prom.Shutdown(ctx); err != nil {
			t.Errorf("Prometheus.Shutdown: %v", err)
		}
	})
	return d
}

// get requests path and returns the status.
func (d *demo) get(ctx context.Context, t *testing.T, path string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// What one round of traffic makes: the requests, and the operations (one
// per request, and the websocket connection and SSE stream inside theirs).
const (
	requestsPerRound = 7
	opsPerRound      = requestsPerRound + 2
)

// traffic makes n requests of each kind: completed with progress, timed
// out (504), cancelled by an operator (503), abandoned by the client
// (499), a websocket closed by a shutdown and an SSE stream ended by its
// lifetime.
func (d *demo) traffic(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	want := func(path string, got, want int) {
		t.Helper()
		if got != want {
			t.Errorf("GET %s: status %d, want %d", path, got, want)
		}
	}
	for range n {
		want("/fast", d.get(ctx, t, "/fast"), http.StatusOK)
		want("/slow", d.get(ctx, t, "/slow"), http.StatusGatewayTimeout)
		want("/ws", d.get(ctx, t, "/ws"), http.StatusOK)
		want("/events", d.get(ctx, t, "/events"), http.StatusOK)
		want("/busy", d.get(ctx, t, "/busy"), http.StatusServiceUnavailable)

		// An operator cancels the job once it runs.
		var wg sync.WaitGroup
		wg.Go(func() { (<-d.started).Cancel(cancel.ReasonManual, "stopped by operator") })
		want("/job", d.get(ctx, t, "/job"), http.StatusServiceUnavailable)
		wg.Wait()

		// The client hangs up once the handler runs.
		hctx, hangUp := context.WithCancel(ctx)
		wg.Go(func() {
			op := <-d.started
			hangUp()
			<-op.Done()
		})
		if got := d.get(hctx, t, "/hang"); got != 0 {
			t.Errorf("GET /hang: status %d, want the request cancelled by the client", got)
		}
		wg.Wait()
	}
}
