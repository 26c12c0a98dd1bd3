package otelcancel

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
)

// otelhttpServe serves one GET request through otelhttp, on h's providers,
// to handler.
func otelhttpServe(h *harness, handler http.HandlerFunc) {
	srv := otelhttp.NewHandler(handler, "server",
		otelhttp.WithTracerProvider(h.tp), otelhttp.WithMeterProvider(h.mp))
	srv.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
}

// otelhttpErrorTypes returns how many requests otelhttp's
// http.server.request.duration counted, by their error.type ("" for none).
func otelhttpErrorTypes(t *testing.T, h *harness) map[string]uint64 {
	t.Helper()
	m := mustMetric(t, h.collect(t), "http.server.request.duration")
	hist, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("http.server.request.duration is %T", m.Data)
	}
	out := map[string]uint64{}
	for _, dp := range hist.DataPoints {
		v, _ := dp.Attributes.Value(KeyErrorType)
		out[v.AsString()] += dp.Count
	}
	return out
}

// otelhttpSpan returns the one span ended, which must be otelhttp's.
func otelhttpSpan(t *testing.T, h *harness) sdktrace.ReadOnlySpan {
	t.Helper()
	ended := h.spans.Ended()
	if len(ended) != 1 || len(h.spans.Started()) != 1 {
		t.Fatalf("%d spans started, ended %v; want otelhttp's only", len(h.spans.Started()), spanNames(ended))
	}
	if s := ended[0]; s.SpanKind() != trace.SpanKindServer || s.InstrumentationScope().Name != otelhttp.ScopeName {
		t.Fatalf("span %q of kind %v and scope %q, want otelhttp's server span", s.Name(), s.SpanKind(), s.InstrumentationScope().Name)
	}
	return ended[0]
}

// The handler returns before its operation ends, as httpcancel's does when
// a timeout hands the response over: otelhttp records its metrics then,
// and error.type must already be there.
func TestOtelhttpLabelerAtCancel(t *testing.T) {
	h := newHarness(t, nil)
	var op *cancel.Operation
	var opCtx context.Context
	otelhttpServe(h, func(w http.ResponseWriter, r *http.Request) {
		opCtx, op = h.start(r.Context(), "GET /x", cancel.AdoptSpan())
		if !op.Cancel(cancel.ReasonTimeout, "too slow") {
			t.Error("Cancel returned false")
		}
		w.WriteHeader(http.StatusGatewayTimeout)
	})
	if got := otelhttpErrorTypes(t, h); !maps1(got, "timeout") {
		t.Errorf("otelhttp request counts by error.type %v, want one timeout", got)
	}
	// The span ended with the request; the operation ends later.
	op.End(opCtx.Err())
	s := otelhttpSpan(t, h)
	if ev := eventsNamed(s, EventRequested); len(ev) != 1 {
		t.Errorf("%d %s events on the server span, want 1", len(ev), EventRequested)
	} else {
		wantAttr(t, "event", ev[0].Attributes, KeyReason, attribute.StringValue("timeout"))
	}
	// The operation's own metrics are those of any operation.
	if got := sums(t, mustMetric(t, h.collect(t), "cancel.operations"))[ended3("GET /x", "cancelled", "timeout")]; got != 1 {
		t.Errorf("cancel.operations cancelled/timeout = %d, want 1", got)
	}
}

// maps1 reports whether m counts exactly one request, with error.type want.
func maps1(m map[string]uint64, want string) bool {
	return len(m) == 1 && m[want] == 1
}

// Each reason reaches otelhttp's metrics as itself; an operation that ended
// before the handler returned is recorded on the span as well.
func TestOtelhttpLabelerReasons(t *testing.T) {
	h := newHarness(t, nil)
	for _, reason := range cancel.Reasons() {
		otelhttpServe(h, func(w http.ResponseWriter, r *http.Request) {
			ctx, op := h.start(r.Context(), "GET /x", cancel.AdoptSpan())
			op.Cancel(reason, "stop")
			op.End(ctx.Err())
		})
	}
	got := otelhttpErrorTypes(t, h)
	want := map[string]uint64{}
	for _, reason := range cancel.Reasons() {
		want[reason.String()] = 1
	}
	if len(got) != len(want) {
		t.Errorf("otelhttp request counts by error.type %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("error.type %q: %d requests, want %d", k, got[k], n)
		}
	}
	for _, s := range h.spans.Ended() {
		if s.InstrumentationScope().Name != otelhttp.ScopeName {
			t.Errorf("span %q of scope %q: the operation must adopt otelhttp's", s.Name(), s.InstrumentationScope().Name)
		}
	}
}

// Only a cancellation labels the request: completed and failed operations
// leave otelhttp's metrics as they are.
func TestOtelhttpLabelerNotCancelled(t *testing.T) {
	h := newHarness(t, nil)
	otelhttpServe(h, func(w http.ResponseWriter, r *http.Request) {
		_, op := h.start(r.Context(), "GET /x", cancel.AdoptSpan())
		op.End(nil)
	})
	otelhttpServe(h, func(w http.ResponseWriter, r *http.Request) {
		_, op := h.start(r.Context(), "GET /x", cancel.AdoptSpan())
		op.End(context.DeadlineExceeded) // failed, not cancelled
		w.WriteHeader(http.StatusInternalServerError)
	})
	if got := otelhttpErrorTypes(t, h); len(got) != 1 || got[""] != 2 {
		t.Errorf("otelhttp request counts by error.type %v, want 2 without", got)
	}
}

// An operation that does not adopt the server span (work inside the
// request) never labels the request: its cancellation is its own.
func TestOtelhttpLabelerNotAdopted(t *testing.T) {
	h := newHarness(t, nil)
	otelhttpServe(h, func(w http.ResponseWriter, r *http.Request) {
		ctx, op := h.start(r.Context(), "query")
		op.Cancel(cancel.ReasonManual, "stop")
		op.End(ctx.Err())
	})
	if got := otelhttpErrorTypes(t, h); len(got) != 1 || got[""] != 1 {
		t.Errorf("otelhttp request counts by error.type %v, want 1 without", got)
	}
	if n := len(h.spans.Ended()); n != 2 {
		t.Errorf("%d spans, want otelhttp's and the operation's", n)
	}
}

// The request's operation labels it once, with its own reason: not with
// the reasons of its children, nor twice when cancelled twice.
func TestOtelhttpLabelerOnce(t *testing.T) {
	h := newHarness(t, nil)
	var labels []attribute.KeyValue
	otelhttpServe(h, func(w http.ResponseWriter, r *http.Request) {
		ctx, op := h.start(r.Context(), "GET /x", cancel.AdoptSpan())
		childCtx, child := h.start(ctx, "query")
		op.Cancel(cancel.ReasonDisconnect, "gone") // the child gets ReasonParent
		op.Cancel(cancel.ReasonManual, "again")
		<-child.Done()
		child.Cancel(cancel.ReasonManual, "too late")
		child.End(childCtx.Err())
		op.End(ctx.Err())
		if child.Reason() != cancel.ReasonParent {
			t.Errorf("child reason %v, want parent", child.Reason())
		}
		l, _ := otelhttp.LabelerFromContext(r.Context())
		labels = l.Get()
	})
	if want := []attribute.KeyValue{KeyErrorType.String("disconnect")}; !slices.Equal(labels, want) {
		t.Errorf("labeler holds %v, want %v", labels, want)
	}
	if got := otelhttpErrorTypes(t, h); !maps1(got, "disconnect") {
		t.Errorf("otelhttp request counts by error.type %v, want one disconnect", got)
	}
}

// Metrics do not depend on sampling: an unsampled request is labelled too.
func TestOtelhttpLabelerUnsampled(t *testing.T) {
	h := newHarness(t, []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.NeverSample())})
	otelhttpServe(h, func(w http.ResponseWriter, r *http.Request) {
		if trace.SpanFromContext(r.Context()).IsRecording() {
			t.Error("the server span is sampled")
		}
		ctx, op := h.start(r.Context(), "GET /x", cancel.AdoptSpan())
		op.Cancel(cancel.ReasonShutdown, "draining")
		op.End(ctx.Err())
	})
	if got := otelhttpErrorTypes(t, h); !maps1(got, "shutdown") {
		t.Errorf("otelhttp request counts by error.type %v, want one shutdown", got)
	}
	if n := len(h.spans.Ended()); n != 0 {
		t.Errorf("%d spans recorded, want none", n)
	}
}

// Any Labeler in the context of an adopted span is used, otelhttp's or the
// user's own; without one, nothing happens.
func TestOtelhttpLabelerWithoutOtelhttp(t *testing.T) {
	h := newHarness(t, nil)
	ctx, server := h.tp.Tracer("http").Start(context.Background(), "GET /x")
	defer server.End()

	l := &otelhttp.Labeler{}
	opCtx, op := h.start(otelhttp.ContextWithLabeler(ctx, l), "GET /x", cancel.AdoptSpan())
	op.Cancel(cancel.ReasonCondition, "quota")
	op.End(opCtx.Err())
	if want := []attribute.KeyValue{KeyErrorType.String("condition")}; !slices.Equal(l.Get(), want) {
		t.Errorf("labeler holds %v, want %v", l.Get(), want)
	}

	opCtx, op = h.start(ctx, "GET /y", cancel.AdoptSpan()) // no Labeler
	op.Cancel(cancel.ReasonManual, "stop")
	op.End(opCtx.Err())
	if op.Status() != cancel.StatusCancelled {
		t.Errorf("status %v, want cancelled", op.Status())
	}

	// A remote span is not adopted: the request is not this operation's.
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	l = &otelhttp.Labeler{}
	rctx := otelhttp.ContextWithLabeler(trace.ContextWithRemoteSpanContext(context.Background(), remote), l)
	opCtx, op = h.start(rctx, "GET /z", cancel.AdoptSpan())
	op.Cancel(cancel.ReasonManual, "stop")
	op.End(opCtx.Err())
	if got := l.Get(); len(got) != 0 {
		t.Errorf("labeler of a remote parent holds %v, want nothing", got)
	}
}

// Cancellations come from any goroutine, while otelhttp may be reading the
// Labeler: run with -race.
func TestOtelhttpLabelerConcurrent(t *testing.T) {
	h := newHarness(t, nil)
	const requests = 50
	var wg sync.WaitGroup
	for range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var op *cancel.Operation
			var opCtx context.Context
			started := make(chan struct{})
			var cancelled sync.WaitGroup
			cancelled.Add(1)
			go func() {
				defer cancelled.Done()
				<-started
				op.Cancel(cancel.ReasonDisconnect, "gone")
			}()
			otelhttpServe(h, func(w http.ResponseWriter, r *http.Request) {
				opCtx, op = h.start(r.Context(), "GET /x", cancel.AdoptSpan())
				close(started)
			})
			cancelled.Wait()
			op.End(opCtx.Err())
		}()
	}
	wg.Wait()
	got := otelhttpErrorTypes(t, h)
	if got[""]+got["disconnect"] != requests || len(got) > 2 {
		t.Errorf("otelhttp request counts by error.type %v, want %d in all, with none or disconnect", got, requests)
	}
}
