package httpcancel_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
	"github.com/cancelable-go/cancelable/otelcancel"
)

// otStack is the documented order on a real server:
// otelhttp.NewHandler(httpcancel.Middleware(...)(mux), "server"), with
// in-memory providers shared by otelhttp and an otelcancel.Observer.
type otStack struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	ts     *httptest.Server
	// ended receives each request operation once it ended.
	ended chan *cancel.Operation
	// served receives each request's path once otelhttp's handler returned
	// (its span ended, its metrics recorded).
	served chan string
}

func newOtStack(t *testing.T, mux *http.ServeMux, http2 bool, opts ...httpcancel.Option) *otStack {
	t.Helper()
	s := &otStack{
		spans:  tracetest.NewSpanRecorder(),
		reader: sdkmetric.NewManualReader(),
		ended:  make(chan *cancel.Operation, 16),
		served: make(chan string, 16),
	}
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(s.spans))
	s.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.reader))
	obs, err := otelcancel.New(otelcancel.WithTracerProvider(s.tp), otelcancel.WithMeterProvider(s.mp))
	if err != nil {
		t.Fatal(err)
	}
	hooks := cancel.Hooks{OnEnd: func(op *cancel.Operation) { s.ended <- op }}
	mw := httpcancel.Middleware(append(opts,
		httpcancel.WithOperationOptions(cancel.WithObserver(obs), cancel.WithObserver(hooks)))...)
	h := otelhttp.NewHandler(mw(mux), "server",
		otelhttp.WithTracerProvider(s.tp), otelhttp.WithMeterProvider(s.mp))
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { s.served <- r.URL.Path }() // also when the handler aborts
		h.ServeHTTP(w, r)
	})
	s.ts = httptest.NewUnstartedServer(outer)
	if http2 {
		s.ts.EnableHTTP2 = true
		s.ts.StartTLS()
	} else {
		s.ts.Start()
	}
	t.Cleanup(func() {
		s.ts.Close() // waits for the handlers, closes the client's idle connections
		ctx := context.Background()
		if err := s.tp.Shutdown(ctx); err != nil {
			t.Errorf("TracerProvider.Shutdown: %v", err)
		}
		if err := s.mp.Shutdown(ctx); err != nil {
			t.Errorf("MeterProvider.Shutdown: %v", err)
		}
	})
	return s
}

func otWait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		var zero T
		return zero
	}
}

// get sends a GET and returns the status and body; a failed request is a
// test failure.
func (s *otStack) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := s.ts.Client().Get(s.ts.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// done waits until the request to path was served and its operation ended,
// and returns the operation.
func (s *otStack) done(t *testing.T, path string) *cancel.Operation {
	t.Helper()
	if got := otWait(t, s.served, "request served"); got != path {
		t.Fatalf("served %s, want %s", got, path)
	}
	return otWait(t, s.ended, "operation ended")
}

// serverSpan returns the one span of the request: otelhttp's server span,
// which the request operation adopted.
func (s *otStack) serverSpan(t *testing.T) sdktrace.ReadOnlySpan {
	t.Helper()
	ended := s.spans.Ended()
	var names []string
	for _, sp := range ended {
		names = append(names, sp.Name())
	}
	if len(ended) != 1 || len(s.spans.Started()) != 1 {
		t.Fatalf("%d spans started, ended %q; want one, the server span", len(s.spans.Started()), names)
	}
	sp := ended[0]
	if sp.SpanKind() != trace.SpanKindServer || sp.InstrumentationScope().Name != otelhttp.ScopeName {
		t.Fatalf("span %q of kind %v, scope %q; want otelhttp's server span", sp.Name(), sp.SpanKind(), sp.InstrumentationScope().Name)
	}
	return sp
}

// requestMetric returns the one data point of otelhttp's
// http.server.request.duration.
func (s *otStack) requestMetric(t *testing.T) attribute.Set {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := s.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "http.server.request.duration" {
				continue
			}
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok || len(h.DataPoints) != 1 || h.DataPoints[0].Count != 1 {
				t.Fatalf("http.server.request.duration: %+v, want one request", m.Data)
			}
			return h.DataPoints[0].Attributes
		}
	}
	t.Fatal("no http.server.request.duration")
	return attribute.Set{}
}

func otAttr(kvs []attribute.KeyValue, key attribute.Key) (attribute.Value, bool) {
	for i := len(kvs) - 1; i >= 0; i-- { // the last one set wins
		if kvs[i].Key == key {
			return kvs[i].Value, true
		}
	}
	return attribute.Value{}, false
}

func otWantAttr(t *testing.T, what string, kvs []attribute.KeyValue, key attribute.Key, want attribute.Value) {
	t.Helper()
	got, ok := otAttr(kvs, key)
	if !ok {
		t.Errorf("%s: no %s", what, key)
	} else if got != want {
		t.Errorf("%s: %s = %s, want %s", what, key, got.Emit(), want.Emit())
	}
}

// otCancelled checks the server span and otelhttp's request metric of a
// request cancelled with reason and answered (or recorded) with status.
// endAttrs says whether the span must also carry what otelcancel sets when
// the operation ends.
func otCancelled(t *testing.T, s *otStack, op *cancel.Operation, reason cancel.Reason, status int, endAttrs bool) {
	t.Helper()
	if op.Status() != cancel.StatusCancelled || op.Reason() != reason {
		t.Errorf("operation %v/%v, want cancelled/%v", op.Status(), op.Reason(), reason)
	}
	sp := s.serverSpan(t)
	var requested []sdktrace.Event
	for _, e := range sp.Events() {
		if e.Name == otelcancel.EventRequested {
			requested = append(requested, e)
		}
	}
	if len(requested) != 1 {
		t.Errorf("%d %s events, want 1", len(requested), otelcancel.EventRequested)
	} else {
		otWantAttr(t, "event", requested[0].Attributes, otelcancel.KeyReason, attribute.StringValue(reason.String()))
	}
	if sp.Status().Code != codes.Error {
		t.Errorf("span status %v, want Error", sp.Status())
	}
	a := sp.Attributes()
	otWantAttr(t, "span", a, "http.response.status_code", attribute.IntValue(status))
	if endAttrs {
		otWantAttr(t, "span", a, otelcancel.KeyOutcome, attribute.StringValue("cancelled"))
		otWantAttr(t, "span", a, otelcancel.KeyReason, attribute.StringValue(reason.String()))
		otWantAttr(t, "span", a, otelcancel.KeyErrorType, attribute.StringValue(reason.String()))
		otWantAttr(t, "span", a, otelcancel.KeyOperationID, attribute.Int64Value(int64(op.ID())))
	}

	set := s.requestMetric(t)
	m := set.ToSlice()
	otWantAttr(t, "http.server.request.duration", m, otelcancel.KeyErrorType, attribute.StringValue(reason.String()))
	otWantAttr(t, "http.server.request.duration", m, "http.response.status_code", attribute.IntValue(status))
}

// otMux serves the routes of the otelhttp tests. entered receives the
// request operation of /hang once its handler runs.
func otMux(entered chan<- *cancel.Operation) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	// A handler that honours its context, with a route timeout.
	mux.Handle("GET /slow", httpcancel.Timeout(50*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})))
	// A handler waiting for its client to hang up.
	mux.HandleFunc("GET /hang", func(w http.ResponseWriter, r *http.Request) {
		entered <- cancel.FromContext(r.Context())
		<-r.Context().Done()
	})
	return mux
}

var otProtos = []struct {
	name  string
	http2 bool
}{{"HTTP/1.1", false}, {"HTTP/2", true}}

// TestOtelhttpCompleted: a request that completes is one server span,
// status Unset, cancel.outcome=completed, and no error.type in otelhttp's
// metrics.
func TestOtelhttpCompleted(t *testing.T) {
	s := newOtStack(t, otMux(nil), false)
	if status, body := s.get(t, "/ok"); status != http.StatusOK || body != "ok" {
		t.Fatalf("GET /ok: %d %q", status, body)
	}
	op := s.done(t, "/ok")
	if op.Status() != cancel.StatusCompleted {
		t.Errorf("operation %v, want completed", op.Status())
	}
	sp := s.serverSpan(t)
	if sp.Status().Code != codes.Unset {
		t.Errorf("span status %v, want Unset", sp.Status())
	}
	a := sp.Attributes()
	otWantAttr(t, "span", a, otelcancel.KeyOutcome, attribute.StringValue("completed"))
	otWantAttr(t, "span", a, otelcancel.KeyOperationName, attribute.StringValue("GET /ok"))
	for _, k := range []attribute.Key{otelcancel.KeyReason, otelcancel.KeyErrorType} {
		if v, ok := otAttr(a, k); ok {
			t.Errorf("span: %s = %s on a completed request", k, v.Emit())
		}
	}
	if len(sp.Events()) != 0 {
		t.Errorf("span events %v, want none", sp.Events())
	}
	m := s.requestMetric(t)
	if v, ok := m.Value(otelcancel.KeyErrorType); ok {
		t.Errorf("http.server.request.duration: error.type = %s on a completed request", v.Emit())
	}
}

// TestOtelhttpTimeout: a request that times out gets 504, and otelhttp's
// span and metrics say timeout.
func TestOtelhttpTimeout(t *testing.T) {
	for _, p := range otProtos {
		t.Run(p.name, func(t *testing.T) {
			s := newOtStack(t, otMux(nil), p.http2)
			status, body := s.get(t, "/slow")
			if status != http.StatusGatewayTimeout {
				t.Fatalf("GET /slow: %d %q, want 504", status, body)
			}
			op := s.done(t, "/slow")
			// The attributes otelcancel sets when the operation ends are
			// not checked here: the handler and the middleware race on
			// who ends the operation, and when the middleware answers
			// first (most runs), otelhttp's span has ended before (see
			// TestOtelhttpTimeoutHandlerStillRunning).
			otCancelled(t, s, op, cancel.ReasonTimeout, http.StatusGatewayTimeout, false)
		})
	}
}

// TestOtelhttpDisconnect: a client that hangs up is recorded as
// disconnect with 499, on otelhttp's span and metrics.
func TestOtelhttpDisconnect(t *testing.T) {
	for _, p := range otProtos {
		t.Run(p.name, func(t *testing.T) {
			entered := make(chan *cancel.Operation, 1)
			s := newOtStack(t, otMux(entered), p.http2)
			ctx, hangUp := context.WithCancel(context.Background())
			defer hangUp()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.ts.URL+"/hang", nil)
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				resp, err := s.ts.Client().Do(req)
				if err == nil {
					resp.Body.Close()
				}
				errc <- err
			}()
			otWait(t, entered, "handler entered")
			hangUp()
			if err := otWait(t, errc, "client error"); !errors.Is(err, context.Canceled) {
				t.Errorf("client: %v, want context.Canceled", err)
			}
			op := s.done(t, "/hang")
			otCancelled(t, s, op, cancel.ReasonDisconnect, httpcancel.StatusClientClosedRequest, true)
		})
	}
}

// TestOtelhttpRouteName: the span otelhttp names after the route when the
// ServeMux tells it the pattern, and its metrics carry http.route.
func TestOtelhttpRouteName(t *testing.T) {
	s := newOtStack(t, otMux(nil), false)
	s.get(t, "/ok")
	op := s.done(t, "/ok")
	if op.Name() != "GET /ok" {
		t.Errorf("operation %q, want GET /ok", op.Name())
	}
	sp := s.serverSpan(t)
	m := s.requestMetric(t)
	if sp.Name() != "GET /ok" {
		t.Fatalf("otelhttp's span is named %q, not \"GET /ok\" (http.route on metrics: %v): "+
			"the pattern the mux found did not reach otelhttp's request", sp.Name(), m.HasValue("http.route"))
	}
	otWantAttr(t, "metric", m.ToSlice(), "http.route", attribute.StringValue("/ok"))
}

// TestOtelhttpTimeoutHandlerStillRunning: when the middleware answers 504
// while the handler still runs (it ignores its context, or merely has not
// returned yet), otelhttp ends its span before the operation ends, and the
// span must still say how the request ended.
func TestOtelhttpTimeoutHandlerStillRunning(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("GET /stuck", httpcancel.Timeout(20*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // ignores its context
	})))
	s := newOtStack(t, mux, false)
	status, _ := s.get(t, "/stuck")
	if status != http.StatusGatewayTimeout {
		t.Fatalf("GET /stuck: %d, want 504", status)
	}
	if got := otWait(t, s.served, "request served"); got != "/stuck" {
		t.Fatalf("served %s", got)
	}
	close(release)
	op := otWait(t, s.ended, "operation ended")
	sp := s.serverSpan(t)
	if _, ok := otAttr(sp.Attributes(), otelcancel.KeyErrorType); !ok {
		t.Fatal("the server span of a request answered 504 while its handler still ran has no error.type: " +
			"otelhttp ended it before the operation ended, and otelcancel did not record the outcome at the request")
	}
	otCancelled(t, s, op, cancel.ReasonTimeout, http.StatusGatewayTimeout, true)
}

// TestOtelhttpCutStream: a stream cut at its timeout is still one request
// in otelhttp's metrics, with the status it had begun with and error.type
// the reason: on HTTP/1 the middleware cuts it by closing the hijacked
// connection, so otelhttp's handler returns and records it. (HTTP/2 can
// only reset the stream by panicking, which skips otelhttp's recording.)
func TestOtelhttpCutStream(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	s := newOtStack(t, mux, false, httpcancel.WithTimeout(20*time.Millisecond))
	resp, err := s.ts.Client().Get(s.ts.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || string(body) != "first\n" {
		t.Fatalf("read %q, %v; want the first line, then a cut", body, err)
	}
	op := s.done(t, "/stream")
	if op.Reason() != cancel.ReasonTimeout {
		t.Fatalf("reason %v, want timeout", op.Reason())
	}
	m := s.requestMetric(t)
	otWantAttr(t, "http.server.request.duration", m.ToSlice(), otelcancel.KeyErrorType, attribute.StringValue("timeout"))
	otWantAttr(t, "http.server.request.duration", m.ToSlice(), "http.response.status_code", attribute.IntValue(http.StatusOK))
}
