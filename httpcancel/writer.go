package httpcancel

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// writer is the ResponseWriter a handler gets. It passes everything through
// (no buffering; Flush, Hijack and ResponseController keep working) and
// lets the middleware take the response over when the operation is
// cancelled while the handler runs: from then on the handler's calls fail
// with http.ErrHandlerTimeout and never reach the client.
type writer struct {
	w     http.ResponseWriter
	op    *cancel.Operation
	route *routeTimeout // the route Timeout the middleware applied, if any
	next  http.Handler  // what serves the request: the middleware's next, or its route
	// outer is the header map as the middleware got it (nil if empty),
	// taken when the handler first asks for the header map (asking marks
	// net/http's response, which then copies its header map): the answer
	// to a cancellation has these headers and not the handler's.
	outer      http.Header
	outerTaken bool
	served     servedContext // the request's context, marked as served by ww
	// req is the request as the handler sees it, with the operation's
	// context: a field, so that it costs no allocation of its own.
	req http.Request
	// header is the handler's own header map when the handler runs on a
	// goroutine of its own: the middleware may answer on the real map
	// while the handler still holds this one. Nil when inline.
	header http.Header

	mu          sync.Mutex
	wroteHeader bool
	early       bool         // the header was written before any cancellation
	declared    int64        // the Content-Length the handler set, or -1
	head        bool         // the request is a HEAD: no response to it has a body
	bodyless    bool         // the response has no body: whole with its header
	written     atomic.Int64 // body bytes the handler wrote
	status      int
	hijacked    bool
	closed      error          // set when the middleware took over
	inflight    sync.WaitGroup // calls on w under way

	// The handler's goroutine and the request's agree under mu on who
	// ends op.
	returned       bool // the handler returned (or panicked)
	cancelledFirst bool // op was cancelled before it did
	handedOver     bool // the request returned first: the handler's goroutine ends op
}

// enter admits a call on the real writer, writing the header first when
// the call sends body bytes. The caller must call w.inflight.Done after.
func (w *writer) enter(sendsBody bool) (http.ResponseWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed != nil {
		return nil, w.closed
	}
	if w.hijacked {
		return nil, http.ErrHijacked
	}
	if sendsBody && !w.wroteHeader {
		w.writeHeaderLocked(http.StatusOK)
	}
	w.inflight.Add(1)
	return w.w, nil
}

func (w *writer) writeHeaderLocked(code int) {
	w.syncHeaderLocked()
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.wroteHeader, w.status = true, code
		w.early = w.op.Err() == nil
		w.declared = -1
		// Only a handler that asked for the header map can have set a
		// Content-Length; asking net/http's for nothing would cost it a
		// copy of the map.
		if hdr := w.header; hdr != nil || w.outerTaken {
			if hdr == nil {
				hdr = w.w.Header()
			}
			if n, err := strconv.ParseInt(hdr.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
				w.declared = n
			}
		}
		w.bodyless = w.head || code == http.StatusNoContent || code == http.StatusNotModified
	}
	w.w.WriteHeader(code)
}

// syncHeaderLocked makes the real header map what the handler made of its
// own, deletions included, when the handler has one.
func (w *writer) syncHeaderLocked() {
	if w.header == nil {
		return
	}
	dst := w.w.Header()
	for k := range dst {
		if _, ok := w.header[k]; !ok {
			delete(dst, k)
		}
	}
	for k, v := range w.header {
		dst[k] = v
	}
}

func (w *writer) Header() http.Header {
	if w.header != nil {
		return w.header
	}
	if !w.outerTaken {
		w.takeOuter()
	}
	return w.w.Header()
}

// takeOuter keeps the headers set around the middleware, before the
// handler changes them. Called on the handler's goroutine before it
// touches the map, or before it starts.
func (w *writer) takeOuter() {
	if hdr := w.w.Header(); len(hdr) > 0 {
		w.outer = hdr.Clone()
	}
	w.outerTaken = true
}

func (w *writer) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed != nil || w.hijacked || w.wroteHeader {
		return
	}
	w.writeHeaderLocked(code)
}

func (w *writer) Write(p []byte) (int, error) {
	u, err := w.enter(true)
	if err != nil {
		return 0, err
	}
	n, err := u.Write(p)
	w.written.Add(int64(n))
	w.inflight.Done()
	if err != nil {
		w.writeFailed(err)
	}
	return n, err
}

// whole tells whether the handler wrote all the body its Content-Length
// announced, or wrote the header of a response without a body: a response
// that cannot look whole when it is not.
func (w *writer) whole() bool {
	w.mu.Lock()
	declared, bodyless := w.declared, w.bodyless
	w.mu.Unlock()
	return bodyless || declared >= 0 && w.written.Load() == declared
}

// writeFailed tells a peer that went away from a handler's own mistake:
// only the first is a disconnect.
func (w *writer) writeFailed(err error) {
	if errors.Is(err, http.ErrBodyNotAllowed) || errors.Is(err, http.ErrContentLength) ||
		errors.Is(err, http.ErrHijacked) || errors.Is(err, http.ErrHandlerTimeout) {
		return
	}
	w.op.Cancel(cancel.ReasonDisconnect, "write failed: "+err.Error())
	// Another cancellation may be under way (net/http cancels the request's
	// context itself on a failed write), and Cancel does not wait for it:
	// the handler must see its context done when the write returns.
	<-w.op.Done()
}

// Flush implements http.Flusher.
func (w *writer) Flush() { w.FlushError() }

// FlushError is what http.ResponseController.Flush calls.
func (w *writer) FlushError() error {
	u, err := w.enter(true)
	if err != nil {
		return err
	}
	err = http.NewResponseController(u).Flush()
	w.inflight.Done()
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		w.writeFailed(err)
	}
	return err
}

// Hijack implements http.Hijacker; the connection is the handler's from then on.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	u, err := w.enter(false)
	if err != nil {
		return nil, nil, err
	}
	defer w.inflight.Done()
	c, rw, err := http.NewResponseController(u).Hijack()
	if err == nil {
		w.mu.Lock()
		w.hijacked = true
		w.mu.Unlock()
	}
	return c, rw, err
}

// SetReadDeadline is what http.ResponseController.SetReadDeadline calls.
func (w *writer) SetReadDeadline(t time.Time) error {
	return w.control(func(rc *http.ResponseController) error { return rc.SetReadDeadline(t) })
}

// SetWriteDeadline is what http.ResponseController.SetWriteDeadline calls.
func (w *writer) SetWriteDeadline(t time.Time) error {
	return w.control(func(rc *http.ResponseController) error { return rc.SetWriteDeadline(t) })
}

// EnableFullDuplex is what http.ResponseController.EnableFullDuplex calls.
func (w *writer) EnableFullDuplex() error {
	return w.control((*http.ResponseController).EnableFullDuplex)
}

func (w *writer) control(f func(*http.ResponseController) error) error {
	u, err := w.enter(false)
	if err != nil {
		return err
	}
	defer w.inflight.Done()
	return f(http.NewResponseController(u))
}

// takeOver closes the writer to the handler and waits until no call of the
// handler is on the real writer any more. It reports what the handler had
// done: written the header, hijacked the connection.
func (w *writer) takeOver() (wrote, hijacked bool) {
	w.mu.Lock()
	w.closed = http.ErrHandlerTimeout
	wrote, hijacked = w.wroteHeader, w.hijacked
	returned := w.returned
	w.mu.Unlock()
	if wrote && !hijacked && !returned && !w.whole() { // a whole response goes out
		// A write blocked on a client that stopped reading would hold us
		// here: make it fail now.
		http.NewResponseController(w.w).SetWriteDeadline(time.Now())
	}
	w.inflight.Wait()
	w.mu.Lock()
	hijacked = w.hijacked // a Hijack under way has finished
	w.mu.Unlock()
	return wrote, hijacked
}

// switchTimedOut cancels op with ReasonTimeout, d after the start of a
// request asking to switch protocols, unless the handler has switched:
// hijacked the connection, answered 101, or (HTTP/2 CONNECT, tunnel)
// answered 2xx.
func (w *writer) switchTimedOut(d time.Duration, tunnel bool) {
	w.mu.Lock()
	switched := w.hijacked || w.status == http.StatusSwitchingProtocols ||
		tunnel && w.wroteHeader && w.status < 300
	if !switched && !w.wroteHeader {
		// Too late to switch: a 101 written from now on, before the
		// middleware takes the response over, would reach the client on a
		// connection then closed instead of the 504.
		w.closed = http.ErrHandlerTimeout
	}
	w.mu.Unlock()
	if !switched {
		w.op.Cancel(cancel.ReasonTimeout, "did not switch protocols within "+d.String())
	}
}

// streaming tells whether the handler has started a response it can still
// write to.
func (w *writer) streaming() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wroteHeader && !w.hijacked
}

// state returns what the handler did, once it returned.
func (w *writer) state() (wrote, early bool, status int, hijacked bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wroteHeader, w.early, w.status, w.hijacked
}
