package httpcancel

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// A Drain cancels the requests in flight with ReasonShutdown some time
// after a server starts shutting down. http.Server.Shutdown waits for
// handlers but never cancels their contexts; a Drain gives them a grace
// period, then cancels them: the middleware answers those that wrote
// nothing with 503 and Retry-After at once, cuts the responses under way,
// and, on HTTP/1, still waits for each handler it cancels to return, so
// that Shutdown waits for them. Shutdown does not wait for a handler whose
// request was answered before the shutdown (a timeout) and that still
// ignores its context, nor for one that hijacked its connection, nor, on
// HTTP/2 (where a response ends only when its request returns, and the
// client would otherwise wait that long for the end of its 503), for one
// it cancelled that ignores its context: call Wait after Shutdown for
// those. Requests arriving after that are answered 503 at
// once, without running their handler.
type Drain struct {
	grace time.Duration
	tok   *cancel.Token
	once  sync.Once
	timer *time.Timer

	mu      sync.Mutex
	running int           // handlers under way
	idle    chan struct{} // closed when running drops to zero, if someone waits
}

// OnShutdown returns a Drain for srv: when srv.Shutdown is called, requests
// still running grace later are cancelled. Give it to the middleware with
// WithDrain.
func OnShutdown(srv *http.Server, grace time.Duration) *Drain {
	d := &Drain{grace: max(grace, 0), tok: cancel.NewToken()}
	srv.RegisterOnShutdown(d.Start)
	return d
}

// Start starts the grace period, once; OnShutdown calls it when the
// server's shutdown begins.
func (d *Drain) Start() {
	d.once.Do(func() {
		d.timer = time.AfterFunc(d.grace, func() { d.tok.Cancel(cancel.ReasonShutdown, "server shutting down") })
	})
}

// Wait waits until every handler that a middleware with this Drain
// started has returned, or until ctx is done (returning its cause).
// http.Server.Shutdown does not wait for handlers that hijacked their
// connection (websockets): call Wait after it, so that they finish closing
// (their close frames sent) before the program exits.
func (d *Drain) Wait(ctx context.Context) error {
	d.mu.Lock()
	if d.running == 0 {
		d.mu.Unlock()
		return nil
	}
	if d.idle == nil {
		d.idle = make(chan struct{})
	}
	idle := d.idle
	d.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (d *Drain) enter() {
	d.mu.Lock()
	d.running++
	d.mu.Unlock()
}

func (d *Drain) leave() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running--; d.running == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

// Done is closed once the requests in flight were cancelled.
func (d *Drain) Done() <-chan struct{} { return d.tok.Done() }
