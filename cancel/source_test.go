package cancel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Helpers shared by source_test.go, parent_test.go and defects_test.go. They
// carry a src prefix so as not to collide with helpers of other test files.

// srcGuard bounds every wait: long enough for a loaded -race run, short
// enough that a hang fails the test instead of the package timeout.
const srcGuard = 5 * time.Second

// srcWait waits for ch to be closed, failing the test after srcGuard.
func srcWait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(srcGuard):
		t.Fatalf("timed out after %v waiting for %s", srcGuard, what)
	}
}

// srcClosed reports whether ch is closed, without waiting.
func srcClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// srcCancelErr checks that op was asked to stop with reason and a message
// containing msg, and returns its *Error.
func srcCancelErr(t *testing.T, op *Operation, reason Reason, msg string) *Error {
	t.Helper()
	err := op.Err()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: Err() = %v, want an *Error with reason %v", op.Name(), err, reason)
	}
	if e.Reason != reason || op.Reason() != reason {
		t.Fatalf("%s: reason = %v (Reason() = %v), want %v; err: %v", op.Name(), e.Reason, op.Reason(), reason, e)
	}
	if !strings.Contains(e.Message, msg) {
		t.Fatalf("%s: message = %q, want it to contain %q", op.Name(), e.Message, msg)
	}
	if e.Op != op.Name() || e.OpID != op.ID() {
		t.Fatalf("%s: *Error names operation %q #%d, want %q #%d", op.Name(), e.Op, e.OpID, op.Name(), op.ID())
	}
	if !errors.Is(e, context.Canceled) {
		t.Fatalf("%s: errors.Is(%v, context.Canceled) = false", op.Name(), e)
	}
	return e
}

// srcRecorder is an Observer that records what it is told, in order.
type srcRecorder struct {
	mu       sync.Mutex
	events   []string // "start", "progress:msg", "cancel:reason", "end:status"
	cancels  []*Error
	progress []Progress
}

func (r *srcRecorder) observer() Observer {
	return Hooks{
		OnStart: func(op *Operation) { r.add("start") },
		OnProgress: func(op *Operation, p Progress) {
			r.mu.Lock()
			r.progress = append(r.progress, p)
			r.mu.Unlock()
			r.add("progress:" + p.Message)
		},
		OnCancel: func(op *Operation, err *Error) {
			r.mu.Lock()
			r.cancels = append(r.cancels, err)
			r.mu.Unlock()
			r.add("cancel:" + err.Reason.String())
		},
		OnEnd: func(op *Operation) { r.add("end:" + op.Status().String()) },
	}
}

func (r *srcRecorder) add(ev string) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *srcRecorder) snapshot() (events []string, cancels []*Error, progress []Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...), append([]*Error(nil), r.cancels...), append([]Progress(nil), r.progress...)
}

// srcFunc adapts a function to the Source interface.
type srcFunc func(ctx context.Context, fire func(Reason, string)) func()

func (f srcFunc) Watch(ctx context.Context, fire func(Reason, string)) func() { return f(ctx, fire) }

// srcSpy wraps a source and closes fired once the wrapped source has fired
// and the fire it was given has returned.
func srcSpy(s Source) (Source, <-chan struct{}) {
	fired := make(chan struct{})
	var once sync.Once
	return srcFunc(func(ctx context.Context, fire func(Reason, string)) func() {
		return s.Watch(ctx, func(r Reason, msg string) {
			fire(r, msg)
			once.Do(func() { close(fired) })
		})
	}), fired
}

// srcAttr returns the string value of the attribute key of p.
func srcAttr(p Progress, key string) (string, bool) {
	for _, a := range p.Attrs {
		if a.Key == key {
			return a.Value.String(), true
		}
	}
	return "", false
}

// --- timeouts and deadlines ---

func TestTimeoutFires(t *testing.T) {
	const d = 10 * time.Millisecond
	before := time.Now()
	ctx, op := Start(context.Background(), "fetch", WithTimeout(d))
	after := time.Now()

	dl, ok := ctx.Deadline()
	if !ok || dl.Before(before.Add(d)) || dl.After(after.Add(d)) {
		t.Fatalf("ctx.Deadline() = %v, %v; want between %v and %v", dl, ok, before.Add(d), after.Add(d))
	}
	if odl, ook := op.Deadline(); !ook || !odl.Equal(dl) {
		t.Fatalf("op.Deadline() = %v, %v; ctx says %v", odl, ook, dl)
	}
	srcWait(t, ctx.Done(), "the timeout")
	if now := time.Now(); now.Before(dl) {
		t.Fatalf("context done at %v, before its deadline %v", now, dl)
	}
	if ctx.Err() != context.DeadlineExceeded {
		t.Fatalf("ctx.Err() = %v, want context.DeadlineExceeded", ctx.Err())
	}
	e := srcCancelErr(t, op, ReasonTimeout, "timed out after 10ms")
	if !errors.Is(e, context.DeadlineExceeded) {
		t.Fatalf("errors.Is(%v, context.DeadlineExceeded) = false", e)
	}
	if c := context.Cause(ctx); c != error(e) {
		t.Fatalf("context.Cause = %v, want the operation's *Error %v", c, e)
	}
	err := op.End(ctx.Err())
	if err != error(e) || op.Status() != StatusCancelled || ReasonOf(err) != ReasonTimeout {
		t.Fatalf("End = %v (status %v, reason %v), want %v, cancelled, timeout", err, op.Status(), ReasonOf(err), e)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("errors.Is(End(...), DeadlineExceeded) = false for %v", err)
	}
	if c := context.Cause(ctx); c != error(e) {
		t.Fatalf("after End, context.Cause = %v, want %v", c, e)
	}
}

func TestDeadlineFires(t *testing.T) {
	at := time.Now().Add(10 * time.Millisecond)
	ctx, op := Start(context.Background(), "job", WithDeadline(at))
	defer op.End(nil)
	if dl, ok := ctx.Deadline(); !ok || !dl.Equal(at) {
		t.Fatalf("ctx.Deadline() = %v, %v; want %v", dl, ok, at)
	}
	srcWait(t, ctx.Done(), "the deadline")
	if time.Now().Before(at) {
		t.Fatalf("context done before the deadline %v", at)
	}
	if ctx.Err() != context.DeadlineExceeded {
		t.Fatalf("ctx.Err() = %v, want context.DeadlineExceeded", ctx.Err())
	}
	srcCancelErr(t, op, ReasonTimeout, "deadline")
}

func TestTimeoutEarliestOfSeveralWins(t *testing.T) {
	before := time.Now()
	ctx, op := Start(context.Background(), "job",
		WithTimeout(time.Hour), WithTimeout(10*time.Millisecond), WithDeadline(before.Add(2*time.Hour)))
	defer op.End(nil)
	if dl, _ := ctx.Deadline(); dl.After(time.Now().Add(10 * time.Millisecond)) {
		t.Fatalf("ctx.Deadline() = %v, want the earliest (10ms)", dl)
	}
	srcWait(t, ctx.Done(), "the 10ms timeout")
	srcCancelErr(t, op, ReasonTimeout, "timed out after 10ms")
}

func TestTimeoutNotPositiveFiresAtOnce(t *testing.T) {
	// The standard library's behaviour, which ours must match.
	if c, cancel := context.WithTimeout(context.Background(), 0); c.Err() != context.DeadlineExceeded {
		cancel()
		t.Fatalf("context.WithTimeout(0).Err() = %v", c.Err())
	} else {
		cancel()
	}
	past := time.Now().Add(-time.Second)
	for _, tc := range []struct {
		name string
		opt  Option
	}{
		{"WithTimeout(0)", WithTimeout(0)},
		{"WithTimeout(-1s)", WithTimeout(-time.Second)},
		{"WithDeadline(past)", WithDeadline(past)},
		{"WithSource(Timeout(0))", WithSource(Timeout(0))},
		{"AnyOf(Timeout(0))", WithSource(AnyOf(Timeout(0), NewToken()))},
		{"AnyOf(Deadline(past))", WithSource(AnyOf(NewToken(), Deadline(past)))},
		{"AllOf(Timeout(-1),Deadline(past))", WithSource(AllOf(Timeout(-1), Deadline(past)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, op := Start(context.Background(), "now", tc.opt)
			if ctx.Err() != context.DeadlineExceeded {
				t.Fatalf("right after Start, ctx.Err() = %v, want context.DeadlineExceeded", ctx.Err())
			}
			srcCancelErr(t, op, ReasonTimeout, "")
			if dl, ok := ctx.Deadline(); !ok || dl.After(time.Now()) {
				t.Fatalf("ctx.Deadline() = %v, %v; want a time already passed", dl, ok)
			}
			if err := op.End(ctx.Err()); ReasonOf(err) != ReasonTimeout {
				t.Fatalf("End = %v, want reason timeout", err)
			}
		})
	}
}

func TestTimeoutEndedBeforeItFires(t *testing.T) {
	rec := &srcRecorder{}
	ctx, op := Start(context.Background(), "quick", WithTimeout(time.Hour), WithObserver(rec.observer()))
	if err := op.End(nil); err != nil {
		t.Fatalf("End(nil) = %v", err)
	}
	if op.Status() != StatusCompleted || op.Reason() != 0 {
		t.Fatalf("status %v reason %v, want completed without reason", op.Status(), op.Reason())
	}
	// The context is released, but it did not time out.
	if ctx.Err() != context.Canceled || context.Cause(ctx) != ErrEnded {
		t.Fatalf("after End: ctx.Err() = %v, Cause = %v; want Canceled, ErrEnded", ctx.Err(), context.Cause(ctx))
	}
	if events, _, _ := rec.snapshot(); strings.Join(events, ",") != "start,end:completed" {
		t.Fatalf("observer saw %v", events)
	}
}

func TestTimeoutInsideAnyOfFiresAndSetsDeadline(t *testing.T) {
	const d = 10 * time.Millisecond
	tok := NewToken()
	before := time.Now()
	ctx, op := Start(context.Background(), "any", WithSource(AnyOf(tok, Timeout(time.Hour), Timeout(d))))
	after := time.Now()
	defer op.End(nil)
	dl, ok := ctx.Deadline()
	if !ok || dl.Before(before.Add(d)) || dl.After(after.Add(d)) {
		t.Fatalf("ctx.Deadline() = %v, %v; want the AnyOf's earliest timeout, between %v and %v",
			dl, ok, before.Add(d), after.Add(d))
	}
	srcWait(t, ctx.Done(), "the timeout inside AnyOf")
	if time.Now().Before(dl) {
		t.Fatal("context done before the deadline it reports")
	}
	if ctx.Err() != context.DeadlineExceeded {
		t.Fatalf("ctx.Err() = %v, want context.DeadlineExceeded", ctx.Err())
	}
	srcCancelErr(t, op, ReasonTimeout, "timed out after 10ms")
}

func TestTimeoutInsideCompositeCountsFromStart(t *testing.T) {
	// A slow source watched before the timeout must not push the timeout
	// past the deadline the context reports: it counts from Start.
	slow := srcFunc(func(context.Context, func(Reason, string)) func() {
		time.Sleep(20 * time.Millisecond) // a Watch that takes its time
		return nil
	})
	ctx, op := Start(context.Background(), "job", WithSource(AnyOf(slow, Timeout(10*time.Millisecond))))
	defer op.End(nil)
	dl, _ := ctx.Deadline()
	if time.Now().After(dl) && ctx.Err() != context.DeadlineExceeded {
		t.Fatalf("Start returned after the deadline %v it reports, with the context not done", dl)
	}
	srcCancelErr(t, op, ReasonTimeout, "timed out after 10ms")
}

func TestTimeoutsInsideAllOfFireWithTheLast(t *testing.T) {
	before := time.Now()
	ctx, op := Start(context.Background(), "all", WithSource(AllOf(Timeout(5*time.Millisecond), Timeout(15*time.Millisecond))))
	defer op.End(nil)
	// AllOf fires by time alone at its latest timeout.
	if dl, ok := ctx.Deadline(); !ok || dl.Before(before.Add(15*time.Millisecond)) {
		t.Fatalf("ctx.Deadline() = %v, %v; want the later timeout (15ms)", dl, ok)
	}
	srcWait(t, ctx.Done(), "AllOf of two timeouts")
	if time.Since(before) < 15*time.Millisecond {
		t.Fatalf("AllOf fired after %v, before its last timeout", time.Since(before))
	}
	if ctx.Err() != context.DeadlineExceeded {
		t.Fatalf("ctx.Err() = %v, want context.DeadlineExceeded", ctx.Err())
	}
	// Which message wins is not fixed: under load the 5ms timer's callback
	// can run after the 15ms one's.
	srcCancelErr(t, op, ReasonTimeout, "timed out after ")
}

func TestTimeoutInsideAllOfWaitsForTheOthers(t *testing.T) {
	tok := NewToken()
	timeout, fired := srcSpy(Timeout(5 * time.Millisecond))
	ctx, op := Start(context.Background(), "all", WithSource(AllOf(timeout, tok)))
	defer op.End(nil)
	if _, ok := ctx.Deadline(); ok {
		t.Fatal("AllOf with a token reports a deadline, but it cannot fire by time alone")
	}
	srcWait(t, fired, "the timeout inside AllOf to fire")
	if err := op.Err(); err != nil {
		t.Fatalf("AllOf fired with one source of two: %v", err)
	}
	tok.Cancel(ReasonShutdown, "draining")
	// Token callbacks run before Cancel returns: no wait needed.
	if !srcClosed(ctx.Done()) {
		t.Fatal("context not done once every source of AllOf fired")
	}
	srcCancelErr(t, op, ReasonShutdown, "draining")
	if ctx.Err() != context.Canceled {
		t.Fatalf("ctx.Err() = %v, want context.Canceled (the last source was not a timeout)", ctx.Err())
	}
}

// --- tokens ---

func TestTokenSource(t *testing.T) {
	tok := NewToken()
	rec := &srcRecorder{}
	ctx, op := Start(context.Background(), "job", WithToken(tok), WithObserver(rec.observer()))
	if n := tok.registered(); n != 1 {
		t.Fatalf("token holds %d callbacks while one operation watches it, want 1", n)
	}
	if !tok.Cancel(ReasonShutdown, "server draining") {
		t.Fatal("first Cancel returned false")
	}
	if !srcClosed(ctx.Done()) {
		t.Fatal("operation's context not done when the token's Cancel returned")
	}
	e := srcCancelErr(t, op, ReasonShutdown, "server draining")
	if e.Message != "server draining" {
		t.Fatalf("message %q, want the token's exactly", e.Message)
	}
	if ctx.Err() != context.Canceled {
		t.Fatalf("ctx.Err() = %v, want context.Canceled", ctx.Err())
	}
	if _, cancels, _ := rec.snapshot(); len(cancels) != 1 || cancels[0] != e {
		t.Fatalf("observer told of cancels %v, want exactly %v", cancels, e)
	}
	err := op.End(ctx.Err())
	if ReasonOf(err) != ReasonShutdown || op.Status() != StatusCancelled {
		t.Fatalf("End = %v, status %v", err, op.Status())
	}
	if n := tok.registered(); n != 0 {
		t.Fatalf("token holds %d callbacks after End", n)
	}
}

func TestTokenSourceUnregisteredAtEnd(t *testing.T) {
	tok := NewToken()
	_, op1 := Start(context.Background(), "a", WithToken(tok))
	_, op2 := Start(context.Background(), "b", WithSource(AnyOf(tok, Timeout(time.Hour))))
	_, op3 := Start(context.Background(), "c", WithSource(AllOf(NewToken(), tok)))
	if n := tok.registered(); n != 3 {
		t.Fatalf("registered = %d, want 3", n)
	}
	for i, op := range []*Operation{op1, op2, op3} {
		if err := op.End(nil); err != nil {
			t.Fatal(err)
		}
		if n, want := tok.registered(), 2-i; n != want {
			t.Fatalf("after End of %s: registered = %d, want %d", op.Name(), n, want)
		}
	}
	// A cancel after they ended changes nothing about them.
	tok.Cancel(ReasonManual, "late")
	for _, op := range []*Operation{op1, op2, op3} {
		if op.Reason() != 0 || op.Status() != StatusCompleted {
			t.Fatalf("%s: reason %v status %v after a late token cancel", op.Name(), op.Reason(), op.Status())
		}
	}
}

func TestTokenAlreadyCancelledCancelsAtStart(t *testing.T) {
	tok := NewToken()
	tok.Cancel(ReasonError, "dependency failed")
	for _, opt := range []Option{WithToken(tok), WithSource(AnyOf(NewToken(), tok))} {
		ctx, op := Start(context.Background(), "late", opt)
		if !srcClosed(ctx.Done()) {
			t.Fatal("context not done when Start returned")
		}
		srcCancelErr(t, op, ReasonError, "dependency failed")
		op.End(ctx.Err())
	}
	if n := tok.registered(); n != 0 {
		t.Fatalf("registered = %d", n)
	}
}

func TestTokenWithReasonTimeoutLooksLikeATimeout(t *testing.T) {
	tok := NewToken()
	ctx, op := Start(context.Background(), "job", WithToken(tok))
	defer op.End(nil)
	tok.Cancel(ReasonTimeout, "budget spent upstream")
	if ctx.Err() != context.DeadlineExceeded {
		t.Fatalf("ctx.Err() = %v, want DeadlineExceeded for reason timeout", ctx.Err())
	}
	srcCancelErr(t, op, ReasonTimeout, "budget spent upstream")
}

// --- OS signals ---

func TestSignalsDefault(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx, op := Start(context.Background(), "serve", WithSignals())
			if err := syscall.Kill(os.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			srcWait(t, ctx.Done(), "the signal")
			srcCancelErr(t, op, ReasonSignal, sig.String())
			if err := op.End(ctx.Err()); ReasonOf(err) != ReasonSignal {
				t.Fatalf("End = %v", err)
			}
		})
	}
}

func TestSignalsCustomList(t *testing.T) {
	// Catch SIGUSR2 ourselves so that it cannot end the test process.
	other := make(chan os.Signal, 1)
	signal.Notify(other, syscall.SIGUSR2)
	defer signal.Stop(other)

	ctx, op := Start(context.Background(), "serve", WithSignals(syscall.SIGUSR1))
	defer op.End(nil)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-other:
	case <-time.After(srcGuard):
		t.Fatal("SIGUSR2 not delivered")
	}
	// SIGUSR2 was handled before SIGUSR1 is sent: had the operation been
	// watching it, the message would name it.
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	srcWait(t, ctx.Done(), "SIGUSR1")
	srcCancelErr(t, op, ReasonSignal, syscall.SIGUSR1.String())
}

func TestSignalsSeveralOperations(t *testing.T) {
	// Two operations both get the signal; ending one leaves the other's
	// handler in place (if it did not, SIGUSR1 would kill the test process).
	ctx1, op1 := Start(context.Background(), "one", WithSignals(syscall.SIGUSR1))
	ctx2, op2 := Start(context.Background(), "two", WithSignals(syscall.SIGUSR1))
	ctx3, op3 := Start(context.Background(), "three", WithSignals(syscall.SIGUSR1))
	if err := op1.End(nil); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	srcWait(t, ctx2.Done(), "SIGUSR1 at the second operation")
	srcWait(t, ctx3.Done(), "SIGUSR1 at the third operation")
	srcCancelErr(t, op2, ReasonSignal, syscall.SIGUSR1.String())
	srcCancelErr(t, op3, ReasonSignal, syscall.SIGUSR1.String())
	op2.End(ctx2.Err())
	op3.End(ctx3.Err())
	if op1.Reason() != 0 || ctx1.Err() != context.Canceled || context.Cause(ctx1) != ErrEnded {
		t.Fatalf("ended operation saw the signal: reason %v cause %v", op1.Reason(), context.Cause(ctx1))
	}
}

func TestSignalsReleasedOnceCancelled(t *testing.T) {
	// Cancelled by something else, the operation no longer needs the
	// signals: its watcher (and with it the handler) goes before End.
	before := goleak.IgnoreCurrent()
	ctx, op := Start(context.Background(), "serve", WithSignals(syscall.SIGUSR1))
	op.Cancel(ReasonManual, "done with it")
	if err := goleak.Find(before); err != nil {
		t.Fatalf("the signal watcher still runs after the cancellation: %v", err)
	}
	op.End(ctx.Err())
}

const srcHelperEnv = "CANCEL_TEST_SIGNAL_HELPER"

// TestHelperProcess is not a test: TestSignalsHandlersRemoved runs the test
// binary again with only this function, in a process it may kill.
func TestHelperProcess(t *testing.T) {
	spec := os.Getenv(srcHelperEnv)
	if spec == "" {
		t.Skip("helper process of TestSignalsHandlersRemoved")
	}
	// spec is "<mode>:<signal number>[:default]".
	parts := strings.Split(spec, ":")
	n, err := strconv.Atoi(parts[1])
	if err != nil {
		fmt.Println("bad spec", spec)
		os.Exit(2)
	}
	sig := syscall.Signal(n)
	if signal.Ignored(sig) {
		// Started with the signal ignored (a shell does that to SIGINT
		// for background jobs): once released it is rightly ignored
		// again, so its removal cannot be seen from the process's death.
		fmt.Println("ignored at start")
		os.Exit(7)
	}
	opt := WithSignals(sig)
	if len(parts) > 2 && parts[2] == "default" {
		opt = WithSignals()
	}
	die := func() {
		syscall.Kill(os.Getpid(), sig)
		time.Sleep(srcGuard) // waiting to be killed; there is nothing to wait on
		fmt.Println("survived the signal")
		os.Exit(5)
	}

	// While the operation runs, the signal cancels it and the process lives.
	ctx, op := Start(context.Background(), "fired", opt)
	syscall.Kill(os.Getpid(), sig)
	select {
	case <-ctx.Done():
	case <-time.After(srcGuard):
		fmt.Println("signal did not cancel the operation")
		os.Exit(3)
	}
	if op.Reason() != ReasonSignal {
		fmt.Println("reason", op.Reason())
		os.Exit(4)
	}
	fmt.Println("operation cancelled by the signal")
	if parts[0] == "second" {
		// Not ended yet, but fired: a second signal has its default action.
		die()
	}
	op.End(ctx.Err())
	// An operation that never fired releases its handler at End.
	_, op = Start(context.Background(), "unfired", opt)
	op.End(nil)
	fmt.Println("operations ended")
	die()
}

func TestSignalsHandlersRemoved(t *testing.T) {
	if testing.Short() {
		t.Skip("runs subprocesses")
	}
	term, intr := strconv.Itoa(int(syscall.SIGTERM)), strconv.Itoa(int(syscall.SIGINT))
	for _, tc := range []struct {
		name, spec, reached string
		sig                 syscall.Signal
	}{
		{"end/SIGTERM", "end:" + term, "operations ended", syscall.SIGTERM},
		{"end/default/SIGTERM", "end:" + term + ":default", "operations ended", syscall.SIGTERM},
		{"end/default/SIGINT", "end:" + intr + ":default", "operations ended", syscall.SIGINT},
		{"second/SIGTERM", "second:" + term, "operation cancelled by the signal", syscall.SIGTERM},
		{"second/default/SIGINT", "second:" + intr + ":default", "operation cancelled by the signal", syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*srcGuard)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), srcHelperEnv+"="+tc.spec)
			out, err := cmd.CombinedOutput()
			if strings.Contains(string(out), "ignored at start") {
				t.Skipf("%v is ignored in this environment (a background job?): its removal cannot be seen", tc.sig)
			}
			if !strings.Contains(string(out), tc.reached) {
				t.Fatalf("helper did not get as far as %q: %v\n%s", tc.reached, err, out)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("helper exited with %v, want death by %v\n%s", err, tc.sig, out)
			}
			ws, ok := ee.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != tc.sig {
				t.Fatalf("helper exit status %q, want %q: the handler outlived its use\n%s",
					ee, "signal: "+tc.sig.String(), out)
			}
		})
	}
}

// --- polled conditions ---

func TestConditionAlreadyTrueCancelsAtStart(t *testing.T) {
	var calls atomic.Int32
	ctx, op := Start(context.Background(), "job", WithCondition("disk full", func(context.Context) (bool, error) {
		calls.Add(1)
		return true, nil
	}, time.Hour))
	if !srcClosed(ctx.Done()) {
		t.Fatal("a condition already true did not cancel before Start returned")
	}
	srcCancelErr(t, op, ReasonCondition, "disk full")
	if n := calls.Load(); n != 1 {
		t.Fatalf("check called %d times, want 1", n)
	}
	op.End(ctx.Err())
	if n := calls.Load(); n != 1 {
		t.Fatalf("check called %d times after End, want 1", n)
	}
}

func TestConditionMessageWithoutName(t *testing.T) {
	ctx, op := Start(context.Background(), "job", WithCondition("", func(context.Context) (bool, error) {
		return true, nil
	}, time.Hour))
	defer op.End(nil)
	if ctx.Err() == nil {
		t.Fatal("not cancelled")
	}
	if e := srcCancelErr(t, op, ReasonCondition, ""); e.Message != "condition met" {
		t.Fatalf("message %q", e.Message)
	}
}

func TestConditionCheckedAtOnceThenEveryInterval(t *testing.T) {
	// With an hour's interval, the only call before Start returns is the
	// one made at once, on Start's goroutine.
	var calls atomic.Int32
	_, op := Start(context.Background(), "slow", WithCondition("never", func(context.Context) (bool, error) {
		calls.Add(1)
		return false, nil
	}, time.Hour))
	if n := calls.Load(); n != 1 {
		t.Fatalf("check called %d times by the time Start returned, want 1", n)
	}
	op.End(nil)

	// Then every interval until it holds.
	calls.Store(0)
	ctx, op := Start(context.Background(), "polled", WithCondition("third time", func(context.Context) (bool, error) {
		return calls.Add(1) == 3, nil
	}, 2*time.Millisecond))
	srcWait(t, ctx.Done(), "the condition to hold")
	srcCancelErr(t, op, ReasonCondition, "third time")
	op.End(ctx.Err())
	if n := calls.Load(); n != 3 {
		t.Fatalf("check called %d times, want exactly 3 (no call once it held)", n)
	}
}

func TestConditionGetsOperationContext(t *testing.T) {
	type key struct{}
	parent := context.WithValue(context.Background(), key{}, "v")
	var (
		mu  sync.Mutex
		ops []*Operation
		vs  []any
	)
	ctx, op := Start(parent, "job", WithCondition("c", func(ctx context.Context) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		ops = append(ops, FromContext(ctx))
		vs = append(vs, ctx.Value(key{}))
		return len(ops) == 2, nil
	}, time.Millisecond))
	srcWait(t, ctx.Done(), "the condition")
	op.End(ctx.Err())
	mu.Lock()
	defer mu.Unlock()
	for i := range ops {
		if ops[i] != op || vs[i] != "v" {
			t.Fatalf("call %d: FromContext = %v, value = %v; want the operation and the parent's value", i, ops[i], vs[i])
		}
	}
}

func TestConditionErrorReportedAndPollingGoesOn(t *testing.T) {
	rec := &srcRecorder{}
	var calls atomic.Int32
	ctx, op := Start(context.Background(), "job", WithObserver(rec.observer()),
		WithCondition("queue drained", func(context.Context) (bool, error) {
			switch calls.Add(1) {
			case 1:
				return false, errors.New("probe failed")
			case 2:
				panic("probe exploded")
			case 3:
				return false, nil
			}
			return true, nil
		}, time.Millisecond))
	srcWait(t, ctx.Done(), "the condition after two failed checks")
	srcCancelErr(t, op, ReasonCondition, "queue drained")
	op.End(ctx.Err())

	_, _, progress := rec.snapshot()
	if len(progress) != 2 {
		t.Fatalf("got %d progress reports, want 2 (one per failed check): %+v", len(progress), progress)
	}
	for i, want := range []string{"probe failed", "probe exploded"} {
		p := progress[i]
		if p.Message != "condition check failed" {
			t.Errorf("report %d: message %q", i, p.Message)
		}
		if v, _ := srcAttr(p, "condition"); v != "queue drained" {
			t.Errorf("report %d: condition attr %q", i, v)
		}
		if v, _ := srcAttr(p, "error"); !strings.Contains(v, want) {
			t.Errorf("report %d: error attr %q, want it to contain %q", i, v, want)
		}
	}
	if n := calls.Load(); n != 4 {
		t.Fatalf("check called %d times, want 4", n)
	}
}

func TestConditionPanicAtStartContained(t *testing.T) {
	rec := &srcRecorder{}
	ctx, op := Start(context.Background(), "job", WithObserver(rec.observer()),
		WithCondition("c", func(context.Context) (bool, error) { panic("at once") }, time.Hour))
	if ctx.Err() != nil || op.Status() != StatusRunning {
		t.Fatalf("a panicking check stopped the operation: %v, %v", ctx.Err(), op.Status())
	}
	if err := op.End(nil); err != nil || op.Status() != StatusCompleted {
		t.Fatalf("End = %v, status %v", err, op.Status())
	}
	if _, _, progress := rec.snapshot(); len(progress) != 1 {
		t.Fatalf("want one progress report for the panic, got %+v", progress)
	} else if v, _ := srcAttr(progress[0], "error"); !strings.Contains(v, "panicked: at once") {
		t.Fatalf("error attr %q", v)
	}
}

func TestConditionPollerGoneAfterEnd(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	// The check blocks until the operation's context is done, as a real
	// probe would: End must stop it and wait for the poller.
	blocked := make(chan struct{})
	var once sync.Once
	var calls atomic.Int32
	_, op := Start(context.Background(), "job", WithCondition("slow probe", func(ctx context.Context) (bool, error) {
		if calls.Add(1) > 1 {
			once.Do(func() { close(blocked) })
			<-ctx.Done()
		}
		return false, nil
	}, time.Millisecond))
	srcWait(t, blocked, "the poller to call check")
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		op.End(nil)
	}()
	srcWait(t, ended, "End while check blocks on the context")
	if op.Status() != StatusCompleted || op.Reason() != 0 {
		t.Fatalf("status %v reason %v", op.Status(), op.Reason())
	}
	// The deferred goleak check proves the poller exited.
}

func TestConditionPollingStopsOnceCancelled(t *testing.T) {
	before := goleak.IgnoreCurrent()
	var calls atomic.Int32
	ctx, op := Start(context.Background(), "job", WithCondition("never", func(context.Context) (bool, error) {
		calls.Add(1)
		return false, nil
	}, time.Millisecond))
	op.Cancel(ReasonManual, "enough")
	// Nothing a check says can matter any more: the poller stops now, not
	// only at End.
	if err := goleak.Find(before); err != nil {
		t.Fatalf("the poller still runs after the cancellation: %v", err)
	}
	n := calls.Load()
	op.End(ctx.Err())
	if m := calls.Load(); m != n {
		t.Fatalf("check called %d more times after the poller exited", m-n)
	}
}

// --- custom sources ---

func TestCustomSourceFirstFireWins(t *testing.T) {
	rec := &srcRecorder{}
	ctx, op := Start(context.Background(), "job", WithObserver(rec.observer()),
		WithSource(srcFunc(func(_ context.Context, fire func(Reason, string)) func() {
			fire(ReasonShutdown, "first")
			fire(ReasonError, "second")
			return nil
		})))
	if !srcClosed(ctx.Done()) {
		t.Fatal("a fire during Watch did not cancel before Start returned")
	}
	srcCancelErr(t, op, ReasonShutdown, "first")
	op.End(ctx.Err())
	if _, cancels, _ := rec.snapshot(); len(cancels) != 1 || cancels[0].Message != "first" {
		t.Fatalf("observer told of %v, want one cancel (first)", cancels)
	}
}

func TestCustomSourceFireFromManyGoroutines(t *testing.T) {
	rec := &srcRecorder{}
	trigger := make(chan struct{})
	var wg sync.WaitGroup
	ctx, op := Start(context.Background(), "job", WithObserver(rec.observer()),
		WithSource(srcFunc(func(_ context.Context, fire func(Reason, string)) func() {
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-trigger
					fire(ReasonDisconnect, fmt.Sprintf("peer %d gone", i))
				}()
			}
			return wg.Wait
		})))
	close(trigger)
	srcWait(t, ctx.Done(), "a fire")
	e := srcCancelErr(t, op, ReasonDisconnect, "gone")
	op.End(ctx.Err())
	if _, cancels, _ := rec.snapshot(); len(cancels) != 1 || cancels[0] != e {
		t.Fatalf("observer told of %d cancels (%v), want exactly the winner %v", len(cancels), cancels, e)
	}
	if op.Err() != error(e) {
		t.Fatalf("winner changed after End: %v", op.Err())
	}
}

func TestCustomSourceStoppedOnceAtEnd(t *testing.T) {
	var stops atomic.Int32
	var ctxDoneAtStop atomic.Bool
	var gotOp atomic.Pointer[Operation]
	ctx, op := Start(context.Background(), "job", WithSource(srcFunc(func(ctx context.Context, fire func(Reason, string)) func() {
		gotOp.Store(FromContext(ctx))
		return func() {
			stops.Add(1)
			ctxDoneAtStop.Store(ctx.Err() != nil)
		}
	})))
	if gotOp.Load() != op {
		t.Fatalf("Watch got a context of %v, want the operation's", gotOp.Load())
	}
	op.Cancel(ReasonManual, "stop")
	if n := stops.Load(); n != 0 {
		t.Fatalf("stop called %d times before End", n)
	}
	op.End(ctx.Err())
	op.End(nil)
	if n := stops.Load(); n != 1 {
		t.Fatalf("stop called %d times, want exactly once", n)
	}
	if !ctxDoneAtStop.Load() {
		t.Fatal("the context was not done when stop ran")
	}
}

func TestCustomSourceFireAfterEndIgnored(t *testing.T) {
	rec := &srcRecorder{}
	var fire func(Reason, string)
	_, op := Start(context.Background(), "job", WithObserver(rec.observer()),
		WithSource(srcFunc(func(_ context.Context, f func(Reason, string)) func() {
			fire = f
			return nil // a nil stop is allowed
		})))
	if err := op.End(nil); err != nil {
		t.Fatal(err)
	}
	fire(ReasonManual, "too late")
	if op.Reason() != 0 || op.Err() != nil || op.Status() != StatusCompleted {
		t.Fatalf("a fire after End changed the operation: %v %v %v", op.Reason(), op.Err(), op.Status())
	}
	if _, cancels, _ := rec.snapshot(); len(cancels) != 0 {
		t.Fatalf("observer told of a cancel after End: %v", cancels)
	}
}

func TestCustomSourceUnknownReasonIsManual(t *testing.T) {
	ctx, op := Start(context.Background(), "job", WithSource(srcFunc(func(_ context.Context, fire func(Reason, string)) func() {
		fire(Reason(200), "odd")
		return nil
	})))
	defer op.End(nil)
	if ctx.Err() == nil {
		t.Fatal("not cancelled")
	}
	srcCancelErr(t, op, ReasonManual, "odd")
}

func TestCustomSourcePanicsContained(t *testing.T) {
	tok := NewToken()
	var otherStopped atomic.Int32
	ctx, op := Start(context.Background(), "job",
		WithSource(srcFunc(func(context.Context, func(Reason, string)) func() { panic("watch exploded") })),
		WithSource(AnyOf(
			srcFunc(func(context.Context, func(Reason, string)) func() {
				return func() { panic("stop exploded") }
			}),
			srcFunc(func(context.Context, func(Reason, string)) func() {
				return func() { otherStopped.Add(1) }
			}),
		)),
		WithToken(tok))
	if ctx.Err() != nil || op.Status() != StatusRunning {
		t.Fatalf("a panicking Watch stopped the operation: %v %v", ctx.Err(), op.Status())
	}
	tok.Cancel(ReasonManual, "the other sources still work")
	srcCancelErr(t, op, ReasonManual, "the other sources still work")
	if err := op.End(ctx.Err()); ReasonOf(err) != ReasonManual || op.Status() != StatusCancelled {
		t.Fatalf("End = %v, status %v", err, op.Status())
	}
	if n := otherStopped.Load(); n != 1 {
		t.Fatalf("a panicking stop kept the next one from running: %d", n)
	}
	if n := tok.registered(); n != 0 {
		t.Fatalf("token still holds %d callbacks", n)
	}
}

// --- composites ---

func TestAnyOfFirstWins(t *testing.T) {
	a, b := NewToken(), NewToken()
	rec := &srcRecorder{}
	ctx, op := Start(context.Background(), "job", WithSource(AnyOf(a, b)), WithObserver(rec.observer()))
	b.Cancel(ReasonDisconnect, "peer left")
	a.Cancel(ReasonShutdown, "draining")
	if !srcClosed(ctx.Done()) {
		t.Fatal("not done")
	}
	srcCancelErr(t, op, ReasonDisconnect, "peer left")
	op.End(ctx.Err())
	if _, cancels, _ := rec.snapshot(); len(cancels) != 1 {
		t.Fatalf("%d cancels reported", len(cancels))
	}
	if _, ok := ctx.Deadline(); ok {
		t.Fatal("AnyOf of tokens reports a deadline")
	}
}

func TestAllOfFiresWhenAllFired(t *testing.T) {
	a, b, c := NewToken(), NewToken(), NewToken()
	ctx, op := Start(context.Background(), "job", WithSource(AllOf(a, b, c)))
	defer op.End(nil)
	b.Cancel(ReasonShutdown, "b")
	a.Cancel(ReasonError, "a")
	if op.Err() != nil || ctx.Err() != nil {
		t.Fatalf("AllOf fired with two of three: %v", op.Err())
	}
	c.Cancel(ReasonDisconnect, "c, the last")
	if !srcClosed(ctx.Done()) {
		t.Fatal("AllOf did not fire when the last source fired")
	}
	srcCancelErr(t, op, ReasonDisconnect, "c, the last")
}

func TestAllOfAlreadyFiredAtStart(t *testing.T) {
	a, b := NewToken(), NewToken()
	a.Cancel(ReasonManual, "a")
	b.Cancel(ReasonShutdown, "b")
	ctx, op := Start(context.Background(), "job", WithSource(AllOf(a, b)))
	defer op.End(nil)
	if !srcClosed(ctx.Done()) {
		t.Fatal("AllOf of cancelled tokens did not cancel at Start")
	}
	srcCancelErr(t, op, ReasonShutdown, "b") // Watch order: b is the last
}

func TestAllOfWithNestedAnyOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		order  []int // indexes into a, b, c
		want   Reason
		fireAt int // how many cancels until it fires
	}{
		{"anyof-first", []int{0, 1, 2}, ReasonDisconnect, 3},
		{"anyof-half-then-c", []int{1, 2}, ReasonDisconnect, 2},
		{"c-first", []int{2, 0}, ReasonManual, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toks := []*Token{NewToken(), NewToken(), NewToken()}
			reasons := []Reason{ReasonManual, ReasonShutdown, ReasonDisconnect}
			// Fires when (a or b) and c.
			ctx, op := Start(context.Background(), "job", WithSource(AllOf(AnyOf(toks[0], toks[1]), toks[2])))
			defer op.End(nil)
			for i, idx := range tc.order {
				toks[idx].Cancel(reasons[idx], reasons[idx].String())
				if done := srcClosed(ctx.Done()); done != (i+1 >= tc.fireAt) {
					t.Fatalf("after %d cancels: done = %v", i+1, done)
				}
			}
			srcCancelErr(t, op, tc.want, tc.want.String())
		})
	}
}

func TestCompositeDeadlines(t *testing.T) {
	start := time.Now()
	for _, tc := range []struct {
		name string
		src  Source
		want time.Duration // 0: no deadline
	}{
		{"AnyOf-earliest", AnyOf(Timeout(2*time.Hour), NewToken(), Timeout(time.Hour)), time.Hour},
		{"AllOf-latest", AllOf(Timeout(2*time.Hour), Timeout(time.Hour)), 2 * time.Hour},
		{"AllOf-with-token", AllOf(Timeout(time.Hour), NewToken()), 0},
		{"AllOf-of-AnyOf", AllOf(AnyOf(Timeout(time.Hour), NewToken()), Timeout(30*time.Minute)), time.Hour},
		{"AnyOf-of-AllOf", AnyOf(AllOf(Timeout(time.Hour), NewToken()), Timeout(3*time.Hour)), 3 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, op := Start(context.Background(), "job", WithSource(tc.src))
			end := time.Now()
			defer op.End(nil)
			dl, ok := ctx.Deadline()
			if tc.want == 0 {
				if ok {
					t.Fatalf("deadline %v, want none", dl)
				}
				return
			}
			if !ok || dl.Before(start.Add(tc.want)) || dl.After(end.Add(tc.want)) {
				t.Fatalf("deadline %v (%v), want about now+%v", dl, ok, tc.want)
			}
		})
	}
}

func TestSeveralOptionsActAsAnyOf(t *testing.T) {
	a, b := NewToken(), NewToken()
	var stops atomic.Int32
	ctx, op := Start(context.Background(), "job",
		WithToken(a),
		WithTimeout(time.Hour),
		WithCondition("never", func(context.Context) (bool, error) { return false, nil }, time.Hour),
		WithSource(srcFunc(func(context.Context, func(Reason, string)) func() {
			return func() { stops.Add(1) }
		})),
		WithToken(b))
	b.Cancel(ReasonShutdown, "b wins")
	a.Cancel(ReasonManual, "a is late")
	if !srcClosed(ctx.Done()) {
		t.Fatal("not done")
	}
	srcCancelErr(t, op, ReasonShutdown, "b wins")
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < 59*time.Minute {
		t.Fatalf("deadline %v, %v; want the timeout's", dl, ok)
	}
	op.End(ctx.Err())
	if stops.Load() != 1 || a.registered() != 0 || b.registered() != 0 {
		t.Fatalf("sources not released: stops %d, tokens %d %d", stops.Load(), a.registered(), b.registered())
	}
}

func TestCompositeSourcesStoppedOnce(t *testing.T) {
	var stops [3]atomic.Int32
	counting := func(i int) Source {
		return srcFunc(func(context.Context, func(Reason, string)) func() {
			return func() { stops[i].Add(1) }
		})
	}
	_, op := Start(context.Background(), "job", WithSource(AnyOf(counting(0), AllOf(counting(1), AnyOf(counting(2))))))
	op.End(nil)
	op.End(nil)
	for i := range stops {
		if n := stops[i].Load(); n != 1 {
			t.Fatalf("stop %d called %d times, want 1", i, n)
		}
	}
}

// --- invalid options (issue 2, point 11) ---

func TestInvalidOptions(t *testing.T) {
	check := func(context.Context) (bool, error) { return false, nil }
	var nilCtx context.Context
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		opts    []Option
		option  string // OptionError.Option
		problem string // in OptionError.Problem
	}{
		{"condition zero interval", nil, []Option{WithCondition("ready", check, 0)}, "WithCondition", `"ready": interval must be positive`},
		{"condition negative interval", nil, []Option{WithCondition("ready", check, -time.Second)}, "WithCondition", "got -1s"},
		{"condition nil check", nil, []Option{WithCondition("ready", nil, time.Second)}, "WithCondition", "nil check"},
		{"nil token", nil, []Option{WithToken(nil)}, "WithToken", "nil *Token"},
		{"nil token in AnyOf", nil, []Option{WithSource(AnyOf(NewToken(), (*Token)(nil)))}, "AnyOf", "nil *Token"},
		{"nil token as Source", nil, []Option{WithSource((*Token)(nil))}, "WithSource", "nil *Token"},
		{"empty AnyOf", nil, []Option{WithSource(AnyOf())}, "AnyOf", "no sources"},
		{"empty AllOf", nil, []Option{WithSource(AllOf())}, "AllOf", "no sources"},
		{"empty AllOf in AnyOf", nil, []Option{WithSource(AnyOf(Timeout(time.Hour), AllOf()))}, "AllOf", "no sources"},
		{"bad condition in AllOf", nil, []Option{WithSource(AllOf(Condition("deep", check, 0)))}, "AllOf", `"deep"`},
		{"nil Source", nil, []Option{WithSource(nil)}, "WithSource", "nil Source"},
		{"nil Source in AllOf", nil, []Option{WithSource(AllOf(NewToken(), nil))}, "AllOf", "nil Source"},
		{"nil signal", nil, []Option{WithSignals(nil)}, "WithSignals", "nil os.Signal"},
		{"SIGKILL", nil, []Option{WithSignals(os.Interrupt, os.Kill)}, "WithSignals", "cannot be caught"},
		{"SIGKILL in AnyOf", nil, []Option{WithSource(AnyOf(Signals(os.Kill)))}, "AnyOf", "cannot be caught"},
		{"nil Option", nil, []Option{WithTimeout(time.Hour), nil}, "Option", "nil Option"},
		{"nil context", nilCtx, nil, "Start", "nil context"},
		{"first invalid wins", nil, []Option{WithToken(nil), WithSource(nil)}, "WithToken", "nil *Token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil && tc.option != "Start" {
				ctx = context.Background()
			}
			checkErr := func(what string, err error) *OptionError {
				t.Helper()
				var oe *OptionError
				if !errors.As(err, &oe) {
					t.Fatalf("%s = %v (%T), want an *OptionError", what, err, err)
				}
				if oe.Option != tc.option || !strings.Contains(oe.Problem, tc.problem) {
					t.Fatalf("%s = %+v, want option %q and a problem with %q", what, oe, tc.option, tc.problem)
				}
				if msg := oe.Error(); !strings.Contains(msg, tc.option) || !strings.Contains(msg, tc.problem) {
					t.Fatalf("message %q does not name the option and the problem", msg)
				}
				return oe
			}

			// A valid token alongside must not be left registered.
			tok := NewToken()
			rec := &srcRecorder{}
			opts := append([]Option{WithToken(tok), WithObserver(rec.observer())}, tc.opts...)
			octx, op := Start(ctx, "bad", opts...)
			if !srcClosed(octx.Done()) {
				t.Fatal("Start with an invalid option returned a context that is not done")
			}
			oe := checkErr("context.Cause", context.Cause(octx))
			if op.Status() != StatusFailed {
				t.Fatalf("status %v, want failed", op.Status())
			}
			if op.Reason() != 0 {
				t.Fatalf("reason %v: an invalid option is a failure, not a cancellation", op.Reason())
			}
			if err := op.End(nil); err != error(oe) {
				t.Fatalf("End(nil) = %v, want the OptionError %v", err, oe)
			}
			if op.Status() != StatusFailed {
				t.Fatalf("status after End %v", op.Status())
			}
			if n := tok.registered(); n != 0 {
				t.Fatalf("a valid token was left with %d callbacks", n)
			}
			if events, _, _ := rec.snapshot(); strings.Join(events, ",") != "start,end:failed" {
				t.Fatalf("observer saw %v, want start,end:failed", events)
			}

			called := false
			err := Run(ctx, "bad", func(context.Context) error { called = true; return nil }, opts...)
			if called {
				t.Fatal("Run called fn despite an invalid option")
			}
			checkErr("Run", err)
		})
	}
}

// A probe that keeps failing the same way is reported once, not at every
// interval; a different error, or the same one after a success, is reported.
func TestConditionRepeatedErrorReportedOnce(t *testing.T) {
	var polls atomic.Int32
	script := []error{errors.New("down"), errors.New("down"), errors.New("down"), nil, errors.New("down"), errors.New("other")}
	check := func(context.Context) (bool, error) {
		n := int(polls.Add(1)) - 1
		if n >= len(script) {
			return true, nil
		}
		return false, script[n]
	}
	var mu sync.Mutex
	var reported []string
	obs := Hooks{OnProgress: func(_ *Operation, p Progress) {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range p.Attrs {
			if a.Key == "error" {
				reported = append(reported, a.Value.String())
			}
		}
	}}
	ctx, op := Start(context.Background(), "probe", WithCondition("db", check, time.Millisecond), WithObserver(obs))
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("condition never met")
	}
	op.End(nil)
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(reported, ","); got != "down,down,other" {
		t.Fatalf("reported %q, want down,down,other", got)
	}
}

// The context reports a deadline counted from the operation's start, and
// composite timeouts fire at it; a plain WithTimeout counted from the end of
// Start instead (after ObserveStart), so it fired late: the context said
// its deadline had passed while Err was still nil, and a body that honoured
// the deadline it was told (net.Dialer does) ended as failed, not timed out.
func TestTimeoutFiresAtReportedDeadline(t *testing.T) {
	const d = 30 * time.Millisecond
	slowStart := Hooks{OnStart: func(*Operation) { time.Sleep(d) }} // a slow tracer, say
	for _, opt := range []Option{WithTimeout(d), WithSource(Timeout(d))} {
		ctx, op := Start(context.Background(), "slow-start", WithObserver(slowStart), opt)
		dl, _ := ctx.Deadline()
		if time.Now().After(dl) && ctx.Err() == nil {
			t.Errorf("Start returned %v after the deadline its context reports, and Err is nil", time.Since(dl))
		}
		if err := op.End(context.DeadlineExceeded); op.Status() != StatusCancelled || ReasonOf(err) != ReasonTimeout {
			t.Errorf("a body that stopped at the reported deadline: status %v, End %v", op.Status(), err)
		}
	}
}

// TestConditionTypedNilErrorReported: a check that returns a typed nil
// error (whose Error method dereferences nil) is a failed check like any
// other. Its text used to be taken outside the check's recover, on the
// poller's goroutine: the panic ended the process.
func TestConditionTypedNilErrorReported(t *testing.T) {
	rec := &srcRecorder{}
	var calls atomic.Int32
	ctx, op := Start(context.Background(), "job", WithObserver(rec.observer()),
		WithCondition("probe", func(context.Context) (bool, error) {
			switch calls.Add(1) {
			case 1: // at Start
				return false, nil
			case 2: // on the poller's goroutine
				var nilErr *typedNilError
				return false, nilErr
			}
			return true, nil
		}, time.Millisecond))
	srcWait(t, ctx.Done(), "the condition after a typed nil error")
	srcCancelErr(t, op, ReasonCondition, "probe")
	op.End(ctx.Err())
	_, _, progress := rec.snapshot()
	if len(progress) != 1 {
		t.Fatalf("got %d progress reports, want 1: %+v", len(progress), progress)
	}
	if v, _ := srcAttr(progress[0], "error"); v != "<nil>" {
		t.Errorf("error attr %q, want the error as fmt prints it", v)
	}
}

// CheckOptions finds, without starting anything, what Start would fail
// with: wrappers refuse invalid options when they are built.
func TestCheckOptions(t *testing.T) {
	check := func(context.Context) (bool, error) { return false, nil }
	reg := &Registry{}
	if err := CheckOptions(WithTimeout(time.Hour), WithToken(NewToken()), WithCondition("ready", check, time.Second),
		WithSignals(), WithRegistry(reg), WithAttrs(slog.String("k", "v"))); err != nil {
		t.Errorf("valid options: %v", err)
	}
	if n := len(reg.List(Filter{})); n != 0 {
		t.Errorf("CheckOptions joined the registry: %d live operations", n)
	}
	for _, tc := range []struct {
		opts   []Option
		option string
	}{
		{[]Option{WithToken(nil)}, "WithToken"},
		{[]Option{WithTimeout(time.Hour), WithCondition("ready", nil, time.Second)}, "WithCondition"},
		{[]Option{WithSource(AnyOf())}, "AnyOf"},
		{[]Option{WithRegistry(nil)}, "WithRegistry"},
		{[]Option{WithTimeout(time.Hour), nil}, "Option"},
	} {
		var oe *OptionError
		if err := CheckOptions(tc.opts...); !errors.As(err, &oe) || oe.Option != tc.option {
			t.Errorf("CheckOptions = %v, want the OptionError of %s", err, tc.option)
		}
	}
}
