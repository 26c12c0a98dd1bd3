package otelcancel

import (
	"context"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
)

// discardExporter exports spans nowhere: the benchmarks measure recording,
// not a network.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// benchProviders returns an SDK tracer provider with sampler and a
// discarding exporter, and a meter provider with a manual reader.
func benchProviders(b *testing.B, sampler sdktrace.Sampler) (*sdktrace.TracerProvider, *sdkmetric.MeterProvider) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSyncer(discardExporter{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		tp.Shutdown(context.Background())
		mp.Shutdown(context.Background())
	})
	return tp, mp
}

// withDefaultObserver makes obs the default observer for the benchmark.
func withDefaultObserver(b *testing.B, obs cancel.Observer) {
	prev := cancel.DefaultObserver()
	cancel.SetDefaultObserver(obs)
	b.Cleanup(func() { cancel.SetDefaultObserver(prev) })
}

func benchObserver(b *testing.B, sampler sdktrace.Sampler) *Observer {
	tp, mp := benchProviders(b, sampler)
	obs, err := New(WithTracerProvider(tp), WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	return obs
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
// whole process per operation (cpu-ns/op): GC included, and steadier than
// wall time on a machine other work shares.
func loop(b *testing.B, body func()) {
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		body()
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkOTel compares an operation recorded by the Observer with the
// least a hand-instrumented operation costs on the same SDK.
func BenchmarkOTel(b *testing.B) {
	ctx := context.Background()

	// One span and one count, by hand.
	b.Run("bare", func(b *testing.B) {
		tp, mp := benchProviders(b, sdktrace.AlwaysSample())
		tracer := tp.Tracer("bench")
		counter, err := mp.Meter("bench").Int64Counter("bench.operations")
		if err != nil {
			b.Fatal(err)
		}
		attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String("name", "op")))
		loop(b, func() {
			_, span := tracer.Start(ctx, "op")
			counter.Add(ctx, 1, attrs)
			span.End()
		})
	})

	// What the telemetry contract asks of the SDK for one completed
	// operation, by hand and without the core: a span with the three
	// attributes, a count and a duration with its exemplar. Not a target:
	// the floor operation is measured against, to tell the Observer's own
	// cost from the SDK's.
	b.Run("by-hand", func(b *testing.B) {
		tp, mp := benchProviders(b, sdktrace.AlwaysSample())
		tracer := tp.Tracer("bench")
		meter := mp.Meter("bench")
		counter, err := meter.Int64Counter("bench.operations")
		if err != nil {
			b.Fatal(err)
		}
		hist, err := meter.Float64Histogram("bench.duration")
		if err != nil {
			b.Fatal(err)
		}
		attrs := metric.WithAttributeSet(attribute.NewSet(KeyOperationName.String("op"),
			KeyOutcome.String("completed"), KeyReason.String("")))
		var id int64
		loop(b, func() {
			start := time.Now()
			sctx, span := tracer.Start(ctx, "op", trace.WithTimestamp(start))
			id++
			span.SetAttributes(KeyOperationID.Int64(id), KeyOperationName.String("op"), KeyOutcome.String("completed"))
			d := time.Since(start)
			counter.Add(sctx, 1, attrs)
			hist.Record(sctx, d.Seconds(), attrs)
			span.End(trace.WithTimestamp(start.Add(d)))
		})
	})

	// Start and End of an operation through the Observer: a span, its
	// attributes, and the five instruments.
	b.Run("operation", func(b *testing.B) {
		withDefaultObserver(b, benchObserver(b, sdktrace.AlwaysSample()))
		loop(b, func() {
			_, op := cancel.Start(ctx, "op")
			op.End(nil)
		})
	})

	// The same, not sampled: metrics only.
	b.Run("unsampled", func(b *testing.B) {
		withDefaultObserver(b, benchObserver(b, sdktrace.NeverSample()))
		loop(b, func() {
			_, op := cancel.Start(ctx, "op")
			op.End(nil)
		})
	})

	// The core alone, without an observer: the floor of unsampled.
	b.Run("core", func(b *testing.B) {
		withDefaultObserver(b, nil)
		loop(b, func() {
			_, op := cancel.Start(ctx, "op")
			op.End(nil)
		})
	})

	// One websocket message counted (op.Count as wscancel calls it for
	// every data message): the hot path of connections.
	b.Run("ws-message", func(b *testing.B) {
		withDefaultObserver(b, benchObserver(b, sdktrace.AlwaysSample()))
		_, op := cancel.Start(ctx, "ws /chat")
		defer op.End(nil)
		op.Event("ws.open", slog.String("ws.subprotocol", ""))
		loop(b, func() {
			op.Count("ws.messages.in", 1)
		})
	})

	// A whole websocket connection as wscancel records it, with one
	// message each way: the operation, two span events and the metrics of
	// a connection.
	b.Run("ws-connection", func(b *testing.B) {
		withDefaultObserver(b, benchObserver(b, sdktrace.AlwaysSample()))
		loop(b, func() {
			_, op := cancel.Start(ctx, "ws /chat")
			op.Event("ws.open", slog.String("ws.subprotocol", ""))
			op.Count("ws.messages.in", 1)
			op.Count("ws.messages.out", 1)
			op.Event("ws.close", slog.Int("ws.close.code", 1000), slog.String("ws.close.by", "peer"),
				slog.String("cancel.reason", ""))
			op.End(nil)
		})
	})

	// One progress report with one attribute: a span event and a count.
	b.Run("progress", func(b *testing.B) {
		withDefaultObserver(b, benchObserver(b, sdktrace.AlwaysSample()))
		_, op := cancel.Start(ctx, "op")
		defer op.End(nil)
		loop(b, func() {
			op.Progress("copied", slog.Int("rows", 100))
		})
	})
}
