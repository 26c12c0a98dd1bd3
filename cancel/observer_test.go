package cancel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// obsSlogBuffer collects what slog's default logger writes while a test runs.
type obsSlogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *obsSlogBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *obsSlogBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// obsCaptureSlog points slog's default logger at a buffer for the rest of
// the test. slog.SetDefault also redirects the log package, which restoring
// the old slog default does not undo: the cleanup restores both.
func obsCaptureSlog(t *testing.T) *obsSlogBuffer {
	t.Helper()
	c := &obsSlogBuffer{}
	old := slog.Default()
	w, flags, prefix := log.Writer(), log.Flags(), log.Prefix()
	slog.SetDefault(slog.New(slog.NewJSONHandler(c, nil)))
	t.Cleanup(func() {
		slog.SetDefault(old)
		log.SetOutput(w)
		log.SetFlags(flags)
		log.SetPrefix(prefix)
	})
	return c
}

// obsSetDefault sets the global default observer and puts the old
// one back when the test ends.
func obsSetDefault(t *testing.T, o Observer) {
	t.Helper()
	old := DefaultObserver()
	SetDefaultObserver(o)
	t.Cleanup(func() { SetDefaultObserver(old) })
}

// obsGoroutineID returns the ID of the calling goroutine (tests only).
func obsGoroutineID() uint64 {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	id, err := strconv.ParseUint(s[:strings.IndexByte(s, ' ')], 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

// obsLog is an Observer that writes "<tag> <event> <op name>" lines into a
// log shared by several observers, to check the order across them.
type obsLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *obsLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *obsLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *obsLog) observer(tag string) Observer {
	return Hooks{
		OnStart:    func(op *Operation) { l.add(tag + " start " + op.Name()) },
		OnProgress: func(op *Operation, p Progress) { l.add(tag + " progress " + op.Name() + " " + p.Message) },
		OnCancel:   func(op *Operation, e *Error) { l.add(tag + " cancel " + op.Name() + " " + e.Reason.String()) },
		OnEnd:      func(op *Operation) { l.add(tag + " end " + op.Name() + " " + op.Status().String()) },
	}
}

func obsWantLines(t *testing.T, l *obsLog, want ...string) {
	t.Helper()
	if got := l.String(); got != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

func TestHooksNilFields(t *testing.T) {
	logs := obsCaptureSlog(t)
	var ends int
	for _, h := range []Observer{Hooks{}, &Hooks{}, Hooks{OnEnd: func(*Operation) { ends++ }}} {
		ctx, op := Start(context.Background(), "job", WithObserver(h))
		op.Progress("half")
		if !op.Cancel(ReasonManual, "stop") {
			t.Fatal("Cancel false")
		}
		if err := op.End(ctx.Err()); ReasonOf(err) != ReasonManual || op.Status() != StatusCancelled {
			t.Fatalf("End = %v, status %v", err, op.Status())
		}
	}
	if ends != 1 {
		t.Fatalf("OnEnd ran %d times", ends)
	}
	if logs.String() != "" {
		t.Fatalf("nil hooks logged: %s", logs)
	}
	// Hooks.ObserveStart returns the context it was given.
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, 1)
	if (Hooks{}).ObserveStart(ctx, nil) != ctx {
		t.Fatal("Hooks.ObserveStart does not return its ctx")
	}
}

func TestMultiObserverOrder(t *testing.T) {
	var l obsLog
	m := MultiObserver(l.observer("a"), l.observer("b"), l.observer("c"))
	ctx, op := Start(context.Background(), "job", WithObserver(m))
	op.Progress("p")
	op.Cancel(ReasonShutdown, "")
	op.End(ctx.Err())
	obsWantLines(t, &l,
		"a start job", "b start job", "c start job",
		"a progress job p", "b progress job p", "c progress job p",
		"a cancel job shutdown", "b cancel job shutdown", "c cancel job shutdown",
		"a end job cancelled", "b end job cancelled", "c end job cancelled")
}

func TestMultiObserverFlattens(t *testing.T) {
	var l obsLog
	a, b, c, d := l.observer("a"), l.observer("b"), l.observer("c"), l.observer("d")
	m := MultiObserver(a, nil, MultiObserver(b, MultiObserver(), nil, MultiObserver(c)))
	list, ok := m.(observerList)
	if !ok || len(list) != 3 {
		t.Fatalf("MultiObserver nested = %#v, want a flat list of 3", m)
	}
	// WithObserver flattens too, and skips nil.
	_, op := Start(context.Background(), "job", WithObserver(m), WithObserver(nil), WithObserver(d))
	if len(op.observers) != 4 {
		t.Fatalf("operation has %d observers, want 4", len(op.observers))
	}
	op.End(nil)
	obsWantLines(t, &l,
		"a start job", "b start job", "c start job", "d start job",
		"a end job completed", "b end job completed", "c end job completed", "d end job completed")

	// An empty MultiObserver is a valid observer that does nothing.
	empty := MultiObserver()
	_, op = Start(context.Background(), "empty", WithObserver(empty), WithObserver(MultiObserver(nil, nil)))
	if len(op.observers) != 0 {
		t.Fatalf("%d observers from empty MultiObservers", len(op.observers))
	}
	op.End(nil)
	empty.ObserveEnd(op)
}

func TestDefaultObserver(t *testing.T) {
	obsSetDefault(t, nil)
	if DefaultObserver() != nil {
		t.Fatalf("DefaultObserver after SetDefaultObserver(nil) = %v", DefaultObserver())
	}
	var l obsLog
	def := l.observer("default")
	SetDefaultObserver(def)
	if got, ok := DefaultObserver().(Hooks); !ok || got.OnStart == nil {
		t.Fatalf("DefaultObserver() = %#v, want the one set", DefaultObserver())
	}

	// The default comes before the operation's own, for every operation,
	// at the top and under another one.
	ctx, outer := Start(context.Background(), "outer", WithObserver(l.observer("own")))
	_, inner := Start(ctx, "inner")
	inner.End(nil)
	outer.End(nil)
	obsWantLines(t, &l,
		"default start outer", "own start outer",
		"default start inner",
		"default end inner completed",
		"default end outer completed", "own end outer completed")

	// Several defaults: a list, in order.
	var l2 obsLog
	SetDefaultObserver(MultiObserver(l2.observer("d1"), l2.observer("d2")))
	if list, ok := DefaultObserver().(observerList); !ok || len(list) != 2 {
		t.Fatalf("DefaultObserver() = %#v", DefaultObserver())
	}
	_, op := Start(context.Background(), "job")
	// Changing the default does not change the observers of a running
	// operation.
	SetDefaultObserver(nil)
	op.End(nil)
	obsWantLines(t, &l2, "d1 start job", "d2 start job", "d1 end job completed", "d2 end job completed")

	// Removed: new operations have no observers at all.
	_, op = Start(context.Background(), "job")
	if len(op.observers) != 0 {
		t.Fatalf("observers after SetDefaultObserver(nil): %d", len(op.observers))
	}
	op.End(nil)
}

// WithObserver applies to its operation only (see its doc): the operations
// started under it do not inherit it, so a tree started with the same
// options does not tell an observer twice. The default observer sees them
// all; Shield's section, being a part of its parent, has its parent's.
func TestObserversOfChildren(t *testing.T) {
	obsSetDefault(t, nil)
	var l obsLog
	SetDefaultObserver(l.observer("default"))
	pctx, parent := Start(context.Background(), "parent", WithObserver(l.observer("p")))
	cctx, child := Start(pctx, "child", WithObserver(l.observer("c")))
	_, grandchild := Start(cctx, "grandchild")
	err := Shield(pctx, func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	grandchild.End(nil)
	child.End(nil)
	parent.End(nil)
	obsWantLines(t, &l,
		"default start parent", "p start parent",
		"default start child", "c start child",
		"default start grandchild",
		"default start shield", "p start shield",
		"default end shield completed", "p end shield completed",
		"default end grandchild completed",
		"default end child completed", "c end child completed",
		"default end parent completed", "p end parent completed")
}

type obsKey string

// obsValueObserver adds a value to the operation's context in ObserveStart.
type obsValueObserver struct {
	Hooks
	key, val string
	seen     *[]string // the values it found in the ctx it was given
}

func (o obsValueObserver) ObserveStart(ctx context.Context, op *Operation) context.Context {
	if o.seen != nil {
		v, _ := ctx.Value(obsKey("a")).(string)
		*o.seen = append(*o.seen, v)
	}
	return context.WithValue(ctx, obsKey(o.key), o.val)
}

func TestObserveStartContext(t *testing.T) {
	var seen []string
	ctx, op := Start(context.Background(), "job",
		WithObserver(obsValueObserver{key: "a", val: "span-a"}),
		WithObserver(Hooks{}), // passes ctx on
		WithObserver(obsValueObserver{key: "b", val: "span-b", seen: &seen}),
		WithObserver(obsNilCtxObserver{})) // a nil context is ignored
	defer op.End(nil)
	// Each observer is given the context the one before returned.
	if len(seen) != 1 || seen[0] != "span-a" {
		t.Fatalf("second observer saw %v", seen)
	}
	// The values are visible inside the operation, and it still is the
	// operation's context (cancellable by it, FromContext works).
	if ctx.Value(obsKey("a")) != "span-a" || ctx.Value(obsKey("b")) != "span-b" || FromContext(ctx) != op {
		t.Fatalf("values a=%v b=%v op=%v", ctx.Value(obsKey("a")), ctx.Value(obsKey("b")), FromContext(ctx))
	}
	got := make(chan any)
	go func() { got <- ctx.Value(obsKey("b")) }()
	if <-got != "span-b" {
		t.Fatal("value not visible in a goroutine")
	}
	op.Cancel(ReasonManual, "")
	select {
	case <-ctx.Done():
	default:
		t.Fatal("the context with observer values is not the operation's")
	}
}

type obsNilCtxObserver struct{ Hooks }

func (obsNilCtxObserver) ObserveStart(context.Context, *Operation) context.Context { return nil }

// obsPanicky panics in one of its methods.
type obsPanicky struct{ method string }

func (p obsPanicky) boom(m string) {
	if p.method == m {
		panic("observer exploded in " + m)
	}
}

func (p obsPanicky) ObserveStart(ctx context.Context, _ *Operation) context.Context {
	p.boom("ObserveStart")
	return context.WithValue(ctx, obsKey("obsPanicky"), "kept") // only when it did not panic
}
func (p obsPanicky) ObserveProgress(*Operation, Progress) { p.boom("ObserveProgress") }
func (p obsPanicky) ObserveCancel(*Operation, *Error)     { p.boom("ObserveCancel") }
func (p obsPanicky) ObserveEnd(*Operation)                { p.boom("ObserveEnd") }

// A panicking observer, in any of its methods, is contained and logged; the
// operation and the observers after it carry on.
func TestObserverPanicContained(t *testing.T) {
	for _, method := range []string{"ObserveStart", "ObserveProgress", "ObserveCancel", "ObserveEnd"} {
		for _, viaDefault := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/default=%v", method, viaDefault), func(t *testing.T) {
				logs := obsCaptureSlog(t)
				obsSetDefault(t, nil)
				var l obsLog
				opts := []Option{WithObserver(obsValueObserver{key: "a", val: "before"})}
				if viaDefault {
					SetDefaultObserver(obsPanicky{method})
				} else {
					opts = append(opts, WithObserver(obsPanicky{method}))
				}
				opts = append(opts, WithObserver(l.observer("after")))

				ctx, op := Start(context.Background(), "job", opts...)
				if op.Status() != StatusRunning {
					t.Fatalf("status %v after Start", op.Status())
				}
				// The context keeps what the observers before added.
				if ctx.Value(obsKey("a")) != "before" || FromContext(ctx) != op {
					t.Fatal("context lost the values of the observers before the panicking one")
				}
				if method != "ObserveStart" && ctx.Value(obsKey("obsPanicky")) != "kept" {
					t.Fatal("context lost the value of an observer that did not panic")
				}
				op.Progress("tick")
				if !op.Cancel(ReasonShutdown, "drain") {
					t.Fatal("Cancel false")
				}
				select {
				case <-ctx.Done():
				default:
					t.Fatal("not cancelled")
				}
				err := op.End(ctx.Err())
				if ReasonOf(err) != ReasonShutdown || op.Status() != StatusCancelled || op.Cause() != err {
					t.Fatalf("End = %v, status %v", err, op.Status())
				}
				obsWantLines(t, &l, "after start job", "after progress job tick", "after cancel job shutdown", "after end job cancelled")

				out := logs.String()
				if strings.Count(out, "observer panicked") != 1 {
					t.Fatalf("want one log record, got:\n%s", out)
				}
				for _, want := range []string{
					`"level":"ERROR"`,
					`"method":"` + method + `"`,
					`"operation":"job"`,
					`"operation_id":` + strconv.FormatUint(op.ID(), 10),
					"observer exploded in " + method,
				} {
					if !strings.Contains(out, want) {
						t.Errorf("log lacks %s:\n%s", want, out)
					}
				}
			})
		}
	}
}

// ObserveCancel runs on the goroutine that asked for the cancellation,
// before Cancel returns, and sees the request as it is: the operation still
// running, its Err and Reason set, the request's time.
func TestObserveCancelAtTheRequest(t *testing.T) {
	type seen struct {
		gid    uint64
		err    *Error
		opErr  error
		reason Reason
		status Status
	}
	var mu sync.Mutex
	var got []seen
	obs := Hooks{OnCancel: func(op *Operation, e *Error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, seen{obsGoroutineID(), e, op.Err(), op.Reason(), op.Status()})
	}}
	check := func(name string, gid uint64, before, after time.Time, op *Operation, reason Reason) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 {
			t.Fatalf("%s: %d ObserveCancel calls", name, len(got))
		}
		s := got[0]
		got = nil
		if s.gid != gid {
			t.Errorf("%s: ObserveCancel on goroutine %d, the canceller is %d", name, s.gid, gid)
		}
		if s.err != op.Err() || s.opErr != op.Err() || s.reason != reason || s.status != StatusRunning {
			t.Errorf("%s: saw %+v; op.Err %v", name, s, op.Err())
		}
		if s.err.Time.Before(before) || s.err.Time.After(after) {
			t.Errorf("%s: request time %v not within the call", name, s.err.Time)
		}
	}

	// Operation.Cancel, from another goroutine.
	ctx, op := Start(context.Background(), "job", WithObserver(obs))
	gid := make(chan uint64)
	var before, after time.Time
	go func() {
		before = time.Now()
		op.Cancel(ReasonManual, "")
		after = time.Now()
		gid <- obsGoroutineID()
	}()
	g := <-gid
	check("Cancel", g, before, after, op, ReasonManual)
	op.End(ctx.Err())

	// A token's Cancel.
	tok := NewToken()
	ctx, op = Start(context.Background(), "job", WithObserver(obs), WithToken(tok))
	before = time.Now()
	tok.Cancel(ReasonShutdown, "")
	after = time.Now()
	check("token", obsGoroutineID(), before, after, op, ReasonShutdown)
	op.End(ctx.Err())

	// A registry's Cancel.
	var reg Registry
	ctx, op = Start(context.Background(), "job", WithObserver(obs), WithRegistry(&reg))
	before = time.Now()
	reg.Cancel(op.ID(), ReasonDisconnect, "")
	after = time.Now()
	check("registry", obsGoroutineID(), before, after, op, ReasonDisconnect)
	op.End(ctx.Err())
}

// The body must not see ctx.Done before the observers heard of the request:
// otherwise a span or a log shows the work stopping before it was asked to.
func TestObserveCancelBeforeBodySeesDone(t *testing.T) {
	var doneDuringObserve atomic.Int32
	var calls atomic.Int32
	var ctx context.Context
	obs := Hooks{OnCancel: func(*Operation, *Error) {
		calls.Add(1)
		select {
		case <-ctx.Done():
			doneDuringObserve.Add(1)
		default:
		}
	}}
	for range 10 {
		var op *Operation
		ctx, op = Start(context.Background(), "job", WithObserver(obs))
		op.Cancel(ReasonManual, "")
		op.End(ctx.Err())
	}
	if calls.Load() != 10 || doneDuringObserve.Load() != 0 {
		t.Errorf("%d of %d ObserveCancel calls found the context already done", doneDuringObserve.Load(), calls.Load())
	}

	// The same defect lets a child's cancellation (reason parent) reach the
	// observers before its parent's: the child is cancelled by the parent's
	// context, which is done before the parent's observers were told.
	childCancelled := make(chan struct{})
	var childFirst atomic.Bool
	obs = Hooks{OnCancel: func(op *Operation, _ *Error) {
		if op.Name() == "child" {
			close(childCancelled)
			return
		}
		select {
		case <-childCancelled:
			childFirst.Store(true)
		case <-time.After(50 * time.Millisecond):
		}
	}}
	pctx, parent := Start(context.Background(), "parent", WithObserver(obs))
	cctx, child := Start(pctx, "child", WithObserver(obs))
	parent.Cancel(ReasonManual, "")
	<-cctx.Done()
	child.End(nil)
	parent.End(nil)
	if childFirst.Load() {
		t.Error("the child's ObserveCancel came before its parent's")
	}
}

// ObserveCancel always comes before ObserveEnd, whoever cancels and however
// the body races it.
func TestObserveCancelBeforeEndAllSources(t *testing.T) {
	type run func(obs Observer) *Operation
	for _, tc := range []struct {
		name string
		run  run
	}{
		{"token", func(obs Observer) *Operation {
			tok := NewToken()
			ctx, op := Start(context.Background(), "job", WithObserver(obs), WithToken(tok))
			go tok.Cancel(ReasonShutdown, "")
			<-ctx.Done()
			op.End(ctx.Err())
			return op
		}},
		{"parent", func(obs Observer) *Operation {
			pctx, parent := Start(context.Background(), "parent")
			ctx, op := Start(pctx, "job", WithObserver(obs))
			go parent.Cancel(ReasonManual, "")
			<-ctx.Done()
			op.End(nil) // completes anyway: the request is still reported
			parent.End(nil)
			return op
		}},
		{"parent context", func(obs Observer) *Operation {
			pctx, cancel := context.WithCancel(context.Background())
			ctx, op := Start(pctx, "job", WithObserver(obs))
			go cancel()
			<-ctx.Done()
			op.End(ctx.Err())
			return op
		}},
		{"timeout", func(obs Observer) *Operation {
			ctx, op := Start(context.Background(), "job", WithObserver(obs), WithTimeout(time.Microsecond))
			<-ctx.Done()
			op.End(ctx.Err())
			return op
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 100 {
				var l obsLog
				op := tc.run(l.observer("o"))
				lines := strings.Split(l.String(), "\n")
				if len(lines) != 3 || !strings.HasPrefix(lines[1], "o cancel job ") || !strings.HasPrefix(lines[2], "o end job ") {
					t.Fatalf("events %q", lines)
				}
				if op.Reason() == 0 {
					t.Fatal("no reason recorded")
				}
			}
		})
	}
}

// ObserveEnd sees the final state: status, reason, cause (what End
// returned), end time; the context is done.
func TestObserveEndSeesFinalState(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		cancel Reason
		bodyFn func(ctx context.Context) error
		status Status
	}{
		{"completed", 0, func(context.Context) error { return nil }, StatusCompleted},
		{"failed", 0, func(context.Context) error { return boom }, StatusFailed},
		{"cancelled", ReasonTimeout, func(ctx context.Context) error { return ctx.Err() }, StatusCancelled},
		{"cancelled with own error", ReasonDisconnect, func(context.Context) error { return io.ErrUnexpectedEOF }, StatusCancelled},
		{"completed after request", ReasonShutdown, func(context.Context) error { return nil }, StatusCompleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type final struct {
				status Status
				reason Reason
				cause  error
				ended  time.Time
				done   bool
				info   Info
			}
			var got []final
			obs := Hooks{OnEnd: func(op *Operation) {
				f := final{status: op.Status(), reason: op.Reason(), cause: op.Cause(), ended: op.EndTime(), info: op.Info()}
				select {
				case <-op.Done():
					f.done = true
				default:
				}
				got = append(got, f)
			}}
			ctx, op := Start(context.Background(), "job", WithObserver(obs))
			if tc.cancel != 0 {
				op.Cancel(tc.cancel, "why")
			}
			res := op.End(tc.bodyFn(ctx))
			op.End(nil) // a second End tells nobody
			if len(got) != 1 {
				t.Fatalf("ObserveEnd called %d times", len(got))
			}
			f := got[0]
			if f.status != tc.status || f.reason != tc.cancel || f.cause != res || f.ended.IsZero() || !f.done {
				t.Fatalf("ObserveEnd saw %+v; End returned %v", f, res)
			}
			if f.info.Status != tc.status || f.info.Reason != tc.cancel || f.info.Ended.IsZero() {
				t.Fatalf("Info in ObserveEnd %+v", f.info)
			}
			switch tc.status {
			case StatusCompleted:
				if res != nil {
					t.Fatalf("End = %v for a completed operation", res)
				}
			case StatusFailed:
				if res != boom {
					t.Fatalf("End = %v, want the body's error", res)
				}
			case StatusCancelled:
				if ReasonOf(res) != tc.cancel {
					t.Fatalf("End = %v, want reason %v", res, tc.cancel)
				}
			}
		})
	}
}

// An operation that fails at Start (an invalid option) is still started and
// ended for its observers, as failed.
func TestObserveEndOfInvalidOperation(t *testing.T) {
	var l obsLog
	err := Run(context.Background(), "bad", func(context.Context) error { return nil },
		WithObserver(l.observer("o")), WithTimeout(time.Hour), WithCondition("c", nil, time.Second))
	var oe *OptionError
	if !errors.As(err, &oe) {
		t.Fatalf("Run = %v", err)
	}
	obsWantLines(t, &l, "o start bad", "o end bad failed")
}

// An observer may cancel the operation it is told about from ObserveStart
// (admission control: too many running, refuse this one). The operation is
// pending; Cancel must not leave it half-cancelled.
func TestCancelFromObserveStart(t *testing.T) {
	var cancelled []Reason
	obs := Hooks{
		OnStart:  func(op *Operation) { op.Cancel(ReasonShutdown, "admission refused") },
		OnCancel: func(op *Operation, e *Error) { cancelled = append(cancelled, e.Reason) },
	}
	ctx, op := Start(context.Background(), "admitted", WithObserver(obs))
	select {
	case <-ctx.Done():
	default:
		t.Error("Cancel from ObserveStart returned true but the context is not done")
	}
	ended := make(chan error, 1)
	go func() { ended <- op.End(ctx.Err()) }()
	select {
	case err := <-ended:
		if ReasonOf(err) != ReasonShutdown || op.Status() != StatusCancelled {
			t.Fatalf("End = %v, status %v", err, op.Status())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("End hangs after a Cancel from ObserveStart")
	}
	if len(cancelled) != 1 || cancelled[0] != ReasonShutdown {
		t.Fatalf("ObserveCancel told %v", cancelled)
	}
}

// countingObserver counts the starts and ends it is told of.
type countingObserver struct{ starts, ends atomic.Int64 }

func (o *countingObserver) ObserveStart(ctx context.Context, _ *Operation) context.Context {
	o.starts.Add(1)
	return ctx
}
func (o *countingObserver) ObserveProgress(*Operation, Progress) {}
func (o *countingObserver) ObserveCancel(*Operation, *Error)     {}
func (o *countingObserver) ObserveEnd(*Operation)                { o.ends.Add(1) }

// An observer that is the default and is also given with WithObserver (a
// program setting its observer both ways) is told once; observers that
// cannot be compared (Hooks) are all told.
func TestObserverGivenTwiceToldOnce(t *testing.T) {
	obs := new(countingObserver)
	obsSetDefault(t, obs)
	var l obsLog
	hooks := l.observer("hooks")
	_, op := Start(context.Background(), "job", WithObserver(obs), WithObserver(obs), WithObserver(hooks), WithObserver(hooks))
	op.End(nil)
	if s, e := obs.starts.Load(), obs.ends.Load(); s != 1 || e != 1 {
		t.Errorf("the observer was told of %d starts and %d ends, want 1 and 1", s, e)
	}
	obsWantLines(t, &l, "hooks start job", "hooks start job", "hooks end job completed", "hooks end job completed")
}

// obsQuiet is an observer that does nothing and allocates nothing.
type obsQuiet struct{}

func (*obsQuiet) ObserveStart(ctx context.Context, _ *Operation) context.Context { return ctx }
func (*obsQuiet) ObserveProgress(*Operation, Progress)                           {}
func (*obsQuiet) ObserveCancel(*Operation, *Error)                               {}
func (*obsQuiet) ObserveEnd(*Operation)                                          {}

// An operation's one observer of its own (how httpcancel users pass
// otelcancel's) costs no allocation beyond the options' own.
func TestOneObserverAllocatesNothing(t *testing.T) {
	obsSetDefault(t, nil)
	ctx := context.Background()
	plain, observed := WithAttrs(), WithObserver(&obsQuiet{})
	base := testing.AllocsPerRun(100, func() {
		_, op := Start(ctx, "op", plain)
		op.End(nil)
	})
	with := testing.AllocsPerRun(100, func() {
		_, op := Start(ctx, "op", observed)
		op.End(nil)
	})
	if with != base {
		t.Errorf("Start and End with one observer allocate %v times, %v without", with, base)
	}
}
