package sse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/internal/attrjson"
)

// A Stream is one server-sent events response: the writer of its events,
// and the cancel operation it runs as. New starts it; the handler must end
// it with End before it returns.
//
// All methods are safe for concurrent use: writes are serialized, and each
// event, comment or heartbeat reaches the client whole.
type Stream struct {
	w           http.ResponseWriter
	rc          *http.ResponseController
	ctx         context.Context
	op          *cancel.Operation
	lastEventID string
	heartbeat   time.Duration
	timeout     time.Duration // per write; 0 for none
	serverWT    time.Duration // http.Server.WriteTimeout
	clearAfter  bool          // clear the write deadline after each write (HTTP/2: the deadline is a timer)

	mu      sync.Mutex
	buf     []byte
	err     error        // why the stream can no longer write; nil while it can
	failed  bool         // a write failed: the connection is unusable
	events  atomic.Int64 // written under mu
	last    time.Time    // last write, when there are heartbeats
	stopped bool         // End has begun: nothing more is written

	stopWatch func() bool   // stops the cancellation watcher
	watchDone chan struct{} // closed when the watcher has run

	// Heartbeats are written by beats, a timer: a silent stream keeps no
	// goroutine of its own.
	beatMu       sync.Mutex // held while a heartbeat is written
	beats        *time.Timer
	beatsStopped bool // End stopped beats for good

	endOnce sync.Once
	endErr  error
}

// ErrEnded is returned by the writing methods of a Stream that has ended.
var ErrEnded = errors.New("sse: stream ended")

// finalTimeout bounds the write of the final "cancelled" event when the
// stream has no write timeout of its own.
const finalTimeout = time.Second

// endSlack is how long after End, beyond the write timeout, the handler
// has to return before net/http's end of the response is cut off.
const endSlack = 5 * time.Second

// New starts a server-sent events stream answering r on w, and returns it
// once the response headers have been sent to the client.
//
// The stream is a cancel operation: a child of the operation in r's context
// (an httpcancel request operation, say), named "sse " + r.Pattern ("sse"
// without a pattern) unless WithName says otherwise, with the
// options given by WithOperationOptions. It is cancelled when its parent
// is, with reason cancel.ReasonDisconnect when the client goes away (the
// request's context ends without a cause, or a write fails), when one of
// its sources fires, or when someone cancels it (Operation().Cancel, a
// Registry). At the cancellation, the stream writes a last event of type
// "cancelled" whose data is {"reason":"...","message":"..."}: the reason
// the cancellation started from (cancel.RootReason: "timeout",
// "shutdown", ...) and a fixed message for people, never the internal
// error; then every write fails with the cancellation's *cancel.Error. It
// does so at once, even while the handler waits for its next event. (An
// EventSource reconnects when a stream ends; a client that should not, on
// some reasons, closes itself when it gets the event.)
//
// New sets the headers Content-Type: text/event-stream, Cache-Control:
// no-cache and X-Accel-Buffering: no (nginx does not buffer), removes any
// Content-Length, writes the status 200 and flushes. Other headers set on
// w before New are kept. It clears the write deadline that
// http.Server.WriteTimeout set, so that the stream may outlive it (see
// WithWriteTimeout for a deadline that suits streams).
//
// New fails, having written nothing, on an invalid option (the error names
// it), an invalid cancel.Option, or a ResponseWriter that cannot flush (such
// as http.TimeoutHandler's, which buffers the whole response). w may be
// wrapped (otelhttp, httpcancel) if the wrappers implement
// Unwrap() http.ResponseWriter, as http.ResponseController expects.
func New(w http.ResponseWriter, r *http.Request, opts ...Option) (*Stream, error) {
	if w == nil || r == nil {
		return nil, errors.New("sse: New: nil ResponseWriter or Request")
	}
	var c config
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("sse: New: option %d is nil", i)
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if !canFlush(w) {
		return nil, fmt.Errorf("sse: New: the ResponseWriter (%T) cannot flush: a stream needs one that sends what it is given at once (http.TimeoutHandler's buffers the whole response; use httpcancel instead)", w)
	}
	s := &Stream{
		w:          w,
		rc:         http.NewResponseController(w),
		heartbeat:  c.heartbeat,
		timeout:    c.writeTimeout,
		clearAfter: r.ProtoMajor >= 2,
		watchDone:  make(chan struct{}),
	}
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
		s.serverWT = srv.WriteTimeout
	}
	s.lastEventID = r.Header.Get("Last-Event-ID")
	if s.lastEventID == "" && c.query != "" {
		s.lastEventID = r.URL.Query().Get(c.query)
	}
	if strings.ContainsAny(s.lastEventID, "\n\r\x00") {
		s.lastEventID = "" // no conforming client sends it
	}

	name := c.name
	if !c.nameSet {
		name = "sse"
		if r.Pattern != "" {
			name = "sse " + r.Pattern
		}
	}
	copts := make([]cancel.Option, 0, 2+len(c.opOptions))
	copts = append(copts, parentReason)
	if c.progress {
		copts = append(copts, cancel.WithObserver(cancel.Hooks{OnProgress: s.forwardProgress}))
	}
	copts = append(copts, c.opOptions...)
	ctx, op := cancel.Start(r.Context(), name, copts...)
	if op.Status() == cancel.StatusFailed { // an invalid cancel.Option
		return nil, op.Cause()
	}
	s.ctx, s.op = ctx, op

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	var deadline time.Time
	if s.timeout > 0 {
		deadline = time.Now().Add(s.timeout)
	}
	if err := s.rc.SetWriteDeadline(deadline); err != nil && s.timeout > 0 && errors.Is(err, http.ErrNotSupported) {
		err = fmt.Errorf("sse: WithWriteTimeout: the ResponseWriter (%T) does not support write deadlines: %w", w, err)
		op.End(err)
		return nil, err
	}
	w.WriteHeader(http.StatusOK)

	s.mu.Lock()
	var err error
	if c.retry > 0 {
		s.buf = append(appendRetry(s.buf, c.retry), '\n')
		err = s.writeLocked(s.buf)
	} else {
		// flushLocked clears, on HTTP/2, the deadline set above: left
		// there, it would reset a stream silent for its write timeout.
		err = s.flushLocked(time.Now())
	}
	s.last = time.Now()
	s.mu.Unlock()
	if err != nil {
		s.fail(err)
	} else {
		op.Event("sse.open", slog.Bool("sse.resumed", s.lastEventID != ""))
	}

	s.stopWatch = context.AfterFunc(ctx, func() {
		defer close(s.watchDone)
		s.finish()
	})
	if s.heartbeat > 0 {
		s.beatMu.Lock() // beat may come before beats is set
		s.beats = time.AfterFunc(s.heartbeat, s.beat)
		s.beatMu.Unlock()
	}
	return s, nil
}

// parentReason makes a stream whose client went away cancelled with
// ReasonDisconnect, however that was noticed: by net/http ending the
// request's context (without a cause), or by a request operation that saw
// it first. Other cancellations of the parent are ReasonParent.
var parentReason = cancel.WithParentReason(func(cause error) (cancel.Reason, string) {
	switch {
	case cause == context.Canceled:
		return cancel.ReasonDisconnect, "client went away"
	case cancel.ReasonOf(cause) == 0 && errors.Is(cause, context.DeadlineExceeded):
		return cancel.ReasonTimeout, "request context deadline passed"
	case cancel.RootReason(cause) == cancel.ReasonDisconnect:
		return cancel.ReasonDisconnect, "client went away"
	}
	return cancel.ReasonParent, ""
})

func canFlush(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case interface{ FlushError() error }, http.Flusher:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// Context returns the stream's context: the context of its operation, done
// once the stream is cancelled or has ended. Producers of events should
// watch it.
func (s *Stream) Context() context.Context { return s.ctx }

// Operation returns the stream's operation, to cancel the stream, report
// its progress or read its state.
func (s *Stream) Operation() *cancel.Operation { return s.op }

// LastEventID returns the ID of the last event the client received, as
// its EventSource sent it when reconnecting (the Last-Event-ID header, or
// the query parameter of WithLastEventIDQuery), or "" for a new client. It
// is whatever the client sent (any string, not only a number): parse it
// with care. One with a newline, carriage return or NUL, which no
// conforming client sends, is dropped: LastEventID returns "".
func (s *Stream) LastEventID() string { return s.lastEventID }

// Events returns how many events the stream has written (comments and
// heartbeats not included).
func (s *Stream) Events() int64 { return s.events.Load() }

// Send writes e and flushes it to the client. It returns an error matching
// ErrInvalidField, having written nothing, for an invalid e (see
// Event.Validate); the cancellation's *cancel.Error once the stream was
// cancelled (for a failed write: reason cancel.ReasonDisconnect); ErrEnded
// after End.
func (s *Stream) Send(e Event) error {
	if err := e.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	err := s.writableLocked()
	if err == nil {
		s.buf = appendEvent(s.buf[:0], &e)
		err = s.writeEventLocked(s.buf)
	}
	s.mu.Unlock()
	s.counted(err)
	return s.fail(err)
}

// Comment writes text as comment lines (": text"), which EventSource
// ignores: for debugging with curl, or a keep-alive of your own. A text
// with line endings makes several comment lines. Errors are those of Send.
func (s *Stream) Comment(text string) error {
	s.mu.Lock()
	err := s.writableLocked()
	if err == nil {
		s.buf = appendComment(s.buf[:0], text)
		err = s.writeLocked(s.buf)
	}
	s.mu.Unlock()
	return s.fail(err)
}

// SendSeq sends the events of seq until it ends, and returns nil; or until
// the stream is cancelled, and returns the cancellation's *cancel.Error
// (errors.Is(err, context.Canceled) holds; cancel.ReasonOf says why); or
// until Send fails, and returns its error. A seq that blocks while waiting
// for its next event should watch Context. The events are counted as items
// delivered by the operation (Operation().Delivered), and opts ask for
// progress reports (cancel.ReportEvery, cancel.ReportInterval), which
// WithProgress sends to the client.
func (s *Stream) SendSeq(seq iter.Seq[Event], opts ...cancel.StreamOption) error {
	for e := range cancel.Seq(s.ctx, seq, opts...) {
		if err := s.Send(e); err != nil {
			return err
		}
	}
	return s.stoppedErr()
}

// SendChan sends the events received from ch until ch is closed, and
// returns nil; or until the stream is cancelled (a receive waiting for an
// event is interrupted at once), or a Send fails, and returns why, as
// SendSeq does.
func (s *Stream) SendChan(ch <-chan Event, opts ...cancel.StreamOption) error {
	for e := range cancel.Chan(s.ctx, ch, opts...) {
		if err := s.Send(e); err != nil {
			return err
		}
	}
	return s.stoppedErr()
}

// stoppedErr tells why an iteration stopped early, or nil if it did not.
func (s *Stream) stoppedErr() error {
	if err := s.op.Err(); err != nil {
		return err
	}
	if s.ctx.Err() != nil { // ended meanwhile
		return ErrEnded
	}
	return nil
}

// End ends the stream and its operation with the handler's error, and
// returns what cancel.Operation.End returns: nil if err is nil and the
// stream was not cancelled; otherwise an error saying why the stream
// stopped. A stream that was cancelled ends as cancelled even if err is nil:
// its client was told it was. Nothing is written after End. A write under
// way when End is called (a heartbeat, a Send on another goroutine) has
// the write timeout, or a second without one, to finish.
//
// End must be called before the handler returns, panics included (the
// stream's goroutines write to the ResponseWriter until then): defer
// s.End(nil) right after New, and call s.End(err) where the handler knows
// its error; calls after the first return what the first did.
func (s *Stream) End(err error) error {
	s.endOnce.Do(func() { s.endErr = s.end(err) })
	return s.endErr
}

func (s *Stream) end(err error) error {
	// A write under way (a heartbeat, a Send on another goroutine) to a
	// client that stopped reading would hold End until the client closes
	// the connection, without a write timeout: it gets finalTimeout.
	bounded := false
	bound := func() {
		if !bounded && s.timeout == 0 {
			bounded = true
			s.rc.SetWriteDeadline(time.Now().Add(finalTimeout))
		}
	}
	if s.beats != nil {
		if !s.beatMu.TryLock() {
			bound()
			s.beatMu.Lock() // the heartbeat under way ends first
		}
		s.beatsStopped = true
		s.beats.Stop()
		s.beatMu.Unlock()
	}
	if !sendFree(s) {
		bound()
	}
	if s.stopWatch() {
		s.finish() // a cancellation that came just now is written here
	} else {
		<-s.watchDone
	}
	s.mu.Lock()
	// So is one that came since (while End waited here for a write under
	// way, say): the watcher is stopped, and the client must be told.
	var final error = ErrEnded
	if e, ok := s.op.Err().(*cancel.Error); ok {
		final = s.finishLocked(e)
	}
	s.stopped = true
	if s.err == nil {
		s.err = ErrEnded
	}
	n, failed := s.events.Load(), s.failed
	s.mu.Unlock()
	s.counted(final)
	if !failed {
		// Bound what net/http writes once the handler returns (the end of
		// a chunked body) on a client that stopped reading; net/http clears
		// the deadline when the response is done. The handler may take a
		// while to return (a busy machine, its own clean-up): endSlack
		// keeps a client that reads from losing the end of its stream.
		if d := positiveOr(s.timeout, s.serverWT); d > 0 {
			s.rc.SetWriteDeadline(time.Now().Add(d + endSlack))
		} else {
			// As it was: no deadline. A final event or a bounded write
			// may have left one, which would cut net/http's end of the
			// response if the handler returns after it.
			s.rc.SetWriteDeadline(time.Time{})
		}
	}
	cerr := s.op.Err()
	if err == nil && cerr != nil {
		err = cerr
	}
	var reason string
	if cerr != nil {
		reason = cancel.RootReason(cerr).String() // what the client was told, as wscancel does
	}
	s.op.Event("sse.close", slog.String("cancel.reason", reason), slog.Int64("sse.events", n))
	return s.op.End(err)
}

// sendFree tells whether no write holds the stream.
func sendFree(s *Stream) bool {
	if s.mu.TryLock() {
		s.mu.Unlock()
		return true
	}
	return false
}

// positiveOr returns a if it is positive, else b.
func positiveOr(a, b time.Duration) time.Duration {
	if a > 0 {
		return a
	}
	return b
}

// writableLocked returns why nothing can be written, or nil.
func (s *Stream) writableLocked() error {
	if s.err != nil {
		return s.err
	}
	if err := s.op.Err(); err != nil {
		return err // the final event is on its way
	}
	return nil
}

// writeEventLocked writes an event and counts it in Events. The caller
// tells the observers with counted once it released the lock: they may use
// the stream.
func (s *Stream) writeEventLocked(b []byte) error {
	if err := s.writeLocked(b); err != nil {
		return err
	}
	s.events.Add(1)
	return nil
}

// counted tells the observers that an event was written, if err is nil.
func (s *Stream) counted(err error) {
	if err == nil {
		s.op.Count("sse.events", 1)
	}
}

// writeLocked writes b and flushes, within the write timeout.
func (s *Stream) writeLocked(b []byte) error {
	var now time.Time
	if s.timeout > 0 || s.heartbeat > 0 {
		now = time.Now()
		s.last = now
	}
	if s.timeout > 0 {
		s.rc.SetWriteDeadline(now.Add(s.timeout))
	}
	if _, err := s.w.Write(b); err != nil {
		return s.failLocked(err)
	}
	return s.flushLocked(now)
}

func (s *Stream) flushLocked(now time.Time) error {
	if err := s.rc.Flush(); err != nil {
		return s.failLocked(err)
	}
	if s.clearAfter && !now.IsZero() && s.timeout > 0 {
		// An HTTP/2 write deadline resets the stream when it passes, even
		// with nothing to write.
		s.rc.SetWriteDeadline(time.Time{})
	}
	return nil
}

// writeFailed is a failed write, until fail has told the operation.
type writeFailed struct{ err error }

func (e *writeFailed) Error() string { return "sse: write failed: " + e.err.Error() }
func (e *writeFailed) Unwrap() error { return e.err }

// failLocked records a failed write: nothing more is written.
func (s *Stream) failLocked(err error) error {
	s.failed = true
	if s.err == nil {
		s.err = &writeFailed{err}
	}
	return s.err
}

// fail passes err on, unless it is a failed write: then it cancels the
// operation (the client is gone, or stopped reading) and returns the
// cancellation. A write refused because the response was taken from the
// handler (httpcancel answering a cancelled request) waits for the
// cancellation on its way instead. fail is called without the lock, so
// that observers of the cancellation may use the stream.
func (s *Stream) fail(err error) error {
	wf, ok := err.(*writeFailed)
	if !ok {
		return err
	}
	if errors.Is(wf.err, http.ErrHandlerTimeout) {
		t := time.NewTimer(finalTimeout)
		select {
		case <-s.op.Done():
		case <-t.C:
		}
		t.Stop()
	}
	s.op.Cancel(cancel.ReasonDisconnect, wf.Error())
	<-s.op.Done() // a concurrent cancellation may have won: wait for it
	cerr := s.op.Err()
	if cerr == nil { // the operation had ended: not cancelled
		return wf
	}
	s.mu.Lock()
	if s.err == wf {
		s.err = cerr
	}
	s.mu.Unlock()
	return cerr
}

// finish writes the final "cancelled" event once the operation is
// cancelled, and closes the stream to further writes.
func (s *Stream) finish() {
	e, ok := s.op.Err().(*cancel.Error)
	if !ok {
		return // ended, not cancelled
	}
	reason := cancel.RootReason(e)
	if reason != cancel.ReasonDisconnect {
		// A write blocked on a client that stopped reading holds the lock:
		// make it give up in time for the final event.
		s.rc.SetWriteDeadline(time.Now().Add(positiveOr(s.timeout, finalTimeout)))
	}
	s.mu.Lock()
	err := s.finishLocked(e)
	s.mu.Unlock()
	s.counted(err)
}

// finishLocked writes the final event for the cancellation e, unless the
// stream can no longer write, and closes the stream to further writes. It
// returns nil if it wrote the event.
func (s *Stream) finishLocked(e *cancel.Error) error {
	if s.err != nil || s.stopped {
		return ErrEnded
	}
	s.err = e
	reason := cancel.RootReason(e)
	if reason == cancel.ReasonDisconnect {
		return e // the client is gone: nothing to tell it
	}
	if s.timeout == 0 {
		s.rc.SetWriteDeadline(time.Now().Add(finalTimeout))
	}
	s.buf = appendCancelled(s.buf[:0], reason)
	err := s.writeEventLocked(s.buf)
	if err == nil && s.clearAfter {
		s.rc.SetWriteDeadline(time.Time{}) // see flushLocked
	}
	// A failed write here needs no fail: the operation is cancelled.
	return err
}

// messages are what the client is told for each reason: fixed texts, never
// the canceller's message, which may be internal.
var messages = map[cancel.Reason]string{
	cancel.ReasonTimeout:    "the stream timed out",
	cancel.ReasonManual:     "the stream was cancelled",
	cancel.ReasonSignal:     "the server is stopping",
	cancel.ReasonCondition:  "the stream was stopped by a condition",
	cancel.ReasonParent:     "the request was cancelled",
	cancel.ReasonDisconnect: "the client went away",
	cancel.ReasonShutdown:   "the server is shutting down",
	cancel.ReasonError:      "the stream was stopped by an error",
}

// CancelledData is the data of the final "cancelled" event, in JSON:
// {"reason":"timeout","message":"the stream timed out"}. Reason is where
// the cancellation started (cancel.RootReason); Message is a fixed text for
// the reason, safe to show.
type CancelledData struct {
	Reason  cancel.Reason `json:"reason"`
	Message string        `json:"message"`
}

func appendCancelled(b []byte, r cancel.Reason) []byte {
	data, _ := json.Marshal(CancelledData{Reason: r, Message: messages[r]})
	return appendEvent(b, &Event{Type: "cancelled", Data: string(data)})
}

// beat, when beats fires, writes a heartbeat if the stream has been
// silent for the heartbeat interval, and sets beats to fire when it next
// may be.
func (s *Stream) beat() {
	s.beatMu.Lock()
	defer s.beatMu.Unlock()
	if s.beatsStopped {
		return
	}
	next := s.heartbeat
	s.mu.Lock()
	if s.writableLocked() != nil {
		s.mu.Unlock()
		return // cancelled or failed: no more heartbeats
	}
	var err error
	if idle := time.Since(s.last); idle < s.heartbeat {
		next = s.heartbeat - idle
	} else {
		err = s.writeLocked(heartbeat)
	}
	s.mu.Unlock()
	if err != nil {
		s.fail(err)
		return
	}
	s.beats.Reset(next)
}

var heartbeat = []byte(": heartbeat\n")

// forwardProgress sends a progress report of the operation to the client.
func (s *Stream) forwardProgress(_ *cancel.Operation, pr cancel.Progress) {
	data, err := json.Marshal(ProgressData{Message: pr.Message, Attrs: attrjson.Map(pr.Attrs)})
	if err != nil {
		data, _ = json.Marshal(ProgressData{Message: pr.Message})
	}
	s.mu.Lock()
	err = s.writableLocked()
	if err == nil {
		s.buf = appendEvent(s.buf[:0], &Event{Type: "progress", Data: string(data)})
		err = s.writeEventLocked(s.buf)
	}
	s.mu.Unlock()
	s.counted(err)
	s.fail(err)
}

// ProgressData is the data of a "progress" event (see WithProgress): the
// report's message and attributes (groups as objects, durations as
// strings such as "1.5s", errors as their text).
type ProgressData struct {
	Message string         `json:"message"`
	Attrs   map[string]any `json:"attrs,omitempty"`
}
