package cancel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

var lastID atomic.Uint64

// An Operation is a unit of work that can be cancelled and says why it
// stopped. Start creates one; its owner ends it with End. Any goroutine may
// cancel it, report its progress or read its state.
type Operation struct {
	id        uint64
	name      string
	parent    *Operation
	start     time.Time
	observers []Observer
	x         *opExtra // nil for an operation with no options and a parent that cannot be cancelled

	ctx       opContext
	cancelCtx context.CancelCauseFunc
	cancelErr atomic.Pointer[Error]
	delivered atomic.Int64

	deadlineExceeded atomic.Bool

	mu        sync.Mutex
	status    Status
	ended     time.Duration  // since start, once ended
	cause     error          // what End returned
	progress  *Progress      // the last report
	notifying sync.WaitGroup // observer calls End must wait for
}

// opExtra holds what only some operations need, out of the way of the
// common case (allocation size is most of the cost of Start).
type opExtra struct {
	config
	parentCtx   context.Context // set while a cancellable parent context is watched
	stopParent  func() bool
	deadline    time.Time
	hasDeadline bool
	timer       *time.Timer
	timeout     *timeoutSource // the source the timer stands for
	stops       []func()
	uncancelled withoutCancel // the parent, as the operation's context sees it
}

// operationWithExtra lets an operation and its opExtra be allocated at once.
type operationWithExtra struct {
	op Operation
	x  opExtra
}

// withoutCancel is context.WithoutCancel, held in opExtra rather than
// allocated on its own.
type withoutCancel struct{ parent context.Context }

func (withoutCancel) Deadline() (time.Time, bool) { return time.Time{}, false }
func (withoutCancel) Done() <-chan struct{}       { return nil }
func (withoutCancel) Err() error                  { return nil }
func (c *withoutCancel) Value(key any) any        { return c.parent.Value(key) }
func (c *withoutCancel) String() string           { return fmt.Sprint(c.parent) + ".WithoutCancel" }

// opContext is the context of an operation: the standard library's
// cancelCtx underneath (so context.Cause, AfterFunc and children work as
// usual), with the operation as a value and its deadline and timeout error.
type opContext struct {
	context.Context
	op *Operation
}

type opKey struct{}

func (c *opContext) Value(key any) any {
	if key == (opKey{}) {
		return c.op
	}
	return c.Context.Value(key)
}

func (c *opContext) Deadline() (time.Time, bool) { return c.op.Deadline() }

func (c *opContext) Err() error {
	err := c.Context.Err()
	if err != nil && c.op.deadlineExceeded.Load() {
		return context.DeadlineExceeded
	}
	return err
}

func (c *opContext) String() string {
	return fmt.Sprintf("cancel.Operation(%q, %d)", c.op.name, c.op.id)
}

// FromContext returns the innermost operation whose context ctx is or
// derives from, or nil.
func FromContext(ctx context.Context) *Operation {
	if ctx == nil {
		return nil
	}
	op, _ := ctx.Value(opKey{}).(*Operation)
	return op
}

// Start starts an operation named name and returns its context and the
// operation. The caller must call End when the work is done, whatever
// happened, and should return what End returns. The name should be of low
// cardinality (a route pattern, a job kind): observers use it as a metric
// label.
//
// The operation is cancelled when one of its sources fires, when Cancel is
// called, and, with ReasonParent, when ctx is cancelled (for an operation
// started under another, when that one is cancelled). The returned context
// is done once the operation is cancelled or has ended; context.Cause
// returns the *Error of the cancellation, or ErrEnded.
//
// Invalid options do not panic: the operation fails at once with an
// *OptionError, which End returns and context.Cause gives.
func Start(ctx context.Context, name string, opts ...Option) (context.Context, *Operation) {
	var op *Operation
	var x *opExtra
	if len(opts) > 0 || ctx == nil || ctx.Done() != nil {
		both := &operationWithExtra{} // one allocation instead of two
		op, x = &both.op, &both.x
		op.x = x
	} else {
		op = &Operation{}
	}
	op.id, op.name, op.start, op.status = lastID.Add(1), name, now(), StatusPending
	if ctx == nil {
		x.fail(&OptionError{Option: "Start", Problem: "nil context"})
		ctx = context.Background()
	}
	for _, o := range opts {
		if o == nil {
			x.fail(&OptionError{Option: "Option", Problem: "nil Option"})
			continue
		}
		o(&x.config)
	}
	op.parent = FromContext(ctx)
	if x != nil {
		op.observers = observersFor(op.parent, x.observers, x.shielded)
	} else {
		op.observers = observersFor(op.parent, nil, false)
	}
	if len(op.observers) > 0 {
		ctx = observerList(op.observers).ObserveStart(ctx, op)
	}

	base, watchParent := ctx, ctx.Done() != nil && !op.Shielded()
	if ctx.Done() != nil {
		// The operation cancels its context itself, so that the cause is
		// always its own *Error, even when the parent is what stopped it.
		x.uncancelled = withoutCancel{ctx}
		base = &x.uncancelled
	}
	inner, cancelCtx := context.WithCancelCause(base)
	op.ctx = opContext{Context: inner, op: op}
	op.cancelCtx = cancelCtx
	if x == nil {
		if len(op.observers) == 0 {
			op.status = StatusRunning // no one else has seen op yet
		} else {
			op.run()
		}
		return &op.ctx, op
	}
	if x.err != nil {
		op.failAtStart()
		return &op.ctx, op
	}
	x.setDeadline(op.start, ctx, watchParent)
	op.run()
	if x.registry != nil {
		x.registry.add(op)
	}

	if watchParent {
		x.parentCtx = ctx
		if ctx.Err() != nil {
			op.cancelByParent()
		} else {
			x.stopParent = context.AfterFunc(ctx, op.cancelByParent)
		}
	}
	if t := x.timeout; t != nil {
		// Count from the start, as the context's Deadline does, not from
		// now: the observers' ObserveStart took some of the time.
		at, _ := t.deadline(op.start)
		if d := time.Until(at); d > 0 {
			x.timer = time.AfterFunc(d, op.onTimeout)
		} else {
			op.onTimeout()
		}
	}
	if len(x.sources) > 0 {
		fire := op.fire
		for _, s := range x.sources {
			if s == Source(x.timeout) {
				continue
			}
			x.stops = append(x.stops, watch(&op.ctx, s, fire))
		}
	}
	return &op.ctx, op
}

// observersFor returns the observers of an operation: the default ones
// plus its own. A shielded section also has its parent's, being a part of it.
func observersFor(parent *Operation, own []Observer, shielded bool) []Observer {
	var base []Observer
	if shielded && parent != nil {
		base = parent.observers
	} else if l := defaultObserver.Load(); l != nil {
		base = *l
	}
	if len(own) == 0 {
		return base
	}
	if len(base) == 0 && len(own) == 1 {
		return own // the operation's own, and as long-lived
	}
	out := base[:len(base):len(base)]
	for _, o := range own {
		if !hasObserver(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// hasObserver reports whether l holds o already: an observer that is both
// the default and given with WithObserver is told once. Only pointers are
// compared (comparing other observers, such as Hooks, could panic).
func hasObserver(l []Observer, o Observer) bool {
	if reflect.TypeOf(o).Kind() != reflect.Pointer {
		return false
	}
	for _, x := range l {
		if x == o {
			return true
		}
	}
	return false
}

// setDeadline finds the time the operation's own sources fire by and the
// deadline its context reports: the earlier of that and the parent's.
// Plain timeouts share one timer; timeouts inside composites keep theirs.
func (x *opExtra) setDeadline(start time.Time, parent context.Context, inheritDeadline bool) {
	var timeoutAt time.Time
	if x.hasTimeout {
		x.timeout = &x.config.timeout
		timeoutAt, _ = x.timeout.deadline(start)
		x.deadline, x.hasDeadline = timeoutAt, true
	}
	for _, s := range x.sources {
		at, ok := sourceDeadline(s, start)
		if !ok {
			continue
		}
		if t, plain := s.(*timeoutSource); plain && (x.timeout == nil || at.Before(timeoutAt)) {
			x.timeout, timeoutAt = t, at
		}
		if !x.hasDeadline || at.Before(x.deadline) {
			x.deadline, x.hasDeadline = at, true
		}
	}
	if !inheritDeadline {
		return
	}
	if at, ok := parent.Deadline(); ok && (!x.hasDeadline || at.Before(x.deadline)) {
		x.deadline, x.hasDeadline = at, true
	}
}

func (op *Operation) fire(reason Reason, message string) { op.cancel(reason, message, nil) }

func (op *Operation) onTimeout() { op.cancel(ReasonTimeout, op.x.timeout.message(), nil) }

func (op *Operation) cancelByParent() {
	parent := op.x.parentCtx
	cause := context.Cause(parent)
	if parent.Err() == context.DeadlineExceeded && !errors.Is(cause, context.DeadlineExceeded) {
		cause = deadlineCause{cause} // context.WithTimeoutCause: keep both facts
	}
	if decide := op.x.parent; decide != nil {
		if reason, message := parentReason(decide, cause); reason.valid() && reason != ReasonParent {
			if cause == context.Canceled {
				cause = nil // says nothing the reason does not
			}
			op.cancel(reason, message, cause)
			return
		}
	}
	op.cancel(ReasonParent, "", cause)
}

// parentReason calls a WithParentReason function, containing its panic
// (the operation is then cancelled with ReasonParent).
func parentReason(decide func(error) (Reason, string), cause error) (reason Reason, message string) {
	runCallback(func() { reason, message = decide(cause) })
	return reason, message
}

// deadlineCause is the custom cause of a parent context whose deadline
// passed: it reads as the cause and matches context.DeadlineExceeded too.
type deadlineCause struct{ error }

func (c deadlineCause) Unwrap() []error { return []error{c.error, context.DeadlineExceeded} }

// Cancel requests the cancellation of the operation with a reason and a
// message, and reports whether this call was the one that did: the first
// request wins, and an operation that has ended cannot be cancelled. A
// Reason outside the closed set is recorded as ReasonManual.
//
// The call that returns true returns once the observers were told and the
// operation's context is done; it does not wait for the operation to end. A
// call that returns false may return while the winning call is still
// telling the observers: wait on Done to know the context is done. (Waiting
// in Cancel itself would deadlock an observer, or a token callback, that
// cancels the operation it is being told about.)
//
// Called from ObserveStart, while the operation is pending, Cancel records
// the request and returns true; the observers are told and the context is
// done by the time Start returns.
func (op *Operation) Cancel(reason Reason, message string) bool {
	return op.cancel(reason, message, nil)
}

func (op *Operation) cancel(reason Reason, message string, cause error) bool {
	if !reason.valid() {
		reason = ReasonManual
	}
	op.mu.Lock()
	if op.status.Ended() || op.cancelErr.Load() != nil {
		op.mu.Unlock()
		return false
	}
	e := &Error{Reason: reason, Message: message, Op: op.name, OpID: op.id, Time: now(), Cause: cause}
	op.cancelErr.Store(e)
	if op.status == StatusPending {
		// Asked from ObserveStart: the context does not exist yet, and
		// some observers have not been told of the start. Start finishes
		// the request (observers, context) once the operation runs.
		op.mu.Unlock()
		return true
	}
	op.notifying.Add(1)
	op.mu.Unlock()
	op.signalCancel(e)
	return true
}

// run makes a pending operation running, and finishes a cancellation
// requested while it was pending.
func (op *Operation) run() {
	op.mu.Lock()
	op.status = StatusRunning
	e := op.cancelErr.Load()
	if e != nil {
		op.notifying.Add(1)
	}
	op.mu.Unlock()
	if e != nil {
		op.signalCancel(e)
	}
}

// signalCancel tells the observers of the cancellation e and cancels the
// context; the caller has added one to op.notifying.
func (op *Operation) signalCancel(e *Error) {
	if errors.Is(e, context.DeadlineExceeded) {
		op.deadlineExceeded.Store(true)
	}
	// Observers first: a span event or a log line of the request comes
	// before anything the cancellation causes (children, the body's exit).
	observerList(op.observers).ObserveCancel(op, e)
	op.cancelCtx(e)
	op.notifying.Done()
}

// End ends the operation with the error its work returned, and returns the
// error the caller should return:
//
//   - nil if err is nil: the work completed, even if a cancellation was
//     requested meanwhile (the status is StatusCompleted and Reason tells
//     about the request);
//   - err if no cancellation was requested (StatusFailed);
//   - otherwise an error for which errors.As finds the operation's *Error
//     (StatusCancelled): the *Error itself for a bare context error,
//     else err with the cancellation added.
//
// End releases the operation's timers, signal handlers and registrations,
// and tells the observers. Calls after the first return what the first did.
func (op *Operation) End(err error) error { return op.end(err, false) }

// end is End; failed ends the operation as failed whatever was requested
// (Run's function panicked).
func (op *Operation) end(err error, failed bool) error {
	if x := op.x; x != nil && x.parentCtx != nil && op.cancelErr.Load() == nil && x.parentCtx.Err() != nil {
		op.cancelByParent() // the parent stopped before its news reached us
	}
	op.mu.Lock()
	if op.status.Ended() {
		res := op.cause
		op.mu.Unlock()
		return res
	}
	op.ended = max(time.Since(op.start), 1)
	ce := op.cancelErr.Load()
	switch {
	case err == nil:
		op.status = StatusCompleted
	case ce == nil || failed:
		op.status, op.cause = StatusFailed, err
	default:
		op.status, op.cause = StatusCancelled, withCancellation(err, ce)
	}
	res := op.cause
	op.mu.Unlock()

	op.notifying.Wait()
	op.cancelCtx(ErrEnded)
	if x := op.x; x != nil {
		x.release()
		if x.registry != nil {
			x.registry.remove(op)
		}
	}
	observerList(op.observers).ObserveEnd(op)
	return res
}

func (op *Operation) failAtStart() {
	op.mu.Lock()
	op.status, op.ended, op.cause = StatusFailed, max(time.Since(op.start), 1), op.x.err
	op.mu.Unlock()
	op.cancelCtx(op.x.err)
	if r := op.x.registry; r != nil { // operators see misconfigured work too
		r.add(op)
		r.remove(op)
	}
	observerList(op.observers).ObserveEnd(op)
}

func (x *opExtra) release() {
	if x.timer != nil {
		x.timer.Stop()
	}
	if x.stopParent != nil {
		x.stopParent()
	}
	for i := len(x.stops) - 1; i >= 0; i-- {
		x.stops[i]()
	}
}

// Run starts an operation named name, calls fn with its context and ends
// the operation with fn's error, returning what End returns. If fn panics,
// the operation ends as failed and the panic goes on up; if fn calls
// runtime.Goexit (t.FailNow in a test), it ends as failed too. With invalid
// options, fn is not called and Run returns the *OptionError.
func Run(ctx context.Context, name string, fn func(ctx context.Context) error, opts ...Option) (err error) {
	ctx, op := Start(ctx, name, opts...)
	if op.x != nil && op.x.err != nil {
		return op.x.err
	}
	returned := false
	defer func() {
		if returned {
			return
		}
		r := recover()
		if r == nil { // runtime.Goexit: the operation must still end
			op.end(fmt.Errorf("cancel: %s: runtime.Goexit", name), true)
			return
		}
		op.end(fmt.Errorf("cancel: %s: panic: %v", name, r), true)
		panic(r)
	}()
	err = op.End(fn(ctx))
	returned = true
	return err
}

// Progress reports progress of the operation: a message and attributes,
// passed on to its observers in the order of the calls. The last report is
// kept for Info. Reports after End are dropped.
func (op *Operation) Progress(message string, attrs ...slog.Attr) {
	if len(attrs) > 0 {
		attrs = slices.Clone(attrs) // kept for LastProgress: the caller may reuse its slice
	}
	p := Progress{Time: now(), Message: message, Attrs: attrs}
	op.mu.Lock()
	if op.status.Ended() {
		op.mu.Unlock()
		return
	}
	if op.progress == nil {
		op.progress = new(Progress)
	}
	*op.progress = p
	if len(op.observers) == 0 {
		op.mu.Unlock()
		return
	}
	op.notifying.Add(1)
	op.mu.Unlock()
	observerList(op.observers).ObserveProgress(op, p)
	op.notifying.Done()
}

// ID returns the operation's ID, unique in the process.
func (op *Operation) ID() uint64 { return op.id }

// Name returns the operation's name.
func (op *Operation) Name() string { return op.name }

// Parent returns the operation this one was started under, or nil.
func (op *Operation) Parent() *Operation { return op.parent }

// Attrs returns the attributes given with WithAttrs. The caller must not
// modify them.
func (op *Operation) Attrs() []slog.Attr {
	if op.x == nil {
		return nil
	}
	return op.x.attrs
}

// AdoptsSpan reports whether the operation was started with AdoptSpan.
func (op *Operation) AdoptsSpan() bool { return op.x != nil && op.x.adopt }

// Value returns the value of the operation's context for key: observers use
// it to find what they stored in the context ObserveStart returned.
func (op *Operation) Value(key any) any { return op.ctx.Context.Value(key) }

// Shielded reports whether the operation is the shielded section of Shield.
func (op *Operation) Shielded() bool { return op.x != nil && op.x.shielded }

// Status returns where the operation is in its life.
func (op *Operation) Status() Status {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.status
}

// Reason returns the reason of the cancellation request, or the zero Reason
// if there was none. An operation can have a Reason and still be completed:
// it was asked to stop and finished first.
func (op *Operation) Reason() Reason {
	if e := op.cancelErr.Load(); e != nil {
		return e.Reason
	}
	return 0
}

// Err returns nil until a cancellation is requested, then its *Error. It is
// the cheap check for loops: if err := op.Err(); err != nil { return err }.
func (op *Operation) Err() error {
	if e := op.cancelErr.Load(); e != nil {
		return e
	}
	return nil
}

// Cause returns what End returned: nil while the operation runs and when it
// completed, its error when it was cancelled or failed.
func (op *Operation) Cause() error {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.cause
}

// Done returns a channel that is closed when the operation is cancelled or
// has ended. It is the Done channel of the operation's context.
func (op *Operation) Done() <-chan struct{} { return op.ctx.Done() }

// Deadline returns the time the operation's context will be cancelled by,
// from its own timeouts or its parent's.
func (op *Operation) Deadline() (time.Time, bool) {
	if op.x == nil {
		return time.Time{}, false
	}
	return op.x.deadline, op.x.hasDeadline
}

// StartTime returns when the operation started.
func (op *Operation) StartTime() time.Time { return op.start }

// EndTime returns when the operation ended, or the zero time.
func (op *Operation) EndTime() time.Time {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.ended == 0 {
		return time.Time{}
	}
	return op.start.Add(op.ended)
}

// Duration returns how long the operation ran, or has run so far.
func (op *Operation) Duration() time.Duration {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.ended != 0 {
		return op.ended
	}
	return time.Since(op.start)
}

// Delivered returns how many items the streams of the operation (Seq, Seq2,
// Chan) delivered: the size of its partial result when it was cancelled.
func (op *Operation) Delivered() int64 { return op.delivered.Load() }

// LastProgress returns the last progress report, if there was one.
func (op *Operation) LastProgress() (Progress, bool) {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.progress == nil {
		return Progress{}, false
	}
	return *op.progress, true
}
