package wscancel_test

import (
	"context"
	"errors"
	"testing"

	"github.com/coder/websocket"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/wscancel"
)

// A peer's normal close reaches a handler that writes all along as a
// failed Write too: coder/websocket closes the connection while the read
// that took the close frame is still returning. That write must not
// record the peer as vanished (1006, "connection lost", cancelled): the
// read says how it ended.
func TestPeerClosesNormallyWhileWriting(t *testing.T) {
	flood := func(ctx context.Context, c *wscancel.Conn) error {
		for {
			if err := c.Write(ctx, websocket.MessageText, []byte("x")); err != nil {
				return err
			}
		}
	}
	for i := range 50 { // the race is narrow: about one run in six lost it
		url, rec := server(t, flood)
		c := dial(t, url)
		go func() { // reads, and so answers the close handshake
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					return
				}
			}
		}()
		if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Fatal(err)
		}
		e := rec.wait(t)
		if e.op.Status() != cancel.StatusCompleted {
			t.Errorf("run %d: status = %v (%v), want completed", i, e.op.Status(), e.op.Err())
		}
		e.wantClose(t, 1000, "peer", "disconnect")
		if t.Failed() {
			return
		}
	}
}

// Once the operation is cancelled, Write fails with its *cancel.Error
// whatever its context: no data message goes out after the cancellation.
func TestWriteAfterCancel(t *testing.T) {
	res := make(chan error, 1)
	fn := func(ctx context.Context, c *wscancel.Conn) error {
		c.Operation().Cancel(cancel.ReasonManual, "operator")
		err := c.Write(context.Background(), websocket.MessageText, []byte("after the cancellation"))
		res <- err
		return err
	}
	url, rec := server(t, fn)
	c := dial(t, url)
	var got []string
	var ce websocket.CloseError
	for {
		_, data, err := c.Read(context.Background())
		if err != nil {
			if !errors.As(err, &ce) {
				t.Fatalf("client read failed without a close frame: %v", err)
			}
			break
		}
		got = append(got, string(data))
	}
	if len(got) != 0 || ce.Code != websocket.StatusNormalClosure {
		t.Errorf("client got %q then %v, want no message and 1000", got, ce)
	}
	var cerr *cancel.Error
	if err := <-res; !errors.As(err, &cerr) || cerr.Reason != cancel.ReasonManual {
		t.Errorf("Write after Cancel returned %v, want the cancellation", err)
	}
	e := rec.wait(t)
	if e.counts["ws.messages.out"] != 0 {
		t.Errorf("counts = %v, want no message out", e.counts)
	}
	e.wantClose(t, 1000, "local", "manual")
}

// A close frame without a code (1005 at the receiver) is what a browser's
// WebSocket.close() and Node's ws close() send: a peer saying goodbye,
// which ends the session as completed like 1000 does.
func TestPeerClosesWithoutCode(t *testing.T) {
	url, rec := server(t, echo)
	c := dial(t, url)
	roundTrip(t, c, "hi")
	if err := c.Close(websocket.StatusNoStatusRcvd, ""); err != nil { // coder/websocket sends an empty close frame
		t.Fatal(err)
	}
	e := rec.wait(t)
	if e.op.Status() != cancel.StatusCompleted || e.op.Reason() != cancel.ReasonDisconnect {
		t.Errorf("status, reason = %v, %v (%v); want completed, disconnect", e.op.Status(), e.op.Reason(), e.op.Err())
	}
	e.wantClose(t, 1005, "peer", "disconnect")
}

// A WithCloseStatus function that panics is contained: the connection
// closes with DefaultCloseStatus's code for the reason, and the program
// goes on (the function runs on a goroutine of the cancellation's).
func TestCloseStatusPanicContained(t *testing.T) {
	wait := func(ctx context.Context, c *wscancel.Conn) error {
		<-ctx.Done()
		return context.Cause(ctx)
	}
	ops := make(chan *cancel.Operation, 1)
	onOpen := func(ctx context.Context, c *wscancel.Conn) error {
		ops <- c.Operation()
		return wait(ctx, c)
	}
	url, rec := server(t, onOpen, wscancel.WithCloseStatus(func(cancel.Reason) (websocket.StatusCode, string) {
		panic("bad status function")
	}))
	c := dial(t, url)
	op := <-ops
	op.Cancel(cancel.ReasonManual, "operator")
	if ce := readUntilClosed(t, c); ce.Code != websocket.StatusNormalClosure {
		t.Errorf("client got %v, want 1000 (manual's default)", ce)
	}
	rec.wait(t).wantClose(t, 1000, "local", "manual")
}
