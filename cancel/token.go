package cancel

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// A Token is a cancellation signal that any goroutine can raise and many
// operations can share. The first Cancel wins and its reason and message are
// kept; later calls do nothing.
//
// The zero Token is ready to use. A Token must not be copied after first use.
type Token struct {
	mu   sync.Mutex
	done atomic.Value // chan struct{}, created lazily
	err  atomic.Pointer[Error]
	// callbacks is a doubly linked ring with a sentinel: unregistering is
	// O(1) and frees the node, so a token shared by many short operations
	// holds nothing for the finished ones.
	callbacks tokenCallback
	n         int
}

type tokenCallback struct {
	f          func()
	prev, next *tokenCallback
}

// NewToken returns a new Token. It is the same as new(Token).
func NewToken() *Token { return new(Token) }

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Cancel cancels the token with a reason and a message. It returns true for
// the call that cancelled the token and false for every later call. A Reason
// outside the closed set is recorded as ReasonManual.
//
// Callbacks registered with OnCancel run on the calling goroutine before
// Cancel returns, in the order they were registered.
func (t *Token) Cancel(reason Reason, message string) bool {
	if !reason.valid() {
		reason = ReasonManual
	}
	t.mu.Lock()
	if t.err.Load() != nil {
		t.mu.Unlock()
		return false
	}
	t.err.Store(&Error{Reason: reason, Message: message, Time: time.Now()})
	if d, _ := t.done.Load().(chan struct{}); d != nil {
		close(d)
	} else {
		t.done.Store(closedChan)
	}
	var fs []func()
	for c := t.callbacks.next; c != nil && c != &t.callbacks; {
		next := c.next
		fs = append(fs, c.f)
		c.prev, c.next = nil, nil // tells its stop function it already ran
		c = next
	}
	t.callbacks = tokenCallback{}
	t.n = 0
	t.mu.Unlock()
	for _, f := range fs {
		runCallback(f)
	}
	return true
}

// Done returns a channel that is closed when the token is cancelled.
func (t *Token) Done() <-chan struct{} {
	if d, _ := t.done.Load().(chan struct{}); d != nil {
		return d
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	d, _ := t.done.Load().(chan struct{})
	if d == nil {
		d = make(chan struct{})
		t.done.Store(d)
	}
	return d
}

// Err returns nil until the token is cancelled, then an *Error with the
// winning reason, message and time.
func (t *Token) Err() error {
	if e := t.err.Load(); e != nil {
		return e
	}
	return nil
}

// OnCancel arranges for f to run once when the token is cancelled, on the
// cancelling goroutine; if the token is already cancelled, f runs at once on
// the calling goroutine. f must not block.
//
// Calling the returned stop function unregisters f. It reports whether it
// stopped f from running; it is safe to call more than once.
func (t *Token) OnCancel(f func()) (stop func() bool) {
	t.mu.Lock()
	if t.err.Load() != nil {
		t.mu.Unlock()
		runCallback(f)
		return func() bool { return false }
	}
	if t.callbacks.next == nil {
		t.callbacks.next, t.callbacks.prev = &t.callbacks, &t.callbacks
	}
	c := &tokenCallback{f: f, prev: t.callbacks.prev, next: &t.callbacks}
	c.prev.next = c
	t.callbacks.prev = c
	t.n++
	t.mu.Unlock()
	return func() bool {
		t.mu.Lock()
		defer t.mu.Unlock()
		if c.next == nil { // already run or removed
			return false
		}
		c.prev.next, c.next.prev = c.next, c.prev
		c.prev, c.next = nil, nil
		t.n--
		return true
	}
}

// registered returns how many callbacks wait for the token; tests use it to
// prove that finished operations leave nothing behind.
func (t *Token) registered() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// Watch makes a Token a Source: the operation is cancelled with the token's
// reason and message.
func (t *Token) Watch(_ context.Context, fire func(Reason, string)) (stop func()) {
	unregister := t.OnCancel(func() {
		e := t.err.Load()
		fire(e.Reason, e.Message)
	})
	return func() { unregister() }
}

func (t *Token) validate(option string) error {
	if t == nil {
		return &OptionError{Option: option, Problem: "nil *Token"}
	}
	return nil
}
