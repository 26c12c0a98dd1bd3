package cancel

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestTokenZeroValue(t *testing.T) {
	var tok Token // not NewToken: the zero value must work as is
	if tok.Err() != nil {
		t.Fatalf("Err before Cancel = %v", tok.Err())
	}
	if tok.registered() != 0 {
		t.Fatal("zero token holds callbacks")
	}
	before := time.Now()
	if !tok.Cancel(ReasonSignal, "SIGTERM") {
		t.Fatal("first Cancel returned false")
	}
	after := time.Now()
	// Done was never asked for before the Cancel: it must still be closed.
	select {
	case <-tok.Done():
	default:
		t.Fatal("Done not closed after Cancel")
	}
	var e *Error
	if !errors.As(tok.Err(), &e) || e.Reason != ReasonSignal || e.Message != "SIGTERM" || e.Op != "" || e.OpID != 0 {
		t.Fatalf("Err = %#v", tok.Err())
	}
	if e.Time.Before(before) || e.Time.After(after) {
		t.Fatalf("time %v not within the Cancel call [%v, %v]", e.Time, before, after)
	}
	if tok.Err().Error() != "cancelled (signal): SIGTERM" {
		t.Fatalf("message %q", tok.Err())
	}
	if !errors.Is(tok.Err(), context.Canceled) || errors.Is(tok.Err(), context.DeadlineExceeded) {
		t.Fatal("token error is not (only) Canceled")
	}
}

func TestTokenDoneClosesAtCancel(t *testing.T) {
	tok := NewToken()
	d := tok.Done()
	if d != tok.Done() {
		t.Fatal("Done returns a different channel each call")
	}
	select {
	case <-d:
		t.Fatal("Done closed before Cancel")
	default:
	}
	woke := make(chan error)
	go func() {
		<-d
		woke <- tok.Err() // Err is set by the time Done is closed
	}()
	tok.Cancel(ReasonManual, "")
	select {
	case err := <-woke:
		if ReasonOf(err) != ReasonManual {
			t.Fatalf("Err seen after Done = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiter on Done was not woken")
	}
	if tok.Done() != d {
		t.Fatal("Done changed after Cancel")
	}
}

func TestTokenFirstCancelWins(t *testing.T) {
	tok := NewToken()
	if !tok.Cancel(ReasonShutdown, "deploy") {
		t.Fatal("first Cancel false")
	}
	first := tok.Err()
	for _, r := range Reasons() {
		if tok.Cancel(r, "late") {
			t.Fatalf("later Cancel(%v) returned true", r)
		}
	}
	if tok.Err() != first {
		t.Fatal("a later Cancel replaced the error")
	}
	if e := first.(*Error); e.Reason != ReasonShutdown || e.Message != "deploy" {
		t.Fatalf("kept %+v", e)
	}
}

func TestTokenInvalidReasonIsManual(t *testing.T) {
	for _, r := range []Reason{0, ReasonError + 1, 255} {
		tok := NewToken()
		tok.Cancel(r, "odd")
		if ReasonOf(tok.Err()) != ReasonManual {
			t.Errorf("Cancel(%d): reason %v, want manual", uint8(r), ReasonOf(tok.Err()))
		}
	}
}

// 100 goroutines race to cancel: exactly one wins, and the token keeps the
// winner's reason and message.
func TestTokenCancelRace(t *testing.T) {
	for round := range 20 {
		tok := NewToken()
		const n = 100
		var wg sync.WaitGroup
		start := make(chan struct{})
		wins := make(chan int, n)
		var ranCallback atomic.Int32
		tok.OnCancel(func() { ranCallback.Add(1) })
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if i%2 == 0 {
					<-tok.Done() // some also wait on Done meanwhile
					return
				}
				r := Reasons()[i%len(Reasons())]
				if tok.Cancel(r, fmt.Sprintf("racer %d", i)) {
					wins <- i
				}
			}()
		}
		close(start)
		// Half the goroutines wait on Done: cancel from here too.
		if tok.Cancel(ReasonError, "racer -1") {
			wins <- -1
		}
		wg.Wait()
		close(wins)
		var winners []int
		for w := range wins {
			winners = append(winners, w)
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners: %v", round, len(winners), winners)
		}
		e := tok.Err().(*Error)
		if e.Message != fmt.Sprintf("racer %d", winners[0]) {
			t.Fatalf("round %d: winner %d but message %q", round, winners[0], e.Message)
		}
		wantReason := ReasonError
		if winners[0] >= 0 {
			wantReason = Reasons()[winners[0]%len(Reasons())]
		}
		if e.Reason != wantReason {
			t.Fatalf("round %d: reason %v, want the winner's %v", round, e.Reason, wantReason)
		}
		if ranCallback.Load() != 1 {
			t.Fatalf("round %d: callback ran %d times", round, ranCallback.Load())
		}
	}
}

func TestTokenOnCancelOrderAndOnce(t *testing.T) {
	tok := NewToken()
	var order []int
	for i := range 10 {
		tok.OnCancel(func() { order = append(order, i) })
	}
	if tok.registered() != 10 {
		t.Fatalf("registered %d", tok.registered())
	}
	tok.Cancel(ReasonManual, "")
	if fmt.Sprint(order) != "[0 1 2 3 4 5 6 7 8 9]" {
		t.Fatalf("callbacks ran in order %v", order)
	}
	if tok.registered() != 0 {
		t.Fatalf("after Cancel %d callbacks still held", tok.registered())
	}
	tok.Cancel(ReasonManual, "again")
	if len(order) != 10 {
		t.Fatalf("callbacks ran again: %v", order)
	}
}

// Callbacks run on the cancelling goroutine, before Cancel returns, and see
// the token cancelled.
func TestTokenOnCancelRunsSynchronously(t *testing.T) {
	tok := NewToken()
	var sawErr error
	var sawDone bool
	tok.OnCancel(func() {
		sawErr = tok.Err()
		select {
		case <-tok.Done():
			sawDone = true
		default:
		}
	})
	tok.Cancel(ReasonCondition, "met")
	// No synchronisation needed: the callback ran before Cancel returned
	// (the race detector would complain otherwise).
	if ReasonOf(sawErr) != ReasonCondition || !sawDone {
		t.Fatalf("callback saw err %v done %v", sawErr, sawDone)
	}
}

func TestTokenOnCancelAfterCancelRunsAtOnce(t *testing.T) {
	tok := NewToken()
	tok.Cancel(ReasonTimeout, "late")
	ran := false
	stop := tok.OnCancel(func() { ran = true })
	if !ran {
		t.Fatal("callback registered after Cancel did not run at once")
	}
	if stop() || stop() {
		t.Fatal("stop of a callback that already ran returned true")
	}
	if tok.registered() != 0 {
		t.Fatal("a callback that already ran is held")
	}
}

func TestTokenUnregister(t *testing.T) {
	tok := NewToken()
	var ran []string
	stopA := tok.OnCancel(func() { ran = append(ran, "a") })
	stopB := tok.OnCancel(func() { ran = append(ran, "b") })
	stopC := tok.OnCancel(func() { ran = append(ran, "c") })
	if !stopB() {
		t.Fatal("first stop returned false")
	}
	if stopB() || stopB() {
		t.Fatal("stop is not idempotent: returned true again")
	}
	if tok.registered() != 2 {
		t.Fatalf("registered %d after one stop", tok.registered())
	}
	// Removing the first and last and adding again keeps the ring sound.
	if !stopA() {
		t.Fatal("stopA false")
	}
	stopD := tok.OnCancel(func() { ran = append(ran, "d") })
	tok.Cancel(ReasonManual, "")
	if strings.Join(ran, "") != "cd" {
		t.Fatalf("ran %v, want c then d", ran)
	}
	// After the callbacks ran, stop says it stopped nothing.
	if stopC() || stopD() || stopA() {
		t.Fatal("stop after Cancel returned true")
	}
}

// Unregistering everything leaves the token as good as new.
func TestTokenUnregisterAll(t *testing.T) {
	tok := NewToken()
	for range 3 {
		stops := make([]func() bool, 5)
		for i := range stops {
			stops[i] = tok.OnCancel(func() { t.Error("unregistered callback ran") })
		}
		for _, i := range []int{2, 0, 4, 1, 3} {
			if !stops[i]() {
				t.Fatalf("stop %d false", i)
			}
		}
		if tok.registered() != 0 {
			t.Fatalf("registered %d", tok.registered())
		}
	}
	ran := false
	tok.OnCancel(func() { ran = true })
	tok.Cancel(ReasonManual, "")
	if !ran {
		t.Fatal("callback registered after an emptied list did not run")
	}
}

// Callbacks may use the token: register more, unregister themselves, read
// it. None of that deadlocks.
func TestTokenCallbackReentrant(t *testing.T) {
	tok := NewToken()
	var order []string
	var stopSelf func() bool
	stopSelf = tok.OnCancel(func() {
		order = append(order, "self")
		if stopSelf() {
			t.Error("stopping a running callback returned true")
		}
		tok.OnCancel(func() { order = append(order, "nested") })
		if tok.Cancel(ReasonManual, "inside") {
			t.Error("Cancel inside a callback won")
		}
	})
	tok.OnCancel(func() { order = append(order, "second") })
	done := make(chan struct{})
	go func() {
		defer close(done)
		tok.Cancel(ReasonShutdown, "")
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Cancel deadlocked in a re-entrant callback")
	}
	if strings.Join(order, ",") != "self,nested,second" {
		t.Fatalf("order %v", order)
	}
	if ReasonOf(tok.Err()) != ReasonShutdown {
		t.Fatalf("reason %v", ReasonOf(tok.Err()))
	}
}

func TestTokenCallbackPanicContained(t *testing.T) {
	logs := obsCaptureSlog(t)
	tok := NewToken()
	var ran []int
	tok.OnCancel(func() { ran = append(ran, 1) })
	tok.OnCancel(func() { panic("callback exploded") })
	tok.OnCancel(func() { ran = append(ran, 3) })
	if !tok.Cancel(ReasonManual, "") {
		t.Fatal("Cancel returned false")
	}
	if fmt.Sprint(ran) != "[1 3]" {
		t.Fatalf("callbacks after the panicking one did not run: %v", ran)
	}
	if out := logs.String(); !strings.Contains(out, "callback panicked") || !strings.Contains(out, "callback exploded") {
		t.Fatalf("panic not logged: %q", out)
	}
	// Also when the token is already cancelled.
	tok.OnCancel(func() { panic("late callback exploded") })
	if !strings.Contains(logs.String(), "late callback exploded") {
		t.Fatalf("late panic not logged: %q", logs.String())
	}
}

// A Token is a Source: the operation gets the token's reason and message.
func TestTokenAsSource(t *testing.T) {
	tok := NewToken()
	ctx1, op1 := Start(context.Background(), "a", WithToken(tok))
	ctx2, op2 := Start(context.Background(), "b", WithSource(tok))
	if tok.registered() != 2 {
		t.Fatalf("registered %d, want one per operation", tok.registered())
	}
	tok.Cancel(ReasonDisconnect, "client gone")
	for _, c := range []struct {
		ctx context.Context
		op  *Operation
	}{{ctx1, op1}, {ctx2, op2}} {
		select {
		case <-c.ctx.Done():
		default:
			t.Fatalf("%s: not cancelled when Cancel returned", c.op.Name())
		}
		e, _ := context.Cause(c.ctx).(*Error)
		if e == nil || e.Reason != ReasonDisconnect || e.Message != "client gone" || e.Op != c.op.Name() {
			t.Fatalf("%s: cause %v", c.op.Name(), context.Cause(c.ctx))
		}
		c.op.End(c.ctx.Err())
	}

	// A token cancelled before Start cancels the operation at Start.
	ctx, op := Start(context.Background(), "late", WithToken(tok))
	defer op.End(nil)
	if ReasonOf(op.Err()) != ReasonDisconnect || ctx.Err() == nil {
		t.Fatalf("operation on a cancelled token: err %v", op.Err())
	}
}

func TestTokenNilIsAnOptionError(t *testing.T) {
	err := Run(context.Background(), "job", func(context.Context) error {
		t.Error("fn ran with a nil token")
		return nil
	}, WithToken(nil))
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Option != "WithToken" {
		t.Fatalf("Run with nil token = %v", err)
	}
	var nilTok *Token
	err = Run(context.Background(), "job", func(context.Context) error { return nil }, WithSource(nilTok))
	if !errors.As(err, &oe) || oe.Option != "WithSource" || !strings.Contains(oe.Problem, "nil") {
		t.Fatalf("Run with nil token as source = %v", err)
	}
}

// A token shared by 100,000 operations in sequence holds nothing for the
// finished ones: no callbacks, no heap growth.
func TestTokenSharedByManyOperationsStaysFlat(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	tok := NewToken()
	bg := context.Background()
	churn := func(k int) {
		for range k {
			_, op := Start(bg, "x", WithToken(tok))
			op.End(nil)
		}
	}
	churn(1000) // warm up: pools, timers, the ID counter's cache lines
	before := regHeapAlloc()
	churn(n)
	after := regHeapAlloc()
	if got := tok.registered(); got != 0 {
		t.Fatalf("token holds %d callbacks after %d operations ended", got, n)
	}
	if growth := after - before; growth > 1<<20 {
		t.Fatalf("heap grew by %d bytes over %d operations (%.1f B each)", growth, n, float64(growth)/float64(n))
	}
	runtime.KeepAlive(tok)

	// And the token still works for the operations that are live.
	ctx, op := Start(bg, "live", WithToken(tok))
	tok.Cancel(ReasonManual, "at last")
	if context.Cause(ctx) != op.Err() || ReasonOf(op.Err()) != ReasonManual {
		t.Fatalf("live operation not cancelled: %v", context.Cause(ctx))
	}
	op.End(nil)
}

// Concurrent OnCancel, stop and Cancel: every callback either runs exactly
// once or was stopped, never both, never neither.
func TestTokenConcurrentRegisterStopCancel(t *testing.T) {
	for range 20 {
		tok := NewToken()
		const n = 64
		var wg sync.WaitGroup
		ran := make([]int32, n)
		stopped := make([]bool, n)
		var mu sync.Mutex
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				stop := tok.OnCancel(func() { mu.Lock(); ran[i]++; mu.Unlock() })
				if i%2 == 0 {
					s := stop()
					mu.Lock()
					stopped[i] = s
					mu.Unlock()
				}
			}()
		}
		close(start)
		tok.Cancel(ReasonManual, "")
		wg.Wait()
		for i := range n {
			if stopped[i] && ran[i] != 0 || !stopped[i] && ran[i] != 1 {
				t.Fatalf("callback %d: stopped %v, ran %d times", i, stopped[i], ran[i])
			}
		}
		if tok.registered() != 0 {
			t.Fatalf("registered %d", tok.registered())
		}
	}
}
