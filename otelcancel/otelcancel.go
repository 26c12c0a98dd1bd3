package otelcancel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/cancelable-go/cancelable/otelcancel"

// Attribute keys of spans, events and metrics.
const (
	KeyOperationID   = attribute.Key("cancel.operation.id")
	KeyOperationName = attribute.Key("cancel.operation.name")
	KeyOutcome       = attribute.Key("cancel.outcome")
	KeyReason        = attribute.Key("cancel.reason")
	KeyMessage       = attribute.Key("cancel.message")
	KeyShielded      = attribute.Key("cancel.shielded")
	KeyDelivered     = attribute.Key("cancel.delivered")
	KeyErrorType     = attribute.Key("error.type")
	// KeyWSDirection is the direction of websocket messages: "in" (read
	// from the peer) or "out" (written to it).
	KeyWSDirection = attribute.Key("cancel.ws.direction")
	// KeyWSCloseCode is the close code of a websocket connection, as a
	// string from a closed set (see CloseCodeOther).
	KeyWSCloseCode = attribute.Key("cancel.ws.close.code")
)

// Span event names.
const (
	EventProgress  = "cancel.progress"
	EventRequested = "cancel.requested"
)

// OtherName is the operation name metrics use once more distinct names than
// the limit (see WithMaxNames) were seen: a guard against unbounded label
// values when names are built from raw input.
const OtherName = "_other"

// DefaultDurationBuckets are the bucket bounds, in seconds, of
// cancel.operation.duration: from request latencies to long streams.
var DefaultDurationBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
	30, 60, 120, 300, 600, 1800, 3600,
}

// DefaultStreamBuckets are the bucket bounds, in seconds, of
// cancel.ws.connection.duration and cancel.sse.stream.duration: long-lived
// connections, from a tenth of a second to four hours.
var DefaultStreamBuckets = []float64{
	0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400,
}

// DefaultStopLatencyBuckets are the bucket bounds, in seconds, of
// cancel.stop.latency: work that honours its context stops within
// microseconds; anything past a second ignores it.
var DefaultStopLatencyBuckets = []float64{
	0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30,
}

// An Option configures New.
type Option func(*config) error

type config struct {
	tp          trace.TracerProvider
	mp          metric.MeterProvider
	duration    []float64
	stopLatency []float64
	stream      []float64
	maxNames    int
}

// WithTracerProvider sets the tracer provider; the global one by default.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp == nil || isNil(tp) {
			return errors.New("otelcancel: WithTracerProvider: nil provider")
		}
		c.tp = tp
		return nil
	}
}

// WithMeterProvider sets the meter provider; the global one by default.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil || isNil(mp) {
			return errors.New("otelcancel: WithMeterProvider: nil provider")
		}
		c.mp = mp
		return nil
	}
}

// WithDurationBuckets sets the bucket bounds, in seconds, of the duration
// histogram. They must be positive, finite and increasing.
func WithDurationBuckets(bounds ...float64) Option {
	bounds = slices.Clone(bounds)
	return func(c *config) error {
		if err := checkBuckets("WithDurationBuckets", bounds); err != nil {
			return err
		}
		c.duration = bounds
		return nil
	}
}

// WithStopLatencyBuckets sets the bucket bounds, in seconds, of the stop
// latency histogram. They must be positive, finite and increasing.
func WithStopLatencyBuckets(bounds ...float64) Option {
	bounds = slices.Clone(bounds)
	return func(c *config) error {
		if err := checkBuckets("WithStopLatencyBuckets", bounds); err != nil {
			return err
		}
		c.stopLatency = bounds
		return nil
	}
}

// WithStreamBuckets sets the bucket bounds, in seconds, of the websocket
// connection and SSE stream duration histograms (DefaultStreamBuckets by
// default). They must be positive, finite and increasing.
func WithStreamBuckets(bounds ...float64) Option {
	bounds = slices.Clone(bounds)
	return func(c *config) error {
		if err := checkBuckets("WithStreamBuckets", bounds); err != nil {
			return err
		}
		c.stream = bounds
		return nil
	}
}

func checkBuckets(option string, bounds []float64) error {
	if len(bounds) == 0 {
		return fmt.Errorf("otelcancel: %s: no bounds", option)
	}
	for i, b := range bounds {
		// The +Inf bucket is always there: a bound of +Inf would make
		// it twice in Prometheus.
		if !(b > 0) || math.IsInf(b, 1) || i > 0 && b <= bounds[i-1] {
			return fmt.Errorf("otelcancel: %s: bounds must be positive, finite and increasing, got %v", option, bounds)
		}
	}
	return nil
}

// DefaultMaxNames is the number of distinct operation names metrics carry
// unless WithMaxNames says otherwise.
//
// Each name has up to 10 series per instrument (3 outcomes, 8 reasons), and
// the OpenTelemetry SDK keeps at most 2000 series per instrument by default
// (sdkmetric.WithCardinalityLimit), beyond which it merges new series into
// one without attributes, losing the name. 100 names, and OtherName, stay
// well within that. The exception is cancel.ws.closes, with a series per
// close code and reason that occurred: in practice a handful per name (a
// server closes with the code that goes with the reason), but a name whose
// peers close with many codes of the set takes more.
const DefaultMaxNames = 100

// WithMaxNames caps the distinct operation names metrics carry (default
// DefaultMaxNames); operations with further names are counted under
// OtherName. Spans keep the real names. Beyond 190 names, raise the meter
// provider's cardinality limit (sdkmetric.WithCardinalityLimit) to at least
// 10 series per name, OtherName included.
func WithMaxNames(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("otelcancel: WithMaxNames: need at least 1, got %d", n)
		}
		c.maxNames = n
		return nil
	}
}

// An Observer records operations as spans, span events and metrics. It
// implements cancel.EventObserver and is safe for concurrent use.
//
// The counters (cancel.operations, cancel.operation.active,
// cancel.progress.reports, and the cancel.ws.* and cancel.sse.* counters)
// are asynchronous instruments: operations count themselves on atomics of
// their name's series, and the meter reads them at collection. An operation
// then costs atomic adds and one histogram record (two when a cancellation
// was requested) instead of four instrument calls, a websocket message or
// an SSE event one atomic add, and every known series exists from its
// name's first operation on. The histograms are recorded as operations end,
// in the span's context, for exemplars.
//
// Each Observer registers a callback with its meter provider for good: make
// one per program (or per meter provider), not one per request.
type Observer struct {
	tracer      trace.Tracer
	operations  metric.Int64ObservableCounter
	duration    metric.Float64Histogram
	active      metric.Int64ObservableUpDownCounter
	stopLatency metric.Float64Histogram
	progress    metric.Int64ObservableCounter

	wsActive    metric.Int64ObservableUpDownCounter
	wsMessages  metric.Int64ObservableCounter
	wsCloses    metric.Int64ObservableCounter
	wsDuration  metric.Float64Histogram
	sseActive   metric.Int64ObservableUpDownCounter
	sseEvents   metric.Int64ObservableCounter
	sseDuration metric.Float64Histogram
	sseEnds     metric.Int64ObservableCounter

	maxNames int
	mu       sync.Mutex
	names    sync.Map // string -> *nameSeries
	count    int      // entries in names, under mu
	full     atomic.Bool
	other    atomic.Pointer[nameSeries] // set before full
}

var _ cancel.EventObserver = (*Observer)(nil)

// New returns an Observer. Invalid options make it fail with an error naming
// the option.
func New(opts ...Option) (*Observer, error) {
	c := config{duration: DefaultDurationBuckets, stopLatency: DefaultStopLatencyBuckets,
		stream: DefaultStreamBuckets, maxNames: DefaultMaxNames}
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("otelcancel: New: nil Option (option %d of %d)", i+1, len(opts))
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	meter := c.mp.Meter(ScopeName)
	o := &Observer{tracer: c.tp.Tracer(ScopeName), maxNames: c.maxNames}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		inst, err := meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return inst
	}
	upDown := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		inst, err := meter.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return inst
	}
	histogram := func(name, desc string, bounds []float64) metric.Float64Histogram {
		inst, err := meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(bounds...))
		errs = append(errs, err)
		return inst
	}
	o.operations = counter("cancel.operations", "{operation}",
		"Operations ended, by outcome and cancellation reason.")
	o.duration = histogram("cancel.operation.duration",
		"How long operations ran, by outcome and cancellation reason.", c.duration)
	o.active = upDown("cancel.operation.active", "{operation}", "Operations running now.")
	o.stopLatency = histogram("cancel.stop.latency",
		"Time from a cancellation request to the end of the operation.", c.stopLatency)
	o.progress = counter("cancel.progress.reports", "{report}", "Progress reports of operations.")

	o.wsActive = upDown("cancel.ws.connections.active", "{1}", "Websocket connections open now.")
	o.wsMessages = counter("cancel.ws.messages", "{1}", "Websocket data messages, by direction.")
	o.wsCloses = counter("cancel.ws.closes", "{1}",
		"Websocket connections closed, by close code and cancellation reason.")
	o.wsDuration = histogram("cancel.ws.connection.duration",
		"How long websocket connections lasted, by outcome and cancellation reason.", c.stream)
	o.sseActive = upDown("cancel.sse.streams.active", "{1}", "Server-Sent Events streams open now.")
	o.sseEvents = counter("cancel.sse.events", "{1}", "Server-Sent Events sent.")
	o.sseDuration = histogram("cancel.sse.stream.duration",
		"How long Server-Sent Events streams lasted, by outcome and cancellation reason.", c.stream)
	o.sseEnds = counter("cancel.sse.ends", "{1}",
		"Server-Sent Events streams ended, by outcome and cancellation reason.")
	err := errors.Join(errs...)
	if err == nil {
		// The registration lives as long as the meter provider: an
		// Observer is made once per program.
		_, err = meter.RegisterCallback(o.observeCounts, o.operations, o.active, o.progress,
			o.wsActive, o.wsMessages, o.wsCloses, o.sseActive, o.sseEvents, o.sseEnds)
	}
	if err != nil {
		return nil, fmt.Errorf("otelcancel: creating instruments: %w", err)
	}
	return o, nil
}

// nameSeries holds the series of one operation name: their counts, and
// their attribute sets built once, as the option slices the instruments
// take, so that recording allocates nothing for attributes.
type nameSeries struct {
	label    string                    // the name, or OtherName
	name     attrOpts                  // the name alone
	ended    [len(outcomes)][]endCount // by outcome, then reason
	stop     []attrOpts                // name, reason: by reason
	active   atomic.Int64              // operations of the name running
	progress atomic.Int64              // their progress reports

	// The series of websocket connections and SSE streams, made the
	// first time an operation of the name is one.
	ws  atomic.Pointer[wsSeries]
	sse atomic.Pointer[sseSeries]
}

// endCount is one series of cancel.operations and of the duration: name,
// outcome and reason.
type endCount struct {
	attrOpts
	n atomic.Int64
}

// attrOpts is one attribute set as the options of each kind of instrument
// call.
type attrOpts struct {
	record  []metric.RecordOption
	observe []metric.ObserveOption
}

func newAttrOpts(kvs ...attribute.KeyValue) attrOpts {
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return attrOpts{record: []metric.RecordOption{o}, observe: []metric.ObserveOption{o}}
}

var outcomes = [...]cancel.Status{cancel.StatusCompleted, cancel.StatusCancelled, cancel.StatusFailed}

var numReasons = len(cancel.Reasons()) + 1 // with the zero Reason

func outcomeIndex(s cancel.Status) int {
	switch s {
	case cancel.StatusCancelled:
		return 1
	case cancel.StatusFailed:
		return 2
	}
	return 0
}

// series returns the series of name, creating them the first time. Once
// maxNames names were seen, further names get the series of OtherName,
// without taking the lock.
func (o *Observer) series(name string) *nameSeries {
	if s, ok := o.names.Load(name); ok {
		return s.(*nameSeries)
	}
	if o.full.Load() {
		return o.other.Load()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.names.Load(name); ok {
		return s.(*nameSeries)
	}
	if o.count >= o.maxNames {
		if o.other.Load() == nil {
			o.other.Store(newSeries(OtherName))
		}
		o.full.Store(true)
		return o.other.Load()
	}
	s := newSeries(name)
	o.names.Store(name, s)
	o.count++
	return s
}

func newSeries(name string) *nameSeries {
	n := KeyOperationName.String(name)
	s := &nameSeries{label: name, name: newAttrOpts(n), stop: make([]attrOpts, numReasons)}
	for i, out := range outcomes {
		s.ended[i] = make([]endCount, numReasons)
		for r := range numReasons {
			reason := cancel.Reason(r)
			if (out == cancel.StatusCancelled) != (reason != 0) {
				continue // a reason goes with cancelled, and only there
			}
			s.ended[i][r].attrOpts = newAttrOpts(n, KeyOutcome.String(out.String()), KeyReason.String(reason.String()))
		}
	}
	for r := range numReasons {
		s.stop[r] = newAttrOpts(n, KeyReason.String(cancel.Reason(r).String()))
	}
	return s
}

// observeCounts reports the counters of every name, zeros included: known
// series exist from their name's first operation on.
func (o *Observer) observeCounts(_ context.Context, obs metric.Observer) error {
	o.names.Range(func(_, v any) bool {
		o.report(obs, v.(*nameSeries))
		return true
	})
	if s := o.other.Load(); s != nil {
		o.report(obs, s)
	}
	return nil
}

func (o *Observer) report(obs metric.Observer, s *nameSeries) {
	for i := range s.ended {
		for r := range s.ended[i] {
			if c := &s.ended[i][r]; c.observe != nil {
				obs.ObserveInt64(o.operations, c.n.Load(), c.observe...)
			}
		}
	}
	obs.ObserveInt64(o.active, s.active.Load(), s.name.observe...)
	obs.ObserveInt64(o.progress, s.progress.Load(), s.name.observe...)
	if ws := s.ws.Load(); ws != nil {
		o.reportWS(obs, s, ws)
	}
	if sse := s.sse.Load(); sse != nil {
		o.reportSSE(obs, s, sse)
	}
}

// opState is the context an operation runs in, as this observer left it:
// the span, whether it was adopted, and the series of the name. Metrics are
// recorded with it as their context, so that exemplars find the span.
type opState struct {
	context.Context
	obs    *Observer
	span   trace.Span
	series *nameSeries
	// labeler is otelhttp's Labeler of the request whose server span the
	// operation adopted, or nil.
	labeler *otelhttp.Labeler
	// stream holds the flags (wsOpen, wsClosed, sseOpen) the
	// operation's events set.
	stream  atomic.Uint32
	adopted bool
	// The start and end timestamp options of the span, here so that
	// passing them allocates no slice of options.
	startOpts [1]trace.SpanStartOption
	endOpts   [1]trace.SpanEndOption
}

// The flags of opState.stream: whether the operation is an open websocket
// connection or SSE stream ("ws.open", "sse.open"), and whether its
// websocket close was counted. Each counts once.
const (
	wsOpen uint32 = 1 << iota
	wsClosed
	sseOpen
)

// setStream sets flag and reports whether it was not set yet.
func (s *opState) setStream(flag uint32) bool { return s.stream.Or(flag)&flag == 0 }

// stateKey names its observer: several Observers on one operation each
// find their own state.
type stateKey struct{ obs *Observer }

func (s *opState) Value(key any) any {
	if k, ok := key.(stateKey); ok && k.obs == s.obs {
		return s
	}
	return s.Context.Value(key)
}

func (o *Observer) state(op *cancel.Operation) *opState {
	s, _ := op.Value(stateKey{o}).(*opState)
	return s
}

// ObserveStart starts the operation's span, or adopts the one in ctx, and
// counts the operation as active. With an adopted span, it keeps otelhttp's
// Labeler from ctx, if there is one, for ObserveCancel.
func (o *Observer) ObserveStart(ctx context.Context, op *cancel.Operation) context.Context {
	s := &opState{obs: o, series: o.series(op.Name())}
	if op.AdoptsSpan() {
		// A remote span context (propagated from another process) is no
		// span to record on: the operation gets a child span of it.
		// Nor is the span of an enclosing operation of this observer: it
		// is that operation's to record its outcome on.
		if span := trace.SpanFromContext(ctx); span.SpanContext().IsValid() && !span.SpanContext().IsRemote() && !o.operationSpan(ctx, span) {
			s.span, s.adopted = span, true
			// otelhttp records its request metrics with the attributes
			// of the Labeler in the request's context, when its handler
			// returns: maybe before the operation ends.
			if l, ok := otelhttp.LabelerFromContext(ctx); ok {
				s.labeler = l
			}
		}
	}
	if s.span == nil {
		// The attributes are set at the end, with the outcome, in one
		// call: an unsampled operation builds none, and a sampled one
		// grows the span's attributes once. Samplers see the operation's
		// name, as the span's.
		s.startOpts[0] = trace.WithTimestamp(op.StartTime())
		ctx, s.span = o.tracer.Start(ctx, op.Name(), s.startOpts[:]...)
	}
	s.Context = ctx
	s.series.active.Add(1)
	return s
}

// operationSpan reports whether span is the one an enclosing operation of
// this observer records on.
func (o *Observer) operationSpan(ctx context.Context, span trace.Span) bool {
	p, ok := ctx.Value(stateKey{o}).(*opState)
	return ok && p.span.SpanContext().Equal(span.SpanContext())
}

// ObserveProgress adds a cancel.progress event and counts the report.
func (o *Observer) ObserveProgress(op *cancel.Operation, p cancel.Progress) {
	s := o.state(op)
	if s == nil {
		return // started before this observer was set
	}
	s.series.progress.Add(1)
	if !s.span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 1+len(p.Attrs))
	attrs = append(attrs, KeyMessage.String(p.Message))
	s.span.AddEvent(EventProgress, trace.WithTimestamp(p.Time),
		trace.WithAttributes(appendSlogAttrs(attrs, "", p.Attrs)...))
}

// ObserveCancel adds a cancel.requested event, at the time of the request.
// For an operation that adopted an otelhttp server span, it also adds
// error.type = the reason to otelhttp's Labeler of the request, so that
// otelhttp's request metrics say why the request stopped, even when the
// handler returns before the operation ends.
func (o *Observer) ObserveCancel(op *cancel.Operation, err *cancel.Error) {
	s := o.state(op)
	if s == nil {
		return
	}
	if s.labeler != nil {
		s.labeler.Add(KeyErrorType.String(err.Reason.String()))
	}
	if !s.span.IsRecording() {
		return
	}
	s.span.AddEvent(EventRequested, trace.WithTimestamp(err.Time), trace.WithAttributes(
		KeyReason.String(err.Reason.String()), KeyMessage.String(err.Message)))
	if s.adopted {
		// The span's owner (otelhttp) may end it before the operation ends:
		// when the middleware answers 504 at the deadline, say. Record the
		// outcome now; ObserveEnd overwrites it if the span is still open.
		s.span.SetAttributes(endAttrs(nil, op, cancel.StatusCancelled, err.Reason)...)
		s.span.SetStatus(codes.Error, err.Error())
	}
}

// ObserveEnd records the outcome in the metrics and on the span, and ends
// the span unless it was adopted.
func (o *Observer) ObserveEnd(op *cancel.Operation) {
	s := o.state(op)
	if s == nil {
		return
	}
	status, end := op.Status(), op.EndTime()
	reason := cancel.Reason(0)
	if status == cancel.StatusCancelled {
		reason = op.Reason()
	}
	ended := &s.series.ended[outcomeIndex(status)][reason]
	ended.n.Add(1)
	s.series.active.Add(-1)
	d := end.Sub(op.StartTime()).Seconds()
	o.duration.Record(s, d, ended.record...)
	if f := s.stream.Load(); f&(wsOpen|sseOpen) != 0 {
		// A stream's metrics say why it ended as its client was told: the
		// root reason, not that its request (the parent) was cancelled.
		root, rootEnded := reason, ended
		if reason == cancel.ReasonParent {
			root = cancel.RootReason(op.Err())
			rootEnded = &s.series.ended[outcomeIndex(status)][root]
		}
		o.endStream(s, f, d, outcomeIndex(status), root, rootEnded)
	}
	// Err returns the *cancel.Error of the request itself (a type assertion
	// rather than errors.As, which would make the pointer escape).
	if requested, ok := op.Err().(*cancel.Error); ok && requested != nil {
		o.stopLatency.Record(s, end.Sub(requested.Time).Seconds(), s.series.stop[requested.Reason].record...)
	}

	span := s.span
	if !span.IsRecording() {
		if !s.adopted {
			span.End() // without options, which cost allocations
		}
		return
	}
	if _, sdk := span.(sdktrace.ReadWriteSpan); sdk {
		// The SDK copies the attributes, so a pooled buffer can carry
		// them. (What a pooled buffer still refers to lives at most until
		// the pool is dropped, two collections later.)
		buf := attrBufs.Get().(*[]attribute.KeyValue)
		attrs := endAttrs(*buf, op, status, reason)
		span.SetAttributes(attrs...)
		if cap(attrs) <= maxPooledAttrs {
			*buf = attrs[:0]
		}
		attrBufs.Put(buf)
	} else {
		// Other implementations might keep the slice.
		span.SetAttributes(endAttrs(nil, op, status, reason)...)
	}
	if status == cancel.StatusCancelled || status == cancel.StatusFailed {
		// fmt, not Error(): a typed nil's Error panics, and the span must
		// still end.
		span.SetStatus(codes.Error, fmt.Sprint(op.Cause()))
	} else if s.adopted && op.Reason() != 0 {
		// ObserveCancel recorded the cancellation on the adopted span, but
		// the operation completed: undo it as far as the API lets us (a
		// status can only be raised, an attribute overwritten).
		span.SetAttributes(KeyReason.String(""), KeyErrorType.String(""))
		span.SetStatus(codes.Ok, "")
	}
	if !s.adopted {
		s.endOpts[0] = trace.WithTimestamp(end)
		span.End(s.endOpts[:]...)
	}
}

// attrBufs holds the buffers of the attributes ObserveEnd sets on SDK
// spans, which copy them: one allocation less per sampled operation.
var attrBufs = sync.Pool{New: func() any {
	b := make([]attribute.KeyValue, 0, 8)
	return &b
}}

// maxPooledAttrs bounds the buffers kept in attrBufs.
const maxPooledAttrs = 32

// endAttrs returns the attributes of an ended operation's span, in dst if
// they fit.
func endAttrs(dst []attribute.KeyValue, op *cancel.Operation, status cancel.Status, reason cancel.Reason) []attribute.KeyValue {
	// The exact size: attributes are 64 bytes each, and the span copies
	// them again.
	n := 3 + len(op.Attrs()) // ID, name, outcome, and groups expand
	shielded, delivered := op.Shielded(), op.Delivered()
	if shielded {
		n++
	}
	if delivered > 0 {
		n++
	}
	switch status {
	case cancel.StatusCancelled:
		n += 2
	case cancel.StatusFailed:
		n++
	}
	attrs := dst[:0]
	if cap(attrs) < n {
		attrs = make([]attribute.KeyValue, 0, n)
	}
	attrs = append(attrs, KeyOperationID.Int64(int64(op.ID())), KeyOperationName.String(op.Name()))
	if shielded {
		attrs = append(attrs, KeyShielded.Bool(true))
	}
	attrs = appendSlogAttrs(attrs, "", op.Attrs())
	attrs = append(attrs, KeyOutcome.String(status.String()))
	if delivered > 0 {
		attrs = append(attrs, KeyDelivered.Int64(delivered))
	}
	switch status {
	case cancel.StatusCancelled:
		attrs = append(attrs, KeyReason.String(reason.String()), KeyErrorType.String(reason.String()))
	case cancel.StatusFailed:
		attrs = append(attrs, KeyErrorType.String(errorType(op.Cause())))
	}
	return attrs
}

// errorType names the kind of a failure for error.type: the Go type of the
// error, looking through fmt.Errorf's wrapping, which says nothing.
func errorType(err error) string {
	for {
		t := reflect.TypeOf(err)
		if t == nil {
			return "_OTHER"
		}
		if name := t.String(); name != "*fmt.wrapError" && name != "*fmt.wrapErrors" {
			return name
		}
		next := errors.Unwrap(err)
		if next == nil {
			return t.String()
		}
		err = next
	}
}

// appendSlogAttrs turns slog attributes into OpenTelemetry ones; groups
// become dotted keys, and a group without a key is inlined, as slog's
// handlers do. An attribute without a key (the zero Attr, which slog
// ignores) is left out: OpenTelemetry has no attribute without a key.
func appendSlogAttrs(dst []attribute.KeyValue, prefix string, attrs []slog.Attr) []attribute.KeyValue {
	for _, a := range attrs {
		v := a.Value.Resolve()
		key := a.Key
		if prefix != "" && key != "" {
			key = prefix + "." + key
		} else if key == "" {
			if v.Kind() != slog.KindGroup {
				continue
			}
			key = prefix
		}
		switch v.Kind() {
		case slog.KindGroup:
			dst = appendSlogAttrs(dst, key, v.Group())
			continue
		case slog.KindString:
			dst = append(dst, attribute.String(key, v.String()))
		case slog.KindInt64:
			dst = append(dst, attribute.Int64(key, v.Int64()))
		case slog.KindUint64:
			if u := v.Uint64(); u <= 1<<63-1 {
				dst = append(dst, attribute.Int64(key, int64(u)))
			} else {
				dst = append(dst, attribute.String(key, fmt.Sprint(u)))
			}
		case slog.KindFloat64:
			dst = append(dst, attribute.Float64(key, v.Float64()))
		case slog.KindBool:
			dst = append(dst, attribute.Bool(key, v.Bool()))
		case slog.KindDuration:
			dst = append(dst, attribute.String(key, v.Duration().String()))
		case slog.KindTime:
			dst = append(dst, attribute.String(key, v.Time().Format("2006-01-02T15:04:05.999999999Z07:00")))
		default:
			dst = append(dst, anyAttr(key, v.Any()))
		}
	}
	return dst
}

func anyAttr(key string, v any) attribute.KeyValue {
	switch v := v.(type) {
	case error, fmt.Stringer:
		// fmt, not Error or String: it survives a nil receiver and a
		// panicking method, which would keep ObserveEnd from ending the
		// span.
		return attribute.String(key, fmt.Sprint(v))
	case []string:
		return attribute.StringSlice(key, slices.Clone(v))
	case []int64:
		return attribute.Int64Slice(key, slices.Clone(v))
	case []int:
		return attribute.IntSlice(key, slices.Clone(v))
	case []float64:
		return attribute.Float64Slice(key, slices.Clone(v))
	case []bool:
		return attribute.BoolSlice(key, slices.Clone(v))
	}
	return attribute.String(key, fmt.Sprintf("%+v", v))
}

func isNil(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}
