package cancel

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// Regression tests for the defects of the Python original (hother.cancelable)
// that concern the core, one test per defect listed in REFERENCE.md.

// A timeout inside any-of/all-of composites never fired in the original.
func TestDefect_TimeoutInsideCompositeNeverFires(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  Source
	}{
		{"AnyOf", AnyOf(NewToken(), Timeout(5*time.Millisecond))},
		{"AllOf", AllOf(Timeout(5*time.Millisecond), Deadline(time.Now().Add(10*time.Millisecond)))},
		{"AllOf(AnyOf)", AllOf(AnyOf(NewToken(), Timeout(5*time.Millisecond)), Timeout(10*time.Millisecond))},
		{"AnyOf(AllOf)", AnyOf(NewToken(), AllOf(Timeout(5*time.Millisecond)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, op := Start(context.Background(), "composite", WithSource(tc.src))
			dl, ok := ctx.Deadline()
			if !ok {
				t.Fatal("the context of an operation whose composite fires by time has no deadline")
			}
			srcWait(t, ctx.Done(), "the timeout inside "+tc.name)
			if time.Now().Before(dl) {
				t.Fatal("fired before the reported deadline")
			}
			srcCancelErr(t, op, ReasonTimeout, "")
			if ctx.Err() != context.DeadlineExceeded {
				t.Fatalf("ctx.Err() = %v", ctx.Err())
			}
			if err := op.End(ctx.Err()); ReasonOf(err) != ReasonTimeout || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("End = %v", err)
			}
		})
	}
}

// A parent's timeout reaching a child was recorded as MANUAL in the original.
func TestDefect_ParentTimeoutRecordedAsManual(t *testing.T) {
	check := func(t *testing.T, ctx context.Context, op *Operation, rec *srcRecorder) {
		t.Helper()
		srcWait(t, ctx.Done(), "the parent's timeout")
		err := op.End(ctx.Err())
		if r := ReasonOf(err); r != ReasonParent {
			t.Fatalf("ReasonOf(End) = %v, want parent (the original said manual)", r)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the child's error %v does not say a deadline passed", err)
		}
		if i := op.Info(); i.Reason != ReasonParent || i.Status != StatusCancelled {
			t.Fatalf("Info: reason %v status %v", i.Reason, i.Status)
		}
		b, _ := json.Marshal(op.Info())
		if !strings.Contains(string(b), `"reason":"parent"`) {
			t.Fatalf("JSON %s", b)
		}
		_, cancels, _ := rec.snapshot()
		var seen bool
		for _, e := range cancels {
			if e.OpID == op.ID() {
				seen = true
				if e.Reason != ReasonParent {
					t.Fatalf("observer told reason %v", e.Reason)
				}
			}
		}
		if !seen {
			t.Fatal("observer not told of the child's cancellation")
		}
	}
	t.Run("parent operation", func(t *testing.T) {
		rec := &srcRecorder{}
		pctx, parent := Start(context.Background(), "request", WithTimeout(5*time.Millisecond))
		ctx, op := Start(pctx, "query", WithObserver(rec.observer()))
		check(t, ctx, op, rec)
		parent.End(pctx.Err())
	})
	t.Run("context.WithTimeout", func(t *testing.T) {
		rec := &srcRecorder{}
		pctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		ctx, op := Start(pctx, "query", WithObserver(rec.observer()))
		check(t, ctx, op, rec)
	})
}

// The original recorded an operation that was cancelled but whose body
// finished before its next checkpoint as completed, losing the cancel. We
// record both facts: status completed, and the reason of the request, which
// observers were told of when it happened.
func TestDefect_CancelledButFinishedRecordedOnlyAsCompleted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   func(tok *Token) []Option
		cancel func(op *Operation, tok *Token)
		reason Reason
	}{
		{"Cancel", func(*Token) []Option { return nil },
			func(op *Operation, _ *Token) { op.Cancel(ReasonManual, "operator asked") }, ReasonManual},
		{"token", func(tok *Token) []Option { return []Option{WithToken(tok)} },
			func(_ *Operation, tok *Token) { tok.Cancel(ReasonShutdown, "draining") }, ReasonShutdown},
		{"timeout", func(*Token) []Option { return []Option{WithTimeout(time.Millisecond)} },
			func(op *Operation, _ *Token) { <-op.Done() }, ReasonTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &srcRecorder{}
			tok := NewToken()
			err := Run(context.Background(), "job", func(ctx context.Context) error {
				tc.cancel(FromContext(ctx), tok)
				srcWait(t, ctx.Done(), "the cancellation")
				return nil // the work was done all the same
			}, append(tc.opts(tok), WithObserver(rec.observer()))...)
			if err != nil {
				t.Fatalf("Run = %v, want nil: the work completed", err)
			}
			events, cancels, _ := rec.snapshot()
			if len(cancels) != 1 || cancels[0].Reason != tc.reason {
				t.Fatalf("observer told of cancels %v, want one with reason %v", cancels, tc.reason)
			}
			want := "start,cancel:" + tc.reason.String() + ",end:completed"
			if got := strings.Join(events, ","); got != want {
				t.Fatalf("events %s, want %s", got, want)
			}
		})
	}
	// And on the Operation itself.
	rec := &srcRecorder{}
	ctx, op := Start(context.Background(), "job", WithObserver(rec.observer()))
	op.Cancel(ReasonManual, "stop")
	if err := op.End(nil); err != nil {
		t.Fatalf("End(nil) = %v", err)
	}
	if op.Status() != StatusCompleted || op.Reason() != ReasonManual || op.Cause() != nil {
		t.Fatalf("status %v reason %v cause %v; want completed, manual, nil", op.Status(), op.Reason(), op.Cause())
	}
	if i := op.Info(); i.Status != StatusCompleted || i.Reason != ReasonManual || i.Message != "stop" || i.CancelRequested.IsZero() {
		t.Fatalf("Info %+v", i)
	}
	// The context still says why it was cancelled.
	var e *Error
	if !errors.As(context.Cause(ctx), &e) || e.Reason != ReasonManual {
		t.Fatalf("context.Cause = %v", context.Cause(ctx))
	}
}

// The original never unregistered token callbacks: a shared token leaked one
// callback per operation that ever watched it.
func TestDefect_TokenCallbacksNeverUnregistered(t *testing.T) {
	tok := NewToken()
	for i := range 10_000 {
		var opt Option
		switch i % 3 {
		case 0:
			opt = WithToken(tok)
		case 1:
			opt = WithSource(AnyOf(tok, Timeout(time.Hour)))
		default:
			opt = WithSource(AllOf(tok, NewToken()))
		}
		_, op := Start(context.Background(), "short", opt)
		op.End(nil)
	}
	if n := tok.registered(); n != 0 {
		t.Fatalf("after 10,000 operations in sequence, the token holds %d callbacks", n)
	}

	// Concurrently, with some operations cancelled otherwise and some
	// failing: every path through End unregisters.
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				ctx, op := Start(context.Background(), "short", WithToken(tok))
				switch (g + i) % 3 {
				case 0:
					op.Cancel(ReasonManual, "")
					op.End(ctx.Err())
				case 1:
					op.End(errors.New("failed"))
				default:
					op.End(nil)
				}
			}
		}()
	}
	// While they run, the token holds at most one callback per live
	// operation; at the end, none.
	wg.Wait()
	if n := tok.registered(); n != 0 {
		t.Fatalf("after 5,000 concurrent operations, the token holds %d callbacks", n)
	}
	// The token still works for a new operation.
	ctx, op := Start(context.Background(), "last", WithToken(tok))
	tok.Cancel(ReasonManual, "finally")
	if !srcClosed(ctx.Done()) {
		t.Fatal("token no longer cancels operations")
	}
	op.End(ctx.Err())
}

// The original reported a client disconnect as reason SIGNAL. The core has
// a reason of its own for it, distinct from signal.
func TestDefect_DisconnectReportedAsSignal(t *testing.T) {
	if ReasonDisconnect == ReasonSignal || ReasonDisconnect.String() != "disconnect" {
		t.Fatalf("ReasonDisconnect = %d %q", ReasonDisconnect, ReasonDisconnect)
	}
	if r, err := ParseReason("disconnect"); err != nil || r != ReasonDisconnect {
		t.Fatalf("ParseReason(disconnect) = %v, %v", r, err)
	}
	tok := NewToken()
	ctx, op := Start(context.Background(), "stream", WithToken(tok))
	tok.Cancel(ReasonDisconnect, "client went away")
	err := op.End(ctx.Err())
	if r := ReasonOf(err); r != ReasonDisconnect {
		t.Fatalf("ReasonOf = %v, want disconnect", r)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("a disconnect reads as a deadline")
	}
	b, _ := json.Marshal(op.Info())
	if !strings.Contains(string(b), `"reason":"disconnect"`) {
		t.Fatalf("JSON %s", b)
	}
}
