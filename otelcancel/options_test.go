package otelcancel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cancelable-go/cancelable/cancel"
)

func TestNewInvalidOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Option
		want string // in the error
	}{
		{"nil tracer provider", WithTracerProvider(nil), "WithTracerProvider"},
		{"nil typed tracer provider", WithTracerProvider((*sdktrace.TracerProvider)(nil)), "WithTracerProvider"},
		{"nil meter provider", WithMeterProvider(nil), "WithMeterProvider"},
		{"nil typed meter provider", WithMeterProvider((*sdkmetric.MeterProvider)(nil)), "WithMeterProvider"},
		{"no duration buckets", WithDurationBuckets(), "WithDurationBuckets"},
		{"decreasing duration buckets", WithDurationBuckets(1, 0.5), "WithDurationBuckets"},
		{"equal duration buckets", WithDurationBuckets(1, 1), "WithDurationBuckets"},
		{"zero duration bucket", WithDurationBuckets(0, 1), "WithDurationBuckets"},
		{"negative duration bucket", WithDurationBuckets(-1, 1), "WithDurationBuckets"},
		{"NaN duration bucket", WithDurationBuckets(1, math.NaN()), "WithDurationBuckets"},
		{"infinite duration bucket", WithDurationBuckets(1, math.Inf(1)), "WithDurationBuckets"},
		{"no stop buckets", WithStopLatencyBuckets(), "WithStopLatencyBuckets"},
		{"decreasing stop buckets", WithStopLatencyBuckets(2, 1), "WithStopLatencyBuckets"},
		{"zero stop bucket", WithStopLatencyBuckets(0), "WithStopLatencyBuckets"},
		{"no stream buckets", WithStreamBuckets(), "WithStreamBuckets"},
		{"decreasing stream buckets", WithStreamBuckets(60, 1), "WithStreamBuckets"},
		{"negative stream bucket", WithStreamBuckets(-1), "WithStreamBuckets"},
		{"infinite stream bucket", WithStreamBuckets(1, math.Inf(1)), "WithStreamBuckets"},
		{"NaN stream bucket", WithStreamBuckets(math.NaN()), "WithStreamBuckets"},
		{"max names 0", WithMaxNames(0), "WithMaxNames"},
		{"max names negative", WithMaxNames(-1), "WithMaxNames"},
		{"nil option", nil, "nil Option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs, err := New(WithMaxNames(5), tc.opt)
			if err == nil || obs != nil {
				t.Fatalf("New = %v, %v; want an error", obs, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "otelcancel: ") {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
		})
	}
}

// Buckets given to an option are copied: changing the caller's slice later
// changes nothing.
func TestBucketsCopied(t *testing.T) {
	bounds := []float64{1, 2, 3}
	h := newHarness(t, nil, WithDurationBuckets(bounds...))
	bounds[0] = 100
	_, op := h.start(context.Background(), "op")
	op.End(nil)
	dp := histograms(t, mustMetric(t, h.collect(t), "cancel.operation.duration"))[ended3("op", "completed", "")]
	if dp.Bounds[0] != 1 {
		t.Errorf("bounds %v, want the ones given", dp.Bounds)
	}
}

// Without providers, New uses the global ones, whether they are set before
// New or after (the global providers delegate once set).
func TestNewGlobalProviders(t *testing.T) {
	for _, setFirst := range []bool{false, true} {
		t.Run(fmt.Sprint("set first ", setFirst), func(t *testing.T) {
			if !setFirst && globalsDelegated {
				t.Skip("the global providers delegate once, to the first provider set")
			}
			prevTP, prevMP := otel.GetTracerProvider(), otel.GetMeterProvider()
			t.Cleanup(func() {
				otel.SetTracerProvider(prevTP)
				otel.SetMeterProvider(prevMP)
			})
			h := newHarness(t, nil) // only for its providers
			if setFirst {
				otel.SetTracerProvider(h.tp)
				otel.SetMeterProvider(h.mp)
			}
			obs, err := New()
			if err != nil {
				t.Fatal(err)
			}
			if !setFirst {
				otel.SetTracerProvider(h.tp)
				otel.SetMeterProvider(h.mp)
			}
			globalsDelegated = true
			_, op := cancel.Start(context.Background(), "global", cancel.WithObserver(obs))
			op.End(nil)
			h.span(t, "global")
			if got := sums(t, mustMetric(t, h.collect(t), "cancel.operations"))[ended3("global", "completed", "")]; got != 1 {
				t.Errorf("cancel.operations = %d, want 1", got)
			}
		})
	}
}

// globalsDelegated is set once the global providers were set: an Observer
// made from them before then would delegate to whatever provider was set
// first.
var globalsDelegated bool

// Instruments the meter refuses make New fail.
func TestNewInstrumentError(t *testing.T) {
	_, err := New(WithMeterProvider(failingMeterProvider{}))
	if err == nil || !strings.Contains(err.Error(), "instruments") {
		t.Errorf("New = %v, want an error about the instruments", err)
	}
}

type failingMeterProvider struct{ metric.MeterProvider }

func (failingMeterProvider) Meter(string, ...metric.MeterOption) metric.Meter { return failingMeter{} }

type failingMeter struct{ metric.Meter }

func (failingMeter) Int64ObservableCounter(string, ...metric.Int64ObservableCounterOption) (metric.Int64ObservableCounter, error) {
	return nil, errFail
}

func (failingMeter) Float64Histogram(string, ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return nil, errFail
}

func (failingMeter) Int64ObservableUpDownCounter(string, ...metric.Int64ObservableUpDownCounterOption) (metric.Int64ObservableUpDownCounter, error) {
	return nil, errFail
}

var errFail = &failure{1}

// A meter that makes the instruments but refuses the callback.
func TestNewCallbackError(t *testing.T) {
	_, err := New(WithMeterProvider(refusingMeterProvider{}))
	if err == nil || !errors.Is(err, errFail) {
		t.Errorf("New = %v, want the callback's error", err)
	}
}

type refusingMeterProvider struct{ metric.MeterProvider }

func (refusingMeterProvider) Meter(string, ...metric.MeterOption) metric.Meter {
	return refusingMeter{noopmetric.NewMeterProvider().Meter("")}
}

type refusingMeter struct{ metric.Meter }

func (refusingMeter) RegisterCallback(metric.Callback, ...metric.Observable) (metric.Registration, error) {
	return nil, errFail
}

// A noop tracer provider and a nil span in a context do not trip the
// observer.
func TestNoopProviders(t *testing.T) {
	mp := sdkmetric.NewMeterProvider()
	defer mp.Shutdown(context.Background())
	obs, err := New(WithTracerProvider(noop.NewTracerProvider()), WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	ctx, op := cancel.Start(context.Background(), "noop", cancel.WithObserver(obs))
	op.Progress("p")
	op.Event("ws.open")
	op.Event("sse.open")
	op.Count("ws.messages.in", 1)
	op.Count("sse.events", 1)
	op.Cancel(cancel.ReasonManual, "")
	op.Event("ws.close", slog.Int("ws.close.code", 1000))
	if err := op.End(ctx.Err()); cancel.ReasonOf(err) != cancel.ReasonManual {
		t.Errorf("End = %v", err)
	}
}

// keepingProvider makes recording spans that are not the SDK's and keep
// the attribute slices they are given, as an implementation may.
type keepingProvider struct {
	noop.TracerProvider
	spans *[]*keepingSpan
}

func (p keepingProvider) Tracer(string, ...trace.TracerOption) trace.Tracer {
	return keepingTracer{p.TracerProvider.Tracer(""), p.spans}
}

type keepingTracer struct {
	trace.Tracer
	spans *[]*keepingSpan
}

func (t keepingTracer) Start(ctx context.Context, name string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	_, base := t.Tracer.Start(ctx, name)
	s := &keepingSpan{Span: base}
	*t.spans = append(*t.spans, s)
	return trace.ContextWithSpan(ctx, s), s
}

type keepingSpan struct {
	trace.Span
	attrs [][]attribute.KeyValue
}

func (*keepingSpan) IsRecording() bool                        { return true }
func (s *keepingSpan) SetAttributes(kv ...attribute.KeyValue) { s.attrs = append(s.attrs, kv) }

// Spans of other implementations may keep the attributes they are given:
// the observer gives each its own.
func TestOtherSpanKeepsAttributes(t *testing.T) {
	var spans []*keepingSpan
	mp := sdkmetric.NewMeterProvider()
	defer mp.Shutdown(context.Background())
	obs, err := New(WithTracerProvider(keepingProvider{spans: &spans}), WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"first", "second", "third"} {
		_, op := cancel.Start(context.Background(), name, cancel.WithObserver(obs))
		op.End(nil)
	}
	if len(spans) != 3 {
		t.Fatalf("%d spans", len(spans))
	}
	for i, name := range []string{"first", "second", "third"} {
		if len(spans[i].attrs) != 1 {
			t.Fatalf("span %d: %d SetAttributes calls, want 1", i, len(spans[i].attrs))
		}
		wantAttr(t, name, spans[i].attrs[0], KeyOperationName, attribute.StringValue(name))
	}
}
