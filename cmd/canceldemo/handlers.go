package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/sse"
	"github.com/cancelable-go/cancelable/wscancel"
	"go.opentelemetry.io/otel/trace"
)

// Bounds of the query parameters: a client cannot make the service work
// (or stream) for ever.
const (
	maxWork      = 20 * time.Second
	maxEvents    = 100_000
	maxPad       = 64 << 10
	maxJob       = time.Hour
	maxWSTicks   = 3600
	defaultWork  = 50 * time.Millisecond
	workSteps    = 4
	eventsReport = 10 // a progress report every that many events
)

// GET /work?ms=50: work that honours its context, with a progress report
// at each of its steps.
func (s *server) work(w http.ResponseWriter, r *http.Request) {
	d, err := durationParam(r, "ms", defaultWork, maxWork)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	op := cancel.FromContext(ctx)
	for i := 1; i <= workSteps; i++ {
		if err := sleep(ctx, d/workSteps); err != nil {
			// The middleware answers (504, 503) and records why; a handler
			// that honours its context just returns.
			s.log.DebugContext(ctx, "work stopped", "step", i, "cause", context.Cause(ctx))
			return
		}
		op.Progress("step done", slog.Int("step", i), slog.Int("of", workSteps))
	}
	writeJSON(w, http.StatusOK, map[string]any{"worked_ms": d.Milliseconds(), "steps": workSteps})
}

// GET /slow (route timeout 250ms): takes 100-400ms, so about half the
// requests time out.
func (s *server) slow(w http.ResponseWriter, r *http.Request) {
	d := time.Duration(100+rand.IntN(300)) * time.Millisecond
	if err := sleep(r.Context(), d); err != nil {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"worked_ms": d.Milliseconds()})
}

// GET /stubborn (route timeout 250ms): ignores its context for 150-450ms,
// as blocking calls without a context do. The client gets its 504 at the
// deadline all the same; cancel_stop_latency_seconds shows how long the
// work went on after it was asked to stop.
func (s *server) stubborn(w http.ResponseWriter, r *http.Request) {
	d := time.Duration(150+rand.IntN(300)) * time.Millisecond
	cancel.FromContext(r.Context()).Progress("ignoring the context", slog.Duration("for", d))
	time.Sleep(d)
	if r.Context().Err() != nil {
		return // too late: the client has its 504, and this write would fail
	}
	writeJSON(w, http.StatusOK, map[string]any{"worked_ms": d.Milliseconds()})
}

// GET /chain?ms=50: calls this service's GET /work through
// httpcancel.Transport, which sends the time left to this request along:
// a client's budget or this route's timeout bounds the call downstream.
func (s *server) chainWork(w http.ResponseWriter, r *http.Request) {
	d, err := durationParam(r, "ms", defaultWork, maxWork)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.self+"/work?ms="+strconv.FormatInt(d.Milliseconds(), 10), nil)
	if err != nil {
		http.Error(w, "cannot make the request", http.StatusInternalServerError)
		return
	}
	resp, err := s.chain.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return // cancelled: the middleware answers with the reason's status
		}
		s.log.WarnContext(ctx, "calling /work failed", "error", err)
		http.Error(w, "calling /work failed", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	if resp.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// GET /events?n=50&every=100ms&pad=0: a Server-Sent Events stream of n
// "tick" events, one every interval, each padded with pad bytes (to fill a
// slow reader's buffers sooner). Every 10 events a progress report goes to
// the client as a "progress" event. At a cancellation the client gets a
// last "cancelled" event saying why. A client reconnecting with
// Last-Event-ID (or ?lastEventId=) resumes after that event.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	n, err := intParam(r, "n", 50, 0, maxEvents)
	if err == nil {
		var every time.Duration
		every, err = durationParam(r, "every", 100*time.Millisecond, 10*time.Second)
		if err == nil && every < 10*time.Millisecond {
			err = fmt.Errorf("every: at least 10ms")
		}
		if err == nil {
			var pad int
			if pad, err = intParam(r, "pad", 0, 0, maxPad); err == nil {
				s.stream(w, r, n, every, pad)
				return
			}
		}
	}
	http.Error(w, err.Error(), http.StatusBadRequest)
}

func (s *server) stream(w http.ResponseWriter, r *http.Request, n int, every time.Duration, pad int) {
	st, err := sse.New(w, r,
		sse.WithHeartbeat(s.cfg.SSEHeartbeat),
		sse.WithWriteTimeout(s.cfg.SSEWriteTimeout),
		sse.WithProgress(),
		sse.WithRetry(2*time.Second),
		sse.WithLastEventIDQuery("lastEventId"),
		sse.WithOperationOptions(cancel.WithRegistry(s.reg)),
	)
	if err != nil {
		s.log.ErrorContext(r.Context(), "cannot stream", "error", err)
		http.Error(w, "cannot stream", http.StatusInternalServerError)
		return
	}
	first := 0
	if id, err := strconv.Atoi(st.LastEventID()); err == nil && id >= 0 {
		first = min(id, n) + 1 // the client had that one (and no overflow)
	}
	padding := strings.Repeat(".", pad)
	ctx := st.Context()
	ticks := func(yield func(sse.Event) bool) {
		t := time.NewTicker(every)
		defer t.Stop()
		for i := first; i < n; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			data := `{"i":` + strconv.Itoa(i) + `,"n":` + strconv.Itoa(n) + `,"pad":"` + padding + `"}`
			if !yield(sse.Event{ID: strconv.Itoa(i), Type: "tick", Data: data}) {
				return
			}
		}
	}
	err = st.End(st.SendSeq(ticks, cancel.ReportEvery(eventsReport)))
	if err != nil {
		s.log.DebugContext(r.Context(), "stream stopped", "events", st.Events(), "error", err)
	}
}

// GET /ws?ticks=30: a websocket that echoes every message and sends a
// tick (a progress report of the connection's operation) every second,
// ticks times; then it stays silent, and its idle timeout closes it (4008)
// unless the client talks.
func (s *server) websocket(w http.ResponseWriter, r *http.Request) {
	ticks, err := intParam(r, "ticks", 30, 0, maxWSTicks)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c, err := wscancel.Accept(w, r, s.wsOptions...)
	if err != nil {
		return // Accept answered
	}
	c.End(s.wsSession(c, ticks))
}

func (s *server) wsSession(c *wscancel.Conn, ticks int) error {
	ctx, op := c.Context(), c.Operation()
	quit := make(chan struct{})
	tickerDone := make(chan struct{})
	go func() {
		defer close(tickerDone)
		t := time.NewTicker(s.cfg.WSTick)
		defer t.Stop()
		for i := 1; i <= ticks; i++ {
			select {
			case <-ctx.Done():
				return
			case <-quit:
				return
			case <-t.C:
				op.Progress("tick", slog.Int("tick", i), slog.Int("of", ticks))
			}
		}
	}()
	defer func() { close(quit); <-tickerDone }()
	for {
		// A read or write fails once the connection's operation is
		// cancelled (the peer closed or vanished, a timeout, the
		// shutdown): End records why.
		typ, p, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, typ, p); err != nil {
			return err
		}
	}
}

// POST /jobs?s=30: starts a background job of s seconds, an operation of
// its own in the registry (not a child of the request: it outlives it),
// and answers its ID. Operators cancel it at /admin/.
func (s *server) startJob(w http.ResponseWriter, r *http.Request) {
	d, err := durationParam(r, "s", 30*time.Second, maxJob)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The job's span is a child of the request's, for the trace; its
	// cancellation is its own.
	ctx := trace.ContextWithSpan(context.Background(), trace.SpanFromContext(r.Context()))
	s.jobsMu.Lock()
	if s.jobsClosed {
		s.jobsMu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	ctx, op := cancel.Start(ctx, "job",
		cancel.WithRegistry(s.reg),
		cancel.WithToken(s.jobsStop),
		cancel.WithAttrs(slog.Duration("length", d)))
	s.jobs.Add(1)
	s.jobsMu.Unlock()
	go func() {
		defer s.jobs.Done()
		err := op.End(s.runJob(ctx, d))
		s.log.InfoContext(ctx, "job ended", "status", op.Status(), "error", err)
	}()
	s.log.InfoContext(ctx, "job started", "length", d)
	writeJSON(w, http.StatusAccepted, map[string]any{
		"id":     op.ID(),
		"name":   op.Name(),
		"status": "/admin/operations/" + strconv.FormatUint(op.ID(), 10),
		"cancel": "/admin/operations/" + strconv.FormatUint(op.ID(), 10) + "/cancel",
	})
}

func (s *server) runJob(ctx context.Context, d time.Duration) error {
	op := cancel.FromContext(ctx)
	start := time.Now()
	t := time.NewTicker(s.cfg.JobStep)
	defer t.Stop()
	for step := 1; time.Since(start) < d; step++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			done := min(time.Since(start), d)
			op.Progress("working", slog.Int("step", step), slog.Int("percent", int(100*done/d)))
		}
	}
	return nil
}

// GET /: what there is to see.
func (s *server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, indexPage)
}

const indexPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>canceldemo</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}code{background:#f3f3f3;padding:0 .2em}</style>
</head><body>
<h1>Cancelable for Go: the demo service</h1>
<p>Every request is an operation that says why it stopped. Send traffic with
<code>canceldemo load</code>, then look:</p>
<ul>
<li><a href="admin/">/admin/</a>: live operations, their progress, a cancel button, and the last ended ones</li>
<li><a href="metrics">/metrics</a>: <code>cancel_operations_total</code> by route, outcome and reason; stop latency; streams</li>
<li><a href="debug/tracez">/debug/tracez</a>: recent spans, with their <code>cancel.requested</code> events</li>
</ul>
<h2>Routes</h2>
<ul>
<li><a href="work?ms=200">GET /work?ms=200</a>: work with progress reports (timeout 10s; send <code>Request-Timeout: 100ms</code> for less)</li>
<li><a href="slow">GET /slow</a>: 100-400ms against a 250ms route timeout</li>
<li><a href="stubborn">GET /stubborn</a>: ignores its context for a while (see <code>cancel_stop_latency_seconds</code>)</li>
<li><a href="chain?ms=100">GET /chain?ms=100</a>: calls /work with the remaining budget</li>
<li><a href="events?n=50">GET /events?n=50&amp;every=100ms</a>: Server-Sent Events, progress events, a last <code>cancelled</code> event</li>
<li>GET /ws?ticks=30: a websocket that echoes and ticks every second</li>
<li>POST /jobs?s=30: a background job to cancel from <a href="admin/">/admin/</a></li>
<li><a href="healthz">GET /healthz</a></li>
</ul>
</body></html>
`

// sleep waits for d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// durationParam reads a duration from the query: a number of
// milliseconds for "ms", of seconds for "s", else a Go duration ("100ms").
func durationParam(r *http.Request, name string, def, maxD time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	var d time.Duration
	switch name {
	case "ms", "s":
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || !(n >= 0 && n <= 1e9) { // NaN and infinities fail too
			return 0, fmt.Errorf("%s: a number from 0 to %v", name, maxD)
		}
		unit := time.Millisecond
		if name == "s" {
			unit = time.Second
		}
		d = time.Duration(n * float64(unit))
	default:
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, fmt.Errorf("%s: a duration such as 100ms", name)
		}
	}
	if d < 0 || d > maxD {
		return 0, fmt.Errorf("%s: from 0 to %v", name, maxD)
	}
	return d, nil
}

// intParam reads an integer from the query.
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s: an integer from %d to %d", name, lo, hi)
	}
	return n, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "cannot encode the answer", http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	// A declared length makes the answer whole once written: the middleware
	// does not cut it if its timeout comes while the handler returns.
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
