package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"

	"github.com/cancelable-go/cancelable/otelcancel"
	"go.opentelemetry.io/contrib/zpages"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// serviceName is the service.name of the demo's spans and metrics.
const serviceName = "canceldemo"

// telemetry is what the demo records with: spans go to zpages (always) and
// to an OTLP/HTTP endpoint (when the environment names one), metrics to a
// Prometheus exposition, and operations reach both through the otelcancel
// observer.
type telemetry struct {
	tracerProvider *sdktrace.TracerProvider
	prom           *otelcancel.Prometheus
	observer       *otelcancel.Observer
	zpages         *zpages.SpanProcessor
	propagator     propagation.TextMapPropagator
	otlpEndpoint   string // where spans are exported; "" when they are not
}

// otlpEndpoint returns the OTLP endpoint the environment names for traces,
// or "" if none: the exporter reads the same variables.
func otlpEndpointFromEnv() string {
	if e := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); e != "" {
		return e
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
}

func newTelemetry(ctx context.Context, otlpEndpoint string, extra ...sdktrace.SpanProcessor) (*telemetry, error) {
	// service.name defaults to canceldemo; OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES, read later, win.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}

	t := &telemetry{
		zpages:       zpages.NewSpanProcessor(),
		propagator:   propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		otlpEndpoint: otlpEndpoint,
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()), // a demo: every trace is worth looking at
		sdktrace.WithSpanProcessor(t.zpages),
	}
	if otlpEndpoint != "" {
		// The exporter reads OTEL_EXPORTER_OTLP_* itself (endpoint, headers,
		// insecure, timeout).
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP trace exporter for %s: %w", otlpEndpoint, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	for _, p := range extra { // the harness's in-memory exporters
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	t.tracerProvider = sdktrace.NewTracerProvider(opts...)

	t.prom, err = otelcancel.NewPrometheus(sdkmetric.WithResource(res))
	if err != nil {
		return nil, errors.Join(err, t.tracerProvider.Shutdown(ctx))
	}
	t.observer, err = otelcancel.New(
		otelcancel.WithTracerProvider(t.tracerProvider),
		otelcancel.WithMeterProvider(t.prom.MeterProvider()),
	)
	if err != nil {
		return nil, errors.Join(err, t.tracerProvider.Shutdown(ctx), t.prom.Shutdown(ctx))
	}
	return t, nil
}

// shutdown flushes the spans still queued for export and stops the
// providers.
func (t *telemetry) shutdown(ctx context.Context) error {
	return errors.Join(t.tracerProvider.Shutdown(ctx), t.prom.Shutdown(ctx))
}

// jaegerURL guesses where Jaeger's UI shows the demo's traces: the
// CANCELDEMO_JAEGER_URL environment variable, or port 16686 on the host
// of the OTLP endpoint.
func jaegerURL(otlpEndpoint string) string {
	if u := os.Getenv("CANCELDEMO_JAEGER_URL"); u != "" {
		return u
	}
	u, err := url.Parse(otlpEndpoint)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	return "http://" + net.JoinHostPort(u.Hostname(), "16686") + "/search?service=" + serviceName
}
