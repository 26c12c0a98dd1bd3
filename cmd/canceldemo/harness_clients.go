package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// The scenarios of the mixed traffic. Each client does one thing, sees
// what it sees, and from that alone tells the operations the service must
// have recorded (truth.op). A request that got no answer at all is
// allowed only once the shutdown has begun (the listener is closed, idle
// connections are dropped), and then made no operation.

// harnessScenario is one kind of client.
type harnessScenario struct {
	name   string
	weight int
	what   string
	run    func(h *harness, ctx context.Context, rng *rand.Rand)
}

var harnessScenarios = []harnessScenario{
	// Completing.
	{"ok", 12, "GET /h/ok: completed", (*harness).scOK},
	{"work", 10, "GET /work?ms=2-20: completed, 4 progress reports", (*harness).scWork},
	// Timing out.
	{"route-timeout", 6, "GET /h/timeout (route timeout 30ms): timeout, 504", (*harness).scRouteTimeout},
	{"stubborn", 3, "GET /h/stubborn (route timeout 20ms; works 50ms past it, ignoring its context): timeout, 504, a stop latency", (*harness).scStubborn},
	{"budget", 6, "GET /h/budget with Request-Timeout 10-50ms: timeout, 504", (*harness).scBudget},
	// Hanging up.
	{"client-timeout", 5, "POST /h/hangup, the client gives up 1-30ms after 100 Continue: disconnect", (*harness).scClientTimeout},
	{"hangup-before-headers", 5, "POST /h/hangup over TCP, closed (FIN or RST) before any response header: disconnect", (*harness).scHangupBeforeHeaders},
	{"hangup-mid-body", 5, "GET /h/drip over TCP, closed after some of the body: disconnect", (*harness).scHangupMidBody},
	// Streams.
	{"sse-complete", 4, "GET /events?n=2-6: the whole stream, completed", (*harness).scSSEComplete},
	{"sse-hangup", 4, "GET /events, closed after 1-5 events: disconnect", (*harness).scSSEHangup},
	{"sse-stalled", 1, "GET /events over TCP with a 4 KiB receive buffer, not read: the write timeout cuts it, disconnect", (*harness).scSSEStalled},
	{"ws-echo", 4, "GET /ws: echoes, then the client closes with 1000: the session completed (its close recorded with reason disconnect)", (*harness).scWSEcho},
	{"ws-vanish", 3, "GET /ws: echoes, then the TCP connection closes without a close frame: disconnect, 1006", (*harness).scWSVanish},
	{"ws-flood", 2, "GET /ws: messages over the 4 KiB read limit: error, 1009", (*harness).scWSFlood},
	// Operators.
	{"job-cancel", 3, "POST /jobs, then POST /admin/operations/{id}/cancel: manual", (*harness).scJobCancel},
	{"op-cancel", 3, "GET /h/opcancel, then an operator cancels one such request through the admin API: manual, 503", (*harness).scOpCancel},
	// Bad input.
	{"bad-budget", 3, "GET /h/ok with a malformed or absurd Request-Timeout: ignored, a progress report, completed", (*harness).scBadBudget},
	{"bad-header-bytes", 1, "control bytes in a header value (raw TCP): 400 from net/http, no operation", (*harness).scBadHeaderBytes},
	{"huge-header", 1, "a 1.1 MB header: 431 from net/http, no operation", (*harness).scHugeHeader},
	{"huge-body", 2, "POST /h/upload, 10 MiB announced or 100 KiB chunked (limit 64 KiB): 413, completed", (*harness).scHugeBody},
	{"admin-huge-body", 1, "a 100 KiB cancel request (limit 64 KiB): 400", (*harness).scAdminHugeBody},
	{"sse-bad-id", 2, "GET /events with a garbage Last-Event-ID (long, binary, newline, negative, huge): ignored, completed", (*harness).scSSEBadID},
	{"admin-no-such-id", 2, "GET and POST cancel of operations that do not exist, or IDs that are no numbers: 404, 400", (*harness).scAdminNoSuchID},
	{"admin-bad-cancel", 2, "cancel with GET, PUT, DELETE (405), an unknown reason (400), from another site (403)", (*harness).scAdminBadCancel},
	{"ws-garbage", 2, "GET /ws, then malformed frames over the raw connection: a close frame (1002) or a dropped connection", (*harness).scWSGarbage},
	{"bad-query", 2, "query parameters out of range on /work, /events, /ws, /jobs: 400", (*harness).scBadQuery},
	{"odd-method", 1, "a method nobody knows (BREW): 405, named _OTHER", (*harness).scOddMethod},
	{"not-found", 1, "a GET no route matches: 404, named GET", (*harness).scNotFound},
}

// answer is an HTTP response, read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// problemReason returns the reason of an RFC 9457 body from httpcancel.
func (a *answer) problemReason() string {
	var p struct{ Reason string }
	json.Unmarshal(a.body, &p)
	return p.Reason
}

// do sends a request and reads the answer whole.
func (h *harness) do(ctx context.Context, method, path string, hdr http.Header, body io.Reader) (*answer, error) {
	req, err := h.newRequest(ctx, method, path, hdr, body)
	if err != nil {
		return nil, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &answer{resp.StatusCode, resp.Header, b}, nil
}

// newRequest makes a request that is sent once, whatever happens. Go's
// transport resends a GET by itself when a reused connection closes before
// any byte of the answer, which is how a response cut by the middleware
// looks (or a keep-alive race): the service would then see two requests
// for one client. A body the transport cannot rewind makes the request not
// replayable; an empty one goes out as no body at all. The request also
// counts its attempts, in case.
func (h *harness) newRequest(ctx context.Context, method, path string, hdr http.Header, body io.Reader) (*http.Request, error) {
	var attempts atomic.Int32
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() {
			if attempts.Add(1) == 2 {
				h.truth.wrong("transport", "%s %s was sent twice", method, path)
			}
		},
	})
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, body)
	if err != nil {
		return nil, err
	}
	if body == nil {
		req.Body = emptyBody{}
	} else {
		req.GetBody = nil
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	h.truth.sent(1)
	return req, nil
}

// emptyBody is an empty body the transport does not know: the request is
// not replayable.
type emptyBody struct{}

func (emptyBody) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyBody) Close() error             { return nil }

// lost accounts for a request that got no answer: no operation, allowed
// only once the shutdown has begun.
func (h *harness) lost(scenario string, err error) {
	if h.shutdown.Load() {
		h.truth.lostRequest()
		h.truth.see(scenario, "refused (shutting down)")
		return
	}
	h.truth.wrong(scenario, "no answer: %v", err)
}

// expectAnswer checks a request's answer: status want means an operation
// name/outcome/reason; a 503 for the shutdown is allowed once it has
// begun. For cancelled operations, the problem document must name the
// reason.
func (h *harness) expectAnswer(scenario, name string, a *answer, err error, want int, outcome, reason string) bool {
	switch {
	case err != nil:
		h.lost(scenario, err)
		return false
	case a.status == want && (outcome != cancelled || reason == "disconnect" || a.problemReason() == reason):
		h.truth.req(name, outcome, reason, a.status)
		h.truth.see(scenario, strconv.Itoa(a.status))
		return true
	case a.status == http.StatusServiceUnavailable && a.problemReason() == "shutdown" && h.shutdown.Load():
		if a.header.Get("Retry-After") == "" {
			h.truth.wrong(scenario, "503 for the shutdown without Retry-After")
		}
		h.truth.req(name, cancelled, "shutdown", a.status)
		h.truth.see(scenario, "503 shutdown")
		return false
	default:
		h.truth.wrong(scenario, "%s: status %d (%q), want %d", name, a.status, trim(a.body), want)
		return false
	}
}

func trim(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "..."
	}
	return string(b)
}

func (h *harness) scOK(ctx context.Context, _ *rand.Rand) {
	a, err := h.do(ctx, "GET", "/h/ok", nil, nil)
	h.expectAnswer("ok", hOK, a, err, 200, completed, "")
}

func (h *harness) scWork(ctx context.Context, rng *rand.Rand) {
	a, err := h.do(ctx, "GET", fmt.Sprintf("/work?ms=%d", 2+rng.IntN(19)), nil, nil)
	if h.expectAnswer("work", hWork, a, err, 200, completed, "") {
		h.truth.addProgress(hWork, workSteps)
	}
}

func (h *harness) scRouteTimeout(ctx context.Context, _ *rand.Rand) {
	a, err := h.do(ctx, "GET", "/h/timeout", nil, nil)
	h.expectAnswer("route-timeout", hTimeout, a, err, 504, cancelled, "timeout")
}

func (h *harness) scStubborn(ctx context.Context, _ *rand.Rand) {
	a, err := h.do(ctx, "GET", "/h/stubborn", nil, nil)
	h.expectAnswer("stubborn", hStubborn, a, err, 504, cancelled, "timeout")
}

func (h *harness) scBudget(ctx context.Context, rng *rand.Rand) {
	ms := 10 + rng.IntN(41)
	budget := strconv.Itoa(ms) + "ms"
	if rng.IntN(2) == 0 {
		budget = fmt.Sprintf("0.%03d", ms) // seconds
	}
	a, err := h.do(ctx, "GET", "/h/budget", http.Header{"Request-Timeout": {budget}}, nil)
	h.expectAnswer("budget", hBudget, a, err, 504, cancelled, "timeout")
}

// scClientTimeout: the client's own deadline, counted from the moment the
// server asked for the body (100 Continue: the request is being served),
// ends the request.
func (h *harness) scClientTimeout(ctx context.Context, rng *rand.Rand) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var served atomic.Bool
	after := time.Duration(1+rng.IntN(30)) * time.Millisecond
	trace := &httptrace.ClientTrace{Got100Continue: func() {
		served.Store(true)
		time.AfterFunc(after, stop)
	}}
	a, err := h.do(httptrace.WithClientTrace(ctx, trace), "POST", "/h/hangup", http.Header{"Expect": {"100-continue"}}, strings.NewReader("x"))
	switch {
	case err != nil && served.Load() && errors.Is(err, context.Canceled):
		h.truth.req(hHangup, cancelled, "disconnect", 499)
		h.truth.see("client-timeout", "gave up")
	case err != nil:
		h.lost("client-timeout", err)
	default:
		h.expectAnswer("client-timeout", hHangup, a, nil, -1, "", "")
	}
}

// dialRaw opens a TCP connection to the service with d, for one request,
// which must be over within 20s.
func (h *harness) dialRaw(ctx context.Context, d net.Dialer) (net.Conn, error) {
	h.truth.sent(1)
	c, err := d.DialContext(ctx, "tcp", h.addr)
	if err == nil {
		c.SetDeadline(time.Now().Add(20 * time.Second))
	}
	return c, err
}

// readHead reads a response's status line and headers.
func readHead(br *bufio.Reader) (status int, head string, err error) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return 0, b.String(), err
		}
		if line == "\r\n" {
			break
		}
	}
	head = b.String()
	f := strings.Fields(head)
	if len(f) < 2 {
		return 0, head, fmt.Errorf("no status line: %q", head)
	}
	status, err = strconv.Atoi(f[1])
	return status, head, err
}

// hangUp closes a raw connection: gracefully (FIN), or at random by a
// reset (RST), as a crashed client would.
func hangUp(c net.Conn, rng *rand.Rand) {
	if tc, ok := c.(*net.TCPConn); ok && rng.IntN(2) == 0 {
		tc.SetLinger(0)
	}
	c.Close()
}

// scHangupBeforeHeaders: once the server asked for the body (100
// Continue), the client sends it and goes away before any response.
func (h *harness) scHangupBeforeHeaders(ctx context.Context, rng *rand.Rand) {
	const sc = "hangup-before-headers"
	c, err := h.dialRaw(ctx, net.Dialer{})
	if err != nil {
		h.lost(sc, err)
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /h/hangup HTTP/1.1\r\nHost: %s\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n", h.addr)
	status, head, err := readHead(bufio.NewReader(c))
	switch {
	case err != nil:
		h.lost(sc, err)
		return
	case status != http.StatusContinue:
		h.truth.wrong(sc, "want 100 Continue, got %q", head)
		return
	}
	c.Write([]byte("x"))
	if d := rng.IntN(20); d > 0 {
		time.Sleep(time.Duration(d) * time.Millisecond)
	}
	hangUp(c, rng)
	h.truth.req(hHangup, cancelled, "disconnect", 499)
	h.truth.see(sc, "hung up")
}

// scHangupMidBody: the client reads the headers and some of a streamed
// body, then goes away.
func (h *harness) scHangupMidBody(ctx context.Context, rng *rand.Rand) {
	const sc = "hangup-mid-body"
	c, err := h.dialRaw(ctx, net.Dialer{})
	if err != nil {
		h.lost(sc, err)
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /h/drip?every=2ms HTTP/1.1\r\nHost: %s\r\n\r\n", h.addr)
	br := bufio.NewReader(c)
	status, head, err := readHead(br)
	switch {
	case err != nil:
		h.lost(sc, err)
		return
	case status != http.StatusOK:
		h.truth.wrong(sc, "want 200, got %q", head)
		return
	}
	if _, err := io.CopyN(io.Discard, br, int64(1+rng.IntN(2048))); err != nil {
		h.truth.wrong(sc, "the body ended early: %v", err)
	}
	hangUp(c, rng)
	h.truth.req(hDrip, cancelled, "disconnect", 200)
	h.truth.see(sc, "hung up")
}

// sseResult is what an SSE client read.
type sseResult struct {
	ticks     int
	firstID   string
	cancelled string // the reason of a "cancelled" event
	err       error  // nil: the stream ended cleanly
}

// readSSE reads an event stream; with stopAfter > 0 it returns after that
// many tick events.
func readSSE(r io.Reader, stopAfter int) sseResult {
	var res sseResult
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	typ, id, data := "", "", ""
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			switch typ {
			case "tick":
				if res.ticks == 0 {
					res.firstID = id
				}
				res.ticks++
				if stopAfter > 0 && res.ticks >= stopAfter {
					return res
				}
			case "cancelled":
				var c struct{ Reason string }
				json.Unmarshal([]byte(data), &c)
				res.cancelled = c.Reason
			}
			typ, id, data = "", "", ""
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			typ = value
		case "id":
			id = value
		case "data":
			data += value
		}
	}
	res.err = sc.Err()
	return res
}

// sse opens an event stream with the client.
func (h *harness) sse(ctx context.Context, path string, hdr http.Header) (*http.Response, error) {
	req, err := h.newRequest(ctx, "GET", path, hdr, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	return h.client.Do(req)
}

func (h *harness) scSSEComplete(ctx context.Context, rng *rand.Rand) {
	const sc = "sse-complete"
	n := 2 + rng.IntN(5)
	resp, err := h.sse(ctx, fmt.Sprintf("/events?n=%d&every=10ms", n), nil)
	if err != nil {
		h.lost(sc, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		h.truth.wrong(sc, "status %d", resp.StatusCode)
		return
	}
	res := readSSE(resp.Body, 0)
	h.sseEnded(sc, res, n, "0")
}

// sseEnded accounts for a stream read to its end: completed, or cut by
// the shutdown (after a last "cancelled" event), or cut by the service's
// write timeout (no last event: the write failed) when the machine was too
// busy to write in time. With n < 0 the stream never ends by itself.
func (h *harness) sseEnded(sc string, res sseResult, n int, firstID string) {
	all := res.ticks == n && (n == 0 || res.firstID == firstID)
	switch {
	case all && res.err == nil && res.cancelled == "":
		h.truth.req(hEvents, completed, "", 200)
		h.truth.op(hSSE, completed, "")
		h.truth.see(sc, "complete")
	case all && errors.Is(res.err, io.ErrUnexpectedEOF) && res.cancelled == "":
		// Known issue: Stream.End leaves its rolling write deadline on the
		// connection; when the handler returns later than that, net/http's
		// last chunk fails and the client sees a cut response, though both
		// operations completed.
		h.truth.req(hEvents, completed, "", 200)
		h.truth.op(hSSE, completed, "")
		h.truth.endCut()
		h.truth.see(sc, "complete, then cut (sse End's write deadline)")
	case res.cancelled == "shutdown" && h.shutdown.Load():
		h.truth.reqCut(hEvents, cancelled, "shutdown")
		h.truth.op(hSSE, cancelled, "parent")
		h.truth.see(sc, "cancelled: shutdown")
	case (res.ticks < n || n < 0) && res.cancelled == "" && errors.Is(res.err, io.ErrUnexpectedEOF):
		// A write missed the write timeout: a disconnect for the service.
		h.truth.req(hEvents, cancelled, "disconnect", 200)
		h.truth.op(hSSE, cancelled, "disconnect")
		h.truth.see(sc, "cut early (a write missed the write timeout: a busy machine)")
	default:
		h.truth.wrong(sc, "%d of %d ticks from %q (want from %q), cancelled %q, error %v", res.ticks, n, res.firstID, firstID, res.cancelled, res.err)
	}
}

func (h *harness) scSSEHangup(ctx context.Context, rng *rand.Rand) {
	const sc = "sse-hangup"
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	resp, err := h.sse(ctx, "/events?n=100000&every=10ms", nil)
	if err != nil {
		h.lost(sc, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		h.truth.wrong(sc, "status %d", resp.StatusCode)
		return
	}
	want := 1 + rng.IntN(5)
	res := readSSE(resp.Body, want)
	if res.ticks != want {
		h.truth.wrong(sc, "%d ticks, want %d (cancelled %q, %v)", res.ticks, want, res.cancelled, res.err)
		return
	}
	stop() // the transport closes the connection
	h.truth.req(hEvents, cancelled, "disconnect", 200)
	h.truth.op(hSSE, cancelled, "disconnect")
	h.truth.see(sc, "hung up")
}

// scSSEStalled: a client with a small receive buffer stops reading a
// stream of 64 KiB events; the server's write timeout cuts it once the
// buffers are full. If it did not within the stall (the buffers took
// longer to fill), the client goes away: a disconnect either way.
func (h *harness) scSSEStalled(ctx context.Context, _ *rand.Rand) {
	const sc = "sse-stalled"
	c, err := h.dialRaw(ctx, net.Dialer{Control: smallReceiveBuffer})
	if err != nil {
		h.lost(sc, err)
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /events?n=100000&every=10ms&pad=65536 HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", h.addr)
	br := bufio.NewReaderSize(c, 1024)
	status, head, err := readHead(br)
	switch {
	case err != nil:
		h.lost(sc, err)
		return
	case status != 200:
		h.truth.wrong(sc, "want 200, got %q", head)
		return
	}
	time.Sleep(h.cfg.sseWrite + time.Second) // not reading
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err = io.Copy(io.Discard, br)
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, io.ErrUnexpectedEOF), isReset(err):
		h.truth.see(sc, "cut off")
	case errors.As(err, &ne) && ne.Timeout():
		// Not cut (yet): the client goes away, a disconnect as well.
		h.truth.see(sc, "not cut off: hung up")
	default:
		h.truth.wrong(sc, "reading after the stall: %v", err)
		return
	}
	h.truth.req(hEvents, cancelled, "disconnect", 200)
	h.truth.op(hSSE, cancelled, "disconnect")
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// dialWS opens a websocket to /ws?ticks=0 (no progress messages).
func (h *harness) dialWS(ctx context.Context, sc string) *websocket.Conn {
	h.truth.sent(1)
	c, resp, err := websocket.Dial(ctx, "ws://"+h.addr+"/ws?ticks=0", &websocket.DialOptions{HTTPClient: h.client})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusServiceUnavailable && h.shutdown.Load() {
			h.truth.req(hWS, cancelled, "shutdown", 503)
			h.truth.see(sc, "503 shutdown")
			return nil
		}
		h.lost(sc, err)
		return nil
	}
	return c
}

func wsEcho(ctx context.Context, c *websocket.Conn, msg string) error {
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return err
	}
	_, p, err := c.Read(ctx)
	if err == nil && string(p) != msg {
		err = fmt.Errorf("echo %q, want %q", p, msg)
	}
	return err
}

// wsShutdown accounts for a websocket the shutdown closed (1001).
func (h *harness) wsShutdown(sc string, err error) bool {
	if websocket.CloseStatus(err) == websocket.StatusGoingAway && h.shutdown.Load() {
		h.truth.req(hWS, cancelled, "shutdown", 101)
		h.truth.op(hWSConn, cancelled, "parent")
		h.truth.wsClose(1001, "shutdown")
		h.truth.see(sc, "closed 1001 (shutdown)")
		return true
	}
	return false
}

func (h *harness) scWSEcho(ctx context.Context, rng *rand.Rand) {
	const sc = "ws-echo"
	c := h.dialWS(ctx, sc)
	if c == nil {
		return
	}
	defer c.CloseNow()
	for i := range 1 + rng.IntN(3) {
		if err := wsEcho(ctx, c, "hello "+strconv.Itoa(i)); err != nil {
			if !h.wsShutdown(sc, err) {
				h.truth.wrong(sc, "echo: %v", err)
			}
			return
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		if !h.wsShutdown(sc, err) {
			h.truth.wrong(sc, "close: %v", err)
		}
		return
	}
	h.truth.req(hWS, completed, "", 101)
	h.truth.op(hWSConn, completed, "") // the peer said goodbye: the session is complete
	h.truth.stop(hWSConn, "disconnect")
	h.truth.wsClose(1000, "disconnect")
	h.truth.see(sc, "closed 1000")
}

func (h *harness) scWSVanish(ctx context.Context, _ *rand.Rand) {
	const sc = "ws-vanish"
	c := h.dialWS(ctx, sc)
	if c == nil {
		return
	}
	if err := wsEcho(ctx, c, "hello"); err != nil {
		c.CloseNow()
		if !h.wsShutdown(sc, err) {
			h.truth.wrong(sc, "echo: %v", err)
		}
		return
	}
	c.CloseNow() // no close frame
	h.truth.req(hWS, completed, "", 101)
	h.truth.op(hWSConn, cancelled, "disconnect")
	h.truth.wsClose(1006, "disconnect")
	h.truth.see(sc, "vanished")
}

func (h *harness) scWSFlood(ctx context.Context, rng *rand.Rand) {
	const sc = "ws-flood"
	c := h.dialWS(ctx, sc)
	if c == nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)
	big := bytes.Repeat([]byte("f"), 4097+rng.IntN(60000))
	// The first message over the limit closes the connection; the next
	// writes may fail.
	for range 1 + rng.IntN(3) {
		if c.Write(ctx, websocket.MessageBinary, big) != nil {
			break
		}
	}
	var err error
	for err == nil {
		_, _, err = c.Read(ctx)
	}
	switch code := websocket.CloseStatus(err); {
	case code == websocket.StatusMessageTooBig:
		h.truth.req(hWS, completed, "", 101)
		h.truth.op(hWSConn, cancelled, "error")
		h.truth.wsClose(1009, "error")
		h.truth.see(sc, "closed 1009")
	case h.wsShutdown(sc, err):
	default:
		h.truth.wrong(sc, "after the flood: %v", err)
	}
}

// jobStart starts a job of an hour; it returns its ID, or 0.
func (h *harness) jobStart(ctx context.Context, sc string) uint64 {
	a, err := h.do(ctx, "POST", "/jobs?s=3600", nil, nil)
	if !h.expectAnswer(sc, hJobs, a, err, http.StatusAccepted, completed, "") {
		return 0
	}
	var job struct{ ID uint64 }
	if err := json.Unmarshal(a.body, &job); err != nil || job.ID == 0 {
		h.truth.wrong(sc, "job answer %q", trim(a.body))
		return 0
	}
	return job.ID
}

// admin sends a request to the admin API (none answers 5xx). It returns nil if there was none.
func (h *harness) admin(ctx context.Context, sc, method, path string, hdr http.Header, body io.Reader) *answer {
	a, err := h.do(ctx, method, "/admin"+path, hdr, body)
	if err != nil {
		h.lost(sc+" (admin)", err)
		return nil
	}
	if a.status >= 500 {
		h.truth.wrong(sc, "admin %s %s: %d %q", method, path, a.status, trim(a.body))
		return a
	}
	return a // served in front of the middleware and otelhttp: no operation, no request metric
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

// cancelOp asks the admin API to cancel operation id: true if it did.
func (h *harness) cancelOp(ctx context.Context, sc string, id uint64) (cancelled, answered bool) {
	a := h.admin(ctx, sc, "POST", "/operations/"+strconv.FormatUint(id, 10)+"/cancel", jsonHeader,
		strings.NewReader(`{"reason":"manual","message":"harness: an operator pressed cancel"}`))
	if a == nil {
		return false, false
	}
	var res struct{ Cancelled bool }
	json.Unmarshal(a.body, &res)
	if a.status == 200 && res.Cancelled {
		h.truth.cancelOK()
		return true, true
	}
	return false, true
}

// scJobCancel: an operator cancels a job; the job ends manual, or
// shutdown if the shutdown came first.
func (h *harness) scJobCancel(ctx context.Context, rng *rand.Rand) {
	const sc = "job-cancel"
	id := h.jobStart(ctx, sc)
	if id == 0 {
		return
	}
	time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
	ok, _ := h.cancelOp(ctx, sc, id)
	if !ok {
		if !h.shutdown.Load() {
			h.truth.wrong(sc, "job %d not cancelled", id)
		}
		h.truth.op(hJob, cancelled, "shutdown")
		h.truth.see(sc, "job stopped by the shutdown")
		return
	}
	h.truth.op(hJob, cancelled, "manual")
	h.truth.see(sc, "job cancelled")
	// See it end.
	for {
		a := h.admin(ctx, sc, "GET", "/operations/"+strconv.FormatUint(id, 10), nil, nil)
		if a == nil {
			return
		}
		var info struct{ Status, Reason string }
		json.Unmarshal(a.body, &info)
		if info.Status == "cancelled" {
			if info.Reason != "manual" {
				h.truth.wrong(sc, "job %d ended %s/%s", id, info.Status, info.Reason)
			}
			return
		}
		if info.Status != "running" {
			h.truth.wrong(sc, "job %d is %s", id, info.Status)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scOpCancel: the client starts a request that waits for its context,
// then, as an operator, cancels one running request of that route, not
// necessarily its own, through the admin API. As many cancels succeed as
// there are such requests, so each of them ends manual (or shutdown, if
// the admin API went away first); the client learns which from its own
// answer.
func (h *harness) scOpCancel(ctx context.Context, rng *rand.Rand) {
	const sc = "op-cancel"
	type res struct {
		a   *answer
		err error
	}
	own := make(chan res, 1)
	go func() {
		a, err := h.do(ctx, "GET", "/h/opcancel", nil, nil)
		own <- res{a, err}
	}()
	path := "/operations?status=running&limit=1000&name=" + url.QueryEscape(hOpCancel)
search:
	for {
		a := h.admin(ctx, sc, "GET", path, nil, nil)
		if a == nil {
			break // the shutdown: our request ends with it
		}
		var list struct {
			Operations []struct{ ID uint64 }
		}
		json.Unmarshal(a.body, &list)
		ops := list.Operations
		rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
		for _, op := range ops {
			ok, answered := h.cancelOp(ctx, sc, op.ID)
			if ok {
				break search
			}
			if !answered {
				break search
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	r := <-own
	switch {
	case r.err != nil:
		h.lost(sc, r.err)
	case r.a.status == http.StatusServiceUnavailable && r.a.problemReason() == "manual":
		h.truth.req(hOpCancel, cancelled, "manual", 503)
		h.truth.see(sc, "503 manual")
	default:
		h.expectAnswer(sc, hOpCancel, r.a, nil, -1, "", "")
	}
}
