package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
	"github.com/cancelable-go/cancelable/otelcancel"
	"github.com/cancelable-go/cancelable/wscancel"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/contrib/zpages"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// serverConfig configures the demo service. defaultServerConfig gives the
// values of canceldemo serve; tests shorten some.
type serverConfig struct {
	Grace        time.Duration // time requests get to finish at shutdown before they are cancelled
	Timeout      time.Duration // every request's timeout, unless its route says otherwise
	MaxBudget    time.Duration // the longest budget a client may ask for (Request-Timeout)
	OTLPEndpoint string        // where spans go over OTLP/HTTP, if not empty

	SSEHeartbeat    time.Duration // a comment when an SSE stream was silent that long
	SSEWriteTimeout time.Duration // each SSE write must reach the client's socket within this
	WSTick          time.Duration // the websocket's tick interval
	WSIdle          time.Duration // a websocket without messages either way is closed after this
	JobStep         time.Duration // a background job reports progress this often

	Log      io.Writer // where the logs go (text); nil: nowhere
	LogLevel slog.Level

	// Hooks for canceldemo harness (harness*.go); nil in serve.
	extraRoutes    func(s *server, mux *http.ServeMux) // more routes on the mux
	spanProcessors []sdktrace.SpanProcessor            // more span processors (in-memory exporters)
}

func defaultServerConfig() serverConfig {
	return serverConfig{
		Grace:           5 * time.Second,
		Timeout:         10 * time.Second,
		MaxBudget:       30 * time.Second,
		SSEHeartbeat:    5 * time.Second,
		SSEWriteTimeout: 2 * time.Second,
		WSTick:          time.Second,
		WSIdle:          10 * time.Second,
		JobStep:         200 * time.Millisecond,
		LogLevel:        slog.LevelInfo,
	}
}

// server is the demo service: an http.Server whose handler is otelhttp,
// around httpcancel's middleware, around a ServeMux whose route patterns
// name the operations.
type server struct {
	cfg   serverConfig
	http  *http.Server
	drain *httpcancel.Drain
	reg   *cancel.Registry
	tel   *telemetry
	log   *slog.Logger

	// Calls to the service itself (GET /chain), sending the remaining
	// budget and the trace context along.
	chain          *http.Client
	chainTransport *http.Transport
	self           string // the service's own base URL, set by start

	// Background jobs (POST /jobs) are cancelled with jobsStop at shutdown.
	jobsStop   *cancel.Token
	jobsMu     sync.Mutex
	jobsClosed bool
	jobs       sync.WaitGroup

	wsOptions []wscancel.Option

	prevObserver cancel.Observer
	served       chan struct{} // closed when Serve has returned
	serveErr     error
}

// newServer builds the service; start serves it on a listener.
func newServer(ctx context.Context, cfg serverConfig) (*server, error) {
	tel, err := newTelemetry(ctx, cfg.OTLPEndpoint, cfg.spanProcessors...)
	if err != nil {
		return nil, err
	}
	logOut := cfg.Log
	if logOut == nil {
		logOut = io.Discard
	}
	s := &server{
		cfg:      cfg,
		reg:      &cancel.Registry{},
		tel:      tel,
		log:      slog.New(otelcancel.NewLogHandler(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: cfg.LogLevel}))),
		jobsStop: cancel.NewToken(),
		served:   make(chan struct{}),
	}
	s.http = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		// No WriteTimeout: streams set a deadline per write instead.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.drain = httpcancel.OnShutdown(s.http, cfg.Grace)
	s.chainTransport = &http.Transport{
		Proxy:               nil, // the service calls itself
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
	}
	s.chain = &http.Client{
		// otelhttp starts the client span and sends the trace context;
		// httpcancel.Transport sends the time left to the operation.
		Transport: otelhttp.NewTransport(httpcancel.Transport(s.chainTransport),
			otelhttp.WithTracerProvider(tel.tracerProvider),
			otelhttp.WithMeterProvider(tel.prom.MeterProvider()),
			otelhttp.WithPropagators(tel.propagator),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
				return "call " + r.Method + " " + r.URL.Path // a fixed path here: no IDs in span names
			})),
	}
	s.wsOptions = []wscancel.Option{
		wscancel.WithHeartbeat(5*time.Second, 15*time.Second),
		wscancel.WithIdleTimeout(cfg.WSIdle),
		wscancel.WithCloseTimeout(2 * time.Second),
		wscancel.WithProgress(), // the ticks are progress reports, sent to the peer
		wscancel.WithReadLimit(4096),
		wscancel.WithOperationOptions(cancel.WithRegistry(s.reg)),
	}

	mw, err := httpcancel.New(
		httpcancel.WithRegistry(s.reg),
		httpcancel.WithClientBudget("", cfg.MaxBudget),
		httpcancel.WithDrain(s.drain),
		httpcancel.WithTimeout(cfg.Timeout),
	)
	if err != nil {
		return nil, errors.Join(err, tel.shutdown(ctx))
	}
	admin, err := httpcancel.NewAdmin(s.reg, httpcancel.AdminRefresh(2*time.Second))
	if err != nil {
		return nil, errors.Join(err, tel.shutdown(ctx))
	}
	app := otelhttp.NewHandler(mw(s.routes()), serviceName,
		otelhttp.WithTracerProvider(tel.tracerProvider),
		otelhttp.WithMeterProvider(tel.prom.MeterProvider()),
		otelhttp.WithPropagators(tel.propagator),
		otelhttp.WithSpanNameFormatter(spanName),
	)
	// The operations admin is served in front of the middleware and the
	// tracing: as operations of their own, its requests (the page
	// refreshes every 2 s) would fill the history it shows. Behind your
	// own authentication in a real service: it can cancel anything.
	admin = http.StripPrefix("/admin", admin)
	s.http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/admin/") {
			admin.ServeHTTP(w, r)
			return
		}
		app.ServeHTTP(w, r)
	})

	// Every operation, in every package, reports to the observer.
	s.prevObserver = cancel.DefaultObserver()
	cancel.SetDefaultObserver(tel.observer)
	return s, nil
}

// spanName names server spans after their route, once the ServeMux has
// found it ("GET /work"), and after the method until then: "HTTP _OTHER"
// for a method outside the standard ones, which clients choose freely
// (zpages keeps samples per span name).
func spanName(_ string, r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return "HTTP " + r.Method
	}
	return "HTTP _OTHER"
}

// routes is the ServeMux: its patterns name the request operations and
// the spans.
func (s *server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /work", s.work)
	mux.Handle("GET /slow", httpcancel.Timeout(250*time.Millisecond, http.HandlerFunc(s.slow)))
	mux.Handle("GET /stubborn", httpcancel.Timeout(250*time.Millisecond, http.HandlerFunc(s.stubborn)))
	mux.HandleFunc("GET /chain", s.chainWork)
	// Streams have no timeout of their own: they end when their client
	// leaves, stops reading or goes silent, or at shutdown.
	mux.Handle("GET /events", httpcancel.Timeout(0, http.HandlerFunc(s.events)))
	mux.Handle("GET /ws", httpcancel.Timeout(0, http.HandlerFunc(s.websocket)))
	mux.HandleFunc("POST /jobs", s.startJob)
	mux.Handle("GET /metrics", s.tel.prom.Handler())
	mux.Handle("GET /debug/tracez", zpages.NewTracezHandler(s.tel.zpages))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	if s.cfg.extraRoutes != nil { // the harness's routes
		s.cfg.extraRoutes(s, mux)
	}
	return mux
}

// start serves on ln until shutdown.
func (s *server) start(ln net.Listener) {
	s.self = "http://" + dialAddr(ln.Addr())
	go func() {
		defer close(s.served)
		if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr = err
		}
	}()
}

// dialAddr is the address to reach a listener at: loopback for a
// listener on every address.
func dialAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// shutdown stops the service: no new connections; requests in flight get
// the grace period, then are cancelled with reason shutdown (streams get
// their last event or close frame); background jobs get the same grace.
// It returns once every operation has ended. The telemetry is still there
// afterwards, for close to flush.
func (s *server) shutdown(ctx context.Context) error {
	// The service's connections to itself first: one it dialled but never
	// used is new to the server, and Shutdown would wait 5s for it.
	s.chainTransport.CloseIdleConnections()
	// Shutdown waits for the handlers of the connections it tracks; the
	// drain cancels those still running after the grace (reason shutdown).
	err := s.http.Shutdown(ctx)
	// Shutdown does not wait for handlers that hijacked their connection
	// (websockets): the drain does, once they have sent their close frame.
	err = errors.Join(err, s.drain.Wait(ctx))

	// Jobs get the grace too, then are told why they stop.
	s.jobsMu.Lock()
	s.jobsClosed = true
	s.jobsMu.Unlock()
	jobsDone := make(chan struct{})
	go func() { s.jobs.Wait(); close(jobsDone) }()
	select {
	case <-jobsDone:
	case <-s.drain.Done():
	case <-ctx.Done():
	}
	s.jobsStop.Cancel(cancel.ReasonShutdown, "server shutting down")
	select {
	case <-jobsDone:
	case <-ctx.Done():
	}

	// Every operation of the registry (requests, streams, websockets, jobs)
	// has ended, or is about to: wait for the last ones.
	if !s.waitIdle(ctx) {
		err = errors.Join(err, s.http.Close())
		if n := s.reg.Stats().Active; n > 0 {
			err = errors.Join(err, fmt.Errorf("%d operations still running at the end of shutdown", n))
		}
	}
	s.chainTransport.CloseIdleConnections()
	<-s.served
	return errors.Join(err, s.serveErr)
}

// close flushes the telemetry and gives the default observer back.
func (s *server) close(ctx context.Context) error {
	cancel.SetDefaultObserver(s.prevObserver)
	return s.tel.shutdown(ctx)
}

// waitIdle waits until no operation of the registry runs, and tells
// whether that happened before ctx ended.
func (s *server) waitIdle(ctx context.Context) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.reg.Stats().Active > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	}
	return true
}
