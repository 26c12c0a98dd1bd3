package httpcancel_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
	"github.com/cancelable-go/cancelable/otelcancel"
)

// The middleware goes inside otelhttp's handler, and an otelcancel.Observer
// records the request operations: each request operation adopts otelhttp's
// server span, so a request that times out is one span with status Error and
// a cancel.requested event, and otelhttp's own request metrics get
// error.type = "timeout".
func ExampleMiddleware_otelhttp() {
	// In-memory telemetry, to print it; a program has its exporters here
	// (or the global providers, the default of both otelhttp and otelcancel).
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	obs, err := otelcancel.New(otelcancel.WithTracerProvider(tp), otelcancel.WithMeterProvider(mp))
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /report", httpcancel.Timeout(10*time.Millisecond, http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // a report that takes too long
		})))
	handler := otelhttp.NewHandler(
		httpcancel.Middleware(httpcancel.WithOperationOptions(cancel.WithObserver(obs)))(mux),
		"server", otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp))

	srv := httptest.NewServer(handler)
	resp, err := srv.Client().Get(srv.URL + "/report")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	srv.Close() // waits for the request's handler
	fmt.Println("client got", resp.StatusCode, resp.Header.Get("Content-Type"))

	for _, s := range spans.Ended() {
		fmt.Println("span:", s.SpanKind(), s.Status().Code)
		for _, e := range s.Events() {
			for _, a := range e.Attributes {
				if a.Key == otelcancel.KeyReason {
					fmt.Println("event:", e.Name, a.Key, a.Value.Emit())
				}
			}
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == "http.server.request.duration" {
				for _, dp := range h.DataPoints {
					status, _ := dp.Attributes.Value("http.response.status_code")
					errorType, _ := dp.Attributes.Value("error.type")
					fmt.Println("metric:", m.Name, status.Emit(), errorType.Emit())
				}
			}
		}
	}
	// Output:
	// client got 504 application/problem+json
	// span: server Error
	// event: cancel.requested cancel.reason timeout
	// metric: http.server.request.duration 504 timeout
}
