package otelcancel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
)

// The wrappers' side of the package documentation of otelcancel, as wscancel and sse call the
// core.

// wsConn is a websocket connection as wscancel records it.
type wsConn struct {
	ctx context.Context
	op  *cancel.Operation
}

func (h *harness) wsOpen(ctx context.Context, name, subprotocol string, opts ...cancel.Option) *wsConn {
	ctx, op := h.start(ctx, name, opts...)
	op.Event("ws.open", slog.String("ws.subprotocol", subprotocol))
	return &wsConn{ctx, op}
}

func (c *wsConn) read(n int) {
	for range n {
		c.op.Count("ws.messages.in", 1)
	}
}

func (c *wsConn) write(n int) {
	for range n {
		c.op.Count("ws.messages.out", 1)
	}
}

// close sends or receives the close frame, then ends the operation with
// err.
func (c *wsConn) close(code int, by string, err error) {
	c.op.Event("ws.close", slog.Int("ws.close.code", code), slog.String("ws.close.by", by),
		slog.String("cancel.reason", reasonString(cancel.RootReason(c.op.Err()))))
	c.op.End(err)
}

func reasonString(r cancel.Reason) string {
	if r == 0 {
		return ""
	}
	return r.String()
}

// sseStream is an SSE stream as package sse records it.
type sseStream struct {
	ctx    context.Context
	op     *cancel.Operation
	events int64
}

func (h *harness) sseOpen(ctx context.Context, name, lastEventID string, opts ...cancel.Option) *sseStream {
	ctx, op := h.start(ctx, name, opts...)
	op.Event("sse.open", slog.Bool("sse.resumed", lastEventID != ""))
	return &sseStream{ctx: ctx, op: op}
}

func (s *sseStream) send(n int) {
	for range n {
		s.op.Count("sse.events", 1)
		s.events++
	}
}

func (s *sseStream) close(err error) {
	s.op.Event("sse.close", slog.String("cancel.reason", reasonString(cancel.RootReason(s.op.Err()))),
		slog.Int64("sse.events", s.events))
	s.op.End(err)
}

func dirKey(name, dir string) string {
	return fmt.Sprintf("cancel.operation.name=%s,cancel.ws.direction=%s", name, dir)
}

func closeKey3(name, code, reason string) string {
	return fmt.Sprintf("cancel.operation.name=%s,cancel.reason=%s,cancel.ws.close.code=%s", name, reason, code)
}

func TestStreamInstruments(t *testing.T) {
	h := newHarness(t, nil)
	c := h.wsOpen(context.Background(), "ws /chat", "")
	c.read(1)
	c.op.Cancel(cancel.ReasonDisconnect, "")
	c.close(1006, "peer", c.ctx.Err())
	s := h.sseOpen(context.Background(), "sse /feed", "")
	s.send(1)
	s.close(nil)
	rm := h.collect(t)

	for _, tc := range []struct {
		name, unit, kind string
	}{
		{"cancel.ws.connections.active", "{1}", "updown"},
		{"cancel.ws.messages", "{1}", "counter"},
		{"cancel.ws.closes", "{1}", "counter"},
		{"cancel.ws.connection.duration", "s", "histogram"},
		{"cancel.sse.streams.active", "{1}", "updown"},
		{"cancel.sse.events", "{1}", "counter"},
		{"cancel.sse.stream.duration", "s", "histogram"},
		{"cancel.sse.ends", "{1}", "counter"},
	} {
		m := checkInstrument(t, rm, tc.name, tc.unit, tc.kind)
		if d, ok := m.Data.(metricdata.Histogram[float64]); ok {
			for _, dp := range d.DataPoints {
				if !slices.Equal(dp.Bounds, DefaultStreamBuckets) {
					t.Errorf("%s: bounds %v, want DefaultStreamBuckets", tc.name, dp.Bounds)
				}
			}
		}
	}
	var n int
	for _, sm := range rm.ScopeMetrics {
		n += len(sm.Metrics)
	}
	if n != 5+8 {
		t.Errorf("%d metrics, want the 5 of operations and the 8 of streams", n)
	}
}

// Without websockets or SSE, none of their metrics exists.
func TestNoStreamMetricsWithoutStreams(t *testing.T) {
	h := newHarness(t, nil)
	_, op := h.start(context.Background(), "plain")
	op.Count("ws.messages.in", 0)  // nothing
	op.Count("ws.messages.in", -3) // nothing: counters only grow
	op.Count("mine", 1)            // not a count of the contract
	op.Event("mine.happened")      // a span event only
	op.Event("sse.close")          // a span event only: no stream was open
	op.End(nil)
	rm := h.collect(t)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if strings.HasPrefix(m.Name, "cancel.ws.") || strings.HasPrefix(m.Name, "cancel.sse.") {
				t.Errorf("metric %s without a stream", m.Name)
			}
		}
	}
	if got := len(eventsNamed(h.span(t, "plain"), "cancel.mine.happened")); got != 1 {
		t.Errorf("%d cancel.mine.happened events, want 1", got)
	}
}

func TestWebsocketMetrics(t *testing.T) {
	h := newHarness(t, nil)
	const name = "ws /chat"
	wsMetric := func(metric string) map[string]int64 {
		t.Helper()
		return sums(t, mustMetric(t, h.collect(t), metric))
	}

	// A connection that just opened: its name's series exist, at zero.
	a := h.wsOpen(context.Background(), name, "chat")
	if got, want := wsMetric("cancel.ws.connections.active"), map[string]int64{nameKey(name): 1}; !maps.Equal(got, want) {
		t.Errorf("active = %v, want %v", got, want)
	}
	if got, want := wsMetric("cancel.ws.messages"), map[string]int64{dirKey(name, "in"): 0, dirKey(name, "out"): 0}; !maps.Equal(got, want) {
		t.Errorf("messages = %v, want %v", got, want)
	}

	// Normal closure by the client.
	a.read(3)
	a.write(5)
	b := h.wsOpen(context.Background(), name, "")
	b.read(1)
	if got, want := wsMetric("cancel.ws.connections.active"), map[string]int64{nameKey(name): 2}; !maps.Equal(got, want) {
		t.Errorf("active = %v, want %v", got, want)
	}
	a.close(1000, "peer", nil)

	// The server drains: closed with 1001, cancelled by shutdown.
	b.op.Cancel(cancel.ReasonShutdown, "draining")
	b.write(1)
	b.close(1001, "local", b.ctx.Err())

	// The peer vanished without a close frame.
	c := h.wsOpen(context.Background(), name, "")
	c.op.Cancel(cancel.ReasonDisconnect, "")
	c.close(1006, "peer", c.ctx.Err())

	// Application codes, and codes outside the set.
	for _, code := range []int{4000, 4001, 4099, 4100, 4999, 3000, 999, 1016, 0, 65535} {
		d := h.wsOpen(context.Background(), name, "")
		d.close(code, "local", errors.New("app"))
	}

	rm := h.collect(t)
	if got, want := sums(t, mustMetric(t, rm, "cancel.ws.connections.active")), map[string]int64{nameKey(name): 0}; !maps.Equal(got, want) {
		t.Errorf("active = %v, want %v", got, want)
	}
	if got, want := sums(t, mustMetric(t, rm, "cancel.ws.messages")), map[string]int64{dirKey(name, "in"): 4, dirKey(name, "out"): 6}; !maps.Equal(got, want) {
		t.Errorf("messages = %v, want %v", got, want)
	}
	wantCloses := map[string]int64{
		closeKey3(name, "1000", ""):           1,
		closeKey3(name, "1001", "shutdown"):   1,
		closeKey3(name, "1006", "disconnect"): 1,
		closeKey3(name, "4000", ""):           1,
		closeKey3(name, "4001", ""):           1,
		closeKey3(name, "4099", ""):           1,
		closeKey3(name, CloseCodeOther, ""):   7,
	}
	if got := sums(t, mustMetric(t, rm, "cancel.ws.closes")); !maps.Equal(got, wantCloses) {
		t.Errorf("closes =\n%v\nwant\n%v", got, wantCloses)
	}
	// Durations by outcome and reason of the connection's operation.
	durs := histograms(t, mustMetric(t, rm, "cancel.ws.connection.duration"))
	wantDur := map[string]uint64{
		ended3(name, "completed", ""):           1,
		ended3(name, "cancelled", "shutdown"):   1,
		ended3(name, "cancelled", "disconnect"): 1,
		ended3(name, "failed", ""):              10,
	}
	if len(durs) != len(wantDur) {
		t.Errorf("%d duration series, want %d: %v", len(durs), len(wantDur), slices.Sorted(maps.Keys(durs)))
	}
	for k, n := range wantDur {
		if dp := durs[k]; dp.Count != n || !slices.Equal(dp.Bounds, DefaultStreamBuckets) {
			t.Errorf("duration %s: count %d bounds %v, want %d and DefaultStreamBuckets", k, dp.Count, dp.Bounds, n)
		}
	}
	if dp := durs[ended3(name, "completed", "")]; dp.Sum != a.op.Duration().Seconds() {
		t.Errorf("duration sum %v, want the connection's %v", dp.Sum, a.op.Duration().Seconds())
	}
	// Connections are operations too.
	if got := sums(t, mustMetric(t, rm, "cancel.operations"))[ended3(name, "failed", "")]; got != 10 {
		t.Errorf("cancel.operations failed = %d, want 10", got)
	}
}

// An operation counts once as a connection and once as a closed one, even
// if a wrapper repeated its events.
func TestWebsocketEventsCountOnce(t *testing.T) {
	h := newHarness(t, nil)
	c := h.wsOpen(context.Background(), "ws", "")
	c.op.Event("ws.open")
	c.op.Event("ws.close", slog.Int("ws.close.code", 1000))
	c.close(1011, "local", nil)
	rm := h.collect(t)
	if got, want := sums(t, mustMetric(t, rm, "cancel.ws.connections.active")), map[string]int64{nameKey("ws"): 0}; !maps.Equal(got, want) {
		t.Errorf("active = %v, want %v", got, want)
	}
	if got, want := sums(t, mustMetric(t, rm, "cancel.ws.closes")), map[string]int64{closeKey3("ws", "1000", ""): 1}; !maps.Equal(got, want) {
		t.Errorf("closes = %v, want %v (the first close)", got, want)
	}
	var n uint64
	for _, dp := range histograms(t, mustMetric(t, rm, "cancel.ws.connection.duration")) {
		n += dp.Count
	}
	if n != 1 {
		t.Errorf("%d durations, want 1", n)
	}
	span := h.span(t, "ws")
	if got := len(eventsNamed(span, EventWSOpen)); got != 2 {
		t.Errorf("%d %s events, want both", got, EventWSOpen)
	}
	if got := len(eventsNamed(span, EventWSClose)); got != 2 {
		t.Errorf("%d %s events, want both", got, EventWSClose)
	}
}

// A close without a code or with a code or reason of the wrong kind counts
// as "other" and with no reason: label values stay in their closed sets.
func TestWebsocketCloseOddAttributes(t *testing.T) {
	h := newHarness(t, nil)
	for _, attrs := range [][]slog.Attr{
		nil,
		{slog.String("ws.close.code", "1000"), slog.String("cancel.reason", "bogus")},
		{slog.Float64("ws.close.code", 1000), slog.Int("cancel.reason", 1)},
		{slog.Uint64("ws.close.code", 1<<63+1000)},
	} {
		_, op := h.start(context.Background(), "ws")
		op.Event("ws.open")
		op.Event("ws.close", attrs...)
		op.End(nil)
	}
	_, op := h.start(context.Background(), "ws")
	op.Event("ws.open")
	op.Event("ws.close", slog.Uint64("ws.close.code", 4002), slog.Any("cancel.reason", slog.StringValue("timeout")))
	op.End(nil)
	want := map[string]int64{closeKey3("ws", CloseCodeOther, ""): 4, closeKey3("ws", "4002", "timeout"): 1}
	if got := sums(t, mustMetric(t, h.collect(t), "cancel.ws.closes")); !maps.Equal(got, want) {
		t.Errorf("closes = %v, want %v", got, want)
	}
}

func TestCloseCodes(t *testing.T) {
	for code, want := range map[int64]string{
		1000: "1000", 1001: "1001", 1006: "1006", 1011: "1011", 1015: "1015",
		4000: "4000", 4042: "4042", 4099: "4099",
		999: CloseCodeOther, 1016: CloseCodeOther, 2000: CloseCodeOther, 3000: CloseCodeOther,
		3999: CloseCodeOther, 4100: CloseCodeOther, 4999: CloseCodeOther, 5000: CloseCodeOther,
		0: CloseCodeOther, -1000: CloseCodeOther, 1<<40 + 1000: CloseCodeOther,
	} {
		if got := closeCodes[closeCodeIndex(code)]; got != want {
			t.Errorf("close code %d: %q, want %q", code, got, want)
		}
	}
	if len(closeCodes) != 16+100+1 {
		t.Errorf("%d close code labels", len(closeCodes))
	}
	seen := map[string]bool{}
	for _, c := range closeCodes {
		if seen[c] || c == "" {
			t.Errorf("close code label %q twice or empty", c)
		}
		seen[c] = true
	}
}

// zeroEnds returns the cancel.sse.ends series a name starts with: those of
// cancel.operations.
func zeroEnds(name string) map[string]int64 { return zeroSeries(name) }

func TestSSEMetrics(t *testing.T) {
	h := newHarness(t, nil)
	const name = "sse /feed"
	a := h.sseOpen(context.Background(), name, "")
	rm := h.collect(t)
	if got, want := sums(t, mustMetric(t, rm, "cancel.sse.streams.active")), map[string]int64{nameKey(name): 1}; !maps.Equal(got, want) {
		t.Errorf("active = %v, want %v", got, want)
	}
	if got, want := sums(t, mustMetric(t, rm, "cancel.sse.events")), map[string]int64{nameKey(name): 0}; !maps.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if got, want := sums(t, mustMetric(t, rm, "cancel.sse.ends")), zeroEnds(name); !maps.Equal(got, want) {
		t.Errorf("ends = %v\nwant %v", got, want)
	}

	a.send(7)
	b := h.sseOpen(context.Background(), name, "42")
	b.send(2)
	a.close(nil)
	b.op.Cancel(cancel.ReasonDisconnect, "")
	b.close(b.ctx.Err())
	c := h.sseOpen(context.Background(), name, "")
	c.close(errors.New("boom"))
	d := h.sseOpen(context.Background(), name, "")
	d.op.Cancel(cancel.ReasonTimeout, "")
	d.send(1)
	d.close(nil) // finished anyway

	rm = h.collect(t)
	if got, want := sums(t, mustMetric(t, rm, "cancel.sse.streams.active")), map[string]int64{nameKey(name): 0}; !maps.Equal(got, want) {
		t.Errorf("active = %v, want %v", got, want)
	}
	if got, want := sums(t, mustMetric(t, rm, "cancel.sse.events")), map[string]int64{nameKey(name): 10}; !maps.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	wantEnds := zeroEnds(name)
	wantEnds[ended3(name, "completed", "")] = 2
	wantEnds[ended3(name, "cancelled", "disconnect")] = 1
	wantEnds[ended3(name, "failed", "")] = 1
	if got := sums(t, mustMetric(t, rm, "cancel.sse.ends")); !maps.Equal(got, wantEnds) {
		t.Errorf("ends = %v\nwant %v", got, wantEnds)
	}
	durs := histograms(t, mustMetric(t, rm, "cancel.sse.stream.duration"))
	wantDur := map[string]uint64{
		ended3(name, "completed", ""):           2,
		ended3(name, "cancelled", "disconnect"): 1,
		ended3(name, "failed", ""):              1,
	}
	if len(durs) != len(wantDur) {
		t.Errorf("%d duration series, want %d", len(durs), len(wantDur))
	}
	for k, n := range wantDur {
		if dp := durs[k]; dp.Count != n || !slices.Equal(dp.Bounds, DefaultStreamBuckets) {
			t.Errorf("duration %s: count %d bounds %v, want %d and DefaultStreamBuckets", k, dp.Count, dp.Bounds, n)
		}
	}
	// No websocket metrics from SSE streams.
	if _, ok := findMetric(rm, "cancel.ws.messages"); ok {
		t.Errorf("cancel.ws.messages from SSE streams")
	}
}

// An SSE stream that never opened (the handler failed before the headers)
// is an operation, but no stream.
func TestSSEUnopenedStream(t *testing.T) {
	h := newHarness(t, nil)
	_, op := h.start(context.Background(), "sse")
	op.End(errors.New("no flusher"))
	if _, ok := findMetric(h.collect(t), "cancel.sse.ends"); ok {
		t.Errorf("cancel.sse.ends counts a stream that never opened")
	}
}

// Every event is a span event "cancel." + name, with the event's time and
// attributes mapped as those of progress reports.
func TestStreamSpanEvents(t *testing.T) {
	h := newHarness(t, nil)
	c := h.wsOpen(context.Background(), "ws /chat", "chat.v2")
	c.op.Event("ws.custom", slog.Group("g", slog.Int("n", 1), slog.Duration("d", time.Second)))
	c.op.Cancel(cancel.ReasonTimeout, "idle")
	c.close(1011, "local", c.ctx.Err())
	s := h.sseOpen(context.Background(), "sse /feed", "7")
	s.send(3)
	s.close(nil)

	ws := h.span(t, "ws /chat")
	wantEvent := func(span string, events []sdktrace.Event, name string, want map[string]attribute.Value) {
		t.Helper()
		if len(events) != 1 {
			t.Fatalf("%s: %d %s events, want 1", span, len(events), name)
		}
		got := attrMap(t, events[0].Attributes)
		if !maps.Equal(got, want) {
			t.Errorf("%s: %s attributes %v, want %v", span, name, got, want)
		}
	}
	wantEvent("ws", eventsNamed(ws, EventWSOpen), EventWSOpen, map[string]attribute.Value{
		"ws.subprotocol": attribute.StringValue("chat.v2"),
	})
	wantEvent("ws", eventsNamed(ws, "cancel.ws.custom"), "cancel.ws.custom", map[string]attribute.Value{
		"g.n": attribute.Int64Value(1), "g.d": attribute.StringValue("1s"),
	})
	wantEvent("ws", eventsNamed(ws, EventWSClose), EventWSClose, map[string]attribute.Value{
		"ws.close.code": attribute.Int64Value(1011),
		"ws.close.by":   attribute.StringValue("local"),
		"cancel.reason": attribute.StringValue("timeout"),
	})
	// In order, at their times: open, custom, requested, close.
	var names []string
	for _, e := range ws.Events() {
		names = append(names, e.Name)
		if e.Time.Before(ws.StartTime()) || e.Time.After(ws.EndTime()) {
			t.Errorf("event %s at %v, outside the span", e.Name, e.Time)
		}
	}
	if want := []string{EventWSOpen, "cancel.ws.custom", EventRequested, EventWSClose}; !slices.Equal(names, want) {
		t.Errorf("events %v, want %v", names, want)
	}

	sse := h.span(t, "sse /feed")
	wantEvent("sse", eventsNamed(sse, EventSSEOpen), EventSSEOpen, map[string]attribute.Value{
		"sse.resumed": attribute.BoolValue(true),
	})
	wantEvent("sse", eventsNamed(sse, EventSSEClose), EventSSEClose, map[string]attribute.Value{
		"cancel.reason": attribute.StringValue(""),
		"sse.events":    attribute.Int64Value(3),
	})
	if n := len(sse.Events()); n != 2 {
		t.Errorf("%d events on the SSE span, want 2 (counts are no events)", n)
	}
}

// An event's time is the one the core took when it was recorded.
func TestStreamEventTime(t *testing.T) {
	h := newHarness(t, nil)
	_, op := h.start(context.Background(), "ws")
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	h.obs.ObserveEvent(op, cancel.Event{Time: at, Name: "ws.open"})
	h.obs.ObserveEvent(op, cancel.Event{Name: "x"}) // no time: now
	op.End(nil)
	span := h.span(t, "ws")
	if e := eventsNamed(span, EventWSOpen); len(e) != 1 || !e[0].Time.Equal(at) {
		t.Errorf("ws.open events %v, want one at %v", e, at)
	}
	if e := eventsNamed(span, "cancel.x"); len(e) != 1 || e[0].Time.Before(span.StartTime()) {
		t.Errorf("x events %v, want one during the span", e)
	}
}

// A connection that adopted the request's span records its events there.
func TestStreamEventsOnAdoptedSpan(t *testing.T) {
	h := newHarness(t, nil)
	ctx, server := h.tp.Tracer("http").Start(context.Background(), "GET /chat")
	c := h.wsOpen(ctx, "ws /chat", "", cancel.AdoptSpan())
	c.close(1000, "peer", nil)
	server.End()
	span := h.span(t, "GET /chat")
	if n := len(eventsNamed(span, EventWSOpen)) + len(eventsNamed(span, EventWSClose)); n != 2 {
		t.Errorf("%d ws events on the adopted span, want 2", n)
	}
	if n := len(h.spans.Ended()); n != 1 {
		t.Errorf("%d spans, want the adopted one only", n)
	}
	dp := histograms(t, mustMetric(t, h.collect(t), "cancel.ws.connection.duration"))[ended3("ws /chat", "completed", "")]
	if len(dp.Exemplars) != 1 || trace.SpanID(dp.Exemplars[0].SpanID) != server.SpanContext().SpanID() {
		t.Errorf("exemplars %v, want one of the adopted span", dp.Exemplars)
	}
}

// Unsampled connections count all the same, without span events.
func TestStreamsUnsampled(t *testing.T) {
	h := newHarness(t, []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.NeverSample())})
	c := h.wsOpen(context.Background(), "ws", "")
	c.read(2)
	c.close(1000, "peer", nil)
	rm := h.collect(t)
	if got := sums(t, mustMetric(t, rm, "cancel.ws.messages"))[dirKey("ws", "in")]; got != 2 {
		t.Errorf("messages in = %d, want 2", got)
	}
	if got := sums(t, mustMetric(t, rm, "cancel.ws.closes"))[closeKey3("ws", "1000", "")]; got != 1 {
		t.Errorf("closes = %d, want 1", got)
	}
	if n := len(h.spans.Ended()); n != 0 {
		t.Errorf("%d spans recorded, want none", n)
	}
}

// Operations that started before the observer was set hear nothing.
func TestStreamEventsWithoutState(t *testing.T) {
	h := newHarness(t, nil)
	_, op := cancel.Start(context.Background(), "ws", cancel.WithObserver(cancel.Hooks{}))
	h.obs.ObserveEvent(op, cancel.Event{Name: "ws.open"})
	h.obs.ObserveCount(op, "ws.messages.in", 1)
	op.End(nil)
	if _, ok := findMetric(h.collect(t), "cancel.ws.messages"); ok {
		t.Errorf("counted an operation the observer did not start")
	}
}

// Names beyond the cap count under OtherName for streams too.
func TestStreamsMaxNames(t *testing.T) {
	h := newHarness(t, nil, WithMaxNames(1))
	for _, n := range []string{"ws /a", "ws /b", "ws /c"} {
		c := h.wsOpen(context.Background(), n, "")
		c.read(1)
		c.close(1000, "peer", nil)
	}
	s := h.sseOpen(context.Background(), "sse /x", "")
	s.send(4)
	s.close(nil)
	rm := h.collect(t)
	want := map[string]int64{
		dirKey("ws /a", "in"): 1, dirKey("ws /a", "out"): 0,
		dirKey(OtherName, "in"): 2, dirKey(OtherName, "out"): 0,
	}
	if got := sums(t, mustMetric(t, rm, "cancel.ws.messages")); !maps.Equal(got, want) {
		t.Errorf("messages = %v, want %v", got, want)
	}
	wantCloses := map[string]int64{closeKey3("ws /a", "1000", ""): 1, closeKey3(OtherName, "1000", ""): 2}
	if got := sums(t, mustMetric(t, rm, "cancel.ws.closes")); !maps.Equal(got, wantCloses) {
		t.Errorf("closes = %v, want %v", got, wantCloses)
	}
	if got, want := sums(t, mustMetric(t, rm, "cancel.sse.events")), map[string]int64{nameKey(OtherName): 4}; !maps.Equal(got, want) {
		t.Errorf("sse events = %v, want %v", got, want)
	}
}

func TestStreamBuckets(t *testing.T) {
	if err := checkBuckets("stream", DefaultStreamBuckets); err != nil {
		t.Fatal(err)
	}
	if b := DefaultStreamBuckets; b[0] > 0.1 || b[len(b)-1] < 3*3600 {
		t.Errorf("stream buckets %v do not span 0.1s to hours", b)
	}
	bounds := []float64{1, 60}
	h := newHarness(t, nil, WithStreamBuckets(bounds...), WithDurationBuckets(0.5))
	bounds[0] = 100 // copied
	c := h.wsOpen(context.Background(), "ws", "")
	c.close(1000, "peer", nil)
	s := h.sseOpen(context.Background(), "sse", "")
	s.close(nil)
	rm := h.collect(t)
	for _, m := range []string{"cancel.ws.connection.duration", "cancel.sse.stream.duration"} {
		for k, dp := range histograms(t, mustMetric(t, rm, m)) {
			if !slices.Equal(dp.Bounds, []float64{1, 60}) {
				t.Errorf("%s %s: bounds %v, want [1 60]", m, k, dp.Bounds)
			}
		}
	}
	for k, dp := range histograms(t, mustMetric(t, rm, "cancel.operation.duration")) {
		if !slices.Equal(dp.Bounds, []float64{0.5}) {
			t.Errorf("operation duration %s: bounds %v, want [0.5]", k, dp.Bounds)
		}
	}
}

// ObserveCount is on the path of every websocket message and SSE event: no
// allocation, through the core or directly.
func TestObserveCountAllocs(t *testing.T) {
	h := newHarness(t, nil)
	_, ws := h.start(context.Background(), "ws")
	ws.Event("ws.open")
	_, sse := h.start(context.Background(), "sse")
	sse.Event("sse.open")
	defer ws.End(nil)
	defer sse.End(nil)
	for name, f := range map[string]func(){
		"ws in":      func() { ws.Count("ws.messages.in", 1) },
		"ws out":     func() { ws.Count("ws.messages.out", 1) },
		"sse events": func() { sse.Count("sse.events", 1) },
		"unknown":    func() { ws.Count("bytes", 100) },
		"direct":     func() { h.obs.ObserveCount(ws, "ws.messages.in", 1) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per count", name, n)
		}
	}
}

// Many connections and streams, each read and written from two goroutines
// at once: the totals are exact.
func TestStreamsConcurrent(t *testing.T) {
	const (
		conns    = 40
		messages = 300 // per direction and connection
		streams  = 40
		events   = 250
	)
	h := newHarness(t, nil)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			name := fmt.Sprint("ws /", i%3)
			c := h.wsOpen(context.Background(), name, "")
			var rw sync.WaitGroup
			rw.Go(func() { c.read(messages) })
			rw.Go(func() { c.write(messages) })
			rw.Wait()
			if i%2 == 0 {
				c.op.Cancel(cancel.ReasonShutdown, "")
				c.close(1001, "local", c.ctx.Err())
			} else {
				c.close(1000, "peer", nil)
			}
		})
	}
	for i := range streams {
		wg.Go(func() {
			s := h.sseOpen(context.Background(), fmt.Sprint("sse /", i%2), "")
			var w sync.WaitGroup
			for range 2 {
				w.Go(func() {
					for range events {
						s.op.Count("sse.events", 1)
					}
				})
			}
			w.Wait()
			s.close(nil)
		})
	}
	// Collections meanwhile.
	done := make(chan struct{})
	var collector sync.WaitGroup
	collector.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				h.collect(t)
			}
		}
	})
	wg.Wait()
	close(done)
	collector.Wait()

	rm := h.collect(t)
	total := func(m map[string]int64) (n int64) {
		for _, v := range m {
			n += v
		}
		return n
	}
	msgs := sums(t, mustMetric(t, rm, "cancel.ws.messages"))
	if got := total(msgs); got != 2*conns*messages {
		t.Errorf("%d messages, want %d", got, 2*conns*messages)
	}
	for i := range 3 {
		name := fmt.Sprint("ws /", i)
		per := int64((conns - i + 2) / 3 * messages)
		if msgs[dirKey(name, "in")] != per || msgs[dirKey(name, "out")] != per {
			t.Errorf("%s: %d in and %d out, want %d each", name, msgs[dirKey(name, "in")], msgs[dirKey(name, "out")], per)
		}
	}
	closes := sums(t, mustMetric(t, rm, "cancel.ws.closes"))
	if got := total(closes); got != conns {
		t.Errorf("%d closes, want %d", got, conns)
	}
	for k, v := range sums(t, mustMetric(t, rm, "cancel.ws.connections.active")) {
		if v != 0 {
			t.Errorf("active %s = %d", k, v)
		}
	}
	if got := total(sums(t, mustMetric(t, rm, "cancel.sse.events"))); got != 2*streams*events {
		t.Errorf("%d SSE events, want %d", got, 2*streams*events)
	}
	if got := total(sums(t, mustMetric(t, rm, "cancel.sse.ends"))); got != streams {
		t.Errorf("%d SSE ends, want %d", got, streams)
	}
	for k, v := range sums(t, mustMetric(t, rm, "cancel.sse.streams.active")) {
		if v != 0 {
			t.Errorf("active %s = %d", k, v)
		}
	}
	var n uint64
	for _, dp := range histograms(t, mustMetric(t, rm, "cancel.ws.connection.duration")) {
		n += dp.Count
	}
	if n != conns {
		t.Errorf("%d connection durations, want %d", n, conns)
	}
}

// A stream stopped because its request was (ReasonParent) ends in the
// stream metrics by the root reason, as its client was told, while the
// operation metrics keep "parent".
func TestStreamEndsByRootReason(t *testing.T) {
	h := newHarness(t, nil)
	const name = "sse /feed"
	reqCtx, req := h.start(context.Background(), "GET /feed")
	s := h.sseOpen(reqCtx, name, "")
	req.Cancel(cancel.ReasonTimeout, "")
	<-s.ctx.Done()
	s.close(s.ctx.Err())
	req.End(nil)

	rm := h.collect(t)
	wantEnds := zeroEnds(name)
	wantEnds[ended3(name, "cancelled", "timeout")] = 1
	if got := sums(t, mustMetric(t, rm, "cancel.sse.ends")); !maps.Equal(got, wantEnds) {
		t.Errorf("ends = %v\nwant %v", got, wantEnds)
	}
	if got := histograms(t, mustMetric(t, rm, "cancel.sse.stream.duration")); got[ended3(name, "cancelled", "timeout")].Count != 1 {
		t.Errorf("durations %v, want one by timeout", got)
	}
	if got := sums(t, mustMetric(t, rm, "cancel.operations")); got[ended3(name, "cancelled", "parent")] != 1 {
		t.Errorf("operations %v, want the stream's by parent", got)
	}
}
