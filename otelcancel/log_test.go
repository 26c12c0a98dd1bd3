package otelcancel

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
)

// jsonLogger logs through NewLogHandler to a JSON handler without the time.
func jsonLogger(level slog.Level) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	next := slog.NewJSONHandler(&buf, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	return slog.New(NewLogHandler(next)), &buf
}

// lines decodes the JSON records in buf and empties it.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad JSON %q: %v", l, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

func one(t *testing.T, buf *bytes.Buffer) map[string]any {
	t.Helper()
	ls := lines(t, buf)
	if len(ls) != 1 {
		t.Fatalf("%d records, want 1", len(ls))
	}
	return ls[0]
}

func checkFields(t *testing.T, what string, got map[string]any, want map[string]any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) { // encoding/json sorts map keys
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func TestLogHandlerInOperation(t *testing.T) {
	h := newHarness(t, nil)
	logger, buf := jsonLogger(slog.LevelInfo)
	ctx, op := h.start(context.Background(), "checkout")
	sc := trace.SpanContextFromContext(ctx)
	ids := map[string]any{
		"cancel.operation.id":   float64(op.ID()),
		"cancel.operation.name": "checkout",
		"trace_id":              sc.TraceID().String(),
		"span_id":               sc.SpanID().String(),
	}

	logger.InfoContext(ctx, "charging", "amount", 12)
	want := maps.Clone(ids)
	maps.Copy(want, map[string]any{"level": "INFO", "msg": "charging", "amount": float64(12)})
	checkFields(t, "before the cancellation", one(t, buf), want)

	op.Cancel(cancel.ReasonTimeout, "too slow")
	logger.WarnContext(ctx, "stopping")
	want = maps.Clone(ids)
	maps.Copy(want, map[string]any{"level": "WARN", "msg": "stopping", "cancel.reason": "timeout"})
	checkFields(t, "after the cancellation", one(t, buf), want)

	// A child operation: its own ID and span.
	cctx, child := h.start(ctx, "child")
	logger.InfoContext(cctx, "in child")
	rec := one(t, buf)
	if rec["cancel.operation.id"] != float64(child.ID()) || rec["span_id"] != trace.SpanContextFromContext(cctx).SpanID().String() {
		t.Errorf("child record %v, want the child's operation and span", rec)
	}
	child.End(nil)
	op.End(ctx.Err())
}

func TestLogHandlerOutsideOperation(t *testing.T) {
	logger, buf := jsonLogger(slog.LevelInfo)
	logger.InfoContext(context.Background(), "plain", "k", "v")
	checkFields(t, "no operation", one(t, buf), map[string]any{"level": "INFO", "msg": "plain", "k": "v"})
	logger.Info("no context")
	checkFields(t, "no context", one(t, buf), map[string]any{"level": "INFO", "msg": "no context"})

	// A span without an operation: the trace IDs only.
	h := newHarness(t, nil)
	ctx, span := h.tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	logger.InfoContext(ctx, "traced")
	checkFields(t, "span only", one(t, buf), map[string]any{
		"level": "INFO", "msg": "traced",
		"trace_id": span.SpanContext().TraceID().String(), "span_id": span.SpanContext().SpanID().String(),
	})

	// An operation without a span (no observer): its IDs only.
	octx, op := cancel.Start(context.Background(), "bare")
	defer op.End(nil)
	logger.InfoContext(octx, "untraced")
	checkFields(t, "operation only", one(t, buf), map[string]any{
		"level": "INFO", "msg": "untraced",
		"cancel.operation.id": float64(op.ID()), "cancel.operation.name": "bare",
	})
}

func TestLogHandlerWithAttrsAndGroups(t *testing.T) {
	logger, buf := jsonLogger(slog.LevelInfo)
	ctx, op := cancel.Start(context.Background(), "job")
	defer op.End(nil)
	id := float64(op.ID())

	logger.With("svc", "api").InfoContext(ctx, "m", "k", 1)
	checkFields(t, "With", one(t, buf), map[string]any{
		"level": "INFO", "msg": "m", "svc": "api", "k": float64(1),
		"cancel.operation.id": id, "cancel.operation.name": "job",
	})

	grouped := logger.With("svc", "api").WithGroup("req").With("path", "/x").WithGroup("resp")
	grouped.InfoContext(ctx, "m", "status", 200)
	checkFields(t, "WithGroup", one(t, buf), map[string]any{
		"level": "INFO", "msg": "m", "svc": "api",
		"req":                 map[string]any{"path": "/x", "resp": map[string]any{"status": float64(200)}},
		"cancel.operation.id": id, "cancel.operation.name": "job",
	})

	// Outside an operation the groups work as usual.
	grouped.InfoContext(context.Background(), "m", "status", 200)
	checkFields(t, "WithGroup outside", one(t, buf), map[string]any{
		"level": "INFO", "msg": "m", "svc": "api",
		"req": map[string]any{"path": "/x", "resp": map[string]any{"status": float64(200)}},
	})

	// An empty group is left out, as slog does.
	logger.WithGroup("empty").InfoContext(ctx, "m")
	checkFields(t, "empty group", one(t, buf), map[string]any{
		"level": "INFO", "msg": "m", "cancel.operation.id": id, "cancel.operation.name": "job",
	})

	// WithGroup("") and WithAttrs() change nothing.
	logger.WithGroup("").With().InfoContext(ctx, "m", "k", 1)
	checkFields(t, "no-op", one(t, buf), map[string]any{
		"level": "INFO", "msg": "m", "k": float64(1), "cancel.operation.id": id, "cancel.operation.name": "job",
	})

	// Handlers derived from one another do not share their groups' attrs.
	base := logger.WithGroup("g").With("a", 1)
	b1, b2 := base.With("b", 2), base.With("c", 3)
	b1.InfoContext(ctx, "m")
	b2.InfoContext(ctx, "m")
	ls := lines(t, buf)
	if len(ls) != 2 {
		t.Fatalf("%d records", len(ls))
	}
	for i, want := range []map[string]any{{"a": float64(1), "b": float64(2)}, {"a": float64(1), "c": float64(3)}} {
		g, _ := ls[i]["g"].(map[string]any)
		if !maps.Equal(g, want) {
			t.Errorf("record %d: group g = %v, want %v", i, ls[i]["g"], want)
		}
	}
}

func TestLogHandlerEnabled(t *testing.T) {
	logger, buf := jsonLogger(slog.LevelWarn)
	ctx, op := cancel.Start(context.Background(), "job")
	defer op.End(nil)
	h := logger.Handler()
	if h.Enabled(ctx, slog.LevelInfo) || !h.Enabled(ctx, slog.LevelWarn) {
		t.Errorf("Enabled does not follow the next handler's level")
	}
	if g := logger.WithGroup("g").Handler(); g.Enabled(ctx, slog.LevelInfo) || !g.Enabled(ctx, slog.LevelError) {
		t.Errorf("Enabled of a grouped handler does not follow the next handler's level")
	}
	logger.InfoContext(ctx, "dropped")
	if buf.Len() != 0 {
		t.Errorf("record below the level logged: %s", buf)
	}
}

// Handle leaves the caller's record alone and copes with a nil context.
func TestLogHandlerRecordUnchanged(t *testing.T) {
	var got []slog.Record
	h := NewLogHandler(recordHandler{&got})
	ctx, op := cancel.Start(context.Background(), "job")
	defer op.End(nil)
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "m", 0)
	r.AddAttrs(slog.Int("a", 1))
	if err := h.Handle(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.NumAttrs() != 1 {
		t.Errorf("caller's record has %d attributes, want 1", r.NumAttrs())
	}
	if err := h.Handle(nil, r); err != nil { //nolint:staticcheck // a nil context must not panic
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("handled %d records, want 2", len(got))
	}
	for i, want := range [][]string{{"a", "cancel.operation.id", "cancel.operation.name"}, {"a"}} {
		var keys []string
		got[i].Attrs(func(a slog.Attr) bool { keys = append(keys, a.Key); return true })
		if !slices.Equal(keys, want) {
			t.Errorf("record %d has %v, want %v", i, keys, want)
		}
	}
}

type recordHandler struct{ got *[]slog.Record }

func (recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	*h.got = append(*h.got, r)
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }
