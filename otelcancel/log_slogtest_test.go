package otelcancel

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"testing/slogtest"

	"github.com/cancelable-go/cancelable/cancel"
)

// withCtx logs every record with ctx, whatever the logger was given, so
// that slogtest's cases run through the path that adds the operation.
type withCtx struct {
	slog.Handler
	ctx context.Context
}

func (h withCtx) Handle(_ context.Context, r slog.Record) error { return h.Handler.Handle(h.ctx, r) }
func (h withCtx) WithAttrs(as []slog.Attr) slog.Handler {
	return withCtx{h.Handler.WithAttrs(as), h.ctx}
}
func (h withCtx) WithGroup(n string) slog.Handler { return withCtx{h.Handler.WithGroup(n), h.ctx} }

func TestLogHandlerSlogtest(t *testing.T) {
	for _, inOp := range []bool{false, true} {
		name := "outside"
		if inOp {
			name = "inside"
		}
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			ctx := context.Background()
			if inOp {
				var op *cancel.Operation
				ctx, op = cancel.Start(ctx, "job")
				defer op.End(nil)
			}
			slogtest.Run(t, func(*testing.T) slog.Handler {
				buf.Reset()
				return withCtx{NewLogHandler(slog.NewJSONHandler(&buf, nil)), ctx}
			}, func(t *testing.T) map[string]any {
				m := map[string]any{}
				if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
					t.Fatal(err)
				}
				if inOp && m["cancel.operation.name"] != "job" {
					t.Errorf("no operation name at the top level: %v", m)
				}
				return m
			})
		})
	}
}
