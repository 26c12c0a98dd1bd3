// Package wscancel makes every websocket connection a cancel operation
// that tells its peer why it ended.
//
// A connection accepted by Accept, or served by a handler made with
// NewHandler or Handler, runs as its own operation (see package cancel),
// a child of the operation in the request's context (the request operation
// of httpcancel's middleware, if any). Whatever cancels it (a timeout, a
// server draining, an operator, a failure) closes the connection with a
// close frame whose code and text follow the root reason of the
// cancellation (DefaultCloseStatus): a client sees 1001 "shutdown" or 4008
// "timeout", never a bare 1006. A peer that closes, resets the TCP
// connection or stops answering pings cancels the operation with
// cancel.ReasonDisconnect; one that breaks the protocol (reserved opcodes
// or bits, bad control frames, unmasked frames) gets 1002 and cancels it
// with cancel.ReasonError, as a message over the read limit gets 1009. A
// peer's normal close (1000, 1001 going away, or a close frame without a
// code, 1005: what a browser's WebSocket.close() sends) is how a session
// ends: the operation is cancelled, to stop the handler, but ends as
// completed (its reason kept) when the handler returns what told it so
// (see End).
//
// It is built on github.com/coder/websocket, and avoids its traps: the
// operation's context is never handed to the connection's reads and
// writes (coder/websocket drops a connection without a close frame when
// their context ends); the connection is read all along, by Read itself
// or, when no Read is under way, by a goroutine of its own, so that pings,
// pongs and close frames are answered even by a handler that only writes;
// and closing is bounded (WithCloseTimeout). The wrapper adds no
// allocation per message to coder/websocket's.
//
// Observers of the operation that implement cancel.EventObserver hear of
// the connection: the event "ws.open" (attribute "ws.subprotocol") after
// the handshake; the counts "ws.messages.in" and "ws.messages.out", one
// per data message read by Read or written by Write (progress messages
// included, control frames not); and the event "ws.close" once, before the
// operation ends, with "ws.close.code" (the code sent, or tried when the
// peer did not take it; the code received; 1006 for a peer that vanished
// or stopped answering pings), "ws.close.by" ("local" or "peer") and
// "cancel.reason" (the root reason of the cancellation, or "").
package wscancel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/coder/websocket"
)

// A Conn is an accepted websocket connection running as a cancel
// operation. Its owner must call End once done with it. Read is for one
// goroutine at a time; Write, WriteJSON, Operation and End may be called
// from any.
type Conn struct {
	ws    *websocket.Conn
	op    *cancel.Operation
	ctx   context.Context
	cfg   *config
	raw   net.Conn // the hijacked connection: dropped to bound closing
	start time.Time
	track bool // lastIn and lastData are kept

	// Reading: Read reads the connection itself when it can (baton free,
	// a context that only the connection's end stops), else the reader
	// goroutine reads for it. The reader also reads whenever no Read has
	// for a while, so that control frames are always answered.
	baton      sync.Mutex    // held while reading a message, until it is delivered
	in         chan message  // the reader's message, for Read
	wakeReader chan struct{} // a Read asks the reader to read a message for it
	bgWake     chan struct{} // background asks the reader to read: nobody does
	background *time.Timer   // wakes the reader once nobody read for a while
	bgMu       sync.Mutex    // serialises arming and firing background
	bgStopped  bool          // End stopped background for good
	armed      atomic.Bool   // background is set to fire
	lastRead   atomic.Int64  // since start: when the last read returned
	reading    atomic.Int32  // reads under way on the connection
	dead       chan struct{} // closed once a read failed; readErr is set
	deadOnce   sync.Once
	readErr    atomic.Pointer[error] // why reading stopped: set before the operation is cancelled
	readerDone chan struct{}

	stop     chan struct{} // closed by End: the reader stops
	lifetime *time.Timer

	// Closing: the first of the operation's cancellation (unwatch's
	// function) and End closes the connection; both wait for closeDone.
	closeOnce sync.Once
	closeDone chan struct{}
	unwatch   func() bool

	// The idle timeout and the heartbeat are looked after by checks, a
	// timer, and each ping is sent by a goroutine of its own while it
	// waits for its pong: an idle connection keeps no goroutine but its
	// reader (and its handler's).
	checkMu       sync.Mutex
	checks        *time.Timer
	checksStopped bool  // End stopped checks for good
	nextPing      int64 // since start: when the next ping is due
	pinging       atomic.Bool
	pings         sync.WaitGroup

	lastIn   atomic.Int64 // since start: the last thing heard from the peer
	lastData atomic.Int64 // since start: the last data message either way
	open     atomic.Bool  // the handshake is done

	mu      sync.Mutex
	claimed bool // who closes was decided: code and by are final
	code    websocket.StatusCode
	by      string

	endOnce sync.Once
	endErr  error
}

// backgroundAfter is how long the connection may go unread before its
// reader goroutine reads, answering control frames (pings, the peer's
// close) meanwhile.
const backgroundAfter = 20 * time.Millisecond

type message struct {
	typ  websocket.MessageType
	data []byte
}

// Accept upgrades the request to a websocket connection and starts its
// operation, as a child of the operation in r's context. The caller must
// call End when done with the connection, and use Context (or a context
// derived from it) for its work.
//
// On an invalid option Accept answers 500 and returns the error naming
// it; on a failed handshake it returns coder/websocket's error, which
// answered the request already.
func Accept(w http.ResponseWriter, r *http.Request, opts ...Option) (*Conn, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return nil, err
	}
	return cfg.accept(w, r)
}

func (cfg *config) accept(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	name := cfg.name
	if name == "" {
		name = "ws"
		if r.Pattern != "" {
			name = "ws " + r.Pattern
		}
	}
	c := &Conn{cfg: cfg}
	opts := cfg.opOptions
	if cfg.progress {
		opts = append(opts[:len(opts):len(opts)], cancel.WithObserver(cancel.Hooks{OnProgress: c.forwardProgress}))
	}
	ctx, op := cancel.Start(r.Context(), name, opts...)
	if op.Status() == cancel.StatusFailed { // an invalid cancel.Option
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return nil, op.End(nil)
	}
	acceptOpts := cfg.acceptOpts
	c.track = cfg.idle > 0 || cfg.pingEvery > 0
	if cfg.pingEvery > 0 {
		var o websocket.AcceptOptions
		if acceptOpts != nil {
			o = *acceptOpts
		}
		theirs := o.OnPongReceived
		o.OnPongReceived = func(ctx context.Context, payload []byte) {
			c.lastIn.Store(c.now())
			if theirs != nil {
				theirs(ctx, payload)
			}
		}
		acceptOpts = &o
	}
	c.start = time.Now()
	hw := &hijackWriter{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, acceptOpts)
	if err != nil {
		return nil, op.End(err)
	}
	if cfg.hasLimit {
		ws.SetReadLimit(cfg.readLimit)
	}
	c.ws, c.raw, c.op, c.ctx = ws, hw.conn, op, ctx
	c.in = make(chan message)
	c.wakeReader = make(chan struct{}, 1)
	c.bgWake = make(chan struct{}, 1)
	c.bgWake <- struct{}{} // read from the start: the handler may never Read
	c.armed.Store(true)
	c.background = time.AfterFunc(backgroundAfter, c.checkBackground)
	c.dead = make(chan struct{})
	c.readerDone = make(chan struct{})
	c.stop = make(chan struct{})
	c.closeDone = make(chan struct{})

	op.Event("ws.open", slog.String("ws.subprotocol", ws.Subprotocol()))
	c.open.Store(true)
	if cfg.lifetime > 0 {
		c.lifetime = time.AfterFunc(cfg.lifetime, func() {
			op.Cancel(cancel.ReasonTimeout, "connection reached its maximum lifetime of "+cfg.lifetime.String())
		})
	}
	if c.track {
		c.nextPing = int64(cfg.pingEvery)
		c.checkMu.Lock() // check may come before checks is set
		c.checks = time.AfterFunc(time.Duration(c.nextCheck(0)), c.check)
		c.checkMu.Unlock()
	}
	c.unwatch = context.AfterFunc(ctx, func() { c.close(c.closeCancelled) })
	go c.reader()
	return c, nil
}

// hijackWriter keeps the connection coder/websocket hijacks, so that a
// close can be bounded by dropping it.
type hijackWriter struct {
	http.ResponseWriter
	conn net.Conn
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	w.conn = conn
	return conn, brw, err
}

func (w *hijackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Context returns the operation's context: done once the connection's
// operation is cancelled (whatever the reason, the peer leaving included)
// or has ended.
func (c *Conn) Context() context.Context { return c.ctx }

// Operation returns the connection's operation: cancel it to close the
// connection with the code of the reason given.
func (c *Conn) Operation() *cancel.Operation { return c.op }

// Subprotocol returns the negotiated subprotocol, or "".
func (c *Conn) Subprotocol() string { return c.ws.Subprotocol() }

// Read returns the next data message from the peer. It returns an error
// once ctx is done or the connection is closed; when the operation was
// cancelled, the error wraps its *cancel.Error, and a close frame from the
// peer is found by websocket.CloseStatus.
//
// With the connection's context (or one derived from it by values only, or
// one that is never done) Read reads the connection itself, the cheapest
// way; such a Read returns once the connection is closed, at most the
// close timeout after the operation is cancelled. With any other context,
// a message is read for it in the background, and ctx ending leaves the
// connection as it was: a message arriving later waits for the next Read.
//
// Whenever no Read is under way (for more than a few milliseconds), the
// connection goes on reading: control frames are answered, a peer closing
// or leaving is noticed. A message that arrives then waits for Read, and
// nothing more is read until it is taken (back-pressure).
//
// As with coder/websocket, Read is meant to be called from one goroutine
// at a time; Write and the other methods may be called from any.
func (c *Conn) Read(ctx context.Context) (websocket.MessageType, []byte, error) {
	if ctx.Err() != nil {
		return 0, nil, c.readStopped(ctx)
	}
	if d := ctx.Done(); (d == nil || d == c.op.Done()) && c.baton.TryLock() {
		return c.readDirect()
	}
	c.wake()
	select {
	case m := <-c.in:
		c.op.Count("ws.messages.in", 1)
		return m.typ, m.data, nil
	case <-c.dead:
		return 0, nil, c.failed("read", *c.readErr.Load())
	case <-ctx.Done():
		return 0, nil, c.readStopped(ctx)
	}
}

// readDirect reads a message on the caller's goroutine; the caller holds
// the baton.
func (c *Conn) readDirect() (websocket.MessageType, []byte, error) {
	if err := c.readErr.Load(); err != nil {
		c.baton.Unlock()
		return 0, nil, c.failed("read", *err)
	}
	// Never a context that can end: coder/websocket would drop the
	// connection without a close frame. The connection's end stops it.
	typ, data, err := c.read()
	if err != nil {
		c.baton.Unlock()
		return 0, nil, c.failed("read", err)
	}
	c.baton.Unlock()
	c.received()
	c.op.Count("ws.messages.in", 1)
	return typ, data, nil
}

// readStopped is the error of a Read whose ctx is done.
func (c *Conn) readStopped(ctx context.Context) error {
	if err := c.readErr.Load(); err != nil {
		// The connection's end cancelled ctx: say how it ended.
		return c.failed("read", *err)
	}
	return fmt.Errorf("wscancel: read: %w", context.Cause(ctx))
}

// read reads a message from the connection; the caller holds the baton.
// A failure is recorded (readFailed) before the read counts as over: a
// write that failed meanwhile waits for it (writeFailed).
func (c *Conn) read() (websocket.MessageType, []byte, error) {
	c.reading.Add(1)
	typ, data, err := c.ws.Read(context.Background())
	if err != nil {
		c.readFailed(err)
	}
	c.reading.Add(-1)
	c.lastRead.Store(c.now())
	if !c.armed.Load() {
		c.arm()
	}
	return typ, data, err
}

// arm sets background to fire, if it is not.
func (c *Conn) arm() {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if !c.armed.Load() && !c.bgStopped {
		c.armed.Store(true)
		c.background.Reset(backgroundAfter)
	}
}

// checkBackground, when background fires, wakes the reader if nobody read
// the connection for backgroundAfter. It does not re-arm while a read is
// under way: its end does. So a busy connection costs a timer every
// backgroundAfter, not one per message.
func (c *Conn) checkBackground() {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.bgStopped {
		return
	}
	// Disarm, then look: a read ending meanwhile either is seen here or
	// sees armed false and arms again.
	c.armed.Store(false)
	if c.reading.Load() > 0 {
		return
	}
	if idle := time.Duration(c.now() - c.lastRead.Load()); idle < backgroundAfter {
		c.armed.Store(true)
		c.background.Reset(backgroundAfter - idle)
		return
	}
	select {
	case c.bgWake <- struct{}{}: // its read arms again
	default:
	}
}

// wake asks the reader goroutine to read a message.
func (c *Conn) wake() {
	select {
	case c.wakeReader <- struct{}{}:
	default: // asked already
	}
}

func (c *Conn) received() {
	if c.track {
		now := c.now()
		c.lastIn.Store(now)
		c.lastData.Store(now)
	}
}

// Write writes a data message. A message that ctx is done before is not
// sent. A message is written whole or not at all, so ctx ending while it
// is written does not cut it: if ctx is not the connection's own (or
// derived from it only by values), its end then cancels the operation, so
// that the connection closes (within the close timeout) and Write
// returns. Once the operation is cancelled, Write fails with an error
// wrapping its *cancel.Error.
func (c *Conn) Write(ctx context.Context, typ websocket.MessageType, p []byte) error {
	if ctx.Err() != nil {
		return fmt.Errorf("wscancel: write: %w", context.Cause(ctx))
	}
	if ce := c.op.Err(); ce != nil { // whatever ctx: the connection is closing
		return fmt.Errorf("wscancel: write: %w", ce)
	}
	if d := ctx.Done(); d != nil && d != c.op.Done() {
		return c.writeWatching(ctx, typ, p)
	}
	// Never the operation's context: coder/websocket would drop the
	// connection without a close frame when it ends.
	if err := c.ws.Write(context.Background(), typ, p); err != nil {
		return c.writeFailed(err)
	}
	c.sent()
	return nil
}

// writeWatching writes with a context of the caller's own, whose end
// while the message is written cancels the operation.
func (c *Conn) writeWatching(ctx context.Context, typ websocket.MessageType, p []byte) error {
	var mu sync.Mutex
	writing := true
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if writing {
			c.abandon(ctx)
		}
	})
	err := c.ws.Write(context.Background(), typ, p)
	mu.Lock()
	writing = false
	mu.Unlock()
	stop()
	if err != nil {
		return c.writeFailed(err)
	}
	c.sent()
	return nil
}

func (c *Conn) sent() {
	c.op.Count("ws.messages.out", 1)
	if c.track {
		c.lastData.Store(c.now())
	}
}

// abandon cancels the operation when the context of a write under way
// ends: the write cannot stop half way, the connection must close.
func (c *Conn) abandon(ctx context.Context) {
	cause := context.Cause(ctx)
	reason := cancel.ReasonOf(cause)
	if reason == 0 {
		reason = cancel.ReasonManual
	}
	c.op.Cancel(reason, "write abandoned: "+cause.Error())
}

// writeFailed tells why a write failed: the cancellation if there is one,
// else the peer is gone.
func (c *Conn) writeFailed(err error) error {
	if c.op.Err() == nil && errors.Is(err, net.ErrClosed) && c.reading.Load() > 0 {
		// coder/websocket closed the connection under a read under way:
		// the peer's close frame or a protocol error, which that read
		// reports (the connection being closed, it returns at once), or
		// End closing it.
		select {
		case <-c.dead:
		case <-c.closeDone:
		}
	}
	if c.op.Err() == nil && c.claim(websocket.StatusAbnormalClosure, "peer") {
		c.op.Cancel(cancel.ReasonDisconnect, "connection lost: "+err.Error())
	}
	return c.failed("write", err)
}

// failed wraps err with the operation's cancellation, if any.
func (c *Conn) failed(what string, err error) error {
	if ce := c.op.Err(); ce != nil && !errors.Is(err, ce) {
		return fmt.Errorf("wscancel: %s: %w: %w", what, ce, err)
	}
	return fmt.Errorf("wscancel: %s: %w", what, err)
}

// End closes the connection, if it is open, and ends its operation with
// err, returning what cancel.Operation.End returns. The peer gets
// websocket.StatusNormalClosure for a nil err, the code of a
// websocket.CloseError in err's chain, and websocket.StatusInternalError
// (1011) for any other error; if the operation was cancelled, the code of
// the cancellation (see DefaultCloseStatus). If the peer closed normally
// (1000, 1001 going away, or no code: 1005) and err only says so (the
// Read error of its close, or the cancellation it caused), the session
// ends as completed, and End returns nil. End waits for the close (at
// most the close timeout) and for the connection's goroutines, so it must
// not be called from an observer of the connection's operation or from an
// AcceptOptions.OnPongReceived function: it would wait for itself. Calls
// after the first return what the first did.
func (c *Conn) End(err error) error {
	c.endOnce.Do(func() {
		// Before closing: the lifetime, the idle timeout and the heartbeat
		// must not cancel a connection End is closing.
		if c.lifetime != nil {
			c.lifetime.Stop()
		}
		if c.checks != nil {
			c.checkMu.Lock()
			c.checksStopped = true // and no ping starts
			c.checks.Stop()
			c.checkMu.Unlock()
		}
		if c.unwatch() { // not cancelled: End closes
			c.close(func() { c.closeEnded(err) })
		}
		<-c.closeDone
		if err != nil && c.peerSaidGoodbye(err) {
			err = nil // the session is complete, its reason kept
		}
		close(c.stop)
		c.bgMu.Lock()
		c.bgStopped = true
		c.armed.Store(true) // reads do not arm it again
		c.background.Stop()
		c.bgMu.Unlock()
		<-c.readerDone
		c.readFailed(errEnded) // a Read from now on fails at once
		c.pings.Wait()         // the connection is closed: a ping under way has returned or soon will
		c.endErr = c.op.End(err)
	})
	return c.endErr
}

// peerSaidGoodbye tells whether err only says that the peer closed the
// connection normally (1000, 1001 going away, or a close frame without a
// code, 1005, as a browser's WebSocket.close() sends): the Read error of its
// close frame, or the cancellation it caused. That is how a session ends,
// not cancelled work.
func (c *Conn) peerSaidGoodbye(err error) bool {
	c.mu.Lock()
	code, by := c.code, c.by
	c.mu.Unlock()
	if by != "peer" || code != websocket.StatusNormalClosure && code != websocket.StatusGoingAway &&
		code != websocket.StatusNoStatusRcvd {
		return false
	}
	if websocket.CloseStatus(err) == code {
		return true
	}
	ce := c.op.Err()
	return ce != nil && errors.Is(err, ce)
}

func (c *Conn) now() int64 { return int64(time.Since(c.start)) }

// claim decides, once, the close code recorded for the connection and who
// closed it. It reports whether this call decided.
func (c *Conn) claim(code websocket.StatusCode, by string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.claimed {
		return false
	}
	c.claimed, c.code, c.by = true, code, by
	return true
}

// reader reads a message whenever asked to: by a Read that cannot read
// itself, at the start, and when no Read came for a while. It holds the
// baton until the message is delivered, so that messages stay in order.
func (c *Conn) reader() {
	defer close(c.readerDone)
	for {
		select {
		case <-c.wakeReader:
		case <-c.bgWake:
		case <-c.stop:
			return
		}
		c.baton.Lock()
		if c.readErr.Load() != nil {
			c.baton.Unlock()
			return
		}
		typ, data, err := c.read()
		if err != nil {
			c.baton.Unlock()
			return
		}
		c.received()
		delivered := c.deliver(message{typ, data})
		c.baton.Unlock()
		if !delivered {
			return
		}
		// The Read that asked was served: let the next Read read
		// itself. (background asks again if nobody reads for a while.)
		select {
		case <-c.wakeReader:
		default:
		}
	}
}

// deliver hands m to a Read, and reports whether it did before End.
func (c *Conn) deliver(m message) bool {
	select {
	case c.in <- m:
		return true
	case <-c.stop:
		return false
	}
}

var errEnded = errors.New("wscancel: connection ended")

// readFailed records why reading failed and cancels the operation, unless
// the connection was being closed already.
func (c *Conn) readFailed(err error) {
	c.deadOnce.Do(func() {
		c.readErr.Store(&err)
		c.cancelForRead(err)
		close(c.dead)
	})
}

func (c *Conn) cancelForRead(err error) {
	if errors.Is(err, websocket.ErrMessageTooBig) {
		// coder/websocket sent the close frame already.
		if c.claim(websocket.StatusMessageTooBig, "local") {
			limit := int64(32768) // coder/websocket's default
			if c.cfg.hasLimit {
				limit = c.cfg.readLimit
			}
			c.op.Cancel(cancel.ReasonError, fmt.Sprintf("message too big: the limit is %d bytes", limit))
		}
		return
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		if c.claim(ce.Code, "peer") {
			msg := fmt.Sprintf("peer closed the connection: %d", int(ce.Code))
			if ce.Reason != "" {
				msg += " " + ce.Reason
			}
			c.op.Cancel(cancel.ReasonDisconnect, msg)
		}
		return
	}
	if !transportFailure(err) {
		// The peer broke the protocol (a reserved opcode, RSV bits, a
		// fragmented or oversized control frame, an unmasked frame):
		// coder/websocket has sent it 1002 for most of these.
		if c.claim(websocket.StatusProtocolError, "local") {
			c.op.Cancel(cancel.ReasonError, "protocol error: "+err.Error())
		}
		return
	}
	if c.claim(websocket.StatusAbnormalClosure, "peer") {
		c.op.Cancel(cancel.ReasonDisconnect, "connection lost: "+err.Error())
	}
}

// transportFailure tells whether a read failed because the connection
// did (the peer vanished, reset it, or it was closed), rather than
// because of what the peer sent.
func transportFailure(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne)
}

// close closes the connection with f, unless it is closed or being
// closed already, and then marks it closed.
func (c *Conn) close(f func()) {
	c.closeOnce.Do(func() {
		f()
		close(c.closeDone)
	})
}

// check, when checks fires, cancels a connection idle too long or whose
// peer stopped answering pings, starts the pings that are due, and sets
// checks to fire at the next time one of these may be due.
func (c *Conn) check() {
	c.checkMu.Lock()
	defer c.checkMu.Unlock()
	if c.checksStopped || c.op.Err() != nil {
		return // closing: nothing more to watch
	}
	cfg := c.cfg
	now := c.now()
	if cfg.idle > 0 && now-c.lastData.Load() >= int64(cfg.idle) {
		c.op.Cancel(cancel.ReasonTimeout, "idle for "+cfg.idle.String()+": no message either way")
		return
	}
	if cfg.pingEvery > 0 {
		if c.reading.Load() == 0 {
			// Nobody listens (the handler holds a message, or is
			// between two Reads): the peer cannot be heard.
			c.lastIn.Store(now)
		}
		if now-c.lastIn.Load() >= int64(cfg.pingLimit) {
			c.op.Cancel(cancel.ReasonDisconnect, "peer silent for "+cfg.pingLimit.String()+": pings unanswered")
			return
		}
		if now >= c.nextPing {
			// The last ping still waiting for its pong is enough.
			if c.pinging.CompareAndSwap(false, true) {
				c.pings.Add(1)
				go c.sendPing()
			}
			c.nextPing = now + int64(cfg.pingEvery)
		}
	}
	c.checks.Reset(time.Duration(c.nextCheck(now) - now))
}

// nextCheck returns when check must look again.
func (c *Conn) nextCheck(now int64) int64 {
	next := int64(-1)
	earliest := func(t int64) {
		if next < 0 || t < next {
			next = t
		}
	}
	if c.cfg.idle > 0 {
		earliest(c.lastData.Load() + int64(c.cfg.idle))
	}
	if c.cfg.pingEvery > 0 {
		earliest(c.lastIn.Load() + int64(c.cfg.pingLimit))
		earliest(c.nextPing)
	}
	return max(next, now+1)
}

// sendPing sends a ping and waits for its pong (seen by OnPongReceived,
// whenever it is read), or for the heartbeat's limit to pass. A ping is not
// a close: if its write is stuck past the limit, coder/websocket drops the
// connection, and the peer was not reading anyway. Not the interval:
// coder/websocket also drops the connection when the context has ended
// before the frame is written, so a ping a busy machine held up for one
// interval would cut a healthy peer.
func (c *Conn) sendPing() {
	defer c.pings.Done()
	ctx, cancelPing := context.WithTimeout(context.Background(), c.cfg.pingLimit)
	c.ws.Ping(ctx)
	cancelPing()
	c.pinging.Store(false)
}

// closeCancelled closes the connection of a cancelled operation, with the
// code of its root reason.
func (c *Conn) closeCancelled() {
	reason := cancel.RootReason(c.op.Err())
	if reason == cancel.ReasonDisconnect {
		// The peer is gone: nobody would read a close frame.
		c.claim(websocket.StatusAbnormalClosure, "peer")
		c.ws.CloseNow()
	} else {
		code, text := closeFrame(c.closeStatus(reason))
		if !c.claim(code, "local") {
			// A protocol error claimed 1002 first: say that (coder/websocket
			// has, for most; not for an unmasked frame).
			c.mu.Lock()
			if c.by == "local" && c.code == websocket.StatusProtocolError {
				code, text = c.code, "protocol error"
			}
			c.mu.Unlock()
		}
		c.closeBounded(code, text)
	}
	c.closed()
}

// closeStatus is the close code and text for reason, from WithCloseStatus's
// function; DefaultCloseStatus's if it returns code 0, or if it panics (it
// runs on the cancellation's goroutine, where nothing would recover).
func (c *Conn) closeStatus(reason cancel.Reason) (code websocket.StatusCode, text string) {
	defer func() {
		if p := recover(); p != nil {
			slog.Error("wscancel: WithCloseStatus function panicked", slog.Any("panic", p))
			code, text = DefaultCloseStatus(reason)
		}
	}()
	if code, text = c.cfg.status(reason); code == 0 {
		return DefaultCloseStatus(reason)
	}
	return code, text
}

// closeEnded closes the connection when End is called.
func (c *Conn) closeEnded(err error) {
	if c.op.Err() != nil {
		c.closeCancelled()
		return
	}
	code, text := websocket.StatusNormalClosure, ""
	if err != nil {
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			code, text = closeFrame(ce.Code, ce.Reason)
		} else {
			code, text = websocket.StatusInternalError, textInternalError
		}
	}
	c.claim(code, "local")
	c.closeBounded(code, text)
	c.closed()
}

// closeBounded performs the close handshake, dropping the connection after
// the close timeout: a peer that does not read, or never answers the
// close, cannot hold it longer.
func (c *Conn) closeBounded(code websocket.StatusCode, text string) {
	t := time.AfterFunc(c.cfg.closeTimeout, func() { c.raw.Close() })
	c.ws.Close(code, text)
	t.Stop()
}

// closed records the ws.close event.
func (c *Conn) closed() {
	c.mu.Lock()
	code, by := c.code, c.by
	c.mu.Unlock()
	reason := ""
	if err := c.op.Err(); err != nil {
		reason = cancel.RootReason(err).String()
	}
	c.op.Event("ws.close",
		slog.Int("ws.close.code", int(code)),
		slog.String("ws.close.by", by),
		slog.String("cancel.reason", reason))
}

// NewHandler returns an http.Handler that accepts websocket connections
// and serves each with fn, or an error naming an invalid option.
//
// fn gets the connection's context (see Conn.Context) and the connection;
// what it returns is given to Conn.End, which closes the connection: nil
// closes it normally, an error with 1011 (or the code of a
// websocket.CloseError in its chain). A cancellation closes with its own
// code whatever fn returns, but return the error of the Read or Write that
// failed: as for any operation, nil after a cancellation records the
// connection as completed (with the cancellation kept). A panic in fn
// closes with 1011, ends the operation as failed and goes on up, as
// net/http expects.
func NewHandler(fn func(ctx context.Context, c *Conn) error, opts ...Option) (http.Handler, error) {
	if fn == nil {
		return nil, errors.New("wscancel: NewHandler: nil function")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &handler{fn: fn, cfg: cfg}, nil
}

// Handler is NewHandler for options known when the program is written: it
// panics on an invalid one, like regexp.MustCompile.
func Handler(fn func(ctx context.Context, c *Conn) error, opts ...Option) http.Handler {
	h, err := NewHandler(fn, opts...)
	if err != nil {
		panic(err)
	}
	return h
}

type handler struct {
	fn  func(ctx context.Context, c *Conn) error
	cfg *config
}

var errGoexit = errors.New("wscancel: handler called runtime.Goexit")

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := h.cfg.accept(w, r)
	if err != nil {
		return // answered
	}
	returned := false
	defer func() {
		if returned {
			return
		}
		p := recover()
		if p == nil {
			c.End(errGoexit)
			return
		}
		c.End(panicError(p))
		panic(p)
	}()
	err = h.fn(c.ctx, c)
	returned = true
	c.End(err)
}

// panicError stands for a panic in End: never a websocket.CloseError, so
// that the peer gets 1011 whatever the panic value.
func panicError(p any) error { return fmt.Errorf("wscancel: handler panicked: %v", p) }
