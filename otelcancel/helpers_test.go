package otelcancel

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cancelable-go/cancelable/cancel"
)

// harness is an Observer on SDK providers that keep everything in memory.
type harness struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	obs    *Observer
}

// newHarness returns a harness whose tracer samples every span, unless
// tpOpts say otherwise; opts go to New after the two providers.
func newHarness(t testing.TB, tpOpts []sdktrace.TracerProviderOption, opts ...Option) *harness {
	t.Helper()
	h := &harness{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	h.tp = sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(h.spans),
	}, tpOpts...)...)
	h.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	t.Cleanup(func() {
		ctx := context.Background()
		if err := h.tp.Shutdown(ctx); err != nil {
			t.Errorf("TracerProvider.Shutdown: %v", err)
		}
		if err := h.mp.Shutdown(ctx); err != nil {
			t.Errorf("MeterProvider.Shutdown: %v", err)
		}
	})
	obs, err := New(append([]Option{WithTracerProvider(h.tp), WithMeterProvider(h.mp)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.obs = obs
	return h
}

// start starts an operation observed by h.obs.
func (h *harness) start(ctx context.Context, name string, opts ...cancel.Option) (context.Context, *cancel.Operation) {
	return cancel.Start(ctx, name, append([]cancel.Option{cancel.WithObserver(h.obs)}, opts...)...)
}

// ended returns the ended spans named name.
func (h *harness) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// span returns the one ended span named name.
func (h *harness) span(t testing.TB, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	spans := h.ended(name)
	if len(spans) != 1 {
		t.Fatalf("%d ended spans named %q, want 1 (all ended: %v)", len(spans), name, spanNames(h.spans.Ended()))
	}
	return spans[0]
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name())
	}
	return names
}

// collect reads the metrics.
func (h *harness) collect(t testing.TB) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return rm
}

// findMetric returns the metric named name; ok is false if it is missing.
func findMetric(rm metricdata.ResourceMetrics, name string) (metricdata.Metrics, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

func mustMetric(t testing.TB, rm metricdata.ResourceMetrics, name string) metricdata.Metrics {
	t.Helper()
	m, ok := findMetric(rm, name)
	if !ok {
		t.Fatalf("no metric %q", name)
	}
	return m
}

// key renders an attribute set as "k=v,k=v" in key order, for maps of
// series.
func key(set attribute.Set) string {
	var parts []string
	for _, kv := range set.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	return strings.Join(parts, ",")
}

// sums returns the data points of an int64 sum by attribute set.
func sums(t testing.TB, m metricdata.Metrics) map[string]int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s: data is %T, want metricdata.Sum[int64]", m.Name, m.Data)
	}
	out := make(map[string]int64)
	for _, dp := range s.DataPoints {
		k := key(dp.Attributes)
		if _, dup := out[k]; dup {
			t.Fatalf("%s: two data points for %s", m.Name, k)
		}
		out[k] = dp.Value
	}
	return out
}

// histograms returns the data points of a float64 histogram by attribute set.
func histograms(t testing.TB, m metricdata.Metrics) map[string]metricdata.HistogramDataPoint[float64] {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s: data is %T, want metricdata.Histogram[float64]", m.Name, m.Data)
	}
	out := make(map[string]metricdata.HistogramDataPoint[float64])
	for _, dp := range h.DataPoints {
		out[key(dp.Attributes)] = dp
	}
	return out
}

// ended3 is the attribute key of cancel.operations and the duration.
func ended3(name, outcome, reason string) string {
	return fmt.Sprintf("cancel.operation.name=%s,cancel.outcome=%s,cancel.reason=%s", name, outcome, reason)
}

func nameKey(name string) string { return "cancel.operation.name=" + name }

func stopKey(name, reason string) string {
	return fmt.Sprintf("cancel.operation.name=%s,cancel.reason=%s", name, reason)
}

// attrMap returns attributes by key, failing on duplicate keys.
func attrMap(t testing.TB, kvs []attribute.KeyValue) map[string]attribute.Value {
	t.Helper()
	m := make(map[string]attribute.Value, len(kvs))
	for _, kv := range kvs {
		if _, dup := m[string(kv.Key)]; dup {
			t.Errorf("attribute %q twice in %v", kv.Key, kvs)
		}
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// wantAttr checks that kvs hold k with the value want.
func wantAttr(t testing.TB, what string, kvs []attribute.KeyValue, k attribute.Key, want attribute.Value) {
	t.Helper()
	got, ok := attrMap(t, kvs)[string(k)]
	if !ok {
		t.Errorf("%s: no attribute %s (have %v)", what, k, kvs)
		return
	}
	if got != want {
		t.Errorf("%s: %s = %s %q, want %s %q", what, k, got.Type(), got.Emit(), want.Type(), want.Emit())
	}
}

func noAttr(t testing.TB, what string, kvs []attribute.KeyValue, k attribute.Key) {
	t.Helper()
	if v, ok := attrMap(t, kvs)[string(k)]; ok {
		t.Errorf("%s: unexpected attribute %s = %q", what, k, v.Emit())
	}
}

func eventsNamed(s sdktrace.ReadOnlySpan, name string) []sdktrace.Event {
	var out []sdktrace.Event
	for _, e := range s.Events() {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}
