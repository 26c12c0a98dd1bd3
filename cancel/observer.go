package cancel

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// An Observer is told about the life of operations: the one interface
// through which metrics, traces and logs learn why work stopped.
//
// Methods are called synchronously: ObserveStart on the goroutine calling
// Start, ObserveProgress on the goroutine reporting, ObserveCancel on the
// goroutine that requested the cancellation at the moment it did, and
// ObserveEnd on the goroutine calling End. For one operation, ObserveStart
// comes first and ObserveEnd last; ObserveCancel, if any, comes before
// ObserveEnd. Progress reports and the cancellation may come from several
// goroutines at once, so an Observer must be safe for concurrent use.
//
// A panic in an Observer is recovered and logged with slog; the operation
// and the other observers carry on.
//
// An observer may cancel operations, its own included, and end others, but
// must not end the operation it is being told about from ObserveProgress,
// ObserveCancel, ObserveEvent or ObserveCount: End waits for those calls to
// return, so that none comes after ObserveEnd, and would wait for ever. Call
// End on another goroutine instead.
type Observer interface {
	// ObserveStart is called while op is pending. It returns the context op
	// will run in: ctx itself, or a context derived from ctx that only adds
	// values (a span, a logger). It must not return a context that can be
	// cancelled on its own.
	ObserveStart(ctx context.Context, op *Operation) context.Context
	// ObserveProgress is called for every progress report of op.
	ObserveProgress(op *Operation, p Progress)
	// ObserveCancel is called once, when op's cancellation is requested.
	ObserveCancel(op *Operation, err *Error)
	// ObserveEnd is called once, when op has ended; op.Status, op.Reason and
	// op.Cause tell how.
	ObserveEnd(op *Operation)
}

// A Progress is one progress report of an operation.
type Progress struct {
	Time    time.Time
	Message string
	Attrs   []slog.Attr
}

// Hooks is an Observer made of optional functions, for callers who want
// callbacks rather than a type of their own. A nil field is skipped.
type Hooks struct {
	OnStart    func(op *Operation)
	OnProgress func(op *Operation, p Progress)
	OnCancel   func(op *Operation, err *Error)
	OnEnd      func(op *Operation)
	OnEvent    func(op *Operation, e Event)
	OnCount    func(op *Operation, name string, n int64)
}

// ObserveStart calls h.OnStart and returns ctx.
func (h Hooks) ObserveStart(ctx context.Context, op *Operation) context.Context {
	if h.OnStart != nil {
		h.OnStart(op)
	}
	return ctx
}

// ObserveProgress calls h.OnProgress.
func (h Hooks) ObserveProgress(op *Operation, p Progress) {
	if h.OnProgress != nil {
		h.OnProgress(op, p)
	}
}

// ObserveCancel calls h.OnCancel.
func (h Hooks) ObserveCancel(op *Operation, err *Error) {
	if h.OnCancel != nil {
		h.OnCancel(op, err)
	}
}

// ObserveEnd calls h.OnEnd.
func (h Hooks) ObserveEnd(op *Operation) {
	if h.OnEnd != nil {
		h.OnEnd(op)
	}
}

// MultiObserver returns an Observer that tells each of observers in turn,
// skipping nil ones. A panic in one does not keep the others from being told.
func MultiObserver(observers ...Observer) Observer {
	return observerList(appendObservers(nil, observers...))
}

type observerList []Observer

func appendObservers(dst []Observer, observers ...Observer) []Observer {
	for _, o := range observers {
		switch o := o.(type) {
		case nil:
		case observerList:
			dst = appendObservers(dst, o...)
		default:
			dst = append(dst, o)
		}
	}
	return dst
}

func (l observerList) ObserveStart(ctx context.Context, op *Operation) context.Context {
	for _, o := range l {
		ctx = observeStart(o, ctx, op)
	}
	return ctx
}

func (l observerList) ObserveProgress(op *Operation, p Progress) {
	for _, o := range l {
		observeProgress(o, op, p)
	}
}

func (l observerList) ObserveCancel(op *Operation, err *Error) {
	for _, o := range l {
		observeCancel(o, op, err)
	}
}

func (l observerList) ObserveEnd(op *Operation) {
	for _, o := range l {
		observeEnd(o, op)
	}
}

// The observe functions call one observer and contain its panic.

func observeStart(o Observer, ctx context.Context, op *Operation) (out context.Context) {
	out = ctx
	defer recoverObserver(op, "ObserveStart")
	if c := o.ObserveStart(ctx, op); c != nil {
		out = c
	}
	return out
}

func observeProgress(o Observer, op *Operation, p Progress) {
	defer recoverObserver(op, "ObserveProgress")
	o.ObserveProgress(op, p)
}

func observeCancel(o Observer, op *Operation, err *Error) {
	defer recoverObserver(op, "ObserveCancel")
	o.ObserveCancel(op, err)
}

func observeEnd(o Observer, op *Operation) {
	defer recoverObserver(op, "ObserveEnd")
	o.ObserveEnd(op)
}

func recoverObserver(op *Operation, method string) {
	if r := recover(); r != nil {
		slog.Error("cancel: observer panicked",
			slog.String("method", method),
			slog.String("operation", op.name),
			slog.Uint64("operation_id", op.id),
			slog.Any("panic", r))
	}
}

// runCallback runs a user callback (token or source) and contains its panic.
func runCallback(f func()) {
	defer func() {
		if r := recover(); r != nil {
			slog.Error("cancel: callback panicked", slog.Any("panic", r))
		}
	}()
	f()
}

var defaultObserver atomic.Pointer[observerList]

// SetDefaultObserver makes o the observer of every operation started from
// then on, before the ones given with WithObserver. A program sets it once,
// at start-up, like slog.SetDefault; this is how a tracer sees every
// operation, in libraries too. A nil o removes the default.
func SetDefaultObserver(o Observer) {
	l := observerList(appendObservers(nil, o))
	defaultObserver.Store(&l)
}

// DefaultObserver returns the observer set by SetDefaultObserver, or nil.
func DefaultObserver() Observer {
	if l := defaultObserver.Load(); l != nil && len(*l) > 0 {
		if len(*l) == 1 {
			return (*l)[0]
		}
		return *l
	}
	return nil
}
