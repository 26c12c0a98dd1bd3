package otelcancel

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
)

// NewLogHandler returns a slog.Handler that adds to every record logged with
// a context inside an operation the operation's ID and name, its
// cancellation reason once one was requested, and the trace and span IDs of
// the span in the context, then passes it to next. Logs, traces and metrics
// then meet on the same keys.
func NewLogHandler(next slog.Handler) slog.Handler { return &logHandler{next: next} }

type logHandler struct{ next slog.Handler }

func (h *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil {
		return h.next.Handle(ctx, r)
	}
	op := cancel.FromContext(ctx)
	sc := trace.SpanContextFromContext(ctx)
	if op == nil && !sc.IsValid() {
		return h.next.Handle(ctx, r)
	}
	r = r.Clone() // the caller's record may share its attributes
	if op != nil {
		r.AddAttrs(slog.Uint64(string(KeyOperationID), op.ID()), slog.String(string(KeyOperationName), op.Name()))
		if reason := op.Reason(); reason != 0 {
			r.AddAttrs(slog.String(string(KeyReason), reason.String()))
		}
	}
	if sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.next.Handle(ctx, r)
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logHandler{next: h.next.WithAttrs(attrs)}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{next: h.next.WithGroup(name)}
}
