package otelcancel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
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
	maxNames    int
}

// WithTracerProvider sets the tracer provider; the global one by default.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp == nil {
			return errors.New("otelcancel: WithTracerProvider: nil provider")
		}
		c.tp = tp
		return nil
	}
}

// WithMeterProvider sets the meter provider; the global one by default.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return errors.New("otelcancel: WithMeterProvider: nil provider")
		}
		c.mp = mp
		return nil
	}
}

// WithDurationBuckets sets the bucket bounds, in seconds, of the duration
// histogram. They must be positive and increasing.
func WithDurationBuckets(bounds ...float64) Option {
	return func(c *config) error {
		if err := checkBuckets("WithDurationBuckets", bounds); err != nil {
			return err
		}
		c.duration = bounds
		return nil
	}
}

// WithStopLatencyBuckets sets the bucket bounds, in seconds, of the stop
// latency histogram. They must be positive and increasing.
func WithStopLatencyBuckets(bounds ...float64) Option {
	return func(c *config) error {
		if err := checkBuckets("WithStopLatencyBuckets", bounds); err != nil {
			return err
		}
		c.stopLatency = bounds
		return nil
	}
}

func checkBuckets(option string, bounds []float64) error {
	if len(bounds) == 0 {
		return fmt.Errorf("otelcancel: %s: no bounds", option)
	}
	for i, b := range bounds {
		if !(b > 0) || i > 0 && b <= bounds[i-1] {
			return fmt.Errorf("otelcancel: %s: bounds must be positive and increasing, got %v", option, bounds)
		}
	}
	return nil
}

// WithMaxNames caps the distinct operation names metrics carry (default
// 1000); operations with further names are counted under OtherName. Spans
// keep the real names.
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
// implements cancel.Observer and is safe for concurrent use.
type Observer struct {
	tracer      trace.Tracer
	operations  metric.Int64Counter
	duration    metric.Float64Histogram
	active      metric.Int64UpDownCounter
	stopLatency metric.Float64Histogram
	progress    metric.Int64Counter

	maxNames int
	mu       sync.Mutex
	names    sync.Map // string -> *nameSeries
	count    int      // entries in names, under mu
}

var _ cancel.Observer = (*Observer)(nil)

// New returns an Observer. Invalid options make it fail with an error naming
// the option.
func New(opts ...Option) (*Observer, error) {
	c := config{duration: DefaultDurationBuckets, stopLatency: DefaultStopLatencyBuckets, maxNames: 1000}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("otelcancel: nil Option")
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
	var err, e error
	o.operations, e = meter.Int64Counter("cancel.operations", metric.WithUnit("{operation}"),
		metric.WithDescription("Operations ended, by outcome and cancellation reason."))
	err = errors.Join(err, e)
	o.duration, e = meter.Float64Histogram("cancel.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("How long operations ran, by outcome and cancellation reason."),
		metric.WithExplicitBucketBoundaries(c.duration...))
	err = errors.Join(err, e)
	o.active, e = meter.Int64UpDownCounter("cancel.operation.active", metric.WithUnit("{operation}"),
		metric.WithDescription("Operations running now."))
	err = errors.Join(err, e)
	o.stopLatency, e = meter.Float64Histogram("cancel.stop.latency", metric.WithUnit("s"),
		metric.WithDescription("Time from a cancellation request to the end of the operation."),
		metric.WithExplicitBucketBoundaries(c.stopLatency...))
	err = errors.Join(err, e)
	o.progress, e = meter.Int64Counter("cancel.progress.reports", metric.WithUnit("{report}"),
		metric.WithDescription("Progress reports of operations."))
	err = errors.Join(err, e)
	if err != nil {
		return nil, fmt.Errorf("otelcancel: creating instruments: %w", err)
	}
	return o, nil
}

// nameSeries holds the attribute sets of one operation name, built once:
// recording then allocates nothing for attributes.
type nameSeries struct {
	name  metric.MeasurementOption                  // the name alone
	ended [len(outcomes)][]metric.MeasurementOption // name, outcome, reason: by outcome, then reason
	stop  []metric.MeasurementOption                // name, reason: by reason
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

// series returns the attribute sets of name, creating them and their zero
// counts the first time.
func (o *Observer) series(ctx context.Context, name string) *nameSeries {
	if s, ok := o.names.Load(name); ok {
		return s.(*nameSeries)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.names.Load(name); ok {
		return s.(*nameSeries)
	}
	if o.count >= o.maxNames && name != OtherName {
		o.mu.Unlock()
		s := o.series(ctx, OtherName)
		o.mu.Lock()
		return s
	}
	n := KeyOperationName.String(name)
	s := &nameSeries{name: metric.WithAttributeSet(attribute.NewSet(n)), stop: make([]metric.MeasurementOption, numReasons)}
	for i, out := range outcomes {
		s.ended[i] = make([]metric.MeasurementOption, numReasons)
		for r := range numReasons {
			reason := cancel.Reason(r)
			if (out == cancel.StatusCancelled) != (reason != 0) {
				continue // a reason goes with cancelled, and only there
			}
			s.ended[i][r] = metric.WithAttributeSet(attribute.NewSet(n,
				KeyOutcome.String(out.String()), KeyReason.String(reason.String())))
			o.operations.Add(ctx, 0, s.ended[i][r])
		}
	}
	for r := range numReasons {
		s.stop[r] = metric.WithAttributeSet(attribute.NewSet(n, KeyReason.String(cancel.Reason(r).String())))
	}
	o.progress.Add(ctx, 0, s.name)
	o.active.Add(ctx, 0, s.name)
	o.names.Store(name, s)
	o.count++
	return s
}

// opState is the context an operation runs in, as this observer left it:
// the span, whether it was adopted, and the series of the name. Metrics are
// recorded with it as their context, so that exemplars find the span.
type opState struct {
	context.Context
	obs     *Observer
	span    trace.Span
	adopted bool
	series  *nameSeries
}

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
// counts the operation as active.
func (o *Observer) ObserveStart(ctx context.Context, op *cancel.Operation) context.Context {
	s := &opState{obs: o, series: o.series(ctx, op.Name())}
	attrs := append(make([]attribute.KeyValue, 0, 3+len(op.Attrs())),
		KeyOperationID.Int64(int64(op.ID())), KeyOperationName.String(op.Name()))
	if op.Shielded() {
		attrs = append(attrs, KeyShielded.Bool(true))
	}
	attrs = appendSlogAttrs(attrs, "", op.Attrs())
	if op.AdoptsSpan() {
		if span := trace.SpanFromContext(ctx); span.SpanContext().IsValid() {
			s.span, s.adopted = span, true
			span.SetAttributes(attrs...)
		}
	}
	if s.span == nil {
		ctx, s.span = o.tracer.Start(ctx, op.Name(),
			trace.WithTimestamp(op.StartTime()), trace.WithAttributes(attrs...))
	}
	s.Context = ctx
	o.active.Add(s, 1, s.series.name)
	return s
}

// ObserveProgress adds a cancel.progress event and counts the report.
func (o *Observer) ObserveProgress(op *cancel.Operation, p cancel.Progress) {
	s := o.state(op)
	if s == nil {
		return // started before this observer was set
	}
	o.progress.Add(s, 1, s.series.name)
	if !s.span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 1+len(p.Attrs))
	attrs = append(attrs, KeyMessage.String(p.Message))
	s.span.AddEvent(EventProgress, trace.WithTimestamp(p.Time),
		trace.WithAttributes(appendSlogAttrs(attrs, "", p.Attrs)...))
}

// ObserveCancel adds a cancel.requested event, at the time of the request.
func (o *Observer) ObserveCancel(op *cancel.Operation, err *cancel.Error) {
	s := o.state(op)
	if s == nil || !s.span.IsRecording() {
		return
	}
	s.span.AddEvent(EventRequested, trace.WithTimestamp(err.Time), trace.WithAttributes(
		KeyReason.String(err.Reason.String()), KeyMessage.String(err.Message)))
}

// ObserveEnd records the outcome on the span and in the metrics, and ends
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
	ended := s.series.ended[outcomeIndex(status)][reason]
	o.operations.Add(s, 1, ended)
	o.duration.Record(s, op.Duration().Seconds(), ended)
	o.active.Add(s, -1, s.series.name)
	var requested *cancel.Error
	if errors.As(op.Err(), &requested) {
		o.stopLatency.Record(s, end.Sub(requested.Time).Seconds(), s.series.stop[requested.Reason])
	}

	span := s.span
	if span.IsRecording() {
		attrs := []attribute.KeyValue{KeyOutcome.String(status.String())}
		if reason != 0 {
			attrs = append(attrs, KeyReason.String(reason.String()))
		}
		if n := op.Delivered(); n > 0 {
			attrs = append(attrs, KeyDelivered.Int64(n))
		}
		switch status {
		case cancel.StatusCancelled:
			attrs = append(attrs, KeyErrorType.String(reason.String()))
			span.SetStatus(codes.Error, op.Cause().Error())
		case cancel.StatusFailed:
			attrs = append(attrs, KeyErrorType.String(errorType(op.Cause())))
			span.SetStatus(codes.Error, op.Cause().Error())
		}
		span.SetAttributes(attrs...)
	}
	if !s.adopted {
		span.End(trace.WithTimestamp(end))
	}
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
// become dotted keys.
func appendSlogAttrs(dst []attribute.KeyValue, prefix string, attrs []slog.Attr) []attribute.KeyValue {
	for _, a := range attrs {
		v := a.Value.Resolve()
		key := a.Key
		if prefix != "" && key != "" {
			key = prefix + "." + key
		} else if key == "" {
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
	case error:
		if v != nil && !isNil(v) {
			return attribute.String(key, v.Error())
		}
	case fmt.Stringer:
		if !isNil(v) {
			return attribute.String(key, v.String())
		}
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
