package wscancel_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
	"github.com/cancelable-go/cancelable/wscancel"
)

// Every connection is an operation under the request's: here an echo
// server behind httpcancel's middleware, with a heartbeat and an idle
// timeout.
func Example() {
	echo := wscancel.Handler(func(ctx context.Context, c *wscancel.Conn) error {
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				return err // the peer left, or the operation was cancelled
			}
			if err := c.Write(ctx, typ, data); err != nil {
				return err
			}
		}
	}, wscancel.WithHeartbeat(15*time.Second, time.Minute), wscancel.WithIdleTimeout(10*time.Minute))

	mux := http.NewServeMux()
	mux.Handle("GET /echo", echo) // its connections are named "ws GET /echo"
	srv := httptest.NewServer(httpcancel.Middleware()(mux))
	defer srv.Close()

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/echo", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageText, []byte("hello"))
	_, data, _ := c.Read(ctx)
	fmt.Println(string(data))
	c.Close(websocket.StatusNormalClosure, "bye")
	// Output: hello
}

// A server shutting down closes its websockets with 1001 "shutdown": the
// client knows to reconnect elsewhere, instead of seeing the connection
// drop.
func Example_shutdown() {
	ticker := wscancel.Handler(func(ctx context.Context, c *wscancel.Conn) error {
		for i := 0; ; i++ {
			select {
			case <-ctx.Done(): // cancelled: the close frame is on its way
				return context.Cause(ctx)
			case <-time.After(time.Millisecond):
			}
			if err := c.WriteJSON(ctx, map[string]int{"tick": i}); err != nil {
				return err
			}
		}
	})
	srv := httptest.NewUnstartedServer(nil)
	drain := httpcancel.OnShutdown(srv.Config, 0) // cancel what runs as soon as Shutdown starts
	srv.Config.Handler = httpcancel.Middleware(httpcancel.WithDrain(drain))(ticker)
	srv.Start()
	defer srv.Close()

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	_, first, _ := c.Read(ctx)
	fmt.Println(string(first))

	go srv.Config.Shutdown(ctx)
	for {
		if _, _, err := c.Read(ctx); err != nil {
			var ce websocket.CloseError
			errors.As(err, &ce)
			fmt.Println(int(ce.Code), ce.Reason)
			return
		}
	}
	// Output:
	// {"tick":0}
	// 1001 shutdown
}

// Accept gives the caller the connection to run as it likes; End closes
// it and ends its operation.
func ExampleAccept() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := wscancel.Accept(w, r, wscancel.WithName("ws greeter"))
		if err != nil {
			return // Accept answered the request
		}
		var hello struct{ Name string }
		err = c.ReadJSON(c.Context(), &hello)
		if err == nil {
			err = c.WriteJSON(c.Context(), map[string]string{"greeting": "hello " + hello.Name})
		}
		c.End(err) // a nil err closes with 1000, an error with 1011
	}))
	defer srv.Close()

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageText, []byte(`{"Name":"Ada"}`))
	_, data, _ := c.Read(ctx)
	fmt.Println(string(data))
	_, _, err = c.Read(ctx)
	fmt.Println(websocket.CloseStatus(err))
	// Output:
	// {"greeting":"hello Ada"}
	// StatusNormalClosure
}

// WithProgress sends the progress reports of the connection's operation
// to the client; a timeout closes with StatusTimeout (4008).
func ExampleWithProgress() {
	export := wscancel.Handler(func(ctx context.Context, c *wscancel.Conn) error {
		op := cancel.FromContext(ctx)
		op.Progress("exporting", slog.Int("rows", 500))
		<-ctx.Done() // the rest takes too long
		return context.Cause(ctx)
	}, wscancel.WithProgress(), wscancel.WithOperationOptions(cancel.WithTimeout(50*time.Millisecond)))
	srv := httptest.NewServer(export)
	defer srv.Close()

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	_, data, _ := c.Read(ctx)
	fmt.Println(string(data))
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	errors.As(err, &ce)
	fmt.Println(ce.Code == wscancel.StatusTimeout, ce.Reason)
	// Output:
	// {"type":"progress","message":"exporting","attrs":{"rows":500}}
	// true timeout
}
