package otelcancel_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/otelcancel"
)

// Wire tracing and a /metrics endpoint once at start-up: every operation
// then becomes a span and a count by outcome and reason.
func Example() {
	tp := sdktrace.NewTracerProvider() // add sdktrace.WithBatcher(an OTLP exporter)
	defer tp.Shutdown(context.Background())
	prom, err := otelcancel.NewPrometheus()
	if err != nil {
		log.Fatal(err)
	}
	defer prom.Shutdown(context.Background())
	obs, err := otelcancel.New(otelcancel.WithTracerProvider(tp), otelcancel.WithMeterProvider(prom.MeterProvider()))
	if err != nil {
		log.Fatal(err)
	}
	defer cancel.SetDefaultObserver(cancel.DefaultObserver()) // only for the example: restore the previous one
	cancel.SetDefaultObserver(obs)

	mux := http.NewServeMux() // or http.Handle on the default mux
	mux.Handle("/metrics", prom.Handler())

	// An operation that times out.
	err = cancel.Run(context.Background(), "checkout", func(ctx context.Context) error {
		<-ctx.Done() // work that honours its context
		return ctx.Err()
	}, cancel.WithTimeout(time.Millisecond))
	fmt.Println(cancel.ReasonOf(err))

	// What Prometheus scrapes.
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for sc := bufio.NewScanner(rec.Body); sc.Scan(); {
		if strings.HasPrefix(sc.Text(), `cancel_operations_total{cancel_operation_name="checkout",cancel_outcome="cancelled",cancel_reason="timeout"}`) {
			fmt.Println(sc.Text())
		}
	}
	// Output:
	// timeout
	// cancel_operations_total{cancel_operation_name="checkout",cancel_outcome="cancelled",cancel_reason="timeout"} 1
}
