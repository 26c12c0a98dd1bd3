package cancel

import (
	"log/slog"
	"slices"
	"time"
)

// An Event is something that happened inside an operation and is worth a
// line in its trace: a websocket opened or closed, a stream resumed.
// Wrappers record events with Operation.Event; name them after their
// package ("ws.close", "sse.open") so that observers can tell them apart.
type Event struct {
	Time  time.Time
	Name  string
	Attrs []slog.Attr
}

// An EventObserver is an Observer that also hears of the events and counts
// recorded inside operations (Operation.Event, Operation.Count). Observers
// that are not EventObservers do not hear of them.
//
// The same rules as for Observer apply: calls are synchronous, on the
// goroutine recording, possibly from several at once; none comes after
// ObserveEnd; panics are contained.
type EventObserver interface {
	Observer
	ObserveEvent(op *Operation, e Event)
	// ObserveCount is told that n more of what name counts happened in op
	// (messages received, events sent). It is on the hot path of the
	// connections wrappers: keep it cheap.
	ObserveCount(op *Operation, name string, n int64)
}

// Event records an event of the operation, passed on to its
// EventObservers. Events after End are dropped.
func (op *Operation) Event(name string, attrs ...slog.Attr) {
	if !op.hearsEvents() {
		return
	}
	if len(attrs) > 0 {
		attrs = slices.Clone(attrs) // observers may keep it; the caller may reuse its slice
	}
	e := Event{Time: now(), Name: name, Attrs: attrs}
	if !op.enterNotifying() {
		return
	}
	defer op.notifying.Done()
	for _, o := range op.observers {
		if eo, ok := o.(EventObserver); ok {
			observeEvent(eo, op, e)
		}
	}
}

// Count tells the operation's EventObservers that n more of what name
// counts happened (a message received, an event sent). Counts after End
// are dropped.
func (op *Operation) Count(name string, n int64) {
	if !op.hearsEvents() || !op.enterNotifying() {
		return
	}
	defer op.notifying.Done()
	for _, o := range op.observers {
		if eo, ok := o.(EventObserver); ok {
			observeCount(eo, op, name, n)
		}
	}
}

// hearsEvents tells whether one of the operation's observers is an
// EventObserver.
func (op *Operation) hearsEvents() bool {
	for _, o := range op.observers {
		if _, ok := o.(EventObserver); ok {
			return true
		}
	}
	return false
}

// enterNotifying admits an observer call unless op has ended; the caller
// must call op.notifying.Done after.
func (op *Operation) enterNotifying() bool {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.status.Ended() {
		return false
	}
	op.notifying.Add(1)
	return true
}

func observeEvent(o EventObserver, op *Operation, e Event) {
	defer recoverObserver(op, "ObserveEvent")
	o.ObserveEvent(op, e)
}

func observeCount(o EventObserver, op *Operation, name string, n int64) {
	defer recoverObserver(op, "ObserveCount")
	o.ObserveCount(op, name, n)
}

// ObserveEvent calls h.OnEvent.
func (h Hooks) ObserveEvent(op *Operation, e Event) {
	if h.OnEvent != nil {
		h.OnEvent(op, e)
	}
}

// ObserveCount calls h.OnCount.
func (h Hooks) ObserveCount(op *Operation, name string, n int64) {
	if h.OnCount != nil {
		h.OnCount(op, name, n)
	}
}

func (l observerList) ObserveEvent(op *Operation, e Event) {
	for _, o := range l {
		if eo, ok := o.(EventObserver); ok {
			observeEvent(eo, op, e)
		}
	}
}

func (l observerList) ObserveCount(op *Operation, name string, n int64) {
	for _, o := range l {
		if eo, ok := o.(EventObserver); ok {
			observeCount(eo, op, name, n)
		}
	}
}
