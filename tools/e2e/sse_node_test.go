package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/sse"
)

// nodeScript finds node and one of our node scripts (tools/node), or
// skips the test when they are missing, unless CI is set.
func nodeScript(t *testing.T, name string) (node, script string) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node not found: %v", err)
	}
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "eventsource")); err != nil {
		missing("npm packages missing (run npm ci in %s): %v", dir, err)
	}
	return node, filepath.Join(dir, name)
}

type nodeLine struct {
	Kind       string `json:"kind"`
	Type       string `json:"type"`
	ID         string `json:"id"`
	Data       string `json:"data"`
	ReadyState int    `json:"readyState"`
}

// A real EventSource (npm eventsource, WHATWG) reads our events exactly,
// multi-line data and non-integer IDs included, resumes after a reconnect
// with Last-Event-ID, and gets the final "cancelled" event.
func TestSSENodeEventSource(t *testing.T) {
	node, script := nodeScript(t, "sse-client.mjs")

	resumedFrom := make(chan string, 4)
	ends := make(chan error, 4)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		s, err := sse.New(w, r, sse.WithRetry(50*time.Millisecond), sse.WithHeartbeat(time.Second))
		if err != nil {
			t.Error(err)
			return
		}
		resumedFrom <- s.LastEventID()
		switch s.LastEventID() {
		case "":
			err = s.SendSeq(func(yield func(sse.Event) bool) {
				_ = yield(sse.Event{ID: "evt-7f3a:1", Data: "hello"}) &&
					yield(sse.Event{ID: "evt-7f3a:2", Type: "multi", Data: "line1\nline2\r\nline3\rline4\n"}) &&
					yield(sse.Event{ID: "evt-7f3a:3", Data: "  leading spaces: and colons"})
			})
			// The stream ends: EventSource reconnects.
		case "evt-7f3a:3":
			err = s.Send(sse.Event{ID: "evt-7f3a:4", Data: "resumed after evt-7f3a:3"})
			if err == nil {
				s.Operation().Cancel(cancel.ReasonShutdown, "draining node-1")
				<-s.Context().Done()
			}
		default:
			t.Errorf("unexpected Last-Event-ID %q", s.LastEventID())
		}
		ends <- s.End(err)
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()

	ctx, cancelCmd := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelCmd()
	cmd := exec.CommandContext(ctx, node, script, ts.URL+"/events")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.Bytes())
	}

	var got []nodeLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var l nodeLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		if l.Kind == "error" { // the end of the first stream, before reconnecting
			if l.ReadyState != 0 {
				t.Errorf("error with readyState %d (not reconnecting)", l.ReadyState)
			}
			continue
		}
		got = append(got, l)
	}
	want := []nodeLine{
		{Kind: "open"},
		{Kind: "event", Type: "message", ID: "evt-7f3a:1", Data: "hello"},
		{Kind: "event", Type: "multi", ID: "evt-7f3a:2", Data: "line1\nline2\nline3\nline4\n"},
		{Kind: "event", Type: "message", ID: "evt-7f3a:3", Data: "  leading spaces: and colons"},
		{Kind: "open"},
		{Kind: "event", Type: "message", ID: "evt-7f3a:4", Data: "resumed after evt-7f3a:3"},
		// The final event has no id. The WHATWG standard gives an event the
		// source's last event ID ("evt-7f3a:4"); npm eventsource gives it
		// the event's own id or "" (it still resumes from the last one).
		{Kind: "event", Type: "cancelled", ID: "", Data: `{"reason":"shutdown","message":"the server is shutting down"}`},
	}
	if len(got) != len(want) {
		t.Fatalf("node saw %d things, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	for _, id := range []string{"", "evt-7f3a:3"} {
		if v := <-resumedFrom; v != id {
			t.Errorf("Last-Event-ID %q, want %q", v, id)
		}
	}
	if err := <-ends; err != nil {
		t.Errorf("first stream: End = %v", err)
	}
	if err := <-ends; cancel.ReasonOf(err) != cancel.ReasonShutdown {
		t.Errorf("second stream: End = %v", err)
	}
}
