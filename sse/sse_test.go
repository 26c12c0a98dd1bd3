package sse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
)

// handle returns a handler running fn on a new stream; the error End
// returned is sent to ended.
func handle(t *testing.T, ended chan<- error, fn func(s *Stream) error, opts ...Option) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := New(w, r, opts...)
		if err != nil {
			t.Errorf("New: %v", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		err = s.End(fn(s))
		if ended != nil {
			ended <- err
		}
	}
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting")
		panic("unreachable")
	}
}

func TestHeadersFlushedBeforeFirstEvent(t *testing.T) {
	release := make(chan struct{})
	ended := make(chan error, 1)
	ts := serve(t, handle(t, ended, func(s *Stream) error {
		<-release
		return s.Send(Event{Data: "first"})
	}))
	// Get returns once the headers have arrived: before any event is sent.
	resp, p := open(t, ts.URL)
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
		t.Errorf("Content-Length set: %d %q", resp.ContentLength, resp.Header.Get("Content-Length"))
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d", resp.StatusCode)
	}
	close(release)
	if ev := next(t, p); ev.Data != "first" {
		t.Errorf("event %+v", ev)
	}
	if err := recv(t, ended); err != nil {
		t.Errorf("End = %v", err)
	}
}

func TestKeepsHeadersAndRemovesContentLength(t *testing.T) {
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Mine", "kept")
		w.Header().Set("Content-Length", "12")
		s, err := New(w, r)
		if err != nil {
			t.Error(err)
			return
		}
		s.End(s.Send(Event{Data: "x"}))
	}))
	resp, p := open(t, ts.URL)
	if resp.Header.Get("X-Mine") != "kept" || resp.ContentLength != -1 {
		t.Errorf("headers %v, length %d", resp.Header, resp.ContentLength)
	}
	readAll(t, p)
}

func TestEveryField(t *testing.T) {
	ts := serve(t, handle(t, nil, func(s *Stream) error {
		for _, e := range []Event{
			{ID: "1", Type: "update", Data: "one", Retry: 2500 * time.Millisecond},
			{Data: "no id, no type"},
			{ID: "ünïcode id: with colon", Type: "type with spaces", Data: ""},
			{},
		} {
			if err := s.Send(e); err != nil {
				return err
			}
		}
		return s.Comment("a comment\nin two lines")
	}, WithRetry(3*time.Second)))
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	const wire = "retry: 3000\n\n" +
		"id: 1\nevent: update\nretry: 2500\ndata: one\n\n" +
		"data: no id, no type\n\n" +
		"id: ünïcode id: with colon\nevent: type with spaces\ndata:\n\n" +
		"data:\n\n" +
		": a comment\n: in two lines\n"
	if string(body) != wire {
		t.Errorf("wire:\n%q\nwant\n%q", body, wire)
	}
	evs, comments, retry, err := parseAll(body)
	if err != nil {
		t.Fatal(err)
	}
	want := []parsed{
		{ID: "1", Type: "update", Data: "one"},
		{ID: "1", Type: "message", Data: "no id, no type"}, // the last event ID stays
		{ID: "ünïcode id: with colon", Type: "type with spaces", Data: ""},
		{ID: "ünïcode id: with colon", Type: "message", Data: ""},
	}
	if fmt.Sprint(evs) != fmt.Sprint(want) {
		t.Errorf("events %+v\nwant %+v", evs, want)
	}
	if retry != 2500 || fmt.Sprint(comments) != "[a comment in two lines]" {
		t.Errorf("retry %d, comments %q", retry, comments)
	}
}

func TestNewlineForms(t *testing.T) {
	datas := []string{
		"a\nb", "a\r\nb", "a\rb", "a\n\r\nb\r\rc", "trailing\n", "\nleading", "\r\n", "\n\n\n",
		"mixed\r\n\n\r\r\nend", " spaced \n  twice", "data: not a field\nid: nor this\n\nevent: x",
	}
	ts := serve(t, handle(t, nil, func(s *Stream) error {
		for i, d := range datas {
			if err := s.Send(Event{ID: fmt.Sprint(i), Data: d}); err != nil {
				return err
			}
		}
		return nil
	}))
	_, p := open(t, ts.URL)
	evs := readAll(t, p)
	if len(evs) != len(datas) {
		t.Fatalf("%d events for %d sends: %+v", len(evs), len(datas), evs)
	}
	for i, d := range datas {
		if want := (parsed{ID: fmt.Sprint(i), Type: "message", Data: normalize(d)}); evs[i] != want {
			t.Errorf("data %q: got %+v, want %+v", d, evs[i], want)
		}
	}
}

func TestInjectionRefused(t *testing.T) {
	bad := []Event{
		{ID: "1\nevent: admin"},
		{ID: "1\r"},
		{ID: "1\x00"},
		{Type: "x\ndata: forged"},
		{Type: "x\r\n"},
		{Type: "\x00"},
		{Retry: -time.Second},
	}
	ts := serve(t, handle(t, nil, func(s *Stream) error {
		for _, e := range bad {
			err := s.Send(e)
			if !errors.Is(err, ErrInvalidField) {
				t.Errorf("Send(%+v) = %v, want ErrInvalidField", e, err)
			}
			if err != nil && !strings.Contains(err.Error(), "sse: invalid event ") {
				t.Errorf("unclear error %q", err)
			}
		}
		if n := s.Events(); n != 0 {
			t.Errorf("%d events counted after refusals", n)
		}
		return s.Send(Event{ID: "ok", Data: "only this"})
	}))
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "id: ok\ndata: only this\n\n" {
		t.Errorf("body %q", body)
	}
}

func TestLastEventIDResume(t *testing.T) {
	rec := newRecorder()
	got := make(chan string, 4)
	ts := serve(t, handle(t, nil, func(s *Stream) error {
		got <- s.LastEventID()
		return s.Send(Event{ID: "next-after:" + s.LastEventID(), Data: "x"})
	}, WithLastEventIDQuery("lastEventId"), rec.option()))

	const id = "evt-7f3a/2024-06-01T12:00:00Z β"
	_, p := open(t, ts.URL, "Last-Event-ID", id)
	if ev := next(t, p); ev.ID != "next-after:"+id {
		t.Errorf("event %+v", ev)
	}
	if v := recv(t, got); v != id {
		t.Errorf("LastEventID = %q, want %q", v, id)
	}
	rec.waitEnd(t)
	if e, n := rec.event("sse.open"); n != 1 || !attr(e, "sse.resumed").Bool() {
		t.Errorf("sse.open %d times: %+v", n, e)
	}

	// The query parameter is a fallback; the header wins.
	_, p = open(t, ts.URL+"?lastEventId=q-1")
	readAll(t, p)
	_, p = open(t, ts.URL+"?lastEventId=q-2", "Last-Event-ID", "h-2")
	readAll(t, p)
	_, p = open(t, ts.URL)
	readAll(t, p)
	for _, want := range []string{"q-1", "h-2", ""} {
		if v := recv(t, got); v != want {
			t.Errorf("LastEventID = %q, want %q", v, want)
		}
	}
	for range 3 {
		rec.waitEnd(t)
	}
	if e, _ := rec.event("sse.open"); attr(e, "sse.resumed").Bool() {
		t.Errorf("a new client counted as resumed: %+v", e)
	}
}

func TestHeartbeat(t *testing.T) {
	rec := newRecorder()
	ts := serve(t, handle(t, nil, func(s *Stream) error {
		if err := s.Send(Event{Data: "hello"}); err != nil {
			return err
		}
		<-s.Context().Done() // only heartbeats from now on, until the client leaves
		return s.Context().Err()
	}, WithHeartbeat(20*time.Millisecond), rec.option()))
	resp, p := open(t, ts.URL)
	beats := make(chan string, 100)
	p.OnComment = func(c string) { beats <- c }
	go func() {
		for {
			if _, err := p.Next(); err != nil {
				return
			}
		}
	}()
	for range 3 {
		if c := recv(t, beats); c != "heartbeat" {
			t.Errorf("comment %q", c)
		}
	}
	resp.Body.Close() // the client leaves: the next heartbeat fails
	op := rec.waitEnd(t)
	if op.Status() != cancel.StatusCancelled || op.Reason() != cancel.ReasonDisconnect {
		t.Errorf("status %v, reason %v, cause %v", op.Status(), op.Reason(), op.Cause())
	}
	if n := rec.counts["sse.events"]; n != 1 {
		t.Errorf("sse.events = %d, want 1 (heartbeats are not events)", n)
	}
}

// smallBuffers makes the server's sockets' send buffers small, so that a
// client that stops reading blocks writes soon.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetWriteBuffer(8 << 10)
	}
	return c, err
}

func TestStalledReaderCutOff(t *testing.T) {
	const timeout = 200 * time.Millisecond
	rec := newRecorder()
	type result struct {
		err          error
		sent         int
		lastOK, fail time.Time
	}
	results := make(chan result, 1)
	payload := strings.Repeat("x", 16<<10)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		s, err := New(w, r, WithWriteTimeout(timeout), rec.option())
		if err != nil {
			t.Error(err)
			return
		}
		var res result
		for {
			if res.err = s.Send(Event{Data: payload}); res.err != nil {
				res.fail = time.Now()
				break
			}
			res.sent++
			res.lastOK = time.Now()
		}
		s.End(res.err)
		results <- res
	})
	mux.HandleFunc("GET /other", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fine") })
	ts := httptest.NewUnstartedServer(mux)
	ts.Listener = smallBuffers{ts.Listener}
	ts.Start()
	t.Cleanup(ts.Close)

	conn, _, hdr := rawGet(t, ts.Listener.Addr().String(), "/events", 4<<10)
	if hdr.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("headers %v", hdr)
	}
	// The client reads nothing more, and keeps the connection open.
	res := recv(t, results)
	if cancel.ReasonOf(res.err) != cancel.ReasonDisconnect || !errors.Is(res.err, context.Canceled) {
		t.Errorf("Send failed with %v, want a disconnect", res.err)
	}
	if res.sent == 0 {
		t.Errorf("no event sent before the client stalled")
	}
	if blocked := res.fail.Sub(res.lastOK); blocked < timeout/2 || blocked > timeout+time.Second {
		t.Errorf("the write gave up after %v, want about %v", blocked, timeout)
	}
	op := rec.waitEnd(t)
	if op.Reason() != cancel.ReasonDisconnect || op.Status() != cancel.StatusCancelled {
		t.Errorf("status %v reason %v", op.Status(), op.Reason())
	}
	if e, n := rec.event("sse.close"); n != 1 || attr(e, "cancel.reason").String() != "disconnect" ||
		attr(e, "sse.events").Int64() != int64(res.sent) {
		t.Errorf("sse.close %d: %+v (sent %d)", n, e, res.sent)
	}
	// The server serves others meanwhile.
	resp, err := http.Get(ts.URL + "/other")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "fine" {
		t.Errorf("other request: %q", b)
	}
	conn.Close()
}

func TestOutlivesServerWriteTimeout(t *testing.T) {
	const n = 8
	ended := make(chan error, 1)
	ts := httptest.NewUnstartedServer(handle(t, ended, func(s *Stream) error {
		tick := time.NewTicker(25 * time.Millisecond) // the stream lasts 4x WriteTimeout
		defer tick.Stop()
		for i := range n {
			<-tick.C
			if err := s.Send(Event{ID: fmt.Sprint(i), Data: "tick"}); err != nil {
				return err
			}
		}
		return nil
	}))
	ts.Config.WriteTimeout = 50 * time.Millisecond
	ts.Start()
	t.Cleanup(ts.Close)
	_, p := open(t, ts.URL)
	if evs := readAll(t, p); len(evs) != n || evs[n-1].ID != fmt.Sprint(n-1) {
		t.Errorf("got %d events: %+v", len(evs), evs)
	}
	if err := recv(t, ended); err != nil {
		t.Errorf("End = %v", err)
	}
}

func TestRollingDeadlineOutlivesServerWriteTimeout(t *testing.T) {
	const n = 8
	ended := make(chan error, 1)
	ts := httptest.NewUnstartedServer(handle(t, ended, func(s *Stream) error {
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for i := range n {
			<-tick.C
			if err := s.Send(Event{ID: fmt.Sprint(i), Data: "tick"}); err != nil {
				return err
			}
		}
		return nil
	}, WithWriteTimeout(40*time.Millisecond), WithHeartbeat(10*time.Millisecond)))
	ts.Config.WriteTimeout = 50 * time.Millisecond
	ts.Start()
	t.Cleanup(ts.Close)
	_, p := open(t, ts.URL)
	if evs := readAll(t, p); len(evs) != n {
		t.Errorf("got %d events: %+v", len(evs), evs)
	}
	if err := recv(t, ended); err != nil {
		t.Errorf("End = %v", err)
	}
}

// TestHTTP2IdleWithWriteTimeout: over HTTP/2 a write deadline is a timer
// that resets the stream, even when idle; the stream clears it after each
// write, so it may stay silent longer than its write timeout.
func TestHTTP2IdleWithWriteTimeout(t *testing.T) {
	// Long enough for each write to finish on a loaded machine under the
	// race detector (see TestHTTP2IdleFromStart).
	const timeout = 250 * time.Millisecond
	ended := make(chan error, 1)
	_, resp := serveHTTP2(t, handle(t, ended, func(s *Stream) error {
		if err := s.Send(Event{Data: "before"}); err != nil {
			return err
		}
		time.Sleep(3 * timeout) // the scenario: silence, not synchronisation
		return s.Send(Event{Data: "after"})
	}, WithWriteTimeout(timeout)), "")
	if evs := readAll(t, newParser(resp.Body)); len(evs) != 2 || evs[1].Data != "after" {
		t.Errorf("events %+v", evs)
	}
	if err := recv(t, ended); err != nil {
		t.Errorf("End = %v", err)
	}
}

// withParent runs handlers under an operation of their own, sent to ops,
// as a request middleware would.
func withParent(h http.Handler, ops chan<- *cancel.Operation) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, op := cancel.Start(r.Context(), "request")
		ops <- op
		h.ServeHTTP(w, r.WithContext(ctx))
		op.End(nil)
	})
}

func TestCancelledEvent(t *testing.T) {
	never := make(chan Event) // the handler waits for events that never come
	for _, tc := range []struct {
		name       string
		opts       []Option
		cancel     func(s, parent *cancel.Operation)
		reason     cancel.Reason // of the stream's operation
		root, text string        // what the client is told
	}{
		{name: "manual", cancel: func(s, _ *cancel.Operation) { s.Cancel(cancel.ReasonManual, "secret internal detail") },
			reason: cancel.ReasonManual, root: "manual", text: "the stream was cancelled"},
		{name: "timeout", opts: []Option{WithOperationOptions(cancel.WithTimeout(30 * time.Millisecond))},
			reason: cancel.ReasonTimeout, root: "timeout", text: "the stream timed out"},
		{name: "shutdown via parent", cancel: func(_, p *cancel.Operation) { p.Cancel(cancel.ReasonShutdown, "draining") },
			reason: cancel.ReasonParent, root: "shutdown", text: "the server is shutting down"},
		{name: "timeout via parent", cancel: func(_, p *cancel.Operation) { p.Cancel(cancel.ReasonTimeout, "") },
			reason: cancel.ReasonParent, root: "timeout", text: "the stream timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			streams := make(chan *Stream, 1)
			ended := make(chan error, 1)
			parents := make(chan *cancel.Operation, 1)
			ts := serve(t, withParent(handle(t, ended, func(s *Stream) error {
				if err := s.Send(Event{ID: "1", Data: "before"}); err != nil {
					return err
				}
				streams <- s
				err := s.SendChan(never)
				if again := s.Send(Event{Data: "after"}); again == nil || cancel.ReasonOf(again) != tc.reason {
					t.Errorf("Send after the cancellation = %v", again)
				}
				return err
			}, append(tc.opts, rec.option())...), parents))
			_, p := open(t, ts.URL)
			parent := recv(t, parents)
			if ev := next(t, p); ev.Data != "before" {
				t.Fatalf("first event %+v", ev)
			}
			s := recv(t, streams)
			if tc.cancel != nil {
				tc.cancel(s.Operation(), parent)
			}
			evs := readAll(t, p)
			if len(evs) != 1 || evs[0].Type != "cancelled" {
				t.Fatalf("after the cancellation: %+v", evs)
			}
			var data CancelledData
			if err := json.Unmarshal([]byte(evs[0].Data), &data); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf(`{"reason":%q,"message":%q}`, tc.root, tc.text)
			if evs[0].Data != want {
				t.Errorf("cancelled data %s, want %s", evs[0].Data, want)
			}
			err := recv(t, ended)
			if cancel.ReasonOf(err) != tc.reason || cancel.RootReason(err).String() != tc.root {
				t.Errorf("End = %v: reason %v, root %v", err, cancel.ReasonOf(err), cancel.RootReason(err))
			}
			op := rec.waitEnd(t)
			if op.Status() != cancel.StatusCancelled || op.Reason() != tc.reason {
				t.Errorf("status %v reason %v", op.Status(), op.Reason())
			}
			if e, n := rec.event("sse.close"); n != 1 || attr(e, "cancel.reason").String() != tc.root ||
				attr(e, "sse.events").Int64() != 2 {
				t.Errorf("sse.close %d: %+v", n, e)
			}
		})
	}
}

// TestCancelledWhileHandlerBusy: the final event goes out at the
// cancellation, though the handler is busy elsewhere and writes nothing.
func TestCancelledWhileHandlerBusy(t *testing.T) {
	streams := make(chan *Stream, 1)
	release := make(chan struct{})
	ended := make(chan error, 1)
	ts := serve(t, handle(t, ended, func(s *Stream) error {
		streams <- s
		<-release // busy, not watching the stream
		return nil
	}))
	_, p := open(t, ts.URL)
	s := recv(t, streams)
	s.Operation().Cancel(cancel.ReasonShutdown, "")
	if ev := next(t, p); ev.Type != "cancelled" || !strings.Contains(ev.Data, `"shutdown"`) {
		t.Errorf("event %+v", ev)
	}
	close(release)
	if err := recv(t, ended); cancel.ReasonOf(err) != cancel.ReasonShutdown {
		t.Errorf("End(nil) after a cancellation = %v, want the cancellation", err)
	}
	if evs := readAll(t, p); len(evs) != 0 {
		t.Errorf("more events %+v", evs)
	}
}

func TestClientGoneIsDisconnect(t *testing.T) {
	rec := newRecorder()
	streams := make(chan *Stream, 1)
	ended := make(chan error, 1)
	ts := serve(t, handle(t, ended, func(s *Stream) error {
		streams <- s
		<-s.Context().Done()
		// Once the client is gone, a write is refused with the reason.
		return s.Send(Event{Data: "too late"})
	}, rec.option()))
	resp, p := open(t, ts.URL)
	s := recv(t, streams)
	resp.Body.Close() // net/http notices at once: the GET has no body to read
	err := recv(t, ended)
	if cancel.ReasonOf(err) != cancel.ReasonDisconnect {
		t.Errorf("End = %v", err)
	}
	if s.Operation().Reason() != cancel.ReasonDisconnect {
		t.Errorf("reason %v", s.Operation().Reason())
	}
	_ = p
	rec.waitEnd(t)
	if n := rec.counts["sse.events"]; n != 0 {
		t.Errorf("%d events counted, want 0 (no final event for a client that left)", n)
	}
}

func TestProgress(t *testing.T) {
	ts := serve(t, handle(t, nil, func(s *Stream) error {
		s.Operation().Progress("halfway", slog.Int("done", 5), slog.Group("g", slog.String("k", "v")),
			slog.Duration("took", 1500*time.Millisecond), slog.Any("err", errors.New("boom")))
		return s.SendSeq(seqOf("a", "b", "c", "d"), cancel.ReportEvery(2))
	}, WithProgress()))
	_, p := open(t, ts.URL)
	evs := readAll(t, p)
	var got []string
	for _, e := range evs {
		got = append(got, e.Type+" "+e.Data)
	}
	want := []string{
		`progress {"message":"halfway","attrs":{"done":5,"err":"boom","g":{"k":"v"},"took":"1.5s"}}`,
		"message a", "message b",
		`progress {"message":"processed 2 items","attrs":{"items":2}}`,
		"message c", "message d",
		`progress {"message":"processed 4 items","attrs":{"items":4}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var d ProgressData
	if err := json.Unmarshal([]byte(evs[0].Data), &d); err != nil || d.Message != "halfway" {
		t.Errorf("ProgressData %+v %v", d, err)
	}
}

func TestNoProgressByDefault(t *testing.T) {
	ts := serve(t, handle(t, nil, func(s *Stream) error {
		s.Operation().Progress("internal")
		return s.Send(Event{Data: "x"})
	}))
	_, p := open(t, ts.URL)
	if evs := readAll(t, p); len(evs) != 1 || evs[0].Data != "x" {
		t.Errorf("events %+v", evs)
	}
}

func seqOf(datas ...string) iter.Seq[Event] {
	return func(yield func(Event) bool) {
		for _, d := range datas {
			if !yield(Event{Data: d}) {
				return
			}
		}
	}
}

func TestSendSeq(t *testing.T) {
	ended := make(chan error, 1)
	ts := serve(t, handle(t, ended, func(s *Stream) error {
		err := s.SendSeq(seqOf("1", "2", "3"))
		if s.Operation().Delivered() != 3 {
			t.Errorf("delivered %d", s.Operation().Delivered())
		}
		return err
	}))
	_, p := open(t, ts.URL)
	if evs := readAll(t, p); len(evs) != 3 || evs[2].Data != "3" {
		t.Errorf("events %+v", evs)
	}
	if err := recv(t, ended); err != nil {
		t.Errorf("SendSeq of a finite seq: End = %v", err)
	}
}

func TestSendSeqCancelled(t *testing.T) {
	streams := make(chan *Stream, 1)
	ended := make(chan error, 1)
	ts := serve(t, handle(t, ended, func(s *Stream) error {
		streams <- s
		// An endless producer that waits on the stream's context.
		return s.SendSeq(func(yield func(Event) bool) {
			for i := 0; ; i++ {
				if !yield(Event{ID: fmt.Sprint(i), Data: "tick"}) {
					return
				}
				if i == 2 {
					<-s.Context().Done()
				}
			}
		})
	}))
	_, p := open(t, ts.URL)
	s := recv(t, streams)
	for range 3 {
		next(t, p)
	}
	s.Operation().Cancel(cancel.ReasonCondition, "quota")
	err := recv(t, ended)
	if !errors.Is(err, context.Canceled) || cancel.ReasonOf(err) != cancel.ReasonCondition ||
		!strings.Contains(err.Error(), "cancelled (condition)") {
		t.Errorf("SendSeq = %v", err)
	}
	if evs := readAll(t, p); len(evs) != 1 || evs[0].Type != "cancelled" {
		t.Errorf("events %+v", evs)
	}
}

func TestSendChan(t *testing.T) {
	ch := make(chan Event)
	ended := make(chan error, 1)
	ts := serve(t, handle(t, ended, func(s *Stream) error { return s.SendChan(ch) }))
	_, p := open(t, ts.URL)
	for i := range 3 {
		ch <- Event{ID: fmt.Sprint(i), Data: "from a channel"}
		if ev := next(t, p); ev.ID != fmt.Sprint(i) {
			t.Errorf("event %+v", ev)
		}
	}
	close(ch)
	if err := recv(t, ended); err != nil {
		t.Errorf("SendChan of a closed channel = %v", err)
	}
	if evs := readAll(t, p); len(evs) != 0 {
		t.Errorf("events %+v", evs)
	}
}

func TestUnderHTTPCancelTimeout(t *testing.T) {
	rec := newRecorder()
	ended := make(chan error, 1)
	mux := http.NewServeMux()
	mux.Handle("GET /events", handle(t, ended, func(s *Stream) error {
		if err := s.Send(Event{ID: "1", Data: "first"}); err != nil {
			return err
		}
		return s.SendChan(make(chan Event)) // until the request times out
	}, rec.option()))
	ts := serve(t, httpcancel.Middleware(httpcancel.WithTimeout(100*time.Millisecond))(mux))
	_, p := open(t, ts.URL+"/events")
	if ev := next(t, p); ev.Data != "first" {
		t.Fatalf("event %+v", ev)
	}
	ev, err := p.Next()
	if err != nil {
		t.Fatalf("no final event: %v", err)
	}
	if ev.Type != "cancelled" || ev.Data != `{"reason":"timeout","message":"the stream timed out"}` {
		t.Errorf("final event %+v", ev)
	}
	err = recv(t, ended)
	if cancel.RootReason(err) != cancel.ReasonTimeout {
		t.Errorf("End = %v", err)
	}
	op := rec.waitEnd(t)
	if op.Name() != "sse GET /events" || op.Parent() == nil || op.Parent().Name() != "GET /events" {
		t.Errorf("operation %q under %v", op.Name(), op.Parent())
	}
}

func TestObserverEventsAndCounts(t *testing.T) {
	rec := newRecorder()
	ended := make(chan error, 1)
	ts := serve(t, handle(t, ended, func(s *Stream) error {
		for i := range 3 {
			if err := s.Send(Event{Data: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return s.Comment("not an event")
	}, rec.option(), WithName("sse ticker")))
	_, p := open(t, ts.URL)
	readAll(t, p)
	recv(t, ended)
	op := rec.waitEnd(t)
	if op.Name() != "sse ticker" || op.Status() != cancel.StatusCompleted {
		t.Errorf("%q %v", op.Name(), op.Status())
	}
	rec.mu.Lock()
	order := strings.Join(rec.order, ",")
	rec.mu.Unlock()
	if want := "sse.open,count:sse.events,count:sse.events,count:sse.events,sse.close,end"; order != want {
		t.Errorf("observed %s\nwant     %s", order, want)
	}
	e, _ := rec.event("sse.close")
	if attr(e, "cancel.reason").String() != "" || attr(e, "sse.events").Int64() != 3 {
		t.Errorf("sse.close %+v", e)
	}
	if e, _ := rec.event("sse.open"); len(e.Attrs) != 1 || e.Attrs[0].Key != "sse.resumed" || e.Attrs[0].Value.Bool() {
		t.Errorf("sse.open %+v", e)
	}
}

func TestDefaultName(t *testing.T) {
	rec := newRecorder()
	mux := http.NewServeMux()
	mux.Handle("GET /feed/{id}", handle(t, nil, func(s *Stream) error { return nil }, rec.option()))
	mux.Handle("/", handle(t, nil, func(s *Stream) error { return nil }, rec.option()))
	ts := serve(t, mux)
	_, p := open(t, ts.URL+"/feed/42")
	readAll(t, p)
	if op := rec.waitEnd(t); op.Name() != "sse GET /feed/{id}" {
		t.Errorf("name %q", op.Name())
	}
	// Without a pattern.
	rr := httptest.NewRecorder()
	s, err := New(rr, httptest.NewRequest("GET", "/x", nil), rec.option())
	if err != nil {
		t.Fatal(err)
	}
	s.End(nil)
	if op := rec.waitEnd(t); op.Name() != "sse" {
		t.Errorf("name %q", op.Name())
	}
}

func TestConcurrentWriters(t *testing.T) {
	const writers, each = 8, 50
	streams := make(chan *Stream, 1)
	ended := make(chan error, 1)
	ts := serve(t, handle(t, ended, func(s *Stream) error {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					s.Send(Event{ID: fmt.Sprintf("%d-%d", w, i), Type: "t", Data: strings.Repeat("line\n", w+1)})
					s.Comment("c")
				}
			})
		}
		streams <- s
		wg.Wait()
		return nil
	}, WithHeartbeat(time.Millisecond), WithProgress()))
	_, p := open(t, ts.URL)
	s := recv(t, streams)
	go s.Operation().Progress("from elsewhere")
	evs := readAll(t, p)
	for _, e := range evs {
		switch e.Type {
		case "t":
			var w, i int
			fmt.Sscanf(e.ID, "%d-%d", &w, &i)
			if e.Data != strings.Repeat("line\n", w+1) {
				t.Fatalf("torn event %+v", e)
			}
		case "progress":
		default:
			t.Fatalf("unexpected %+v", e)
		}
	}
	recv(t, ended)
}

func TestNewErrors(t *testing.T) {
	req := httptest.NewRequest("GET", "/", nil)
	for _, tc := range []struct {
		opts []Option
		want string
	}{
		{[]Option{nil}, "option 0 is nil"},
		{[]Option{WithHeartbeat(-1)}, "WithHeartbeat"},
		{[]Option{WithWriteTimeout(-1)}, "WithWriteTimeout"},
		{[]Option{WithRetry(-1)}, "WithRetry"},
		{[]Option{WithName("")}, "WithName"},
		{[]Option{WithLastEventIDQuery("")}, "WithLastEventIDQuery"},
		{[]Option{WithOperationOptions(nil)}, "WithOperationOptions"},
		{[]Option{WithOperationOptions(cancel.WithRegistry(nil))}, "WithRegistry"},
		// httptest.ResponseRecorder cannot set write deadlines.
		{[]Option{WithWriteTimeout(time.Second)}, "WithWriteTimeout: the ResponseWriter (*httptest.ResponseRecorder) does not support write deadlines"},
	} {
		rr := httptest.NewRecorder()
		s, err := New(rr, req, tc.opts...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New with %s: %v", tc.want, err)
		}
		if s != nil || rr.Code != 200 || rr.Body.Len() != 0 || rr.Header().Get("Content-Type") != "" && !strings.Contains(tc.want, "deadline") {
			t.Errorf("%s: something was written: %d %q %v", tc.want, rr.Code, rr.Body, rr.Header())
		}
	}
	var opErr *cancel.OptionError
	if _, err := New(httptest.NewRecorder(), req, WithOperationOptions(cancel.WithRegistry(nil))); !errors.As(err, &opErr) {
		t.Errorf("invalid cancel.Option: %T %v", err, err)
	}
	// A writer that cannot flush, as http.TimeoutHandler's.
	_, err := New(noFlush{httptest.NewRecorder()}, req)
	if err == nil || !strings.Contains(err.Error(), "cannot flush") {
		t.Errorf("New on a writer that cannot flush: %v", err)
	}
	if _, err := New(nil, req); err == nil {
		t.Error("New(nil, r) succeeded")
	}
	ts := serve(t, http.TimeoutHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := New(w, r); err == nil || !strings.Contains(err.Error(), "TimeoutHandler") {
			t.Errorf("under http.TimeoutHandler: %v", err)
		}
	}), time.Second, "late"))
	resp, err := http.Get(ts.URL)
	if err == nil {
		resp.Body.Close()
	}
}

type noFlush struct{ w http.ResponseWriter }

func (n noFlush) Header() http.Header         { return n.w.Header() }
func (n noFlush) Write(b []byte) (int, error) { return n.w.Write(b) }
func (n noFlush) WriteHeader(code int)        { n.w.WriteHeader(code) }

// TestInProcess: a ResponseRecorder flushes, so a stream works without a
// server (tests of handlers, say).
func TestInProcess(t *testing.T) {
	rr := httptest.NewRecorder()
	s, err := New(rr, httptest.NewRequest("GET", "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	s.Send(Event{Data: "a\nb"})
	s.Operation().Cancel(cancel.ReasonManual, "")
	<-s.Context().Done()
	if err := s.End(nil); cancel.ReasonOf(err) != cancel.ReasonManual {
		t.Errorf("End = %v", err)
	}
	if err := s.Send(Event{}); !errors.Is(err, ErrEnded) && cancel.ReasonOf(err) != cancel.ReasonManual {
		t.Errorf("Send after End = %v", err)
	}
	if again := s.End(errors.New("other")); cancel.ReasonOf(again) != cancel.ReasonManual {
		t.Errorf("second End = %v", again)
	}
	want := "data: a\ndata: b\n\nevent: cancelled\ndata: {\"reason\":\"manual\",\"message\":\"the stream was cancelled\"}\n\n"
	if rr.Body.String() != want || !rr.Flushed {
		t.Errorf("body %q (flushed %v)", rr.Body, rr.Flushed)
	}
}

func TestHandlerError(t *testing.T) {
	rec := newRecorder()
	rr := httptest.NewRecorder()
	s, _ := New(rr, httptest.NewRequest("GET", "/", nil), rec.option())
	boom := errors.New("database down")
	if err := s.End(boom); err != boom {
		t.Errorf("End = %v", err)
	}
	if op := rec.waitEnd(t); op.Status() != cancel.StatusFailed {
		t.Errorf("status %v", op.Status())
	}
	if e, _ := rec.event("sse.close"); attr(e, "cancel.reason").String() != "" {
		t.Errorf("sse.close %+v", e)
	}
}

// TestCancelWhileWriteBlocked: a cancellation interrupts a write blocked on
// a client that stopped reading, even without a write timeout; the handler
// returns soon after.
func TestCancelWhileWriteBlocked(t *testing.T) {
	streams := make(chan *Stream, 1)
	ended := make(chan error, 1)
	payload := strings.Repeat("y", 16<<10)
	ts := httptest.NewUnstartedServer(handle(t, ended, func(s *Stream) error {
		streams <- s
		for {
			if err := s.Send(Event{Data: payload}); err != nil {
				return err
			}
		}
	}))
	ts.Listener = smallBuffers{ts.Listener}
	ts.Start()
	t.Cleanup(ts.Close)
	conn, _, _ := rawGet(t, ts.Listener.Addr().String(), "/", 4<<10)
	s := recv(t, streams)
	// The socket buffers fill up and a Send blocks; the client never reads.
	start := time.Now()
	s.Operation().Cancel(cancel.ReasonManual, "operator")
	err := recv(t, ended)
	if cancel.ReasonOf(err) != cancel.ReasonManual {
		t.Errorf("End = %v", err)
	}
	if d := time.Since(start); d > finalTimeout+time.Second {
		t.Errorf("the handler returned %v after the cancellation", d)
	}
	conn.Close()
}

// TestUnderHTTPCancelClientGone: under httpcancel (inline), a client that
// leaves cancels the request's operation with ReasonDisconnect, and the
// stream's with ReasonDisconnect too, not ReasonParent.
func TestUnderHTTPCancelClientGone(t *testing.T) {
	rec := newRecorder()
	streams := make(chan *Stream, 1)
	mux := http.NewServeMux()
	mux.Handle("GET /events", handle(t, nil, func(s *Stream) error {
		streams <- s
		return s.SendChan(make(chan Event))
	}, rec.option()))
	ts := serve(t, httpcancel.Middleware()(mux))
	resp, _ := open(t, ts.URL+"/events")
	recv(t, streams)
	resp.Body.Close()
	op := rec.waitEnd(t)
	if op.Reason() != cancel.ReasonDisconnect || op.Parent().Reason() != cancel.ReasonDisconnect {
		t.Errorf("stream %v, request %v", op.Reason(), op.Parent().Reason())
	}
	if e, _ := rec.event("sse.close"); attr(e, "cancel.reason").String() != "disconnect" || attr(e, "sse.events").Int64() != 0 {
		t.Errorf("sse.close %+v", e)
	}
}

// A handler that returns a while after End, longer than its write timeout
// (a busy machine, its own clean-up), still ends its stream cleanly: End
// must not leave a deadline that cuts net/http's end of the response.
func TestEndThenLateReturn(t *testing.T) {
	returned := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		s, err := New(w, r, WithWriteTimeout(100*time.Millisecond))
		if err != nil {
			t.Error(err)
			return
		}
		s.Send(Event{Data: "one"})
		s.End(nil)
		<-time.After(300 * time.Millisecond) // the handler's own clean-up, past the write timeout
	}))
	defer ts.Close()
	resp, err := ts.Client().Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "data: one\n\n" {
		t.Errorf("body %q, %v; want the event and a clean end", body, err)
	}
	<-returned
}

// End from the handler while another goroutine's Send is stuck on a
// client that stopped reading, with no write timeout (and a heartbeat
// waiting behind it): End gives the write finalTimeout at most, rather
// than holding the handler until the client closes the connection.
func TestEndBoundsWriteUnderWay(t *testing.T) {
	sending := make(chan struct{})
	sent := make(chan error, 1)
	ended := make(chan error, 1)
	payload := strings.Repeat("z", 16<<20) // more than any socket buffer
	ts := httptest.NewUnstartedServer(handle(t, ended, func(s *Stream) error {
		go func() {
			close(sending)
			sent <- s.Send(Event{Data: payload})
		}()
		<-sending
		for s.Events() == 0 && len(sent) == 0 && sendFree(s) {
			runtime.Gosched() // until the Send holds the stream
		}
		return nil
	}, WithHeartbeat(time.Millisecond)))
	ts.Listener = smallBuffers{ts.Listener}
	ts.Start()
	t.Cleanup(ts.Close)
	conn, _, _ := rawGet(t, ts.Listener.Addr().String(), "/", 4<<10)
	defer conn.Close()
	start := time.Now()
	recv(t, ended)
	if d := time.Since(start); d > finalTimeout+2*time.Second {
		t.Errorf("End returned %v after the handler called it, want at most about %v", d, finalTimeout)
	}
	if err := recv(t, sent); err == nil {
		t.Error("the stuck Send succeeded")
	}
}

// A last event ID with a line ending or a NUL (only the query parameter can
// carry one) is no ID a conforming client sends: the stream starts afresh
// rather than hand the handler something that could end a field.
func TestLastEventIDWithNewlineDropped(t *testing.T) {
	got := make(chan string, 3)
	ts := serve(t, handle(t, nil, func(s *Stream) error {
		got <- s.LastEventID()
		return nil
	}, WithLastEventIDQuery("lastEventId")))
	for _, q := range []string{"7%0Aevent:%20x", "7%0D", "7%00"} {
		_, p := open(t, ts.URL+"?lastEventId="+q)
		readAll(t, p)
		if v := recv(t, got); v != "" {
			t.Errorf("?lastEventId=%s: LastEventID = %q, want \"\"", q, v)
		}
	}
}

// Heartbeats fill silences only: a stream whose events come more often
// than the heartbeat interval sends none, and one falling silent gets its
// first heartbeat an interval after its last event.
//
// Whether the events did come often enough is measured, not assumed: a
// loaded machine can hold the handler up for longer than the interval,
// and a heartbeat in that silence is right. Such a run is tried again.
func TestHeartbeatOnlyWhenSilent(t *testing.T) {
	const every = 100 * time.Millisecond
	for attempt := 1; attempt <= 5; attempt++ {
		if heartbeatOnlyWhenSilent(t, every) {
			return
		}
		t.Logf("attempt %d: the handler stalled for an interval, trying again", attempt)
	}
	t.Skip("the handler stalled for a heartbeat interval on every attempt")
}

// heartbeatOnlyWhenSilent runs TestHeartbeatOnlyWhenSilent's scenario
// once, and reports false if the busy phase had a silence of an interval.
func heartbeatOnlyWhenSilent(t *testing.T, every time.Duration) bool {
	const events = 40 // busy for twice the interval and more
	type busy struct {
		longest time.Duration // an upper bound on the silences between writes
		last    time.Time     // before the last event's Send: its write is later
	}
	done := make(chan busy, 1)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prev := time.Now() // New's write is later
		s, err := New(w, r, WithHeartbeat(every))
		if err != nil {
			t.Error(err)
			return
		}
		defer s.End(nil)
		tick := time.NewTicker(every / 20)
		defer tick.Stop()
		var b busy
		for i := range events {
			b.last = time.Now()
			if err := s.Send(Event{Data: strconv.Itoa(i)}); err != nil {
				return
			}
			// The silence before this event's write began after prev and
			// ended before now.
			b.longest = max(b.longest, time.Since(prev))
			prev = b.last
			<-tick.C
		}
		done <- b
		<-s.Context().Done()
	}))
	resp, p := open(t, ts.URL)
	defer resp.Body.Close()
	beats := make(chan time.Time, 100)
	p.OnComment = func(string) { beats <- time.Now() }
	for range events {
		if _, err := p.Next(); err != nil {
			t.Fatal(err)
		}
	}
	b := recv(t, done)
	if n := len(beats); n != 0 {
		if b.longest >= every {
			return false
		}
		t.Fatalf("%d heartbeats while events came every %v (the longest silence under %v)", n, every/20, b.longest)
	}
	go func() {
		for {
			if _, err := p.Next(); err != nil {
				return
			}
		}
	}()
	if gap := recv(t, beats).Sub(b.last); gap < every-every/10 {
		t.Errorf("first heartbeat %v after the last event, want about %v", gap, every)
	}
	return true
}

// Over HTTP/2 too, a stream whose request times out under httpcancel gets
// its final "cancelled" event to the client, and the response is then cut
// (the stream reset), never ended as if whole.
func TestUnderHTTPCancelTimeoutHTTP2(t *testing.T) {
	ended := make(chan error, 1)
	_, resp := serveHTTP2(t, httpcancel.Middleware(httpcancel.WithTimeout(100*time.Millisecond))(
		handle(t, ended, func(s *Stream) error {
			if err := s.Send(Event{ID: "1", Data: "first"}); err != nil {
				return err
			}
			return s.SendChan(make(chan Event)) // until the request times out
		})), "")
	p := newParser(resp.Body)
	if ev := next(t, p); ev.Data != "first" {
		t.Fatalf("event %+v", ev)
	}
	ev := next(t, p)
	if ev.Type != "cancelled" || ev.Data != `{"reason":"timeout","message":"the stream timed out"}` {
		t.Errorf("final event %+v", ev)
	}
	if cancel.RootReason(recv(t, ended)) != cancel.ReasonTimeout {
		t.Error("the stream did not end by the timeout")
	}
	if _, err := p.Next(); err == nil || err == io.EOF {
		t.Errorf("after the final event the response ended with %v, want it cut (a stream reset)", err)
	}
}

// Over HTTP/2 a client that stops reading stalls the stream on flow
// control, not on socket buffers: the write timeout cuts it off all the
// same (the stream is reset), counted as a disconnect, and the other
// streams of the connection go on.
func TestStalledReaderCutOffHTTP2(t *testing.T) {
	const timeout = 200 * time.Millisecond
	rec := newRecorder()
	results := make(chan error, 1)
	payload := strings.Repeat("x", 16<<10)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		s, err := New(w, r, WithWriteTimeout(timeout), rec.option())
		if err != nil {
			t.Error(err)
			return
		}
		for err == nil {
			err = s.Send(Event{Data: payload})
		}
		s.End(err)
		results <- err
	})
	mux.HandleFunc("GET /other", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fine") })
	ts, _ := serveHTTP2(t, mux, "/events")
	// The client reads nothing, and keeps the stream open.
	err := recv(t, results)
	if cancel.ReasonOf(err) != cancel.ReasonDisconnect {
		t.Errorf("Send failed with %v, want a disconnect", err)
	}
	if op := rec.waitEnd(t); op.Reason() != cancel.ReasonDisconnect {
		t.Errorf("operation ended %v (%v), want disconnect", op.Status(), op.Cause())
	}
	// The connection still serves other requests.
	other, err := ts.Client().Get(ts.URL + "/other")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(other.Body)
	other.Body.Close()
	if string(b) != "fine" {
		t.Errorf("other request: %q", b)
	}
}
