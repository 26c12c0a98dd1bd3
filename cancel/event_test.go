package cancel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// eventLog is an EventObserver that records what it hears.
type eventLog struct {
	Hooks
	mu     sync.Mutex
	events []Event
	counts map[string]int64
}

func newEventLog() *eventLog {
	l := &eventLog{counts: map[string]int64{}}
	l.OnEvent = func(_ *Operation, e Event) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.events = append(l.events, e)
	}
	l.OnCount = func(_ *Operation, name string, n int64) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.counts[name] += n
	}
	return l
}

func TestEventReachesEventObservers(t *testing.T) {
	l := newEventLog()
	var plain []string // an Observer that is not an EventObserver hears nothing of events
	plainObs := plainObserver{onAny: func(m string) { plain = append(plain, m) }}
	_, op := Start(context.Background(), "conn", WithObserver(l), WithObserver(plainObs))
	attrs := []slog.Attr{slog.Int("ws.close.code", 1001)}
	op.Event("ws.close", attrs...)
	attrs[0] = slog.Int("ws.close.code", 9) // the caller reuses its slice
	op.Count("ws.messages.in", 2)
	op.Count("ws.messages.in", 3)
	op.End(nil)
	op.Event("late")
	op.Count("ws.messages.in", 100)

	if len(l.events) != 1 {
		t.Fatalf("events = %v, want one (none after End)", l.events)
	}
	e := l.events[0]
	if e.Name != "ws.close" || e.Time.IsZero() || len(e.Attrs) != 1 || e.Attrs[0].Value.Int64() != 1001 {
		t.Errorf("event = %+v, want ws.close with code 1001 and a time", e)
	}
	if got := l.counts["ws.messages.in"]; got != 5 {
		t.Errorf("count = %d, want 5 (none after End)", got)
	}
	if strings.Join(plain, ",") != "start,end" {
		t.Errorf("plain observer heard %v, want start,end", plain)
	}
}

// plainObserver implements Observer only.
type plainObserver struct{ onAny func(string) }

func (p plainObserver) ObserveStart(ctx context.Context, _ *Operation) context.Context {
	p.onAny("start")
	return ctx
}
func (p plainObserver) ObserveProgress(*Operation, Progress) { p.onAny("progress") }
func (p plainObserver) ObserveCancel(*Operation, *Error)     { p.onAny("cancel") }
func (p plainObserver) ObserveEnd(*Operation)                { p.onAny("end") }

func TestEventThroughMultiAndDefaultObservers(t *testing.T) {
	def, own := newEventLog(), newEventLog()
	obsSetDefault(t, MultiObserver(def, plainObserver{onAny: func(string) {}}))
	_, op := Start(context.Background(), "conn", WithObserver(own))
	op.Event("sse.open")
	op.Count("sse.events", 1)
	op.End(nil)
	for i, l := range []*eventLog{def, own} {
		if len(l.events) != 1 || l.events[0].Name != "sse.open" || l.counts["sse.events"] != 1 {
			t.Errorf("observer %d heard %v %v", i, l.events, l.counts)
		}
	}
}

func TestEventObserverPanicContained(t *testing.T) {
	logs := obsCaptureSlog(t)
	l := newEventLog()
	boom := Hooks{
		OnEvent: func(*Operation, Event) { panic("event boom") },
		OnCount: func(*Operation, string, int64) { panic("count boom") },
	}
	_, op := Start(context.Background(), "conn", WithObserver(boom), WithObserver(l))
	op.Event("ws.open")
	op.Count("ws.messages.out", 1)
	if err := op.End(nil); err != nil {
		t.Fatal(err)
	}
	if len(l.events) != 1 || l.counts["ws.messages.out"] != 1 {
		t.Errorf("the second observer heard %v %v, want both", l.events, l.counts)
	}
	for _, want := range []string{"ObserveEvent", "ObserveCount", "event boom", "count boom"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q: %s", want, logs)
		}
	}
}

func TestEventWithoutObserversAllocatesNothing(t *testing.T) {
	_, op := Start(context.Background(), "conn")
	defer op.End(nil)
	if n := testing.AllocsPerRun(100, func() { op.Count("ws.messages.in", 1) }); n != 0 {
		t.Errorf("Count allocates %v times without observers", n)
	}
}

func TestEndWaitsForEventObservers(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var ended sync.WaitGroup
	var endedFirst bool
	var mu sync.Mutex
	obs := Hooks{
		OnCount: func(*Operation, string, int64) {
			close(entered)
			<-release
			mu.Lock()
			defer mu.Unlock()
			endedFirst = false
		},
		OnEnd: func(*Operation) {
			mu.Lock()
			defer mu.Unlock()
			endedFirst = true
		},
	}
	_, op := Start(context.Background(), "conn", WithObserver(obs))
	go op.Count("x", 1)
	<-entered
	ended.Add(1)
	go func() { defer ended.Done(); op.End(nil) }()
	close(release)
	ended.Wait()
	mu.Lock()
	defer mu.Unlock()
	if !endedFirst {
		t.Error("ObserveEnd came before the ObserveCount under way had returned")
	}
}

func TestRootReason(t *testing.T) {
	root := &Error{Reason: ReasonShutdown, Message: "draining"}
	child := &Error{Reason: ReasonParent, Cause: root}
	grandchild := &Error{Reason: ReasonParent, Cause: fmt.Errorf("wrapped: %w", child)}
	orphan := &Error{Reason: ReasonParent, Cause: errors.New("no reason")}
	for _, tc := range []struct {
		err  error
		want Reason
	}{
		{nil, 0},
		{errors.New("plain"), 0},
		{context.DeadlineExceeded, ReasonTimeout},
		{root, ReasonShutdown},
		{child, ReasonShutdown},
		{fmt.Errorf("handler: %w", grandchild), ReasonShutdown},
		{&Error{Reason: ReasonParent}, ReasonParent},
		{orphan, ReasonParent},
	} {
		if got := RootReason(tc.err); got != tc.want {
			t.Errorf("RootReason(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRootReasonOfRealTree(t *testing.T) {
	pctx, parent := Start(context.Background(), "parent")
	_, child := Start(pctx, "child")
	parent.Cancel(ReasonTimeout, "")
	<-child.Done()
	if got := ReasonOf(child.Err()); got != ReasonParent {
		t.Errorf("ReasonOf = %v, want parent", got)
	}
	if got := RootReason(child.Err()); got != ReasonTimeout {
		t.Errorf("RootReason = %v, want timeout", got)
	}
	child.End(nil)
	parent.End(nil)
}
