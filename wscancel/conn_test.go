package wscancel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
	"github.com/cancelable-go/cancelable/wscancel"
)

func TestPeerClosesNormally(t *testing.T) {
	url, rec := server(t, echo)
	c := dial(t, url)
	for _, m := range []string{"a", "b", "c"} {
		roundTrip(t, c, m)
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	e := rec.wait(t)
	if e.op.Name() != "ws GET /ws" {
		t.Errorf("name = %q, want %q", e.op.Name(), "ws GET /ws")
	}
	// The peer said goodbye: the session is complete, not cancelled work,
	// though its context was cancelled (to stop the handler) with the
	// reason kept.
	if e.op.Status() != cancel.StatusCompleted || e.op.Reason() != cancel.ReasonDisconnect {
		t.Errorf("status, reason = %v, %v; want completed, disconnect", e.op.Status(), e.op.Reason())
	}
	if got := message(e.op); got != "peer closed the connection: 1000 bye" {
		t.Errorf("message = %q", got)
	}
	e.wantClose(t, 1000, "peer", "disconnect")
	if e.counts["ws.messages.in"] != 3 || e.counts["ws.messages.out"] != 3 || len(e.counts) != 2 {
		t.Errorf("counts = %v, want 3 in and 3 out", e.counts)
	}
	if a := e.events[0].Attrs; len(a) != 1 || a[0].Key != "ws.subprotocol" || a[0].Value.String() != "" {
		t.Errorf("ws.open attributes = %v", a)
	}
}

// A peer's close ends the session as completed when it is a normal one
// (1000, 1001 going away) and the handler returns what told it so (the
// Read error, or its context's cause); any other close, or an error of the
// handler's own, leaves it cancelled.
func TestPeerCloseOutcome(t *testing.T) {
	untilPeerLeaves := func(ctx context.Context, c *wscancel.Conn) error {
		<-ctx.Done()
		return context.Cause(ctx)
	}
	ownError := func(ctx context.Context, c *wscancel.Conn) error {
		if _, _, err := c.Read(ctx); err != nil {
			return fmt.Errorf("saving the session: %w", errors.New("disk full"))
		}
		return nil
	}
	for _, tc := range []struct {
		name    string
		handler func(context.Context, *wscancel.Conn) error
		code    websocket.StatusCode
		status  cancel.Status
	}{
		{"echo/1000", echo, websocket.StatusNormalClosure, cancel.StatusCompleted},
		{"echo/1001", echo, websocket.StatusGoingAway, cancel.StatusCompleted},
		{"write-only/1000", untilPeerLeaves, websocket.StatusNormalClosure, cancel.StatusCompleted},
		{"echo/1008", echo, websocket.StatusPolicyViolation, cancel.StatusCancelled},
		{"echo/4000", echo, 4000, cancel.StatusCancelled},
		{"own-error/1000", ownError, websocket.StatusNormalClosure, cancel.StatusCancelled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, rec := server(t, tc.handler)
			c := dial(t, url)
			if err := c.Close(tc.code, "bye"); err != nil {
				t.Fatal(err)
			}
			e := rec.wait(t)
			if e.op.Status() != tc.status || e.op.Reason() != cancel.ReasonDisconnect {
				t.Errorf("status, reason = %v, %v; want %v, disconnect", e.op.Status(), e.op.Reason(), tc.status)
			}
			e.wantClose(t, int64(tc.code), "peer", "disconnect")
		})
	}
}

func TestPeerVanishes(t *testing.T) {
	url, rec := server(t, echo)
	c, tcp := dialRaw(t, url)
	roundTrip(t, c, "hello")
	// A TCP reset: no close frame, no FIN.
	if err := tcp.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	tcp.Close()
	e := rec.wait(t)
	if e.op.Reason() != cancel.ReasonDisconnect || !strings.HasPrefix(message(e.op), "connection lost") {
		t.Errorf("reason, message = %v, %q; want disconnect, connection lost", e.op.Reason(), message(e.op))
	}
	e.wantClose(t, 1006, "peer", "disconnect")
}

func TestPeerStopsAnsweringPings(t *testing.T) {
	wait := func(ctx context.Context, c *wscancel.Conn) error {
		<-ctx.Done()
		return context.Cause(ctx)
	}
	url, rec := server(t, wait, wscancel.WithHeartbeat(20*time.Millisecond, 150*time.Millisecond))
	_ = dial(t, url) // never reads: pings are never answered
	e := rec.wait(t)
	if e.op.Reason() != cancel.ReasonDisconnect || !strings.Contains(message(e.op), "pings unanswered") {
		t.Errorf("reason, message = %v, %q; want disconnect, pings unanswered", e.op.Reason(), message(e.op))
	}
	e.wantClose(t, 1006, "peer", "disconnect")
}

func TestHeartbeatKeepsLivePeer(t *testing.T) {
	release := make(chan struct{})
	// The handler does not read for a while either: a message waiting for
	// it must not make the peer look silent.
	lazy := func(ctx context.Context, c *wscancel.Conn) error {
		<-release
		_, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		return c.Write(ctx, websocket.MessageText, data)
	}
	// The limit leaves room for a loaded machine's scheduling: the client
	// answers pings only once its reading goroutine runs.
	const limit = 300 * time.Millisecond
	url, rec := server(t, lazy, wscancel.WithHeartbeat(10*time.Millisecond, limit))
	c := dial(t, url)
	if err := c.Write(context.Background(), websocket.MessageText, []byte("x")); err != nil {
		t.Fatal(err)
	}
	type closed struct {
		ce  websocket.CloseError
		err error
	}
	got := make(chan closed, 1)
	go func() { // reading answers the pings
		ce, err := readClose(c)
		got <- closed{ce, err}
	}()
	<-time.After(3 * limit) // many pings, three times the limit
	close(release)
	if r := <-got; r.err != nil || r.ce.Code != websocket.StatusNormalClosure {
		t.Errorf("client got %v, %v; want 1000", r.ce, r.err)
	}
	e := rec.wait(t)
	if e.op.Status() != cancel.StatusCompleted {
		t.Errorf("status = %v (%v), want completed", e.op.Status(), e.op.Err())
	}
	e.wantClose(t, 1000, "local", "")
}

func TestMessageTooBig(t *testing.T) {
	url, rec := server(t, echo, wscancel.WithReadLimit(16))
	c := dial(t, url)
	if err := c.Write(context.Background(), websocket.MessageBinary, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if ce := readUntilClosed(t, c); ce.Code != websocket.StatusMessageTooBig {
		t.Errorf("client got %v, want 1009", ce)
	}
	e := rec.wait(t)
	if e.op.Reason() != cancel.ReasonError {
		t.Errorf("reason = %v, want error", e.op.Reason())
	}
	e.wantClose(t, 1009, "local", "error")
}

// stream writes a message every few milliseconds until it is stopped.
func stream(ctx context.Context, c *wscancel.Conn) error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
		if err := c.WriteJSON(ctx, map[string]int{"n": i}); err != nil {
			return err
		}
	}
}

func TestShutdownMidStream(t *testing.T) {
	rec := newRecorder()
	ts := httptest.NewUnstartedServer(nil)
	drain := httpcancel.OnShutdown(ts.Config, 0)
	mux := http.NewServeMux()
	mux.Handle("GET /stream", wscancel.Handler(stream, rec.option()))
	ts.Config.Handler = httpcancel.Middleware(httpcancel.WithDrain(drain))(mux)
	ts.Start()
	defer ts.Close()

	c := dial(t, "ws"+strings.TrimPrefix(ts.URL, "http")+"/stream")
	for range 3 {
		if _, _, err := c.Read(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	shut := make(chan error, 1)
	go func() { shut <- ts.Config.Shutdown(context.Background()) }()
	ce := readUntilClosed(t, c)
	if ce.Code != websocket.StatusGoingAway || ce.Reason != "shutdown" {
		t.Errorf("client got %v, want 1001 shutdown", ce)
	}
	e := rec.wait(t)
	if err := <-shut; err != nil {
		t.Error(err)
	}
	if e.op.Name() != "ws GET /stream" {
		t.Errorf("name = %q", e.op.Name())
	}
	if e.op.Reason() != cancel.ReasonParent || cancel.RootReason(e.op.Err()) != cancel.ReasonShutdown {
		t.Errorf("reason = %v, root %v; want parent, root shutdown", e.op.Reason(), cancel.RootReason(e.op.Err()))
	}
	if p := e.op.Parent(); p == nil || !strings.HasPrefix(p.Name(), "GET /stream") {
		t.Errorf("parent = %v, want the request's operation", p)
	}
	e.wantClose(t, 1001, "local", "shutdown")
	if e.counts["ws.messages.out"] < 3 || e.counts["ws.messages.in"] != 0 {
		t.Errorf("counts = %v", e.counts)
	}
}

// TestCloseCodes: the peer gets the code of the reason the connection
// stopped for.
func TestCloseCodes(t *testing.T) {
	cancelWith := func(r cancel.Reason) func(context.Context, *wscancel.Conn) error {
		return func(ctx context.Context, c *wscancel.Conn) error {
			if _, _, err := c.Read(ctx); err != nil { // the client is ready
				return err
			}
			c.Operation().Cancel(r, "internal detail")
			<-ctx.Done()
			return context.Cause(ctx)
		}
	}
	returning := func(err error) func(context.Context, *wscancel.Conn) error {
		return func(ctx context.Context, c *wscancel.Conn) error {
			if _, _, err := c.Read(ctx); err != nil {
				return err
			}
			return err
		}
	}
	for _, tc := range []struct {
		name     string
		fn       func(context.Context, *wscancel.Conn) error
		opts     []wscancel.Option
		code     websocket.StatusCode
		text     string
		reason   string // in ws.close
		status   cancel.Status
		noClient bool // the client sends nothing
	}{
		{"manual", cancelWith(cancel.ReasonManual), nil, 1000, "manual", "manual", cancel.StatusCancelled, false},
		{"error", cancelWith(cancel.ReasonError), nil, 1011, "error", "error", cancel.StatusCancelled, false},
		{"shutdown", cancelWith(cancel.ReasonShutdown), nil, 1001, "shutdown", "shutdown", cancel.StatusCancelled, false},
		{"condition", cancelWith(cancel.ReasonCondition), nil, 1000, "condition", "condition", cancel.StatusCancelled, false},
		{"timeout", stream, []wscancel.Option{wscancel.WithOperationOptions(cancel.WithTimeout(30 * time.Millisecond))},
			wscancel.StatusTimeout, "timeout", "timeout", cancel.StatusCancelled, true},
		{"restart", cancelWith(cancel.ReasonShutdown), []wscancel.Option{wscancel.WithCloseStatus(
			func(r cancel.Reason) (websocket.StatusCode, string) {
				if r == cancel.ReasonShutdown {
					return websocket.StatusServiceRestart, "restarting"
				}
				return wscancel.DefaultCloseStatus(r)
			})}, 1012, "restarting", "shutdown", cancel.StatusCancelled, false},
		// A zero code leaves the reason to DefaultCloseStatus, as
		// httpcancel's WithStatus does.
		{"zero is the default", cancelWith(cancel.ReasonShutdown), []wscancel.Option{wscancel.WithCloseStatus(
			func(r cancel.Reason) (websocket.StatusCode, string) {
				if r == cancel.ReasonManual {
					return websocket.StatusPolicyViolation, "kicked"
				}
				return 0, ""
			})}, 1001, "shutdown", "shutdown", cancel.StatusCancelled, false},
		// What cannot go in a close frame is made to fit: a code that may
		// not be sent becomes 1011, a text over 123 bytes is cut, never
		// inside a character.
		{"unsendable code", cancelWith(cancel.ReasonShutdown), []wscancel.Option{wscancel.WithCloseStatus(
			func(cancel.Reason) (websocket.StatusCode, string) { return websocket.StatusAbnormalClosure, "gone" })},
			1011, "gone", "shutdown", cancel.StatusCancelled, false},
		{"long text", cancelWith(cancel.ReasonShutdown), []wscancel.Option{wscancel.WithCloseStatus(
			func(cancel.Reason) (websocket.StatusCode, string) {
				return websocket.StatusGoingAway, strings.Repeat("x", 122) + "é and more"
			})},
			1001, strings.Repeat("x", 122), "shutdown", cancel.StatusCancelled, false},
		{"returns unsendable CloseError", returning(websocket.CloseError{Code: 5000, Reason: "odd"}), nil,
			1011, "odd", "", cancel.StatusFailed, false},
		{"returns nil", returning(nil), nil, 1000, "", "", cancel.StatusCompleted, false},
		{"returns error", returning(errors.New("database down")), nil, 1011, "internal error", "", cancel.StatusFailed, false},
		{"returns CloseError", returning(websocket.CloseError{Code: 4001, Reason: "unauthorized"}), nil,
			4001, "unauthorized", "", cancel.StatusFailed, false},
		{"panics", func(ctx context.Context, c *wscancel.Conn) error {
			c.Read(ctx)
			panic("bug")
		}, nil, 1011, "internal error", "", cancel.StatusFailed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, rec := server(t, tc.fn, tc.opts...)
			c := dial(t, url)
			if !tc.noClient {
				if err := c.Write(context.Background(), websocket.MessageText, []byte("ready")); err != nil {
					t.Fatal(err)
				}
			}
			ce := readUntilClosed(t, c)
			if ce.Code != tc.code || ce.Reason != tc.text {
				t.Errorf("client got %d %q, want %d %q", ce.Code, ce.Reason, tc.code, tc.text)
			}
			e := rec.wait(t)
			if e.op.Status() != tc.status {
				t.Errorf("status = %v (%v), want %v", e.op.Status(), e.op.Cause(), tc.status)
			}
			e.wantClose(t, int64(tc.code), "local", tc.reason)
		})
	}
}

// TestParentCancelled: a connection under an operation (the request's)
// that is cancelled is closed with the code of the root reason.
func TestParentCancelled(t *testing.T) {
	rec := newRecorder()
	parents := make(chan *cancel.Operation, 1)
	ws := wscancel.Handler(stream, rec.option())
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, op := cancel.Start(r.Context(), "request")
		parents <- op
		ws.ServeHTTP(w, r.WithContext(ctx))
		op.End(op.Err())
	}))
	defer ts.Close()
	c := dial(t, "ws"+strings.TrimPrefix(ts.URL, "http"))
	if _, _, err := c.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	(<-parents).Cancel(cancel.ReasonTimeout, "request budget spent")
	if ce := readUntilClosed(t, c); ce.Code != wscancel.StatusTimeout || ce.Reason != "timeout" {
		t.Errorf("client got %v, want 4008 timeout", ce)
	}
	e := rec.wait(t)
	if e.op.Name() != "ws" || e.op.Reason() != cancel.ReasonParent {
		t.Errorf("name, reason = %q, %v; want ws, parent", e.op.Name(), e.op.Reason())
	}
	e.wantClose(t, int64(wscancel.StatusTimeout), "local", "timeout")
}

func TestCloseIsBounded(t *testing.T) {
	cancelAtOnce := func(ctx context.Context, c *wscancel.Conn) error {
		c.Operation().Cancel(cancel.ReasonManual, "operator")
		<-ctx.Done()
		return context.Cause(ctx)
	}
	url, rec := server(t, cancelAtOnce, wscancel.WithCloseTimeout(100*time.Millisecond))
	_ = dial(t, url) // never reads: the close is never answered
	e := rec.wait(t)
	rec.mu.Lock()
	took := e.at.Sub(rec.cancelAt)
	rec.mu.Unlock()
	if took < 100*time.Millisecond || took > 2*time.Second {
		t.Errorf("closing took %v, want the close timeout (100ms)", took)
	}
	e.wantClose(t, 1000, "local", "manual")
}

func TestIdleTimeout(t *testing.T) {
	url, rec := server(t, echo, wscancel.WithIdleTimeout(100*time.Millisecond))
	c := dial(t, url)
	roundTrip(t, c, "one")
	roundTrip(t, c, "two")
	if ce := readUntilClosed(t, c); ce.Code != wscancel.StatusTimeout || ce.Reason != "timeout" {
		t.Errorf("client got %v, want 4008 timeout", ce)
	}
	e := rec.wait(t)
	if e.op.Reason() != cancel.ReasonTimeout || !strings.HasPrefix(message(e.op), "idle for 100ms") {
		t.Errorf("reason, message = %v, %q", e.op.Reason(), message(e.op))
	}
	if d := e.op.Duration(); d < 100*time.Millisecond {
		t.Errorf("the connection lasted %v, less than its idle timeout", d)
	}
	e.wantClose(t, int64(wscancel.StatusTimeout), "local", "timeout")
}

func TestMaxLifetime(t *testing.T) {
	url, rec := server(t, echo, wscancel.WithMaxLifetime(150*time.Millisecond), wscancel.WithIdleTimeout(time.Minute))
	c := dial(t, url)
	var ce websocket.CloseError
	for ctx := context.Background(); ; { // busy all along
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			ce = readUntilClosed(t, c)
			break
		}
		if _, _, err := c.Read(ctx); err != nil {
			if !errors.As(err, &ce) {
				t.Fatal(err)
			}
			break
		}
	}
	if ce.Code != wscancel.StatusTimeout {
		t.Errorf("client got %v, want 4008", ce)
	}
	e := rec.wait(t)
	if e.op.Reason() != cancel.ReasonTimeout || !strings.Contains(message(e.op), "maximum lifetime of 150ms") {
		t.Errorf("reason, message = %v, %q", e.op.Reason(), message(e.op))
	}
	e.wantClose(t, int64(wscancel.StatusTimeout), "local", "timeout")
}

func TestJSON(t *testing.T) {
	type req struct{ N int }
	double := func(ctx context.Context, c *wscancel.Conn) error {
		for {
			var r req
			if err := c.ReadJSON(ctx, &r); err != nil {
				return err
			}
			if err := c.WriteJSON(ctx, req{N: 2 * r.N}); err != nil {
				return err
			}
		}
	}
	url, rec := server(t, double)
	c := dial(t, url)
	ctx := context.Background()
	c.Write(ctx, websocket.MessageText, []byte(`{"N":21}`))
	if _, got, err := c.Read(ctx); err != nil || string(got) != `{"N":42}` {
		t.Fatalf("got %s, %v; want {\"N\":42}", got, err)
	}
	c.Write(ctx, websocket.MessageText, []byte(`{"N":`))
	if ce := readUntilClosed(t, c); ce.Code != websocket.StatusInvalidFramePayloadData || ce.Reason != "invalid JSON" {
		t.Errorf("client got %v, want 1007 invalid JSON", ce)
	}
	e := rec.wait(t)
	if e.op.Status() != cancel.StatusFailed {
		t.Errorf("status = %v", e.op.Status())
	}
	e.wantClose(t, 1007, "local", "")
}

// ReadJSON into something that is not a non-nil pointer is the server's
// mistake: the peer is not told its message was invalid JSON (1007), and
// the message is still there to read.
func TestReadJSONIntoNothing(t *testing.T) {
	wrong := make(chan error, 1) // what the handler found wrong
	handler := func(ctx context.Context, c *wscancel.Conn) error {
		var notPointer struct{ N int }
		for _, v := range []any{nil, notPointer, (*struct{ N int })(nil)} {
			err := c.ReadJSON(ctx, v)
			if ue := new(json.InvalidUnmarshalError); !errors.As(err, &ue) {
				wrong <- fmt.Errorf("ReadJSON(%#v) = %v, want a *json.InvalidUnmarshalError", v, err)
				return nil
			}
		}
		_, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, websocket.MessageText, data); err != nil {
			return err
		}
		return c.ReadJSON(ctx, nil)
	}
	url, rec := server(t, handler)
	c := dial(t, url)
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second) // a guard
	defer stop()
	c.Write(ctx, websocket.MessageText, []byte(`{"N":1}`))
	if _, got, err := c.Read(ctx); err != nil || string(got) != `{"N":1}` {
		t.Fatalf("got %s, %v; want the message back", got, err)
	}
	if ce := readUntilClosed(t, c); ce.Code != websocket.StatusInternalError {
		t.Errorf("client got %v, want 1011", ce)
	}
	e := rec.wait(t)
	select {
	case err := <-wrong:
		t.Fatal(err)
	default:
	}
	e.wantClose(t, int64(websocket.StatusInternalError), "local", "")
}

func TestProgressForwarded(t *testing.T) {
	work := func(ctx context.Context, c *wscancel.Conn) error {
		cancel.FromContext(ctx).Progress("half way",
			slog.Int("done", 5), slog.Group("batch", slog.String("id", "b1")), slog.Duration("took", time.Second))
		_, _, err := c.Read(ctx) // wait for the client
		return err
	}
	url, rec := server(t, work, wscancel.WithProgress())
	c := dial(t, url)
	_, got, err := c.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	want := `{"attrs":{"batch":{"id":"b1"},"done":5,"took":"1s"},"message":"half way","type":"progress"}`
	if b, _ := json.Marshal(m); string(b) != want {
		t.Errorf("progress message = %s, want %s", b, want)
	}
	c.Write(context.Background(), websocket.MessageText, []byte("done"))
	if ce := readUntilClosed(t, c); ce.Code != websocket.StatusNormalClosure {
		t.Errorf("client got %v, want 1000", ce)
	}
	e := rec.wait(t)
	if e.counts["ws.messages.out"] != 1 || e.counts["ws.messages.in"] != 1 {
		t.Errorf("counts = %v, want one message each way", e.counts)
	}
	e.wantClose(t, 1000, "local", "")
}

func TestReadHonoursItsContext(t *testing.T) {
	fn := func(ctx context.Context, c *wscancel.Conn) error {
		short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancelShort()
		if _, _, err := c.Read(short); !errors.Is(err, context.DeadlineExceeded) {
			return errors.New("read did not stop at its deadline")
		}
		// The connection is still fine.
		_, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		return c.Write(ctx, websocket.MessageText, data)
	}
	url, rec := server(t, fn)
	c := dial(t, url)
	<-time.After(50 * time.Millisecond) // the first read gives up meanwhile
	roundTrip(t, c, "still there")
	if ce := readUntilClosed(t, c); ce.Code != websocket.StatusNormalClosure {
		t.Errorf("client got %v, want 1000", ce)
	}
	rec.wait(t).wantClose(t, 1000, "local", "")
}

func TestAccept(t *testing.T) {
	rec := newRecorder()
	done := make(chan error, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := wscancel.Accept(w, r, rec.option(), wscancel.WithName("ws chat"))
		if err != nil {
			done <- err
			return
		}
		done <- c.End(echo(c.Context(), c))
		if c.End(nil) != c.End(errors.New("again")) {
			t.Error("End after End changed its answer")
		}
	}))
	defer ts.Close()
	c := dial(t, "ws"+strings.TrimPrefix(ts.URL, "http"))
	roundTrip(t, c, "hi")
	c.Close(websocket.StatusGoingAway, "tab closed")
	err := <-done
	if err != nil {
		t.Errorf("End returned %v after the peer went away (1001), want nil: the session is complete", err)
	}
	e := rec.wait(t)
	if e.op.Name() != "ws chat" {
		t.Errorf("name = %q", e.op.Name())
	}
	e.wantClose(t, 1001, "peer", "disconnect")
}

func TestInvalidOptions(t *testing.T) {
	fn := func(context.Context, *wscancel.Conn) error { return nil }
	for _, tc := range []struct {
		opt  wscancel.Option
		want string
	}{
		{wscancel.WithName(""), "WithName"},
		{wscancel.WithOperationOptions(nil), "WithOperationOptions"},
		// Accepted, it failed every connection with a 500 instead.
		{wscancel.WithOperationOptions(cancel.WithToken(nil)), "WithToken"},
		{wscancel.WithAcceptOptions(nil), "WithAcceptOptions"},
		{wscancel.WithHeartbeat(0, time.Second), "WithHeartbeat"},
		{wscancel.WithHeartbeat(time.Second, time.Second), "WithHeartbeat"},
		{wscancel.WithIdleTimeout(-1), "WithIdleTimeout"},
		{wscancel.WithMaxLifetime(0), "WithMaxLifetime"},
		{wscancel.WithReadLimit(0), "WithReadLimit"},
		{wscancel.WithCloseTimeout(0), "WithCloseTimeout"},
		{wscancel.WithCloseStatus(nil), "WithCloseStatus"},
		{nil, "option 0 is nil"},
	} {
		_, err := wscancel.NewHandler(fn, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewHandler error = %v, want one naming %s", err, tc.want)
		}
	}
	if _, err := wscancel.NewHandler(nil); err == nil {
		t.Error("NewHandler(nil) succeeded")
	}

	// An invalid cancel.Option is found at Accept, before the upgrade.
	errs := make(chan error, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := wscancel.Accept(w, r, wscancel.WithOperationOptions(cancel.WithRegistry(nil)))
		errs <- err
	}))
	defer ts.Close()
	_, resp, err := websocket.Dial(context.Background(), ts.URL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("dial = %v, %v; want a 500", resp, err)
	}
	var oe *cancel.OptionError
	if err := <-errs; !errors.As(err, &oe) || oe.Option != "WithRegistry" {
		t.Errorf("Accept error = %v, want the OptionError of WithRegistry", err)
	}
}

func TestNotAWebsocket(t *testing.T) {
	rec := newRecorder()
	ts := httptest.NewServer(wscancel.Handler(echo, rec.option()))
	defer ts.Close()
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status = %d, want coder/websocket's refusal", resp.StatusCode)
	}
	e := rec.wait(t)
	if e.op.Status() != cancel.StatusFailed || len(e.events) != 0 {
		t.Errorf("status = %v, events = %v; want failed and no event", e.op.Status(), e.events)
	}
}

func TestDefaultCloseStatus(t *testing.T) {
	for r, want := range map[cancel.Reason]websocket.StatusCode{
		cancel.ReasonShutdown: 1001, cancel.ReasonSignal: 1001, cancel.ReasonParent: 1001,
		cancel.ReasonTimeout: 4008, cancel.ReasonError: 1011, cancel.ReasonManual: 1000,
		cancel.ReasonCondition: 1000, cancel.ReasonDisconnect: 1006,
	} {
		code, text := wscancel.DefaultCloseStatus(r)
		if code != want || text != r.String() {
			t.Errorf("DefaultCloseStatus(%v) = %d %q, want %d %q", r, code, text, want, r.String())
		}
	}
}

// TestWriteOnlyHandlerSeesPeerClose: a handler that never reads still
// learns that the peer closed: the connection reads for it.
func TestWriteOnlyHandlerSeesPeerClose(t *testing.T) {
	url, rec := server(t, stream)
	c := dial(t, url)
	go func() { // answer the close handshake
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	if err := c.Close(websocket.StatusGoingAway, "navigating away"); err != nil {
		t.Fatal(err)
	}
	e := rec.wait(t)
	if e.op.Reason() != cancel.ReasonDisconnect {
		t.Errorf("reason = %v, want disconnect", e.op.Reason())
	}
	e.wantClose(t, 1001, "peer", "disconnect")
}

// TestWriteAbandoned: a write that its own context gives up on cannot be
// cut half way: the connection closes, with the reason of that context.
func TestWriteAbandoned(t *testing.T) {
	big := make([]byte, 32<<20) // more than the socket buffers hold
	fn := func(ctx context.Context, c *wscancel.Conn) error {
		wctx, cancelWrite := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancelWrite()
		return c.Write(wctx, websocket.MessageBinary, big)
	}
	url, rec := server(t, fn, wscancel.WithCloseTimeout(100*time.Millisecond))
	_ = dial(t, url) // never reads
	e := rec.wait(t)
	if e.op.Reason() != cancel.ReasonTimeout || !strings.HasPrefix(message(e.op), "write abandoned") {
		t.Errorf("reason, message = %v, %q; want timeout, write abandoned", e.op.Reason(), message(e.op))
	}
	e.wantClose(t, int64(wscancel.StatusTimeout), "local", "timeout")
	if e.counts["ws.messages.out"] != 0 {
		t.Errorf("counts = %v, want no message out", e.counts)
	}
}

// TestRequestTimeout: httpcancel's request timeout does not apply to
// websockets (upgrade requests become connections, which wscancel's own
// options bound); a route's own httpcancel.Timeout does, through the
// connection's parent.
func TestRequestTimeout(t *testing.T) {
	rec, rec2 := newRecorder(), newRecorder()
	mux := http.NewServeMux()
	mux.Handle("GET /bounded", httpcancel.Timeout(50*time.Millisecond, wscancel.Handler(echo, rec.option())))
	mux.Handle("GET /default", wscancel.Handler(echo, rec2.option()))
	ts := httptest.NewServer(httpcancel.Middleware(httpcancel.WithTimeout(50 * time.Millisecond))(mux))
	defer ts.Close()
	base := "ws" + strings.TrimPrefix(ts.URL, "http")

	bounded := dial(t, base+"/bounded")
	if ce := readUntilClosed(t, bounded); ce.Code != wscancel.StatusTimeout {
		t.Errorf("bounded route: client got %v, want 4008", ce)
	}
	rec.wait(t).wantClose(t, int64(wscancel.StatusTimeout), "local", "timeout")

	open := dial(t, base+"/default")
	<-time.After(150 * time.Millisecond) // three request timeouts
	roundTrip(t, open, "still open")
	open.Close(websocket.StatusNormalClosure, "")
	rec2.wait(t).wantClose(t, 1000, "peer", "disconnect")
}

// The idle timeout, the heartbeat and the maximum lifetime are for a
// connection in use: none of them may cancel one that End is closing
// (here for the whole close timeout, the peer never answering the close),
// which ends as its handler said.
func TestEndNotCancelledWhileClosing(t *testing.T) {
	// Each watch comes due during the close (which lasts closeTimeout), and
	// not before it on a loaded machine, where the message may take a while
	// to reach the handler.
	const due, closeTimeout = 250 * time.Millisecond, 800 * time.Millisecond
	watches := map[string]wscancel.Option{
		"idle":      wscancel.WithIdleTimeout(due),
		"heartbeat": wscancel.WithHeartbeat(10*time.Millisecond, due),
		"lifetime":  wscancel.WithMaxLifetime(due),
	}
	for wname, watch := range watches {
		for _, tc := range []struct {
			name   string
			ret    error
			status cancel.Status
			code   int64
		}{
			{"nil", nil, cancel.StatusCompleted, 1000},
			{"error", errors.New("boom"), cancel.StatusFailed, 1011},
		} {
			t.Run(wname+"/"+tc.name, func(t *testing.T) {
				readOne := func(ctx context.Context, c *wscancel.Conn) error {
					if _, _, err := c.Read(ctx); err != nil {
						return err
					}
					return tc.ret // End closes; the peer never answers the close
				}
				url, rec := server(t, readOne, watch, wscancel.WithCloseTimeout(closeTimeout))
				c := dial(t, url) // never reads: the close handshake lasts the close timeout
				if err := c.Write(context.Background(), websocket.MessageText, []byte("x")); err != nil {
					t.Fatal(err)
				}
				e := rec.wait(t)
				if e.op.Status() != tc.status || e.op.Err() != nil {
					t.Errorf("status = %v, cancellation = %v; want %v, none", e.op.Status(), e.op.Err(), tc.status)
				}
				e.wantClose(t, tc.code, "local", "")
			})
		}
	}
}

// The first heartbeat check may come at once, before Accept has set up
// the timer it resets (a data race; a nil dereference, in a timer's
// goroutine, that killed the process).
func TestHeartbeatCheckAtAccept(t *testing.T) {
	for range 20 {
		done := func(ctx context.Context, c *wscancel.Conn) error { return nil }
		url, rec := server(t, done, wscancel.WithHeartbeat(time.Nanosecond, time.Hour))
		c := dial(t, url)
		go c.Read(context.Background()) // answers the close
		rec.wait(t)
	}
}

// A ping that starts late (a busy machine) must not cut a healthy peer:
// coder/websocket drops the connection when a write's context has ended
// before the frame is written, so a ping's context lasts the heartbeat's
// limit, not its interval. With a 1µs interval, every ping is late.
func TestLatePingKeepsPeer(t *testing.T) {
	url, rec := server(t, echo, wscancel.WithHeartbeat(time.Microsecond, 5*time.Second))
	c := dial(t, url)
	for i := range 200 {
		roundTrip(t, c, "message "+strconv.Itoa(i))
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	e := rec.wait(t)
	if e.op.Status() != cancel.StatusCompleted {
		t.Errorf("status = %v (%v), want completed", e.op.Status(), e.op.Err())
	}
	e.wantClose(t, 1000, "peer", "disconnect")
}

// Without WithReadLimit, coder/websocket's 32 KiB holds: one byte more is
// 1009, and the cancellation names the limit. WithReadLimit(-1) lifts it.
func TestReadLimitDefaultAndNone(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		url, rec := server(t, echo)
		c := dial(t, url)
		if err := c.Write(context.Background(), websocket.MessageBinary, make([]byte, 32<<10+1)); err != nil {
			t.Fatal(err)
		}
		if ce := readUntilClosed(t, c); ce.Code != websocket.StatusMessageTooBig {
			t.Errorf("client got %v, want 1009", ce)
		}
		e := rec.wait(t)
		if e.op.Reason() != cancel.ReasonError || !strings.Contains(e.op.Cause().Error(), "32768 bytes") {
			t.Errorf("reason %v, cause %v; want error naming the 32768-byte limit", e.op.Reason(), e.op.Cause())
		}
		e.wantClose(t, 1009, "local", "error")
	})
	t.Run("none", func(t *testing.T) {
		url, rec := server(t, echo, wscancel.WithReadLimit(-1))
		c := dial(t, url)
		c.SetReadLimit(-1)
		msg := make([]byte, 1<<20)
		msg[len(msg)-1] = 7
		if err := c.Write(context.Background(), websocket.MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(context.Background())
		if err != nil || len(got) != len(msg) || got[len(got)-1] != 7 {
			t.Fatalf("echo of a 1 MiB message: %d bytes, %v", len(got), err)
		}
		c.Close(websocket.StatusNormalClosure, "")
		if e := rec.wait(t); e.op.Status() != cancel.StatusCompleted {
			t.Errorf("status = %v (%v), want completed", e.op.Status(), e.op.Cause())
		}
	})
}

// Pings and pongs are not activity: a connection whose peer answers every
// ping but sends no message, and to which nothing is written, times out.
func TestIdleTimeoutIgnoresPings(t *testing.T) {
	var pongs atomic.Int64
	url, rec := server(t, echo, wscancel.WithIdleTimeout(150*time.Millisecond),
		wscancel.WithHeartbeat(10*time.Millisecond, time.Second),
		wscancel.WithAcceptOptions(&websocket.AcceptOptions{OnPongReceived: func(context.Context, []byte) { pongs.Add(1) }}))
	c := dial(t, url)
	if ce := readUntilClosed(t, c); ce.Code != wscancel.StatusTimeout { // reading answers the pings
		t.Errorf("client got %v, want 4008", ce)
	}
	e := rec.wait(t)
	if e.op.Reason() != cancel.ReasonTimeout || !strings.HasPrefix(message(e.op), "idle for 150ms") {
		t.Errorf("reason, message = %v, %q; want the idle timeout", e.op.Reason(), message(e.op))
	}
	if pongs.Load() == 0 {
		t.Error("no pong came back: the test shows nothing")
	}
}
