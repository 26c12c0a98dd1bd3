package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
	"github.com/cancelable-go/cancelable/wscancel"
)

// wsNodeLine is one line printed by tools/node/ws-client.mjs.
type wsNodeLine struct {
	Event   string `json:"event"`
	Data    string `json:"data"`
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// wsNodeClient finds node and the ws client script, or skips (fails on CI).
func wsNodeClient(t *testing.T) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is not installed, and CI needs it for the websocket e2e tests")
		}
		t.Skip("node is not installed")
	}
	script, err = filepath.Abs(filepath.Join("..", "node", "ws-client.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("..", "node", "node_modules", "ws")); err != nil {
		msg := "npm package ws missing: run `cd tools/node && npm ci`"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return node, script
}

// runWSNode runs the client on scenario against url, calling each for every
// line it prints, and returns all the lines once it exited.
func runWSNode(t *testing.T, url, scenario string, each func(wsNodeLine)) []wsNodeLine {
	t.Helper()
	node, script := wsNodeClient(t)
	ctx, cancelRun := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelRun()
	cmd := exec.CommandContext(ctx, node, script, url, scenario)
	cmd.Dir = filepath.Dir(script) // node resolves `ws` from tools/node/node_modules
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []wsNodeLine
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var l wsNodeLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Errorf("node printed %q: %v", sc.Text(), err)
			continue
		}
		if l.Event == "error" {
			t.Errorf("node client error: %s", l.Message)
		}
		lines = append(lines, l)
		if each != nil {
			each(l)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node %s: %v\n%s", scenario, err, stderr.String())
	}
	return lines
}

func wsLastClose(t *testing.T, lines []wsNodeLine) wsNodeLine {
	t.Helper()
	if len(lines) == 0 || lines[len(lines)-1].Event != "close" {
		t.Fatalf("node's last line is not a close: %+v", lines)
	}
	return lines[len(lines)-1]
}

// wsEnded records the connection operations' ends and their ws.close.
type wsEnded struct {
	mu     sync.Mutex
	closes map[*cancel.Operation]map[string]any
	ended  chan *cancel.Operation
}

func newWSEnded() *wsEnded {
	return &wsEnded{closes: map[*cancel.Operation]map[string]any{}, ended: make(chan *cancel.Operation, 8)}
}

func (w *wsEnded) option() wscancel.Option {
	return wscancel.WithOperationOptions(cancel.WithObserver(cancel.Hooks{
		OnEvent: func(op *cancel.Operation, e cancel.Event) {
			if e.Name != "ws.close" {
				return
			}
			m := map[string]any{}
			for _, a := range e.Attrs {
				m[a.Key] = a.Value.Any()
			}
			w.mu.Lock()
			w.closes[op] = m
			w.mu.Unlock()
		},
		OnEnd: func(op *cancel.Operation) { w.ended <- op },
	}))
}

// wait returns the next operation to end and the attributes of its ws.close.
func (w *wsEnded) wait(t *testing.T) (*cancel.Operation, map[string]any) {
	t.Helper()
	select {
	case op := <-w.ended:
		w.mu.Lock()
		defer w.mu.Unlock()
		return op, w.closes[op]
	case <-time.After(10 * time.Second):
		t.Fatal("the connection's operation did not end")
		return nil, nil
	}
}

func wantWSClose(t *testing.T, got map[string]any, code int64, by, reason string) {
	t.Helper()
	if got["ws.close.code"] != code || got["ws.close.by"] != by || got["cancel.reason"] != reason {
		t.Errorf("ws.close = %v, want code %d by %s reason %q", got, code, by, reason)
	}
}

func wsURL(srv *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + path
}

// wsStreamTicks writes a message every few milliseconds until cancelled.
func wsStreamTicks(ctx context.Context, c *wscancel.Conn) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
		if err := c.WriteJSON(ctx, map[string]int{"tick": i}); err != nil {
			return err
		}
	}
}

func TestWSNodeEcho(t *testing.T) {
	rec := newWSEnded()
	mux := http.NewServeMux()
	mux.Handle("GET /echo", wscancel.Handler(func(ctx context.Context, c *wscancel.Conn) error {
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				return err
			}
			if err := c.Write(ctx, typ, data); err != nil {
				return err
			}
		}
	}, rec.option()))
	srv := httptest.NewServer(httpcancel.Middleware()(mux))
	defer srv.Close()

	lines := runWSNode(t, wsURL(srv, "/echo"), "echo", nil)
	if len(lines) < 2 || lines[0].Event != "open" || lines[1].Event != "message" || lines[1].Data != "hello from node" {
		t.Errorf("node saw %+v, want open then the echo", lines)
	}
	if cl := wsLastClose(t, lines); cl.Code != 1000 {
		t.Errorf("node's close = %+v, want 1000 (its own, echoed)", cl)
	}
	op, closeEv := rec.wait(t)
	if op.Name() != "ws GET /echo" || op.Reason() != cancel.ReasonDisconnect {
		t.Errorf("operation %q reason %v, want ws GET /echo, disconnect", op.Name(), op.Reason())
	}
	wantWSClose(t, closeEv, 1000, "peer", "disconnect")
}

func TestWSNodeShutdown(t *testing.T) {
	rec := newWSEnded()
	srv := httptest.NewUnstartedServer(nil)
	drain := httpcancel.OnShutdown(srv.Config, 0)
	mux := http.NewServeMux()
	mux.Handle("GET /ticks", wscancel.Handler(wsStreamTicks, rec.option()))
	srv.Config.Handler = httpcancel.Middleware(httpcancel.WithDrain(drain))(mux)
	srv.Start()
	defer srv.Close()

	shut := make(chan error, 1)
	messages := 0
	lines := runWSNode(t, wsURL(srv, "/ticks"), "listen", func(l wsNodeLine) {
		if l.Event == "message" {
			if messages++; messages == 3 { // mid-stream
				go func() { shut <- srv.Config.Shutdown(context.Background()) }()
			}
		}
	})
	if cl := wsLastClose(t, lines); cl.Code != 1001 || cl.Reason != "shutdown" {
		t.Errorf("node's close = %+v, want 1001 shutdown", cl)
	}
	op, closeEv := rec.wait(t)
	if err := <-shut; err != nil {
		t.Error(err)
	}
	if cancel.RootReason(op.Err()) != cancel.ReasonShutdown {
		t.Errorf("root reason = %v, want shutdown", cancel.RootReason(op.Err()))
	}
	wantWSClose(t, closeEv, 1001, "local", "shutdown")
}

func TestWSNodeTimeout(t *testing.T) {
	rec := newWSEnded()
	srv := httptest.NewServer(wscancel.Handler(wsStreamTicks, rec.option(),
		wscancel.WithMaxLifetime(100*time.Millisecond)))
	defer srv.Close()

	lines := runWSNode(t, wsURL(srv, ""), "listen", nil)
	if cl := wsLastClose(t, lines); cl.Code != int(wscancel.StatusTimeout) || cl.Reason != "timeout" {
		t.Errorf("node's close = %+v, want %d timeout", cl, wscancel.StatusTimeout)
	}
	op, closeEv := rec.wait(t)
	if op.Reason() != cancel.ReasonTimeout {
		t.Errorf("reason = %v, want timeout", op.Reason())
	}
	wantWSClose(t, closeEv, int64(wscancel.StatusTimeout), "local", "timeout")
}

func TestWSNodeTerminate(t *testing.T) {
	rec := newWSEnded()
	srv := httptest.NewServer(wscancel.Handler(wsStreamTicks, rec.option()))
	defer srv.Close()

	lines := runWSNode(t, wsURL(srv, ""), "terminate", nil)
	if len(lines) == 0 || lines[len(lines)-1].Event != "terminated" {
		t.Fatalf("node saw %+v, want it to terminate", lines)
	}
	op, closeEv := rec.wait(t)
	if op.Reason() != cancel.ReasonDisconnect {
		t.Errorf("reason = %v (%v), want disconnect", op.Reason(), op.Err())
	}
	wantWSClose(t, closeEv, 1006, "peer", "disconnect")
}
