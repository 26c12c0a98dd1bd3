package sse

import (
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// TestHTTP2IdleFromStart: over HTTP/2, the write deadline New sets
// (WithWriteTimeout) must not stay on the stream: a stream silent from its
// start for longer than its write timeout (the first event later than
// that, no WithRetry, no heartbeat yet) must not be reset.
func TestHTTP2IdleFromStart(t *testing.T) {
	// Every write must finish within the timeout, or the stream is reset
	// as it should be: over HTTP/2 the deadline is set and cleared through
	// the connection's serve goroutine, which a loaded machine running the
	// race detector can hold up for tens of milliseconds (50ms reset
	// streams whose writes went out).
	const timeout = 250 * time.Millisecond
	ended := make(chan error, 1)
	_, resp := serveHTTP2(t, handle(t, ended, func(s *Stream) error {
		<-time.After(3 * timeout) // the scenario: silence from the start, not synchronisation
		return s.Send(Event{Data: "first"})
	}, WithWriteTimeout(timeout)), "")
	p := newParser(resp.Body)
	var evs []parsed
	for {
		ev, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Errorf("after %d events: %v", len(evs), err)
			break
		}
		evs = append(evs, ev)
	}
	if len(evs) != 1 || evs[0].Data != "first" {
		t.Errorf("events %+v", evs)
	}
	if err := recv(t, ended); err != nil {
		t.Errorf("End = %v", err)
	}
}

// TestCancelledThenLateEnd: a stream with no write timeout (and a
// server without WriteTimeout) is cancelled; the final event goes out; the
// handler ends the stream some time later (its own clean-up, longer than
// finalTimeout). The response must still end cleanly: the deadline the
// final event was written under must not be left on the connection.
func TestCancelledThenLateEnd(t *testing.T) {
	streams := make(chan *Stream, 1)
	ended := make(chan error, 1)
	ts := serve(t, handle(t, ended, func(s *Stream) error {
		streams <- s
		<-s.Context().Done()
		<-time.After(finalTimeout + 300*time.Millisecond) // clean-up, past finalTimeout: the scenario
		return nil
	}))
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s := recv(t, streams)
	s.Operation().Cancel(cancel.ReasonManual, "")
	body, err := io.ReadAll(resp.Body)
	want := "event: cancelled\ndata: {\"reason\":\"manual\",\"message\":\"the stream was cancelled\"}\n\n"
	if err != nil || string(body) != want {
		t.Errorf("body %q, %v; want the final event and a clean end", body, err)
	}
	if err := recv(t, ended); cancel.ReasonOf(err) != cancel.ReasonManual {
		t.Errorf("End = %v", err)
	}
}

// blockingWriter holds the first Write whose size is at least min until
// released.
type blockingWriter struct {
	http.ResponseWriter
	min     int
	entered chan struct{}
	release chan struct{}
	held    bool
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	if len(p) >= b.min && !b.held {
		b.held = true
		close(b.entered)
		<-b.release
	}
	return b.ResponseWriter.Write(p)
}

func (b *blockingWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// waitBlockedIn waits until a goroutine is blocked on a mutex with fn on
// its stack.
func waitBlockedIn(t *testing.T, fn string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "sync.(*Mutex).Lock") && strings.Contains(g, fn) {
				return
			}
		}
		runtime.Gosched()
	}
	t.Fatalf("no goroutine blocked in %s", fn)
}

// TestCancelledWhileEndWaits: End is called while another
// goroutine's Send is under way; the stream is cancelled (an operator, a
// timeout, a shutdown) while End waits for that Send. The client, still
// reading, must get the final "cancelled" event, since End then reports
// the stream as cancelled ("its client was told it was").
func TestCancelledWhileEndWaits(t *testing.T) {
	const big = 64 << 10
	bw := make(chan *blockingWriter, 1)
	streams := make(chan *Stream, 1)
	ended := make(chan error, 1)
	sent := make(chan error, 1)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := &blockingWriter{ResponseWriter: w, min: big, entered: make(chan struct{}), release: make(chan struct{})}
		bw <- b
		s, err := New(b, r, WithWriteTimeout(10*time.Second))
		if err != nil {
			t.Error(err)
			return
		}
		streams <- s
		go func() { sent <- s.Send(Event{Data: strings.Repeat("x", big)}) }()
		<-b.entered // the Send holds the stream
		ended <- s.End(nil)
	}))
	resp, p := open(t, ts.URL)
	_ = resp
	b, s := recv(t, bw), recv(t, streams)
	waitBlockedIn(t, "(*Stream).end")
	s.Operation().Cancel(cancel.ReasonShutdown, "draining")
	close(b.release)
	if err := recv(t, sent); err != nil {
		t.Errorf("Send = %v", err)
	}
	err := recv(t, ended)
	evs := readAll(t, p)
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	if cancel.ReasonOf(err) != cancel.ReasonShutdown {
		t.Errorf("End = %v", err)
	}
	if got := strings.Join(types, ","); got != "message,cancelled" {
		t.Errorf("client got %s, want message,cancelled (End returned %v)", got, err)
	}
}

// TestInvalidUTF8Refused: an EventSource decodes the stream as UTF-8 (WHATWG
// "UTF-8 decode"), replacing invalid bytes with U+FFFD. An event with
// invalid UTF-8 must be refused, or the client reads another ID (and sends
// it back as Last-Event-ID: the resume misses) and other data.
func TestInvalidUTF8Refused(t *testing.T) {
	sent := Event{ID: "evt-\xff7", Data: "x\xe2\x82y"}
	errs := make(chan error, 1)
	ts := serve(t, handle(t, nil, func(s *Stream) error {
		err := s.Send(sent)
		errs <- err
		return nil
	}))
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := recv(t, errs); errors.Is(err, ErrInvalidField) {
		if len(body) != 0 {
			t.Errorf("refused, but %q written", body)
		}
		return
	}
	// What a conforming client reads: the stream decoded as UTF-8 (each
	// invalid sequence becomes U+FFFD), then parsed.
	evs, _, _, err := parseAll([]byte(strings.ToValidUTF8(string(body), "\uFFFD")))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].ID != sent.ID || evs[0].Data != sent.Data {
		t.Errorf("Send(%+q) accepted; the client reads %+q", sent, evs)
	}
}

// TestObserverCountUsesStream: an observer told of a counted event may use
// the stream: here it reports progress after the first event, which
// WithProgress sends to the client. Counts were reported while the stream
// held its lock, and this deadlocked.
func TestObserverCountUsesStream(t *testing.T) {
	var reported atomic.Bool
	report := cancel.WithObserver(cancel.Hooks{OnCount: func(op *cancel.Operation, name string, _ int64) {
		if name == "sse.events" && reported.CompareAndSwap(false, true) {
			op.Progress("first event sent")
		}
	}})
	ended := make(chan error, 1)
	ts := serve(t, handle(t, ended, func(s *Stream) error {
		return s.Send(Event{Data: "first"})
	}, WithProgress(), WithOperationOptions(report)))
	_, p := open(t, ts.URL)
	evs := readAll(t, p)
	if err := recv(t, ended); err != nil {
		t.Fatalf("End: %v", err)
	}
	if len(evs) != 2 || evs[0].Data != "first" || evs[1].Type != "progress" {
		t.Errorf("the client read %+v, want the event and then the progress report", evs)
	}
}
