package cancel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestErrorIsCanceledForEveryReason(t *testing.T) {
	for _, r := range Reasons() {
		t.Run(r.String(), func(t *testing.T) {
			e := &Error{Reason: r, Message: "m"}
			if !errors.Is(e, context.Canceled) {
				t.Error("not context.Canceled")
			}
			if got, want := errors.Is(e, context.DeadlineExceeded), r == ReasonTimeout; got != want {
				t.Errorf("errors.Is(DeadlineExceeded) = %v, want %v", got, want)
			}
			if ReasonOf(e) != r {
				t.Errorf("ReasonOf = %v", ReasonOf(e))
			}
			// Through wrapping too.
			w := fmt.Errorf("query users: %w", e)
			if !errors.Is(w, context.Canceled) || errors.Is(w, context.DeadlineExceeded) != (r == ReasonTimeout) || ReasonOf(w) != r {
				t.Errorf("wrapped: Is(Canceled)=%v Is(Deadline)=%v ReasonOf=%v",
					errors.Is(w, context.Canceled), errors.Is(w, context.DeadlineExceeded), ReasonOf(w))
			}
			// An *Error is not some other error.
			if errors.Is(e, io.EOF) || errors.Is(e, ErrEnded) {
				t.Error("*Error matches an unrelated error")
			}
		})
	}
}

func TestErrorParentOfTimeoutIsDeadlineExceeded(t *testing.T) {
	timeout := &Error{Reason: ReasonTimeout, Op: "outer", OpID: 1}
	for _, tc := range []struct {
		name     string
		cause    error
		deadline bool
	}{
		{"parent operation timed out", timeout, true},
		{"parent context timed out", context.DeadlineExceeded, true},
		{"grandparent timed out", &Error{Reason: ReasonParent, Cause: timeout}, true},
		{"parent cancelled by hand", &Error{Reason: ReasonManual}, false},
		{"parent context cancelled", context.Canceled, false},
		{"no cause", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Error{Reason: ReasonParent, Op: "inner", OpID: 2, Cause: tc.cause}
			if !errors.Is(e, context.Canceled) {
				t.Error("not Canceled")
			}
			if errors.Is(e, context.DeadlineExceeded) != tc.deadline {
				t.Errorf("Is(DeadlineExceeded) = %v, want %v", !tc.deadline, tc.deadline)
			}
			if ReasonOf(e) != ReasonParent {
				t.Errorf("ReasonOf = %v, want parent (the first *Error in the chain)", ReasonOf(e))
			}
			if errors.Unwrap(e) != tc.cause {
				t.Errorf("Unwrap = %v", errors.Unwrap(e))
			}
		})
	}
	// errors.As reaches the first cancellation through the chain.
	e := &Error{Reason: ReasonParent, Cause: &Error{Reason: ReasonParent, Cause: timeout}}
	var first *Error
	if !errors.As(e, &first) || first != e {
		t.Fatal("errors.As does not stop at the outermost *Error")
	}
	if !errors.As(e.Cause.(*Error).Cause, &first) || first != timeout {
		t.Fatal("errors.As does not find the root")
	}
}

func TestErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{&Error{Reason: ReasonManual}, "cancelled (manual)"},
		{&Error{Reason: ReasonShutdown, Message: "draining"}, "cancelled (shutdown): draining"},
		{&Error{Reason: ReasonTimeout, Op: "fetch", OpID: 7, Message: "timed out after 1s"}, "fetch: cancelled (timeout): timed out after 1s"},
		{&Error{Reason: ReasonSignal, Op: "serve"}, "serve: cancelled (signal)"},
		{
			&Error{Reason: ReasonParent, Op: "child", Cause: &Error{Reason: ReasonTimeout, Op: "outer", Message: "timed out after 2s"}},
			"child: cancelled (parent): outer: cancelled (timeout): timed out after 2s",
		},
		{&Error{Reason: ReasonParent, Op: "handler", Cause: context.Canceled}, "handler: cancelled (parent): context canceled"},
		{&Error{Reason: ReasonError, Message: "db down", Cause: io.ErrUnexpectedEOF}, "cancelled (error): db down: unexpected EOF"},
		// A zero Reason (a hand-made Error) leaves out the empty part.
		{&Error{Message: "why"}, "cancelled: why"},
		// A message that is the cause's text says it once (a stream's
		// invalid option is both).
		{
			&Error{Reason: ReasonError, Op: "s", Message: "cancel: invalid ReportEvery: bad", Cause: &OptionError{Option: "ReportEvery", Problem: "bad"}},
			"s: cancelled (error): cancel: invalid ReportEvery: bad",
		},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestReasonOf(t *testing.T) {
	shutdown := &Error{Reason: ReasonShutdown, Message: "draining"}
	disconnect := &Error{Reason: ReasonDisconnect}
	for _, tc := range []struct {
		name string
		err  error
		want Reason
	}{
		{"nil", nil, 0},
		{"unrelated", io.EOF, 0},
		{"bare Canceled", context.Canceled, 0},
		{"bare DeadlineExceeded", context.DeadlineExceeded, ReasonTimeout},
		{"wrapped DeadlineExceeded", fmt.Errorf("dial: %w", context.DeadlineExceeded), ReasonTimeout},
		{"*Error", shutdown, ReasonShutdown},
		{"%w", fmt.Errorf("a: %w", fmt.Errorf("b: %w", shutdown)), ReasonShutdown},
		{"errors.Join", errors.Join(io.EOF, disconnect), ReasonDisconnect},
		{"errors.Join first wins", errors.Join(disconnect, shutdown), ReasonDisconnect},
		{"multiple %w", fmt.Errorf("%w and %w", io.EOF, shutdown), ReasonShutdown},
		// An *Error anywhere beats a bare DeadlineExceeded elsewhere.
		{"*Error beside DeadlineExceeded", errors.Join(context.DeadlineExceeded, shutdown), ReasonShutdown},
		{"End's error", withCancellation(io.ErrUnexpectedEOF, shutdown), ReasonShutdown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ReasonOf(tc.err); got != tc.want {
				t.Errorf("ReasonOf(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestWithCancellation(t *testing.T) {
	ce := &Error{Reason: ReasonShutdown, Op: "job", Message: "draining"}
	other := &Error{Reason: ReasonTimeout, Op: "child"}
	boom := errors.New("write: broken pipe")

	// Bare context errors become the *Error itself.
	for _, err := range []error{context.Canceled, context.DeadlineExceeded} {
		if got := withCancellation(err, ce); got != error(ce) {
			t.Errorf("withCancellation(%v) = %v, want the *Error", err, got)
		}
	}
	// An error that already carries this cancellation first is kept as is.
	wrapped := fmt.Errorf("step 2: %w", ce)
	if got := withCancellation(wrapped, ce); got != wrapped {
		t.Errorf("withCancellation(wrapped) = %v", got)
	}
	// Anything else keeps the body's error and puts the cancellation in front.
	for _, err := range []error{boom, other, fmt.Errorf("q: %w", context.Canceled)} {
		got := withCancellation(err, ce)
		var first *Error
		if !errors.As(got, &first) || first != ce {
			t.Errorf("withCancellation(%v): errors.As finds %v, want the operation's", err, first)
		}
		if !errors.Is(got, err) || !errors.Is(got, context.Canceled) {
			t.Errorf("withCancellation(%v) = %v lost something", err, got)
		}
		if !strings.HasPrefix(got.Error(), err.Error()) || !strings.Contains(got.Error(), "draining") {
			t.Errorf("message %q", got.Error())
		}
	}
	// The message does not repeat the cancellation when the body's error
	// already says it.
	says := fmt.Errorf("failed: %v", ce)
	if got := withCancellation(says, ce).Error(); got != says.Error() {
		t.Errorf("message %q, want %q", got, says.Error())
	}
	if got := withCancellation(boom, ce).Error(); got != "write: broken pipe (job: cancelled (shutdown): draining)" {
		t.Errorf("message %q", got)
	}
}

func TestOptionErrorMessage(t *testing.T) {
	e := &OptionError{Option: "WithCondition", Problem: "interval must be positive"}
	if e.Error() != "cancel: invalid WithCondition: interval must be positive" {
		t.Fatalf("%q", e.Error())
	}
	if errors.Is(e, context.Canceled) || ReasonOf(e) != 0 {
		t.Fatal("an OptionError is not a cancellation")
	}
}

// The context of a cancelled operation returns the operation's *Error from
// context.Cause, for every way of being cancelled, before and after End.
func TestContextCauseIsTheError(t *testing.T) {
	type setup func(t *testing.T) (ctx context.Context, op *Operation, cleanup func())
	for _, tc := range []struct {
		name     string
		start    setup
		reason   Reason
		deadline bool
	}{
		{"Cancel", func(*testing.T) (context.Context, *Operation, func()) {
			ctx, op := Start(context.Background(), "job")
			op.Cancel(ReasonManual, "stop")
			return ctx, op, func() {}
		}, ReasonManual, false},
		{"token", func(*testing.T) (context.Context, *Operation, func()) {
			tok := NewToken()
			ctx, op := Start(context.Background(), "job", WithToken(tok))
			tok.Cancel(ReasonShutdown, "drain")
			return ctx, op, func() {}
		}, ReasonShutdown, false},
		{"timeout", func(t *testing.T) (context.Context, *Operation, func()) {
			ctx, op := Start(context.Background(), "job", WithTimeout(time.Millisecond))
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("timeout did not fire")
			}
			return ctx, op, func() {}
		}, ReasonTimeout, true},
		{"parent operation timed out", func(t *testing.T) (context.Context, *Operation, func()) {
			pctx, parent := Start(context.Background(), "parent", WithTimeout(time.Millisecond))
			ctx, op := Start(pctx, "job")
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("parent timeout did not reach the child")
			}
			return ctx, op, func() { parent.End(nil) }
		}, ReasonParent, true},
		{"parent context cancelled", func(*testing.T) (context.Context, *Operation, func()) {
			pctx, cancel := context.WithCancelCause(context.Background())
			ctx, op := Start(pctx, "job")
			cancel(io.ErrClosedPipe)
			return ctx, op, func() {}
		}, ReasonParent, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, op, cleanup := tc.start(t)
			defer cleanup()
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("context not done")
			}
			check := func(when string) {
				t.Helper()
				cause := context.Cause(ctx)
				var e *Error
				if !errors.As(cause, &e) || cause != error(e) {
					t.Fatalf("%s: context.Cause = %#v, want an *Error", when, cause)
				}
				if e != op.Err() || e.Reason != tc.reason || e.Op != "job" || e.OpID != op.ID() || e.Time.IsZero() {
					t.Fatalf("%s: cause %+v, op.Err %v", when, e, op.Err())
				}
				if errors.Is(cause, context.DeadlineExceeded) != tc.deadline {
					t.Fatalf("%s: Is(DeadlineExceeded) = %v", when, !tc.deadline)
				}
				want := context.Canceled
				if tc.deadline {
					want = context.DeadlineExceeded
				}
				if ctx.Err() != want {
					t.Fatalf("%s: ctx.Err = %v, want %v", when, ctx.Err(), want)
				}
			}
			check("before End")
			op.End(ctx.Err())
			check("after End")
			if op.Status() != StatusCancelled {
				t.Fatalf("status %v", op.Status())
			}
		})
	}
}

// After a normal End the context is done with ErrEnded, never a cause-less
// Canceled; contexts derived from it see the same.
func TestContextCauseAfterNormalEnd(t *testing.T) {
	for _, endErr := range []error{nil, io.EOF} {
		ctx, op := Start(context.Background(), "job")
		derived, stop := context.WithCancel(ctx)
		if ctx.Err() != nil || context.Cause(ctx) != nil {
			t.Fatalf("running: Err %v Cause %v", ctx.Err(), context.Cause(ctx))
		}
		op.End(endErr)
		select {
		case <-ctx.Done():
		default:
			t.Fatal("context not done after End")
		}
		if ctx.Err() != context.Canceled || context.Cause(ctx) != ErrEnded || context.Cause(derived) != ErrEnded {
			t.Fatalf("End(%v): Err %v, Cause %v, derived %v", endErr, ctx.Err(), context.Cause(ctx), context.Cause(derived))
		}
		// The end is not a cancellation.
		if op.Err() != nil || op.Reason() != 0 || ReasonOf(context.Cause(ctx)) != 0 {
			t.Fatalf("End(%v): op.Err %v reason %v", endErr, op.Err(), op.Reason())
		}
		stop()
	}
}
