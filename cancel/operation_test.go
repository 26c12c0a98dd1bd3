package cancel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is an Observer that keeps every event, in order.
type recorder struct {
	mu     sync.Mutex
	events []string
	ends   []*Operation
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

func (r *recorder) ObserveStart(ctx context.Context, op *Operation) context.Context {
	r.add("start %s %s", op.Name(), op.Status())
	return ctx
}

func (r *recorder) ObserveProgress(op *Operation, p Progress) {
	r.add("progress %s %s %d", op.Name(), p.Message, len(p.Attrs))
}

func (r *recorder) ObserveCancel(op *Operation, err *Error) {
	r.add("cancel %s %s", op.Name(), err.Reason)
}

func (r *recorder) ObserveEnd(op *Operation) {
	r.add("end %s %s %s", op.Name(), op.Status(), op.Reason())
	r.mu.Lock()
	r.ends = append(r.ends, op)
	r.mu.Unlock()
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func wantEvents(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	got := r.list()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func waitDone(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatal("not done after 5s")
	}
}

func TestStartEndCompleted(t *testing.T) {
	rec := &recorder{}
	ctx, op := Start(context.Background(), "job", WithObserver(rec))
	if op.Status() != StatusRunning {
		t.Fatalf("status %v, want running", op.Status())
	}
	if FromContext(ctx) != op {
		t.Fatal("FromContext does not return the operation")
	}
	if err := op.End(nil); err != nil {
		t.Fatalf("End(nil) = %v", err)
	}
	if op.Status() != StatusCompleted || op.Reason() != 0 || op.Cause() != nil || op.Err() != nil {
		t.Fatalf("status %v reason %v cause %v err %v", op.Status(), op.Reason(), op.Cause(), op.Err())
	}
	// The context is released at End, with a cause that says so.
	waitDone(t, ctx.Done())
	if c := context.Cause(ctx); c != ErrEnded {
		t.Fatalf("cause after End = %v, want ErrEnded", c)
	}
	if op.EndTime().IsZero() || op.Duration() < 0 {
		t.Fatal("no end time")
	}
	wantEvents(t, rec, "start job pending", "end job completed ")
}

func TestEndFailed(t *testing.T) {
	boom := errors.New("boom")
	_, op := Start(context.Background(), "job")
	if err := op.End(boom); err != boom {
		t.Fatalf("End = %v, want boom", err)
	}
	if op.Status() != StatusFailed || op.Reason() != 0 || op.Cause() != boom {
		t.Fatalf("status %v reason %v cause %v", op.Status(), op.Reason(), op.Cause())
	}
}

func TestEndNeverSwallowsCancellation(t *testing.T) {
	boom := errors.New("read: connection closed")
	for _, tc := range []struct {
		name    string
		bodyErr func(ctx context.Context) error
		same    bool // End returns the *Error itself
	}{
		{"bare Canceled", func(ctx context.Context) error { return context.Canceled }, true},
		{"ctx.Err", func(ctx context.Context) error { return ctx.Err() }, true},
		{"context.Cause", func(ctx context.Context) error { return context.Cause(ctx) }, true},
		{"wrapped cause", func(ctx context.Context) error { return fmt.Errorf("query: %w", context.Cause(ctx)) }, false},
		{"wrapped Canceled", func(ctx context.Context) error { return fmt.Errorf("query: %w", ctx.Err()) }, false},
		{"unrelated", func(context.Context) error { return boom }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, op := Start(context.Background(), "job")
			op.Cancel(ReasonShutdown, "draining")
			body := tc.bodyErr(ctx)
			err := op.End(body)
			if op.Status() != StatusCancelled {
				t.Fatalf("status %v", op.Status())
			}
			var ce *Error
			if !errors.As(err, &ce) || ce != op.Err() {
				t.Fatalf("End = %v: errors.As does not find the operation's *Error", err)
			}
			if ReasonOf(err) != ReasonShutdown || !errors.Is(err, context.Canceled) {
				t.Fatalf("End = %v: reason %v", err, ReasonOf(err))
			}
			if !errors.Is(err, body) {
				t.Fatalf("End = %v lost the body's error %v", err, body)
			}
			if tc.same != (err == error(ce)) {
				t.Fatalf("End = %#v, same-as-*Error want %v", err, tc.same)
			}
			if !strings.Contains(err.Error(), "draining") {
				t.Fatalf("message %q does not say why", err)
			}
			if op.Cause() != err {
				t.Fatalf("Cause %v != End's %v", op.Cause(), err)
			}
		})
	}
}

func TestCompletedAfterCancelRequestKeepsBothFacts(t *testing.T) {
	rec := &recorder{}
	_, op := Start(context.Background(), "job", WithObserver(rec))
	if !op.Cancel(ReasonManual, "stop") {
		t.Fatal("first Cancel returned false")
	}
	if op.Cancel(ReasonTimeout, "late") {
		t.Fatal("second Cancel returned true")
	}
	if err := op.End(nil); err != nil {
		t.Fatalf("End(nil) after cancel = %v, want nil: the work completed", err)
	}
	if op.Status() != StatusCompleted || op.Reason() != ReasonManual {
		t.Fatalf("status %v reason %v, want completed + manual", op.Status(), op.Reason())
	}
	wantEvents(t, rec, "start job pending", "cancel job manual", "end job completed manual")
}

func TestEndTwice(t *testing.T) {
	rec := &recorder{}
	_, op := Start(context.Background(), "job", WithObserver(rec))
	boom := errors.New("boom")
	if op.End(boom) != boom || op.End(nil) != boom {
		t.Fatal("second End does not return what the first did")
	}
	if op.Cancel(ReasonManual, "") {
		t.Fatal("Cancel after End returned true")
	}
	op.Progress("after end")
	wantEvents(t, rec, "start job pending", "end job failed ")
}

func TestInvalidReasonIsManual(t *testing.T) {
	_, op := Start(context.Background(), "job")
	op.Cancel(Reason(200), "odd")
	if op.Reason() != ReasonManual {
		t.Fatalf("reason %v", op.Reason())
	}
	op.End(nil)
}

func TestRun(t *testing.T) {
	var seen *Operation
	err := Run(context.Background(), "run", func(ctx context.Context) error {
		seen = FromContext(ctx)
		if seen == nil || seen.Name() != "run" || seen.Status() != StatusRunning {
			return errors.New("no running operation in ctx")
		}
		return nil
	})
	if err != nil || seen.Status() != StatusCompleted {
		t.Fatalf("Run = %v, status %v", err, seen.Status())
	}

	err = Run(context.Background(), "run", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}, WithTimeout(time.Millisecond))
	if ReasonOf(err) != ReasonTimeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run with timeout = %v", err)
	}
}

func TestRunPanicIsRecordedAndRepanicked(t *testing.T) {
	rec := &recorder{}
	defer func() {
		if r := recover(); r != "kaboom" {
			t.Fatalf("recovered %v, want the original panic", r)
		}
		if len(rec.ends) != 1 || rec.ends[0].Status() != StatusFailed ||
			!strings.Contains(rec.ends[0].Cause().Error(), "kaboom") {
			t.Fatalf("ends %v", rec.list())
		}
	}()
	Run(context.Background(), "panicky", func(context.Context) error { panic("kaboom") }, WithObserver(rec))
	t.Fatal("Run returned")
}

func TestFromContext(t *testing.T) {
	if FromContext(context.Background()) != nil || FromContext(nil) != nil { //nolint:staticcheck // nil is the point
		t.Fatal("FromContext outside an operation is not nil")
	}
	ctx, outer := Start(context.Background(), "outer")
	defer outer.End(nil)
	type key struct{}
	ctx = context.WithValue(ctx, key{}, 1)
	ictx, inner := Start(ctx, "inner")
	defer inner.End(nil)
	if FromContext(ictx) != inner || inner.Parent() != outer || FromContext(ctx) != outer {
		t.Fatal("innermost operation not found")
	}
	if ictx.Value(key{}) != 1 {
		t.Fatal("values of the parent context lost")
	}
	got := make(chan *Operation)
	go func() { got <- FromContext(ictx) }()
	if <-got != inner {
		t.Fatal("not visible in a goroutine")
	}
}

func TestProgressInOrder(t *testing.T) {
	rec := &recorder{}
	_, op := Start(context.Background(), "job", WithObserver(rec))
	op.Progress("one")
	op.Progress("two", slog.Int("n", 2), slog.String("s", "x"))
	p, ok := op.LastProgress()
	if !ok || p.Message != "two" || len(p.Attrs) != 2 || p.Time.IsZero() {
		t.Fatalf("last progress %+v", p)
	}
	op.End(nil)
	wantEvents(t, rec, "start job pending", "progress job one 0", "progress job two 2", "end job completed ")
}

func TestCancelledContextErrAndCause(t *testing.T) {
	ctx, op := Start(context.Background(), "job")
	go op.Cancel(ReasonDisconnect, "client went away")
	waitDone(t, ctx.Done())
	if ctx.Err() != context.Canceled {
		t.Fatalf("ctx.Err = %v", ctx.Err())
	}
	cause := context.Cause(ctx)
	if cause != op.Err() || ReasonOf(cause) != ReasonDisconnect {
		t.Fatalf("cause %v, op.Err %v", cause, op.Err())
	}
	op.End(ctx.Err())
	// Still the *Error after End: no cause-less Canceled from a deferred cancel.
	if context.Cause(ctx) != cause || op.Done() != ctx.Done() {
		t.Fatal("cause changed after End")
	}
	// Contexts derived from the operation's see the same cause.
	child, stop := context.WithCancel(ctx)
	defer stop()
	if context.Cause(child) != cause {
		t.Fatalf("derived cause %v", context.Cause(child))
	}
}

func TestInfo(t *testing.T) {
	ctx, op := Start(context.Background(), "job", WithAttrs(slog.String("tenant", "a")), WithTimeout(time.Hour))
	_, child := Start(ctx, "child")
	op.Progress("half", slog.Int("done", 50))
	op.Cancel(ReasonManual, "operator")
	child.End(nil)
	op.End(context.Canceled)
	i := op.Info()
	if i.ID != op.ID() || i.Name != "job" || i.Status != StatusCancelled || i.Reason != ReasonManual ||
		i.Message != "operator" || i.Error == "" || i.Deadline.IsZero() || i.Ended.IsZero() ||
		i.CancelRequested.IsZero() || i.LastProgress == nil || i.Attrs["tenant"] != "a" {
		t.Fatalf("info %+v", i)
	}
	if ci := child.Info(); ci.ParentID != op.ID() || ci.Reason != ReasonParent {
		t.Fatalf("child info %+v", ci)
	}
}

func TestShield(t *testing.T) {
	rec := &recorder{}
	ctx, op := Start(context.Background(), "outer", WithObserver(rec))
	entered, release := make(chan struct{}), make(chan struct{})
	result := make(chan error)
	var shieldOp *Operation
	var sawDone bool
	go func() {
		result <- Shield(ctx, func(sctx context.Context) error {
			shieldOp = FromContext(sctx)
			close(entered)
			<-release
			sawDone = sctx.Err() != nil
			return nil
		})
	}()
	<-entered
	op.Cancel(ReasonShutdown, "draining")
	waitDone(t, ctx.Done())
	close(release)
	err := <-result
	if sawDone {
		t.Fatal("shielded section saw the cancellation")
	}
	// The cancellation takes effect right after the section.
	if ReasonOf(err) != ReasonShutdown || err != op.Err() {
		t.Fatalf("Shield = %v, want the outer cancellation", err)
	}
	if !shieldOp.Shielded() || shieldOp.Parent() != op || shieldOp.Status() != StatusCompleted || shieldOp.Reason() != 0 {
		t.Fatalf("shield op %+v", shieldOp.Info())
	}
	op.End(err)
	wantEvents(t, rec,
		"start outer pending",
		"start shield pending",
		"cancel outer shutdown",
		"end shield completed ",
		"end outer cancelled shutdown")
}

func TestShieldReturnsItsError(t *testing.T) {
	boom := errors.New("boom")
	if err := Shield(context.Background(), func(context.Context) error { return boom }); err != boom {
		t.Fatalf("Shield = %v", err)
	}
	if err := Shield(context.Background(), func(context.Context) error { return nil }); err != nil {
		t.Fatalf("Shield = %v", err)
	}
}

// Observers must never see ObserveEnd before ObserveCancel, even when the
// body ends at the moment another goroutine cancels.
func TestCancelNotificationBeforeEnd(t *testing.T) {
	for range 200 {
		var mu sync.Mutex
		var order []string
		obs := Hooks{
			OnCancel: func(*Operation, *Error) {
				mu.Lock()
				order = append(order, "cancel")
				mu.Unlock()
			},
			OnEnd: func(*Operation) {
				mu.Lock()
				order = append(order, "end")
				mu.Unlock()
			},
		}
		ctx, op := Start(context.Background(), "race", WithObserver(obs))
		go op.Cancel(ReasonManual, "")
		<-ctx.Done()
		op.End(ctx.Err())
		mu.Lock()
		if strings.Join(order, ",") != "cancel,end" {
			t.Fatalf("order %v", order)
		}
		mu.Unlock()
	}
}

// 1,000 goroutines race Cancel, End and Progress on shared tokens and
// operations; every count must come out exact.
func TestStress(t *testing.T) {
	const ops, racers = 100, 10
	type tally struct {
		starts, ends, cancels, progressAfterEnd int
		progress                                int
		ended                                   bool
		reason                                  Reason
	}
	var mu sync.Mutex
	tallies := map[*Operation]*tally{}
	get := func(op *Operation) *tally {
		if tallies[op] == nil {
			tallies[op] = &tally{}
		}
		return tallies[op]
	}
	obs := Hooks{
		OnStart: func(op *Operation) { mu.Lock(); get(op).starts++; mu.Unlock() },
		OnProgress: func(op *Operation, _ Progress) {
			mu.Lock()
			if tl := get(op); tl.ended {
				tl.progressAfterEnd++
			} else {
				tl.progress++
			}
			mu.Unlock()
		},
		OnCancel: func(op *Operation, e *Error) { mu.Lock(); get(op).cancels++; get(op).reason = e.Reason; mu.Unlock() },
		OnEnd:    func(op *Operation) { mu.Lock(); get(op).ends++; get(op).ended = true; mu.Unlock() },
	}
	reg := &Registry{}
	tokens := []*Token{NewToken(), NewToken()}
	var wg sync.WaitGroup
	var cancelWins, endReturnedNil atomic.Int64
	all := make([]*Operation, ops)
	for i := range ops {
		_, op := Start(context.Background(), "stress", WithObserver(obs), WithRegistry(reg), WithToken(tokens[i%2]))
		all[i] = op
		start := make(chan struct{})
		for j := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				switch j % 3 {
				case 0:
					if op.Cancel(ReasonManual, "racer") {
						cancelWins.Add(1)
					}
				case 1:
					op.Progress("tick")
					if op.End(nil) == nil {
						endReturnedNil.Add(1)
					}
				default:
					op.Progress("tick")
				}
			}()
		}
		close(start)
		if i == ops/2 {
			tokens[0].Cancel(ReasonShutdown, "half way")
		}
	}
	wg.Wait()

	manual, shutdown := 0, 0
	for _, op := range all {
		tl := tallies[op]
		if tl.starts != 1 || tl.ends != 1 || tl.progressAfterEnd != 0 || tl.progress > racers {
			t.Fatalf("op %d: %+v", op.ID(), *tl)
		}
		if op.Status() != StatusCompleted {
			t.Fatalf("op %d status %v", op.ID(), op.Status())
		}
		// One cancel notification exactly when a cancellation was recorded.
		if (tl.cancels == 1) != (op.Reason() != 0) || tl.cancels > 1 || tl.reason != op.Reason() {
			t.Fatalf("op %d: %d cancel notifications, reason %v", op.ID(), tl.cancels, op.Reason())
		}
		switch op.Reason() {
		case ReasonManual:
			manual++
		case ReasonShutdown:
			shutdown++
		}
	}
	if int64(manual) != cancelWins.Load() {
		t.Fatalf("manual cancellations %d, Cancel returned true %d times", manual, cancelWins.Load())
	}
	// End(nil) returns nil for every caller, first or not.
	if endReturnedNil.Load() != ops*int64((racers+1)/3) {
		t.Fatalf("End returned nil %d times", endReturnedNil.Load())
	}
	st := reg.Stats()
	if st.Active != 0 || st.ByStatus[StatusCompleted] != ops || st.Completed != ops ||
		st.ByReason[ReasonManual] != int64(manual) || st.ByReason[ReasonShutdown] != int64(shutdown) {
		t.Fatalf("stats %+v, manual %d shutdown %d", st, manual, shutdown)
	}
	for _, tok := range tokens {
		if n := tok.registered(); n != 0 {
			t.Fatalf("token holds %d callbacks", n)
		}
	}
}

type valueObserver struct{ Hooks }

type stateKey struct{}

func (valueObserver) ObserveStart(ctx context.Context, op *Operation) context.Context {
	return context.WithValue(ctx, stateKey{}, "state of "+op.Name())
}

// Observers find what they stored at start through Operation.Value.
func TestOperationValue(t *testing.T) {
	ctx, op := Start(context.Background(), "job", WithObserver(valueObserver{}))
	defer op.End(nil)
	if op.Value(stateKey{}) != "state of job" || ctx.Value(stateKey{}) != "state of job" {
		t.Fatalf("value %v", op.Value(stateKey{}))
	}
	if op.Value(opKey{}) != nil {
		t.Fatal("Value answers for the operation key: observers should use FromContext")
	}
}

func TestAdoptSpan(t *testing.T) {
	_, plain := Start(context.Background(), "plain")
	_, adopting := Start(context.Background(), "adopting", AdoptSpan())
	defer plain.End(nil)
	defer adopting.End(nil)
	if plain.AdoptsSpan() || !adopting.AdoptsSpan() {
		t.Fatalf("AdoptsSpan: plain %v adopting %v", plain.AdoptsSpan(), adopting.AdoptsSpan())
	}
}

// Run's doc: "If fn panics, the operation ends as failed and the panic goes
// on up", also when a cancellation was requested before the panic.
func TestRunPanicAfterCancelIsFailed(t *testing.T) {
	var op *Operation
	func() {
		defer func() { recover() }()
		Run(context.Background(), "panics", func(ctx context.Context) error {
			op = FromContext(ctx)
			op.Cancel(ReasonManual, "stop")
			panic("boom")
		})
	}()
	if op.Status() != StatusFailed {
		t.Fatalf("status %v after a panic, cause %v", op.Status(), op.Cause())
	}
}

// Run must end its operation however fn leaves: runtime.Goexit (t.FailNow,
// t.Fatal in a test) is not a panic, and an operation never ended keeps
// its timers, token callbacks, signal handlers and registry entry.
func TestRunGoexitEndsOperation(t *testing.T) {
	reg := &Registry{}
	tok := NewToken()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(context.Background(), "goexit", func(ctx context.Context) error {
			runtime.Goexit()
			return nil
		}, WithRegistry(reg), WithToken(tok), WithTimeout(time.Hour))
	}()
	<-done
	if n := len(reg.List(Filter{})); n != 0 || tok.registered() != 0 {
		t.Fatalf("after Goexit: %d live operations, %d token callbacks", n, tok.registered())
	}
}

// TestShieldPanicEndsSection: a panic in the shielded section goes on up,
// as in Run, but the section still ends (as failed): otherwise its span
// would never end and the active gauge would count it for ever.
func TestShieldPanicEndsSection(t *testing.T) {
	rec := &recorder{}
	ctx, op := Start(context.Background(), "outer", WithObserver(rec))
	var section *Operation
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the section's panic", r)
			}
		}()
		Shield(ctx, func(sctx context.Context) error {
			section = FromContext(sctx)
			panic("boom")
		})
	}()
	if section.Status() != StatusFailed {
		t.Fatalf("section status %v after its panic, want failed", section.Status())
	}
	op.End(nil)
	wantEvents(t, rec,
		"start outer pending",
		"start shield pending",
		"end shield failed ",
		"end outer completed ")
}
