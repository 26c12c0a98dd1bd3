package otelcancel_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
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

// Make the logs of an operation carry its ID, name, cancellation reason
// and trace, on the keys its spans and metrics use. Wrap a handler of your
// own, and make the result the default with slog.SetDefault: wrapping
// slog.Default().Handler() that way deadlocks at the first record (see
// NewLogHandler).
func ExampleNewLogHandler() {
	stable := func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == string(otelcancel.KeyOperationID)) {
			return slog.Attr{} // only for the example: output that does not change
		}
		return a
	}
	logger := slog.New(otelcancel.NewLogHandler(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: stable})))
	// In main: slog.SetDefault(logger)

	ctx, op := cancel.Start(context.Background(), "checkout")
	op.Cancel(cancel.ReasonManual, "operator")
	logger.InfoContext(ctx, "stopping", "items", 3)
	op.End(ctx.Err())
	// Output:
	// level=INFO msg=stopping items=3 cancel.operation.name=checkout cancel.reason=manual
}
