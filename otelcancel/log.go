package otelcancel

import (
	"context"
	"log/slog"
	"slices"

	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
)

// NewLogHandler returns a slog.Handler that adds to every record logged with
// a context inside an operation the operation's ID and name
// (cancel.operation.id, cancel.operation.name), its cancellation reason once
// one was requested (cancel.reason), and the trace and span IDs of the span
// in the context (trace_id, span_id; these also outside an operation, when
// the context holds a valid span), then passes it to next. Logs, traces and
// metrics then meet on the same keys. A record logged without an operation
// or a span passes unchanged.
//
// The keys stay at the top level of the record even under
// Logger.WithGroup, where queries look for them.
//
// Give it a handler of its own (slog.NewJSONHandler(os.Stderr, nil)), not
// slog.Default().Handler(), when the result becomes the default: the
// standard library's default handler writes through package log, which
// slog.SetDefault sends back to the new default, and the first record
// then deadlocks.
func NewLogHandler(next slog.Handler) slog.Handler {
	return &logHandler{next: next, grouped: next}
}

type logHandler struct {
	next    slog.Handler // with the attributes given before the first group
	groups  []logGroup   // opened by WithGroup, outermost first
	grouped slog.Handler // next with groups applied, for records we add nothing to
}

// logGroup is a group opened by WithGroup and the attributes given inside it.
type logGroup struct {
	name  string
	attrs []slog.Attr
}

func (h *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil {
		return h.grouped.Handle(ctx, r)
	}
	op := cancel.FromContext(ctx)
	sc := trace.SpanContextFromContext(ctx)
	if op == nil && !sc.IsValid() {
		return h.grouped.Handle(ctx, r)
	}
	var add [5]slog.Attr
	n := 0
	if op != nil {
		add[0], add[1] = slog.Uint64(string(KeyOperationID), op.ID()), slog.String(string(KeyOperationName), op.Name())
		n = 2
		if reason := op.Reason(); reason != 0 {
			add[n] = slog.String(string(KeyReason), reason.String())
			n++
		}
	}
	if sc.IsValid() {
		add[n], add[n+1] = slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String())
		n += 2
	}
	if len(h.groups) == 0 {
		r = r.Clone() // the caller's record may share its attributes
		r.AddAttrs(add[:n]...)
		return h.next.Handle(ctx, r)
	}
	// The record's attributes go in the groups, ours beside them.
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(add[:n]...)
	attrs := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	for i := len(h.groups) - 1; i >= 0; i-- {
		g := h.groups[i]
		attrs = []slog.Attr{{Key: g.name, Value: slog.GroupValue(append(slices.Clip(g.attrs), attrs...)...)}}
	}
	out.AddAttrs(attrs...)
	return h.next.Handle(ctx, out)
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	if len(h.groups) == 0 {
		next := h.next.WithAttrs(attrs)
		return &logHandler{next: next, grouped: next}
	}
	groups := slices.Clone(h.groups)
	last := &groups[len(groups)-1]
	last.attrs = append(slices.Clip(last.attrs), attrs...)
	return &logHandler{next: h.next, groups: groups, grouped: h.grouped.WithAttrs(attrs)}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &logHandler{
		next:    h.next,
		groups:  append(slices.Clip(h.groups), logGroup{name: name}),
		grouped: h.grouped.WithGroup(name),
	}
}
