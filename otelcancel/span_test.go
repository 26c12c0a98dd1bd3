package otelcancel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
)

func TestSpanOfOperation(t *testing.T) {
	h := newHarness(t, nil)
	ctx, parent := h.tp.Tracer("test").Start(context.Background(), "request")
	opCtx, op := h.start(ctx, "checkout", cancel.WithAttrs(slog.String("tenant", "acme")))
	if got := trace.SpanFromContext(opCtx).SpanContext(); got.SpanID() == parent.SpanContext().SpanID() || !got.IsValid() {
		t.Errorf("operation context holds span %v, want a new one", got.SpanID())
	}
	if err := op.End(nil); err != nil {
		t.Fatalf("End: %v", err)
	}
	parent.End()

	s := h.span(t, "checkout")
	if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("parent %v in trace %v, want %v in %v", s.Parent().SpanID(), s.SpanContext().TraceID(),
			parent.SpanContext().SpanID(), parent.SpanContext().TraceID())
	}
	if s.SpanContext().SpanID() != trace.SpanFromContext(opCtx).SpanContext().SpanID() {
		t.Errorf("ended span is not the one in the operation's context")
	}
	if s.InstrumentationScope().Name != ScopeName {
		t.Errorf("scope %q, want %q", s.InstrumentationScope().Name, ScopeName)
	}
	if !s.StartTime().Equal(op.StartTime()) || !s.EndTime().Equal(op.EndTime()) {
		t.Errorf("span from %v to %v, operation from %v to %v", s.StartTime(), s.EndTime(), op.StartTime(), op.EndTime())
	}
	a := s.Attributes()
	wantAttr(t, "span", a, KeyOperationID, attribute.Int64Value(int64(op.ID())))
	wantAttr(t, "span", a, KeyOperationName, attribute.StringValue("checkout"))
	wantAttr(t, "span", a, "tenant", attribute.StringValue("acme"))
	wantAttr(t, "span", a, KeyOutcome, attribute.StringValue("completed"))
	for _, k := range []attribute.Key{KeyReason, KeyErrorType, KeyDelivered, KeyShielded} {
		noAttr(t, "span", a, k)
	}
	if s.Status().Code != codes.Unset {
		t.Errorf("status %v, want Unset", s.Status())
	}
	if len(s.Events()) != 0 {
		t.Errorf("events %v, want none", s.Events())
	}
	if len(h.spans.Ended()) != 2 {
		t.Errorf("ended spans %v, want request and checkout", spanNames(h.spans.Ended()))
	}
}

func TestSpanWithoutParent(t *testing.T) {
	h := newHarness(t, nil)
	_, op := h.start(context.Background(), "job")
	op.End(nil)
	if s := h.span(t, "job"); s.Parent().IsValid() {
		t.Errorf("span has parent %v, want a root span", s.Parent().SpanID())
	}
}

// cancelFromOtherGoroutine cancels op on a goroutine of its own and returns
// once that goroutine is done, with the *cancel.Error of the request.
func cancelFromOtherGoroutine(t *testing.T, op *cancel.Operation, r cancel.Reason, msg string) *cancel.Error {
	t.Helper()
	done := make(chan bool)
	go func() { done <- op.Cancel(r, msg) }()
	if !<-done {
		t.Fatalf("Cancel(%v) returned false", r)
	}
	var e *cancel.Error
	if !errors.As(op.Err(), &e) {
		t.Fatalf("op.Err() = %v, want a *cancel.Error", op.Err())
	}
	return e
}

// runningSpan returns the span h's tracer started for op, still running.
func runningSpan(t *testing.T, h *harness, ctx context.Context) sdktrace.ReadWriteSpan {
	t.Helper()
	id := trace.SpanFromContext(ctx).SpanContext().SpanID()
	for _, s := range h.spans.Started() {
		if s.SpanContext().SpanID() == id {
			return s
		}
	}
	t.Fatalf("no started span %v", id)
	return nil
}

func checkRequestedEvent(t *testing.T, what string, s sdktrace.ReadOnlySpan, e *cancel.Error) {
	t.Helper()
	evs := eventsNamed(s, EventRequested)
	if len(evs) != 1 {
		t.Fatalf("%s: %d %s events, want 1 (events: %v)", what, len(evs), EventRequested, s.Events())
	}
	ev := evs[0]
	if !ev.Time.Equal(e.Time) {
		t.Errorf("%s: event at %v, want the time of the request %v", what, ev.Time, e.Time)
	}
	wantAttr(t, what+" event", ev.Attributes, KeyReason, attribute.StringValue(e.Reason.String()))
	wantAttr(t, what+" event", ev.Attributes, KeyMessage, attribute.StringValue(e.Message))
	if len(ev.Attributes) != 2 {
		t.Errorf("%s: event attributes %v, want reason and message", what, ev.Attributes)
	}
}

func TestSpanCancelledForEveryReason(t *testing.T) {
	for _, r := range cancel.Reasons() {
		t.Run(r.String(), func(t *testing.T) {
			h := newHarness(t, nil)
			ctx, op := h.start(context.Background(), "work")
			e := cancelFromOtherGoroutine(t, op, r, "stop "+r.String())
			// The event is there at the moment of the request, before
			// the operation ends.
			checkRequestedEvent(t, "running span", runningSpan(t, h, ctx), e)
			if len(h.spans.Ended()) != 0 {
				t.Fatalf("span ended before End")
			}
			<-ctx.Done()
			err := op.End(ctx.Err())
			if cancel.ReasonOf(err) != r {
				t.Fatalf("End returned %v, want reason %v", err, r)
			}

			s := h.span(t, "work")
			checkRequestedEvent(t, "ended span", s, e)
			a := s.Attributes()
			wantAttr(t, "span", a, KeyOutcome, attribute.StringValue("cancelled"))
			wantAttr(t, "span", a, KeyReason, attribute.StringValue(r.String()))
			wantAttr(t, "span", a, KeyErrorType, attribute.StringValue(r.String()))
			if st := s.Status(); st.Code != codes.Error || st.Description != err.Error() {
				t.Errorf("status %v, want Error %q", st, err.Error())
			}
		})
	}
}

func TestSpanCompletedAfterCancelRequest(t *testing.T) {
	for _, r := range cancel.Reasons() {
		t.Run(r.String(), func(t *testing.T) {
			h := newHarness(t, nil)
			_, op := h.start(context.Background(), "work")
			e := cancelFromOtherGoroutine(t, op, r, "too late")
			if err := op.End(nil); err != nil {
				t.Fatalf("End(nil) = %v", err)
			}
			s := h.span(t, "work")
			checkRequestedEvent(t, "span", s, e)
			a := s.Attributes()
			wantAttr(t, "span", a, KeyOutcome, attribute.StringValue("completed"))
			noAttr(t, "span", a, KeyReason)
			noAttr(t, "span", a, KeyErrorType)
			if s.Status().Code != codes.Unset {
				t.Errorf("status %v, want Unset", s.Status())
			}
		})
	}
}

type failure struct{ code int }

func (f *failure) Error() string { return fmt.Sprintf("failure %d", f.code) }

func TestSpanFailed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		errType  string
		startOpt cancel.Option
	}{
		{"plain", errors.New("boom"), "*errors.errorString", nil},
		{"own type", &failure{7}, "*otelcancel.failure", nil},
		{"wrapped", fmt.Errorf("charging: %w", &failure{7}), "*otelcancel.failure", nil},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", &failure{7})), "*otelcancel.failure", nil},
		{"wrapping several", fmt.Errorf("a: %w, %w", &failure{1}, &failure{2}), "*fmt.wrapErrors", nil},
		{"wrapping nothing", fmt.Errorf("a: %w", nil), "*fmt.wrapError", nil},
		{"joined", errors.Join(&failure{1}, &failure{2}), "*errors.joinError", nil},
		{"invalid option", nil, "*cancel.OptionError", cancel.WithRegistry(nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			var opts []cancel.Option
			if tc.startOpt != nil {
				opts = append(opts, tc.startOpt)
			}
			_, op := h.start(context.Background(), "work", opts...)
			err := op.End(tc.err)
			if err == nil {
				t.Fatalf("End returned nil")
			}
			s := h.span(t, "work")
			a := s.Attributes()
			wantAttr(t, "span", a, KeyOutcome, attribute.StringValue("failed"))
			wantAttr(t, "span", a, KeyErrorType, attribute.StringValue(tc.errType))
			noAttr(t, "span", a, KeyReason)
			if st := s.Status(); st.Code != codes.Error || st.Description != err.Error() {
				t.Errorf("status %v, want Error %q", st, err.Error())
			}
			if len(s.Events()) != 0 {
				t.Errorf("events %v, want none", s.Events())
			}
		})
	}
}

// TestSpanFailedWithTypedNil: a typed nil error (a nil *failure, whose
// Error method dereferences nil) still ends the span, with the error as
// fmt prints it. Taking its text used to panic in ObserveEnd: the panic was
// contained, but the span was never ended, so never exported.
func TestSpanFailedWithTypedNil(t *testing.T) {
	h := newHarness(t, nil)
	_, op := h.start(context.Background(), "work")
	var nilErr *failure
	op.End(nilErr)
	s := h.span(t, "work")
	wantAttr(t, "span", s.Attributes(), KeyOutcome, attribute.StringValue("failed"))
	wantAttr(t, "span", s.Attributes(), KeyErrorType, attribute.StringValue("*otelcancel.failure"))
	if st := s.Status(); st.Code != codes.Error || st.Description != "<nil>" {
		t.Errorf("status %v, want Error %q", st, "<nil>")
	}
}

// The reasons the core's own sources give reach the span.
func TestSpanReasonsFromSources(t *testing.T) {
	h := newHarness(t, nil)

	ctx, op := h.start(context.Background(), "timed", cancel.WithTimeout(time.Millisecond))
	<-ctx.Done()
	op.End(ctx.Err())

	tok := cancel.NewToken()
	ctx, op = h.start(context.Background(), "tokened", cancel.WithToken(tok))
	done := make(chan struct{})
	go func() { defer close(done); tok.Cancel(cancel.ReasonShutdown, "draining") }()
	<-done
	<-ctx.Done()
	op.End(ctx.Err())

	pctx, parent := h.start(context.Background(), "parent")
	ctx, child := h.start(pctx, "child")
	parent.Cancel(cancel.ReasonDisconnect, "client left")
	<-ctx.Done()
	child.End(ctx.Err())
	parent.End(pctx.Err())

	for name, want := range map[string]string{"timed": "timeout", "tokened": "shutdown", "child": "parent", "parent": "disconnect"} {
		s := h.span(t, name)
		wantAttr(t, name, s.Attributes(), KeyReason, attribute.StringValue(want))
		wantAttr(t, name, s.Attributes(), KeyErrorType, attribute.StringValue(want))
		evs := eventsNamed(s, EventRequested)
		if len(evs) != 1 {
			t.Errorf("%s: %d requested events, want 1", name, len(evs))
			continue
		}
		wantAttr(t, name+" event", evs[0].Attributes, KeyReason, attribute.StringValue(want))
	}
	wantAttr(t, "tokened event", eventsNamed(h.span(t, "tokened"), EventRequested)[0].Attributes,
		KeyMessage, attribute.StringValue("draining"))
}

func TestProgressEvents(t *testing.T) {
	h := newHarness(t, nil)
	ctx, op := h.start(context.Background(), "import")
	done := make(chan struct{})
	go func() {
		defer close(done)
		op.Progress("halfway", slog.Int("rows", 50), slog.String("table", "users"))
	}()
	<-done
	first, _ := op.LastProgress()
	// At the moment of the report, before the operation ends.
	if evs := eventsNamed(runningSpan(t, h, ctx), EventProgress); len(evs) != 1 {
		t.Fatalf("%d progress events on the running span, want 1", len(evs))
	}
	op.Progress("done")
	second, _ := op.LastProgress()
	op.End(nil)

	evs := eventsNamed(h.span(t, "import"), EventProgress)
	if len(evs) != 2 {
		t.Fatalf("%d progress events, want 2", len(evs))
	}
	if !evs[0].Time.Equal(first.Time) || !evs[1].Time.Equal(second.Time) {
		t.Errorf("events at %v, %v; reports at %v, %v", evs[0].Time, evs[1].Time, first.Time, second.Time)
	}
	wantAttr(t, "first", evs[0].Attributes, KeyMessage, attribute.StringValue("halfway"))
	wantAttr(t, "first", evs[0].Attributes, "rows", attribute.Int64Value(50))
	wantAttr(t, "first", evs[0].Attributes, "table", attribute.StringValue("users"))
	if len(evs[0].Attributes) != 3 {
		t.Errorf("first event attributes %v, want 3", evs[0].Attributes)
	}
	wantAttr(t, "second", evs[1].Attributes, KeyMessage, attribute.StringValue("done"))
	if len(evs[1].Attributes) != 1 {
		t.Errorf("second event attributes %v, want the message only", evs[1].Attributes)
	}
}

type stringer struct{ s string }

func (s stringer) String() string { return "stringer:" + s.s }

// panicky is a value whose String method panics: its attribute must read as
// fmt prints it, and must not keep the span from ending.
type panicky struct{}

func (panicky) String() string { panic("no string") }

type valuer struct{}

func (valuer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", "ann"), slog.Int("id", 3))
}

type scalarValuer struct{}

func (scalarValuer) LogValue() slog.Value { return slog.StringValue("secret-redacted") }

// nestedValuer resolves to another LogValuer.
type nestedValuer struct{}

func (nestedValuer) LogValue() slog.Value { return slog.AnyValue(scalarValuer{}) }

func TestSlogAttrs(t *testing.T) {
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
	var nilErr *failure
	attrs := []slog.Attr{
		slog.String("s", "text"),
		slog.Int("int", -3),
		slog.Int64("i64", -1<<40),
		slog.Uint64("u64", 7),
		slog.Uint64("u64max", 1<<63-1),
		slog.Uint64("u64big", 1<<63),
		slog.Uint64("u64huge", ^uint64(0)),
		slog.Float64("f", 2.5),
		slog.Bool("b", true),
		slog.Duration("d", 1500*time.Millisecond),
		slog.Time("t", when),
		slog.Any("err", &failure{9}),
		slog.Any("nilerr", nilErr),
		slog.Any("str", stringer{"x"}),
		slog.Any("panicky", panicky{}),
		slog.Any("strs", []string{"a", "b"}),
		slog.Any("ints", []int{1, 2}),
		slog.Any("i64s", []int64{3, 4}),
		slog.Any("fs", []float64{0.5}),
		slog.Any("bs", []bool{true, false}),
		slog.Any("struct", struct{ A int }{1}),
		slog.Any("nil", nil),
		slog.Any("i8", int8(-8)),
		slog.Group("g", slog.Int("a", 1), slog.Group("h", slog.String("b", "x"), slog.Group("", slog.Bool("c", true)))),
		slog.Group("", slog.String("inline", "yes"), slog.Group("", slog.Int("deep", 4))),
		slog.Group("empty"),
		slog.Any("lv", valuer{}),
		slog.Any("lvs", scalarValuer{}),
		slog.Any("lvn", nestedValuer{}),
		slog.Group("g2", slog.Any("lv", valuer{})),
		slog.String("", "no key"),
		{},
	}
	want := map[string]attribute.Value{
		"s":          attribute.StringValue("text"),
		"int":        attribute.Int64Value(-3),
		"i64":        attribute.Int64Value(-1 << 40),
		"u64":        attribute.Int64Value(7),
		"u64max":     attribute.Int64Value(1<<63 - 1),
		"u64big":     attribute.StringValue("9223372036854775808"),
		"u64huge":    attribute.StringValue("18446744073709551615"),
		"f":          attribute.Float64Value(2.5),
		"b":          attribute.BoolValue(true),
		"d":          attribute.StringValue("1.5s"),
		"t":          attribute.StringValue("2024-05-06T07:08:09.123456789+01:00"),
		"err":        attribute.StringValue("failure 9"),
		"nilerr":     attribute.StringValue("<nil>"),
		"str":        attribute.StringValue("stringer:x"),
		"panicky":    attribute.StringValue("%!v(PANIC=String method: no string)"),
		"strs":       attribute.StringSliceValue([]string{"a", "b"}),
		"ints":       attribute.Int64SliceValue([]int64{1, 2}),
		"i64s":       attribute.Int64SliceValue([]int64{3, 4}),
		"fs":         attribute.Float64SliceValue([]float64{0.5}),
		"bs":         attribute.BoolSliceValue([]bool{true, false}),
		"struct":     attribute.StringValue("{A:1}"),
		"nil":        attribute.StringValue("<nil>"),
		"i8":         attribute.Int64Value(-8),
		"g.a":        attribute.Int64Value(1),
		"g.h.b":      attribute.StringValue("x"),
		"g.h.c":      attribute.BoolValue(true),
		"inline":     attribute.StringValue("yes"),
		"deep":       attribute.Int64Value(4),
		"lv.user":    attribute.StringValue("ann"),
		"lv.id":      attribute.Int64Value(3),
		"lvs":        attribute.StringValue("secret-redacted"),
		"lvn":        attribute.StringValue("secret-redacted"),
		"g2.lv.user": attribute.StringValue("ann"),
		"g2.lv.id":   attribute.Int64Value(3),
	}
	check := func(what string, kvs []attribute.KeyValue, skip ...attribute.Key) {
		t.Helper()
		got := attrMap(t, kvs)
		for _, k := range skip {
			delete(got, string(k))
		}
		for k, w := range want {
			g, ok := got[k]
			if !ok {
				t.Errorf("%s: no attribute %q", what, k)
			} else if g != w {
				t.Errorf("%s: %s = %s %q, want %s %q", what, k, g.Type(), g.Emit(), w.Type(), w.Emit())
			}
			delete(got, k)
		}
		for k, v := range got {
			t.Errorf("%s: unexpected attribute %q = %q", what, k, v.Emit())
		}
		for _, kv := range kvs {
			if !kv.Valid() {
				t.Errorf("%s: invalid attribute %v", what, kv)
			}
		}
	}

	h := newHarness(t, nil)
	_, op := h.start(context.Background(), "attrs", cancel.WithAttrs(attrs...))
	op.Progress("p", attrs...)
	op.End(nil)
	s := h.span(t, "attrs")
	check("span", s.Attributes(), KeyOperationID, KeyOperationName, KeyOutcome)
	if s.DroppedAttributes() != 0 {
		t.Errorf("span dropped %d attributes", s.DroppedAttributes())
	}
	evs := eventsNamed(s, EventProgress)
	if len(evs) != 1 {
		t.Fatalf("%d progress events, want 1", len(evs))
	}
	check("progress event", evs[0].Attributes, KeyMessage)
	if evs[0].DroppedAttributeCount != 0 {
		t.Errorf("event dropped %d attributes", evs[0].DroppedAttributeCount)
	}
}

// The slices the caller gave are not shared with the span: changing them
// afterwards changes nothing recorded.
func TestSlogSliceAttrsCopied(t *testing.T) {
	h := newHarness(t, nil)
	strs := []string{"a"}
	_, op := h.start(context.Background(), "copy")
	op.Progress("p", slog.Any("strs", strs))
	strs[0] = "changed"
	op.End(nil)
	ev := eventsNamed(h.span(t, "copy"), EventProgress)[0]
	wantAttr(t, "event", ev.Attributes, "strs", attribute.StringSliceValue([]string{"a"}))
}

func TestNestedOperations(t *testing.T) {
	h := newHarness(t, nil)
	ctx, root := h.start(context.Background(), "root")
	cctx, child := h.start(ctx, "child")
	gctx, grandchild := h.start(cctx, "grandchild")
	_, sibling := h.start(ctx, "sibling")
	sibling.End(nil)
	root.Cancel(cancel.ReasonShutdown, "draining")
	<-gctx.Done() // the cancellation reaches descendants asynchronously
	grandchild.End(gctx.Err())
	child.End(cctx.Err())
	root.End(ctx.Err())

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, n := range []string{"root", "child", "grandchild", "sibling"} {
		spans[n] = h.span(t, n)
	}
	for child, parent := range map[string]string{"child": "root", "grandchild": "child", "sibling": "root"} {
		if got, want := spans[child].Parent().SpanID(), spans[parent].SpanContext().SpanID(); got != want {
			t.Errorf("%s: parent span %v, want %s's %v", child, got, parent, want)
		}
		if spans[child].SpanContext().TraceID() != spans["root"].SpanContext().TraceID() {
			t.Errorf("%s: in another trace", child)
		}
	}
	wantAttr(t, "root", spans["root"].Attributes(), KeyReason, attribute.StringValue("shutdown"))
	for _, n := range []string{"child", "grandchild"} {
		wantAttr(t, n, spans[n].Attributes(), KeyReason, attribute.StringValue("parent"))
		wantAttr(t, n, spans[n].Attributes(), KeyOutcome, attribute.StringValue("cancelled"))
	}
	wantAttr(t, "sibling", spans["sibling"].Attributes(), KeyOutcome, attribute.StringValue("completed"))
}

func TestAdoptSpan(t *testing.T) {
	h := newHarness(t, nil)
	ctx, server := h.tp.Tracer("http").Start(context.Background(), "GET /items")
	opCtx, op := h.start(ctx, "GET /items", cancel.AdoptSpan(), cancel.WithAttrs(slog.String("route", "/items")))
	if got := trace.SpanFromContext(opCtx); !got.SpanContext().Equal(server.SpanContext()) {
		t.Errorf("operation context holds span %v, want the adopted %v", got.SpanContext().SpanID(), server.SpanContext().SpanID())
	}
	op.Progress("streaming", slog.Int("n", 1))
	e := cancelFromOtherGoroutine(t, op, cancel.ReasonDisconnect, "peer gone")
	op.End(opCtx.Err())
	if len(h.spans.Started()) != 1 {
		t.Errorf("started spans %d, want the server span only", len(h.spans.Started()))
	}
	if len(h.spans.Ended()) != 0 {
		t.Fatalf("the observer ended %v; the adopted span is its starter's to end", spanNames(h.spans.Ended()))
	}
	server.End()

	s := h.span(t, "GET /items")
	if s.InstrumentationScope().Name != "http" {
		t.Errorf("span of scope %q, want the adopted http span", s.InstrumentationScope().Name)
	}
	a := s.Attributes()
	wantAttr(t, "span", a, KeyOperationID, attribute.Int64Value(int64(op.ID())))
	wantAttr(t, "span", a, KeyOperationName, attribute.StringValue("GET /items"))
	wantAttr(t, "span", a, "route", attribute.StringValue("/items"))
	wantAttr(t, "span", a, KeyOutcome, attribute.StringValue("cancelled"))
	wantAttr(t, "span", a, KeyReason, attribute.StringValue("disconnect"))
	wantAttr(t, "span", a, KeyErrorType, attribute.StringValue("disconnect"))
	if s.Status().Code != codes.Error {
		t.Errorf("status %v, want Error", s.Status())
	}
	checkRequestedEvent(t, "span", s, e)
	if n := len(eventsNamed(s, EventProgress)); n != 1 {
		t.Errorf("%d progress events, want 1", n)
	}

	// The metrics are recorded as for any operation.
	rm := h.collect(t)
	if got := sums(t, mustMetric(t, rm, "cancel.operations"))[ended3("GET /items", "cancelled", "disconnect")]; got != 1 {
		t.Errorf("cancel.operations = %d, want 1", got)
	}
}

func TestAdoptSpanWithoutSpan(t *testing.T) {
	h := newHarness(t, nil)
	_, op := h.start(context.Background(), "job", cancel.AdoptSpan())
	op.End(nil)
	s := h.span(t, "job")
	if s.Parent().IsValid() {
		t.Errorf("span has a parent")
	}
	wantAttr(t, "span", s.Attributes(), KeyOutcome, attribute.StringValue("completed"))
}

// A span context propagated from another process is not a span this process
// can record on: the operation starts a child span of it.
func TestAdoptSpanRemote(t *testing.T) {
	h := newHarness(t, nil)
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3},
		SpanID:     trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	_, op := h.start(ctx, "GET /remote", cancel.AdoptSpan())
	op.End(nil)
	s := h.span(t, "GET /remote")
	if !s.Parent().Equal(remote) || s.SpanContext().TraceID() != remote.TraceID() {
		t.Errorf("span %v with parent %v, want a child of the remote %v", s.SpanContext(), s.Parent(), remote)
	}
	wantAttr(t, "span", s.Attributes(), KeyOutcome, attribute.StringValue("completed"))
}

func TestShieldSpan(t *testing.T) {
	h := newHarness(t, nil)
	ctx, op := h.start(context.Background(), "save")
	var shieldCtx context.Context
	err := cancel.Shield(ctx, func(sctx context.Context) error {
		shieldCtx = sctx
		op.Cancel(cancel.ReasonShutdown, "draining") // while shielded
		return nil
	})
	if cancel.ReasonOf(err) != cancel.ReasonShutdown {
		t.Fatalf("Shield returned %v, want the shutdown", err)
	}
	op.End(err)

	parent, shield := h.span(t, "save"), h.span(t, "shield")
	if shield.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("shield span's parent %v, want %v", shield.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	if !trace.SpanFromContext(shieldCtx).SpanContext().Equal(shield.SpanContext()) {
		t.Errorf("shielded section's context does not hold the shield span")
	}
	wantAttr(t, "shield", shield.Attributes(), KeyShielded, attribute.BoolValue(true))
	wantAttr(t, "shield", shield.Attributes(), KeyOutcome, attribute.StringValue("completed"))
	noAttr(t, "shield", shield.Attributes(), KeyReason)
	noAttr(t, "save", parent.Attributes(), KeyShielded)
	wantAttr(t, "save", parent.Attributes(), KeyReason, attribute.StringValue("shutdown"))
	if shield.EndTime().After(parent.EndTime()) || shield.StartTime().Before(parent.StartTime()) {
		t.Errorf("shield span [%v, %v] outside its parent's [%v, %v]",
			shield.StartTime(), shield.EndTime(), parent.StartTime(), parent.EndTime())
	}
}

func TestStreamSpan(t *testing.T) {
	h := newHarness(t, nil)
	ctx, op := h.start(context.Background(), "export")
	var got []int
	for v := range cancel.Seq(ctx, slices.Values([]int{1, 2, 3, 4, 5, 6, 7}), cancel.ReportEvery(3)) {
		got = append(got, v)
	}
	op.End(nil)
	if len(got) != 7 {
		t.Fatalf("stream delivered %v", got)
	}
	s := h.span(t, "export")
	wantAttr(t, "span", s.Attributes(), KeyDelivered, attribute.Int64Value(7))
	evs := eventsNamed(s, EventProgress)
	if len(evs) != 2 {
		t.Fatalf("%d progress events, want 2 (after items 3 and 6)", len(evs))
	}
	for i, n := range []int64{3, 6} {
		wantAttr(t, "event", evs[i].Attributes, KeyMessage, attribute.StringValue(fmt.Sprintf("processed %d items", n)))
		wantAttr(t, "event", evs[i].Attributes, "items", attribute.Int64Value(n))
	}
	rm := h.collect(t)
	if got := sums(t, mustMetric(t, rm, "cancel.progress.reports"))[nameKey("export")]; got != 2 {
		t.Errorf("cancel.progress.reports = %d, want 2", got)
	}
}

func TestStreamSpanCancelled(t *testing.T) {
	h := newHarness(t, nil)
	ctx, op := h.start(context.Background(), "export")
	n := 0
	for range cancel.Seq(ctx, slices.Values(make([]int, 100)), cancel.ReportEvery(2)) {
		if n++; n == 5 {
			op.Cancel(cancel.ReasonManual, "enough")
		}
	}
	op.End(ctx.Err())
	s := h.span(t, "export")
	wantAttr(t, "span", s.Attributes(), KeyDelivered, attribute.Int64Value(5))
	wantAttr(t, "span", s.Attributes(), KeyOutcome, attribute.StringValue("cancelled"))
	if evs := eventsNamed(s, EventProgress); len(evs) != 2 {
		t.Errorf("%d progress events, want 2", len(evs))
	}
}

// Two observers on one operation record a span each, on their own
// providers.
func TestTwoObservers(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(a, b *Observer) []cancel.Option
	}{
		{"WithObserver twice", func(a, b *Observer) []cancel.Option {
			return []cancel.Option{cancel.WithObserver(a), cancel.WithObserver(b)}
		}},
		{"MultiObserver", func(a, b *Observer) []cancel.Option {
			return []cancel.Option{cancel.WithObserver(cancel.MultiObserver(a, b))}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newHarness(t, nil), newHarness(t, nil)
			ctx, op := cancel.Start(context.Background(), "twice", tc.opts(a.obs, b.obs)...)
			op.Progress("p")
			e := cancelFromOtherGoroutine(t, op, cancel.ReasonCondition, "held")
			op.End(ctx.Err())
			for i, h := range []*harness{a, b} {
				what := fmt.Sprint("observer ", i)
				if n := len(h.spans.Ended()); n != 1 {
					t.Errorf("%s: %d spans, want 1", what, n)
					continue
				}
				s := h.span(t, "twice")
				wantAttr(t, what, s.Attributes(), KeyOperationID, attribute.Int64Value(int64(op.ID())))
				wantAttr(t, what, s.Attributes(), KeyReason, attribute.StringValue("condition"))
				checkRequestedEvent(t, what, s, e)
				if n := len(eventsNamed(s, EventProgress)); n != 1 {
					t.Errorf("%s: %d progress events, want 1", what, n)
				}
				rm := h.collect(t)
				if got := sums(t, mustMetric(t, rm, "cancel.operations"))[ended3("twice", "cancelled", "condition")]; got != 1 {
					t.Errorf("%s: cancel.operations = %d, want 1", what, got)
				}
			}
			if a.span(t, "twice").SpanContext().SpanID() == b.span(t, "twice").SpanContext().SpanID() {
				t.Errorf("both observers recorded the same span")
			}
		})
	}
}

// The observer of the default is used by operations that do not name it.
func TestDefaultObserver(t *testing.T) {
	h := newHarness(t, nil)
	prev := cancel.DefaultObserver()
	cancel.SetDefaultObserver(h.obs)
	t.Cleanup(func() { cancel.SetDefaultObserver(prev) })
	ctx, op := cancel.Start(context.Background(), "outer")
	_, child := cancel.Start(ctx, "inner")
	child.End(nil)
	op.End(nil)
	if h.span(t, "inner").Parent().SpanID() != h.span(t, "outer").SpanContext().SpanID() {
		t.Errorf("inner span is not a child of outer")
	}
}

// An unsampled operation records nothing on its span but is counted.
func TestUnsampledSpan(t *testing.T) {
	h := newHarness(t, []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.NeverSample())})
	ctx, op := h.start(context.Background(), "quiet")
	if trace.SpanFromContext(ctx).IsRecording() {
		t.Fatalf("span is recording")
	}
	op.Progress("p", slog.Int("n", 1))
	cancelFromOtherGoroutine(t, op, cancel.ReasonTimeout, "")
	op.End(ctx.Err())
	if n := len(h.spans.Ended()); n != 0 {
		t.Errorf("%d spans ended, want 0", n)
	}
	rm := h.collect(t)
	if got := sums(t, mustMetric(t, rm, "cancel.operations"))[ended3("quiet", "cancelled", "timeout")]; got != 1 {
		t.Errorf("cancel.operations = %d, want 1", got)
	}
	if got := sums(t, mustMetric(t, rm, "cancel.progress.reports"))[nameKey("quiet")]; got != 1 {
		t.Errorf("cancel.progress.reports = %d, want 1", got)
	}
}

// An adopted span whose operation completed although a cancellation was
// requested must read like any completed operation's span (as
// TestSpanCompletedAfterCancelRequest checks for spans of its own): not
// status Error with error.type = the reason.
func TestAdoptedSpanCompletedAfterCancelRequest(t *testing.T) {
	h := newHarness(t, nil)
	ctx, server := h.tp.Tracer("http").Start(context.Background(), "GET /items")
	_, op := h.start(ctx, "GET /items", cancel.AdoptSpan())
	cancelFromOtherGoroutine(t, op, cancel.ReasonDisconnect, "client gone")
	if err := op.End(nil); err != nil {
		t.Fatalf("End(nil) = %v", err)
	}
	server.End()

	s := h.span(t, "GET /items")
	a := s.Attributes()
	wantAttr(t, "span", a, KeyOutcome, attribute.StringValue("completed"))
	if v, ok := attrMap(t, a)[string(KeyErrorType)]; ok && v.AsString() != "" {
		t.Errorf("span: error.type = %q on a completed operation", v.AsString())
	}
	if v, ok := attrMap(t, a)[string(KeyReason)]; ok && v.AsString() != "" {
		t.Errorf("span: cancel.reason = %q on a completed operation", v.AsString())
	}
	if s.Status().Code == codes.Error {
		t.Errorf("status %v on a completed operation", s.Status())
	}
}

// An operation started with AdoptSpan under another operation of the same
// observer (no otelhttp span in between) must not take over, and leave its
// outcome on, the enclosing operation's span.
func TestAdoptSpanOfEnclosingOperation(t *testing.T) {
	h := newHarness(t, nil)
	jobCtx, job := h.start(context.Background(), "job")
	stepCtx, step := h.start(jobCtx, "step", cancel.AdoptSpan())
	step.Cancel(cancel.ReasonManual, "skip")
	step.End(stepCtx.Err())
	job.End(nil)

	j := h.span(t, "job")
	wantAttr(t, "job span", j.Attributes(), KeyOutcome, attribute.StringValue("completed"))
	noAttr(t, "job span", j.Attributes(), KeyErrorType)
	if j.Status().Code != codes.Unset {
		t.Errorf("job span: status %v, want Unset (the job completed)", j.Status())
	}
	if n := len(h.ended("step")); n != 1 {
		t.Errorf("%d spans named step, want 1 (a child of job)", n)
	}
}
