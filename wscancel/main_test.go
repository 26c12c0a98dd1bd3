package wscancel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/wscancel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is an EventObserver for the connection operations of a test.
type recorder struct {
	mu       sync.Mutex
	events   []cancel.Event
	counts   map[string]int64
	cancelAt time.Time
	ended    chan ended
}

// ended is what the recorder saw of an operation when it ended.
type ended struct {
	op     *cancel.Operation
	at     time.Time
	events []cancel.Event
	counts map[string]int64
}

func newRecorder() *recorder {
	return &recorder{counts: map[string]int64{}, ended: make(chan ended, 16)}
}

func (r *recorder) option() wscancel.Option {
	return wscancel.WithOperationOptions(cancel.WithObserver(cancel.Hooks{
		OnEvent: func(_ *cancel.Operation, e cancel.Event) {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		},
		OnCount: func(_ *cancel.Operation, name string, n int64) {
			r.mu.Lock()
			r.counts[name] += n
			r.mu.Unlock()
		},
		OnCancel: func(*cancel.Operation, *cancel.Error) {
			r.mu.Lock()
			r.cancelAt = time.Now()
			r.mu.Unlock()
		},
		OnEnd: func(op *cancel.Operation) {
			r.mu.Lock()
			e := ended{op: op, at: time.Now(), events: append([]cancel.Event(nil), r.events...), counts: map[string]int64{}}
			for k, v := range r.counts {
				e.counts[k] = v
			}
			r.mu.Unlock()
			r.ended <- e
		},
	}))
}

// wait returns the connection operation once it ended.
func (r *recorder) wait(t *testing.T) ended {
	t.Helper()
	select {
	case e := <-r.ended:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("the connection's operation did not end")
		return ended{}
	}
}

// closeEvent checks that e saw ws.open first and ws.close last, once
// each, and returns the attributes of ws.close.
func (e ended) closeEvent(t *testing.T) (code int64, by, reason string) {
	t.Helper()
	if len(e.events) != 2 || e.events[0].Name != "ws.open" || e.events[1].Name != "ws.close" {
		names := []string{}
		for _, ev := range e.events {
			names = append(names, ev.Name)
		}
		t.Fatalf("events before End = %v, want [ws.open ws.close]", names)
	}
	for _, a := range e.events[1].Attrs {
		switch a.Key {
		case "ws.close.code":
			code = a.Value.Int64()
		case "ws.close.by":
			by = a.Value.String()
		case "cancel.reason":
			reason = a.Value.String()
		default:
			t.Errorf("ws.close has an unexpected attribute %v", a)
		}
	}
	return code, by, reason
}

func (e ended) wantClose(t *testing.T, code int64, by, reason string) {
	t.Helper()
	gotCode, gotBy, gotReason := e.closeEvent(t)
	if gotCode != code || gotBy != by || gotReason != reason {
		t.Errorf("ws.close = {%d %q %q}, want {%d %q %q}", gotCode, gotBy, gotReason, code, by, reason)
	}
}

// server serves fn with opts (and a recorder) at a ServeMux route and
// returns its ws:// URL.
func server(t *testing.T, fn func(context.Context, *wscancel.Conn) error, opts ...wscancel.Option) (string, *recorder) {
	t.Helper()
	rec := newRecorder()
	mux := http.NewServeMux()
	mux.Handle("GET /ws", wscancel.Handler(fn, append(opts, rec.option())...))
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the panic test panics
	ts.Start()
	t.Cleanup(ts.Close)
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws", rec
}

// dial connects a coder/websocket client.
func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, _ := dialRaw(t, url)
	return c
}

// dialRaw connects a client and returns its TCP connection too.
func dialRaw(t *testing.T, url string) (*websocket.Conn, *net.TCPConn) {
	t.Helper()
	var mu sync.Mutex
	var tcp *net.TCPConn
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			tcp = c.(*net.TCPConn)
			mu.Unlock()
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancelDial := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelDial()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	mu.Lock()
	defer mu.Unlock()
	return c, tcp
}

// readUntilClosed reads until the connection fails and returns the close
// frame the server sent.
func readUntilClosed(t *testing.T, c *websocket.Conn) websocket.CloseError {
	t.Helper()
	ce, err := readClose(c)
	if err != nil {
		t.Fatal(err)
	}
	return ce
}

// readClose is readUntilClosed for goroutines other than the test's.
func readClose(c *websocket.Conn) (websocket.CloseError, error) {
	ctx, cancelRead := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelRead()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			return ce, fmt.Errorf("client read failed without a close frame: %w", err)
		}
		return ce, nil
	}
}

func echo(ctx context.Context, c *wscancel.Conn) error {
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return err
		}
	}
}

func roundTrip(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancelRT := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelRT()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// message returns the message of the operation's cancellation.
func message(op *cancel.Operation) string {
	var e *cancel.Error
	if errors.As(op.Err(), &e) {
		return e.Message
	}
	return ""
}
