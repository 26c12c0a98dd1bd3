package cancel

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// srcErrorChain returns every *Error in err's chain, outermost first,
// following *Error.Cause.
func srcErrorChain(err error) []*Error {
	var chain []*Error
	for {
		var e *Error
		if !errors.As(err, &e) {
			return chain
		}
		chain = append(chain, e)
		err = e.Cause
	}
}

func TestParentCancelReachesChildrenAndGrandchildren(t *testing.T) {
	rec := &srcRecorder{}
	obs := WithObserver(rec.observer())
	pctx, parent := Start(context.Background(), "request", obs)
	cctx, child := Start(pctx, "query", obs)
	gctx, grandchild := Start(cctx, "row", obs)
	if child.Parent() != parent || grandchild.Parent() != child || parent.Parent() != nil {
		t.Fatalf("Parent(): %v %v %v", parent.Parent(), child.Parent(), grandchild.Parent())
	}

	parent.Cancel(ReasonShutdown, "draining")
	srcWait(t, cctx.Done(), "the child")
	srcWait(t, gctx.Done(), "the grandchild")

	pe := srcCancelErr(t, parent, ReasonShutdown, "draining")
	ce := srcCancelErr(t, child, ReasonParent, "")
	ge := srcCancelErr(t, grandchild, ReasonParent, "")
	if ce.Cause != error(pe) {
		t.Fatalf("child's Cause = %v, want the parent's *Error %v", ce.Cause, pe)
	}
	if ge.Cause != error(ce) {
		t.Fatalf("grandchild's Cause = %v, want the child's *Error %v", ge.Cause, ce)
	}
	// context.Cause is each operation's own *Error, not the parent's.
	if c := context.Cause(cctx); c != error(ce) {
		t.Fatalf("context.Cause(child) = %v, want %v", c, ce)
	}
	if c := context.Cause(gctx); c != error(ge) {
		t.Fatalf("context.Cause(grandchild) = %v, want %v", c, ge)
	}
	if cctx.Err() != context.Canceled || gctx.Err() != context.Canceled {
		t.Fatalf("Err: %v %v", cctx.Err(), gctx.Err())
	}

	gerr := grandchild.End(gctx.Err())
	cerr := child.End(cctx.Err())
	perr := parent.End(pctx.Err())
	if ReasonOf(gerr) != ReasonParent || ReasonOf(cerr) != ReasonParent || ReasonOf(perr) != ReasonShutdown {
		t.Fatalf("ReasonOf: %v %v %v", ReasonOf(gerr), ReasonOf(cerr), ReasonOf(perr))
	}
	chain := srcErrorChain(gerr)
	if len(chain) != 3 || chain[0] != ge || chain[1] != ce || chain[2] != pe {
		t.Fatalf("chain of the grandchild's error = %v, want grandchild, child, parent", chain)
	}
	if !errors.Is(gerr, context.Canceled) || errors.Is(gerr, context.DeadlineExceeded) {
		t.Fatalf("errors.Is on %v: Canceled %v, DeadlineExceeded %v", gerr,
			errors.Is(gerr, context.Canceled), errors.Is(gerr, context.DeadlineExceeded))
	}
	for _, op := range []*Operation{parent, child, grandchild} {
		if op.Status() != StatusCancelled {
			t.Fatalf("%s: status %v", op.Name(), op.Status())
		}
	}
	// The observer was told of each cancellation, with its own reason.
	_, cancels, _ := rec.snapshot()
	reasons := map[uint64]Reason{}
	for _, e := range cancels {
		reasons[e.OpID] = e.Reason
	}
	if len(cancels) != 3 || reasons[parent.ID()] != ReasonShutdown ||
		reasons[child.ID()] != ReasonParent || reasons[grandchild.ID()] != ReasonParent {
		t.Fatalf("observer saw cancels %v", cancels)
	}
}

func TestParentCancelReachesManyChildren(t *testing.T) {
	pctx, parent := Start(context.Background(), "batch")
	const n = 100
	ctxs := make([]context.Context, n)
	ops := make([]*Operation, n)
	for i := range n {
		ctxs[i], ops[i] = Start(pctx, "item")
	}
	parent.Cancel(ReasonManual, "operator")
	pe := parent.Err()
	for i := range n {
		srcWait(t, ctxs[i].Done(), "a child")
		if e := srcCancelErr(t, ops[i], ReasonParent, ""); e.Cause != pe {
			t.Fatalf("child %d: cause %v", i, e.Cause)
		}
		ops[i].End(ctxs[i].Err())
	}
	parent.End(pctx.Err())
}

func TestPlainContextTimeoutReachesOperationAsParent(t *testing.T) {
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	pdl, _ := pctx.Deadline()
	ctx, op := Start(pctx, "work", WithTimeout(time.Hour))
	if dl, ok := ctx.Deadline(); !ok || !dl.Equal(pdl) {
		t.Fatalf("ctx.Deadline() = %v, %v; want the parent's earlier %v", dl, ok, pdl)
	}
	srcWait(t, ctx.Done(), "the parent context's timeout")
	e := srcCancelErr(t, op, ReasonParent, "")
	if e.Reason == ReasonManual || e.Reason == ReasonTimeout {
		t.Fatalf("reason %v: a parent's timeout must read as parent", e.Reason)
	}
	if e.Cause != context.DeadlineExceeded {
		t.Fatalf("Cause = %v, want the parent's cause, context.DeadlineExceeded", e.Cause)
	}
	if !errors.Is(e, context.DeadlineExceeded) {
		t.Fatal("errors.Is(childErr, DeadlineExceeded) = false")
	}
	if ctx.Err() != context.DeadlineExceeded {
		t.Fatalf("ctx.Err() = %v, want context.DeadlineExceeded like the parent's", ctx.Err())
	}
	if c := context.Cause(ctx); c != error(e) {
		t.Fatalf("context.Cause = %v, want the operation's own *Error", c)
	}
	err := op.End(ctx.Err())
	if ReasonOf(err) != ReasonParent || !errors.Is(err, context.DeadlineExceeded) || op.Status() != StatusCancelled {
		t.Fatalf("End = %v, status %v", err, op.Status())
	}
}

func TestParentOperationTimeoutReachesChildAsParent(t *testing.T) {
	pctx, parent := Start(context.Background(), "request", WithTimeout(10*time.Millisecond))
	cctx, child := Start(pctx, "query")
	pdl, _ := pctx.Deadline()
	if dl, ok := cctx.Deadline(); !ok || !dl.Equal(pdl) {
		t.Fatalf("child deadline %v, %v; want the parent's %v", dl, ok, pdl)
	}
	srcWait(t, cctx.Done(), "the parent's timeout to reach the child")
	ce := srcCancelErr(t, child, ReasonParent, "")
	pe := srcCancelErr(t, parent, ReasonTimeout, "timed out")
	if ce.Cause != error(pe) {
		t.Fatalf("child cause %v, want the parent's %v", ce.Cause, pe)
	}
	if !errors.Is(ce, context.DeadlineExceeded) || cctx.Err() != context.DeadlineExceeded {
		t.Fatalf("child: errors.Is DeadlineExceeded %v, ctx.Err %v", errors.Is(ce, context.DeadlineExceeded), cctx.Err())
	}
	child.End(cctx.Err())
	parent.End(pctx.Err())
}

func TestPlainContextCancelCauseReachesOperation(t *testing.T) {
	hungUp := errors.New("client hung up")
	pctx, cancel := context.WithCancelCause(context.Background())
	ctx, op := Start(pctx, "work")
	cancel(hungUp)
	srcWait(t, ctx.Done(), "the parent's cancellation")
	e := srcCancelErr(t, op, ReasonParent, "")
	if e.Cause != hungUp || !errors.Is(e, hungUp) {
		t.Fatalf("Cause = %v, want %v", e.Cause, hungUp)
	}
	if ctx.Err() != context.Canceled {
		t.Fatalf("ctx.Err() = %v", ctx.Err())
	}
	if err := op.End(ctx.Err()); !errors.Is(err, hungUp) || ReasonOf(err) != ReasonParent {
		t.Fatalf("End = %v", err)
	}
}

func TestOperationDeadlineEarlierThanParents(t *testing.T) {
	pctx, parent := Start(context.Background(), "request", WithTimeout(time.Hour))
	defer parent.End(nil)
	cctx, child := Start(pctx, "query", WithTimeout(time.Minute))
	defer child.End(nil)
	pdl, _ := pctx.Deadline()
	dl, ok := cctx.Deadline()
	if !ok || !dl.Before(pdl) || time.Until(dl) > time.Minute {
		t.Fatalf("child deadline %v, want its own minute, before the parent's %v", dl, pdl)
	}
	// And a later own timeout yields to the parent's earlier deadline.
	c2ctx, child2 := Start(pctx, "query", WithTimeout(2*time.Hour))
	defer child2.End(nil)
	if dl, _ := c2ctx.Deadline(); !dl.Equal(pdl) {
		t.Fatalf("child deadline %v, want the parent's %v", dl, pdl)
	}
}

func TestStartUnderCancelledParent(t *testing.T) {
	t.Run("operation", func(t *testing.T) {
		pctx, parent := Start(context.Background(), "request")
		parent.Cancel(ReasonDisconnect, "client gone")
		ctx, op := Start(pctx, "late child")
		if !srcClosed(ctx.Done()) {
			t.Fatal("child of a cancelled operation not cancelled before Start returned")
		}
		if e := srcCancelErr(t, op, ReasonParent, ""); e.Cause != parent.Err() {
			t.Fatalf("cause %v", e.Cause)
		}
		op.End(ctx.Err())
		parent.End(pctx.Err())
	})
	t.Run("context", func(t *testing.T) {
		pctx, cancel := context.WithTimeout(context.Background(), -time.Second)
		defer cancel()
		ctx, op := Start(pctx, "late child")
		if ctx.Err() != context.DeadlineExceeded {
			t.Fatalf("ctx.Err() right after Start = %v, want DeadlineExceeded", ctx.Err())
		}
		srcCancelErr(t, op, ReasonParent, "")
		op.End(ctx.Err())
	})
}

func TestChildNeverCancelsParent(t *testing.T) {
	pctx, parent := Start(context.Background(), "request")
	defer parent.End(nil)
	sctx, sibling := Start(pctx, "sibling")
	defer sibling.End(nil)

	cctx, child := Start(pctx, "manual child")
	child.Cancel(ReasonManual, "give up")
	child.End(cctx.Err())
	tctx, timed := Start(pctx, "timed child", WithTimeout(time.Millisecond))
	srcWait(t, tctx.Done(), "the child's timeout")
	timed.End(tctx.Err())
	xctx, failed := Start(pctx, "failed child")
	failed.End(errors.New("boom"))

	if pctx.Err() != nil || parent.Err() != nil || parent.Status() != StatusRunning {
		t.Fatalf("a child stopped its parent: %v %v %v", pctx.Err(), parent.Err(), parent.Status())
	}
	if sctx.Err() != nil || sibling.Err() != nil {
		t.Fatalf("a child stopped its sibling: %v", sctx.Err())
	}
	if context.Cause(xctx) != ErrEnded {
		t.Fatalf("failed child's context cause %v", context.Cause(xctx))
	}
}

func TestParentEndStopsChildStillRunning(t *testing.T) {
	pctx, parent := Start(context.Background(), "request")
	cctx, child := Start(pctx, "leaked child")
	if err := parent.End(nil); err != nil {
		t.Fatal(err)
	}
	srcWait(t, cctx.Done(), "the child of an ended parent")
	e := srcCancelErr(t, child, ReasonParent, "")
	if !errors.Is(e, ErrEnded) {
		t.Fatalf("cause %v, want ErrEnded", e.Cause)
	}
	child.End(cctx.Err())
}

func TestFromContextInnermostAndInGoroutines(t *testing.T) {
	var nilCtx context.Context
	if FromContext(nilCtx) != nil || FromContext(context.Background()) != nil {
		t.Fatal("FromContext outside an operation is not nil")
	}
	type key struct{}
	pctx, parent := Start(context.Background(), "outer")
	defer parent.End(nil)
	cctx, child := Start(context.WithValue(pctx, key{}, 1), "inner")
	defer child.End(nil)
	if FromContext(pctx) != parent || FromContext(cctx) != child {
		t.Fatal("FromContext is not the innermost operation")
	}
	// Contexts derived from the operation's still carry it.
	dctx, cancel := context.WithTimeout(context.WithValue(cctx, key{}, 2), time.Hour)
	defer cancel()
	if FromContext(dctx) != child {
		t.Fatal("FromContext of a derived context lost the operation")
	}
	// Goroutines started with the context see it.
	got := make(chan *Operation, 2)
	var wg sync.WaitGroup
	for _, c := range []context.Context{pctx, dctx} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got <- FromContext(c)
		}()
	}
	wg.Wait()
	close(got)
	seen := map[*Operation]bool{}
	for op := range got {
		seen[op] = true
	}
	if !seen[parent] || !seen[child] {
		t.Fatalf("goroutines saw %v", seen)
	}
	// After End, the context still names its operation.
	_ = child.End(nil)
	if FromContext(cctx) != child {
		t.Fatal("FromContext after End")
	}
}

func TestChildEndedRightAfterParentCancel(t *testing.T) {
	// The parent's news travels on a goroutine (context.AfterFunc); End
	// must not miss it when it has not arrived yet.
	for range 100 {
		pctx, parent := Start(context.Background(), "request")
		_, child := Start(pctx, "query")
		parent.Cancel(ReasonManual, "stop")
		boom := errors.New("query failed")
		err := child.End(boom)
		if child.Status() != StatusCancelled || ReasonOf(err) != ReasonParent || !errors.Is(err, boom) {
			t.Fatalf("child ended right after its parent's cancel: status %v, err %v", child.Status(), err)
		}
		parent.End(pctx.Err())
	}
}

func TestPlainContextTimeoutWithCause(t *testing.T) {
	// context.WithTimeoutCause: the parent's Err is DeadlineExceeded but
	// its cause is the caller's error. The child keeps both facts.
	budget := errors.New("request budget spent")
	pctx, cancel := context.WithTimeoutCause(context.Background(), 5*time.Millisecond, budget)
	defer cancel()
	ctx, op := Start(pctx, "work")
	defer op.End(nil)
	srcWait(t, ctx.Done(), "the parent's timeout")
	e := srcCancelErr(t, op, ReasonParent, "")
	if !errors.Is(e, budget) {
		t.Fatalf("the parent's cause %v is lost: %v", budget, e)
	}
	if pctx.Err() != context.DeadlineExceeded {
		t.Fatalf("parent Err %v", pctx.Err())
	}
	if ctx.Err() != context.DeadlineExceeded || !errors.Is(e, context.DeadlineExceeded) {
		t.Fatalf("parent timed out (Err = DeadlineExceeded) with a custom cause, "+
			"but the child says ctx.Err() = %v, errors.Is(err, DeadlineExceeded) = %v",
			ctx.Err(), errors.Is(e, context.DeadlineExceeded))
	}
}

// WithParentReason turns a parent context's end into a reason of the
// operation's own: net/http's cause-less cancellation of a request context
// means the client went away.
func TestWithParentReason(t *testing.T) {
	decide := func(cause error) (Reason, string) {
		switch {
		case cause == context.Canceled:
			return ReasonDisconnect, "client went away"
		case errors.Is(cause, context.DeadlineExceeded):
			return ReasonParent, "" // the default, explicitly
		}
		return ReasonShutdown, "draining"
	}
	draining := errors.New("draining")
	for _, tc := range []struct {
		name      string
		end       func(cancel context.CancelCauseFunc)
		want      Reason
		wantCause error
	}{
		{"cause-less", func(c context.CancelCauseFunc) { c(nil) }, ReasonDisconnect, nil},
		{"with a cause", func(c context.CancelCauseFunc) { c(draining) }, ReasonShutdown, draining},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent, cancelParent := context.WithCancelCause(context.Background())
			ctx, op := Start(parent, "req", WithParentReason(decide))
			tc.end(cancelParent)
			<-ctx.Done()
			e := op.Err().(*Error)
			if e.Reason != tc.want || context.Cause(ctx) != e {
				t.Fatalf("reason %v, cause %v", e.Reason, context.Cause(ctx))
			}
			if e.Cause != tc.wantCause {
				t.Fatalf("Cause %v, want %v", e.Cause, tc.wantCause)
			}
			op.End(ctx.Err())
		})
	}
	t.Run("ReasonParent keeps the default", func(t *testing.T) {
		parent, stop := context.WithTimeout(context.Background(), time.Millisecond)
		defer stop()
		ctx, op := Start(parent, "req", WithParentReason(decide))
		<-ctx.Done()
		if op.Reason() != ReasonParent || !errors.Is(op.Err(), context.DeadlineExceeded) {
			t.Fatalf("reason %v err %v", op.Reason(), op.Err())
		}
		op.End(ctx.Err())
	})
	t.Run("a reason outside the set keeps the default", func(t *testing.T) {
		parent, cancelParent := context.WithCancel(context.Background())
		ctx, op := Start(parent, "req", WithParentReason(func(error) (Reason, string) { return Reason(200), "bogus" }))
		cancelParent()
		<-ctx.Done()
		if op.Reason() != ReasonParent {
			t.Fatalf("reason %v, want parent", op.Reason())
		}
		op.End(ctx.Err())
	})
	t.Run("nil function", func(t *testing.T) {
		_, op := Start(context.Background(), "req", WithParentReason(nil))
		var oe *OptionError
		if err := op.End(nil); !errors.As(err, &oe) || oe.Option != "WithParentReason" {
			t.Fatalf("End = %v", err)
		}
	})
}

// A WithParentReason function that panics is contained, as callbacks are:
// the operation is cancelled with ReasonParent, and the program goes on.
func TestWithParentReasonPanicContained(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	ctx, op := Start(parent, "child", WithParentReason(func(error) (Reason, string) { panic("bad decider") }))
	cancelParent()
	<-ctx.Done()
	if err := op.End(ctx.Err()); ReasonOf(err) != ReasonParent {
		t.Fatalf("End = %v, want reason parent", err)
	}
}
