package httpcancel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
)

// trProgress collects the progress reports of operations.
type trProgress struct {
	mu      sync.Mutex
	reports []cancel.Progress
}

func (p *trProgress) observer() cancel.Option {
	return cancel.WithObserver(cancel.Hooks{OnProgress: func(_ *cancel.Operation, r cancel.Progress) {
		p.mu.Lock()
		p.reports = append(p.reports, r)
		p.mu.Unlock()
	}})
}

func (p *trProgress) all() []cancel.Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]cancel.Progress(nil), p.reports...)
}

func trAttrs(p cancel.Progress) map[string]string {
	m := make(map[string]string)
	for _, a := range p.Attrs {
		m[a.Key] = a.Value.String()
	}
	return m
}

// trClient returns a client over Transport(base) with a base transport of
// its own, whose connections are closed when the test ends.
func trClient(t *testing.T, opts ...httpcancel.TransportOption) *http.Client {
	t.Helper()
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	tr, err := httpcancel.NewTransport(base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: tr}
}

// trHeaderServer records the budget headers of the requests it gets.
func trHeaderServer(t *testing.T, header string) (*httptest.Server, <-chan []string) {
	t.Helper()
	got := make(chan []string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Values(header)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func trGet(t *testing.T, ctx context.Context, client *http.Client, url string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

var msBudget = regexp.MustCompile(`^[0-9]+ms$`)

func TestTransportSendsRemainingBudget(t *testing.T) {
	srv, got := trHeaderServer(t, httpcancel.DefaultBudgetHeader)
	client := trClient(t)

	ctx, op := cancel.Start(context.Background(), "caller", cancel.WithTimeout(2*time.Second))
	defer op.End(nil)
	before := time.Until(mustDeadline(t, op))
	trGet(t, ctx, client, srv.URL)
	after := time.Until(mustDeadline(t, op))

	values := <-got
	if len(values) != 1 || !msBudget.MatchString(values[0]) {
		t.Fatalf("budget header = %q, want one value like 1500ms", values)
	}
	d, err := httpcancel.ParseBudget(values[0])
	if err != nil {
		t.Fatal(err)
	}
	// Rounded up to the millisecond: between what was left after the call
	// and what was left before it, plus the rounding.
	if d < after || d > before+time.Millisecond {
		t.Errorf("budget sent = %v, want within [%v, %v]", d, after, before+time.Millisecond)
	}
}

func mustDeadline(t *testing.T, op *cancel.Operation) time.Time {
	t.Helper()
	d, ok := op.Deadline()
	if !ok {
		t.Fatal("operation has no deadline")
	}
	return d
}

func TestTransportUsesEarlierContextDeadline(t *testing.T) {
	srv, got := trHeaderServer(t, httpcancel.DefaultBudgetHeader)
	client := trClient(t)

	ctx, op := cancel.Start(context.Background(), "caller", cancel.WithTimeout(time.Hour))
	defer op.End(nil)
	ctx, stop := context.WithTimeout(ctx, 3*time.Second) // a shorter step under the operation
	defer stop()
	trGet(t, ctx, client, srv.URL)
	d, err := httpcancel.ParseBudget((<-got)[0])
	if err != nil {
		t.Fatal(err)
	}
	if d > 3*time.Second || d < 2*time.Second {
		t.Errorf("budget sent = %v, want the context's 3s or just under", d)
	}
}

func TestTransportNoBudgetHeader(t *testing.T) {
	srv, got := trHeaderServer(t, httpcancel.DefaultBudgetHeader)
	client := trClient(t)

	withDeadline, opD := cancel.Start(context.Background(), "with-deadline", cancel.WithTimeout(time.Hour))
	defer opD.End(nil)
	noDeadline, opN := cancel.Start(context.Background(), "no-deadline")
	defer opN.End(nil)
	plain, stop := context.WithTimeout(context.Background(), time.Hour) // a deadline, no operation
	defer stop()
	tooFar, opF := cancel.Start(context.Background(), "far", cancel.WithTimeout(48*time.Hour))
	defer opF.End(nil)

	for name, ctx := range map[string]context.Context{
		"no operation":           context.Background(),
		"operation, no deadline": noDeadline,
		"deadline, no operation": plain,
		"deadline detached":      context.WithoutCancel(withDeadline),
		"deadline over a day":    tooFar,
	} {
		t.Run(name, func(t *testing.T) {
			trGet(t, ctx, client, srv.URL)
			if v := <-got; len(v) != 0 {
				t.Errorf("budget header sent: %q", v)
			}
		})
	}
}

func TestTransportDoesNotMutateRequest(t *testing.T) {
	srv, got := trHeaderServer(t, httpcancel.DefaultBudgetHeader)
	client := trClient(t)
	ctx, op := cancel.Start(context.Background(), "caller", cancel.WithTimeout(time.Minute))
	defer op.End(nil)

	t.Run("no header", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		req.Header.Set("X-Other", "kept")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if v := <-got; len(v) != 1 {
			t.Fatalf("budget header = %q", v)
		}
		if v, ok := req.Header[httpcancel.DefaultBudgetHeader]; ok {
			t.Errorf("caller's request got the header: %q", v)
		}
		if len(req.Header) != 1 || req.Header.Get("X-Other") != "kept" {
			t.Errorf("caller's header changed: %v", req.Header)
		}
	})
	t.Run("longer budget replaced", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		req.Header.Set(httpcancel.DefaultBudgetHeader, "1h")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		v := <-got
		if len(v) != 1 || !msBudget.MatchString(v[0]) {
			t.Fatalf("budget header = %q, want the operation's", v)
		}
		if d, _ := httpcancel.ParseBudget(v[0]); d > time.Minute {
			t.Errorf("budget sent = %v, want at most the minute left", d)
		}
		if req.Header.Get(httpcancel.DefaultBudgetHeader) != "1h" {
			t.Errorf("caller's header changed: %v", req.Header)
		}
	})
	t.Run("shorter budget kept", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		req.Header.Set(httpcancel.DefaultBudgetHeader, "250ms")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if v := <-got; len(v) != 1 || v[0] != "250ms" {
			t.Errorf("budget header = %q, want the caller's 250ms", v)
		}
	})
}

func TestTransportHeaderOption(t *testing.T) {
	srv, got := trHeaderServer(t, "X-Budget")
	client := trClient(t, httpcancel.TransportHeader("x-budget"))
	ctx, op := cancel.Start(context.Background(), "caller", cancel.WithTimeout(time.Minute))
	defer op.End(nil)

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := <-got; len(v) != 1 || !msBudget.MatchString(v[0]) {
		t.Errorf("X-Budget = %q", v)
	}
}

func TestNewTransportInvalidOptions(t *testing.T) {
	for _, tc := range []struct {
		opt  httpcancel.TransportOption
		want string
	}{
		{httpcancel.TransportHeader(""), "TransportHeader"},
		{httpcancel.TransportHeader("Request Timeout"), "TransportHeader"},
		{httpcancel.TransportHeader("X-Budget\r\nX-Evil: 1"), "TransportHeader"},
		{nil, "nil TransportOption"},
	} {
		tr, err := httpcancel.NewTransport(nil, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) || tr != nil {
			t.Errorf("NewTransport = %v, %v; want an error naming %s", tr, err, tc.want)
		}
	}
}

// trBlockingServer reads the request's body, then answers nothing until
// the client goes away or the test ends; started is told of each request.
func trBlockingServer(t *testing.T, first string) (*httptest.Server, <-chan struct{}) {
	t.Helper()
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // HTTP/1 notices a client gone once the body was read
		if first != "" {
			io.WriteString(w, first)
			http.NewResponseController(w).Flush()
		}
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv, started
}

func TestTransportCancelledMidCall(t *testing.T) {
	srv, started := trBlockingServer(t, "")
	client := trClient(t)
	var progress trProgress
	ctx, op := cancel.Start(context.Background(), "caller", progress.observer(), cancel.WithTimeout(time.Minute))

	go func() {
		<-started
		op.Cancel(cancel.ReasonShutdown, "draining")
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/users/42?token=secret", strings.NewReader("x"))
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("call succeeded after its operation was cancelled")
	}
	op.End(err)

	if r := cancel.ReasonOf(err); r != cancel.ReasonShutdown {
		t.Errorf("ReasonOf(%v) = %v, want shutdown", err, r)
	}
	var ce *cancel.Error
	if !errors.As(err, &ce) || ce.OpID != op.ID() || ce.Message != "draining" {
		t.Errorf("errors.As(%v) = %+v, want the operation's *cancel.Error", err, ce)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(%v, context.Canceled) = false", err)
	}
	checkCallReport(t, progress.all(), srv, http.MethodPost, "shutdown")
}

// checkCallReport checks there is exactly one report of a cancelled call,
// naming the host and not the path or query.
func checkCallReport(t *testing.T, reports []cancel.Progress, srv *httptest.Server, method, reason string) {
	t.Helper()
	if len(reports) != 1 {
		t.Fatalf("progress reports = %+v, want one", reports)
	}
	p := reports[0]
	u, _ := url.Parse(srv.URL)
	want := map[string]string{"host": u.Host, "method": method, "reason": reason}
	got := trAttrs(p)
	if p.Message != "outbound call cancelled" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("report = %q %v, want %q %v", p.Message, got, "outbound call cancelled", want)
	}
}

func TestTransportCancelledDuringBodyRead(t *testing.T) {
	srv, _ := trBlockingServer(t, "first")
	client := trClient(t)
	var progress trProgress
	ctx, op := cancel.Start(context.Background(), "caller", progress.observer())

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("first read = %q, %v", first, err)
	}
	op.Cancel(cancel.ReasonManual, "operator")
	_, err = io.ReadAll(resp.Body)
	if r := cancel.ReasonOf(err); r != cancel.ReasonManual {
		t.Errorf("body read: ReasonOf(%v) = %v, want manual", err, r)
	}
	_, err2 := resp.Body.Read(first) // read again: same cause, reported once
	if r := cancel.ReasonOf(err2); r != cancel.ReasonManual {
		t.Errorf("second read: ReasonOf(%v) = %v, want manual", err2, r)
	}
	op.End(err)
	checkCallReport(t, progress.all(), srv, http.MethodGet, "manual")
}

func TestTransportNotSent(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	client := trClient(t)

	t.Run("operation cancelled", func(t *testing.T) {
		var progress trProgress
		ctx, op := cancel.Start(context.Background(), "caller", progress.observer())
		defer op.End(nil)
		op.Cancel(cancel.ReasonManual, "stop")
		body := &trBody{Reader: strings.NewReader("payload")}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL, body)
		_, err := client.Do(req)
		if r := cancel.ReasonOf(err); r != cancel.ReasonManual {
			t.Errorf("ReasonOf(%v) = %v, want manual", err, r)
		}
		if !strings.Contains(err.Error(), "not sent") {
			t.Errorf("error %q does not say the request was not sent", err)
		}
		if !body.closed.Load() {
			t.Error("request body not closed")
		}
		checkCallReport(t, progress.all(), srv, http.MethodPut, "manual")
	})
	t.Run("deadline passed", func(t *testing.T) {
		var progress trProgress
		ctx, op := cancel.Start(context.Background(), "caller", progress.observer(),
			cancel.WithDeadline(time.Now().Add(-time.Second)))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		_, err := client.Do(req)
		op.End(err)
		if r := cancel.ReasonOf(err); r != cancel.ReasonTimeout || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ReasonOf(%v) = %v, want timeout and DeadlineExceeded", err, r)
		}
		var ce *cancel.Error
		if !errors.As(err, &ce) || ce.OpID != op.ID() {
			t.Errorf("errors.As(%v) = %+v, want the operation's *cancel.Error", err, ce)
		}
		checkCallReport(t, progress.all(), srv, http.MethodGet, "timeout")
	})
	t.Run("earlier context deadline passed", func(t *testing.T) {
		var progress trProgress
		ctx, op := cancel.Start(context.Background(), "caller", progress.observer())
		defer op.End(nil)
		ctx, stop := context.WithDeadline(ctx, time.Now().Add(-time.Second))
		defer stop()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		_, err := client.Do(req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want DeadlineExceeded", err)
		}
		var ce *cancel.Error
		if errors.As(err, &ce) {
			t.Errorf("err = %v carries %v, but the operation was not cancelled", err, ce)
		}
		if p := progress.all(); len(p) != 0 {
			t.Errorf("progress reports = %+v, want none: the operation was not cancelled", p)
		}
	})
	if n := hits.Load(); n != 0 {
		t.Errorf("server got %d requests, want none", n)
	}
}

// trStubborn is a base RoundTripper whose errors do not mention the
// context: it fails when the request's context ends, as some transports
// (proxies, retrying clients) do.
type trStubborn struct{ inBody bool }

func (s trStubborn) RoundTrip(req *http.Request) (*http.Response, error) {
	if !s.inBody {
		<-req.Context().Done()
		return nil, errors.New("connection reset")
	}
	return &http.Response{StatusCode: http.StatusOK, Body: trStubbornBody{req.Context()}, Request: req}, nil
}

type trStubbornBody struct{ ctx context.Context }

func (b trStubbornBody) Read([]byte) (int, error) {
	<-b.ctx.Done()
	return 0, io.ErrUnexpectedEOF
}

func (trStubbornBody) Close() error { return nil }

func TestTransportAddsCancellationToOtherErrors(t *testing.T) {
	for _, inBody := range []bool{false, true} {
		t.Run(fmt.Sprint("in body ", inBody), func(t *testing.T) {
			var progress trProgress
			ctx, op := cancel.Start(context.Background(), "caller", progress.observer(), cancel.WithTimeout(20*time.Millisecond))
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream.example:8080/a?b=c", nil)
			resp, err := httpcancel.Transport(trStubborn{inBody}).RoundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			op.End(err)
			want := io.ErrUnexpectedEOF
			if !inBody {
				want = nil
			}
			if cancel.ReasonOf(err) != cancel.ReasonTimeout || !errors.Is(err, context.DeadlineExceeded) ||
				want != nil && !errors.Is(err, want) || !strings.Contains(err.Error(), "timed out") ||
				!inBody && !strings.Contains(err.Error(), "connection reset") {
				t.Errorf("err = %v, want the transport's error with the timeout", err)
			}
			p := progress.all()
			if len(p) != 1 || fmt.Sprint(trAttrs(p[0])) != "map[host:upstream.example:8080 method:GET reason:timeout]" {
				t.Errorf("progress reports = %+v", p)
			}
		})
	}
}

type trBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trBody) Close() error { b.closed.Store(true); return nil }

func TestTransportOtherFailuresUntouched(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more

	client := trClient(t)
	var progress trProgress
	ctx, op := cancel.Start(context.Background(), "caller", progress.observer(), cancel.WithTimeout(time.Minute))
	defer op.End(nil)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr, nil)
	_, err = client.Do(req)
	if err == nil {
		t.Fatal("call to a closed port succeeded")
	}
	var ce *cancel.Error
	if errors.As(err, &ce) || cancel.ReasonOf(err) != 0 {
		t.Errorf("err = %v reads as a cancellation", err)
	}
	if p := progress.all(); len(p) != 0 {
		t.Errorf("progress reports = %+v, want none", p)
	}
}

func TestTransportBodyCloseReleases(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		http.NewResponseController(w).Flush()
		select { // until the client closes the body, or the test ends
		case <-r.Context().Done():
		case <-release:
		}
	}))
	base := &http.Transport{}
	client := &http.Client{Transport: httpcancel.Transport(base)}
	var progress trProgress
	ctx, op := cancel.Start(context.Background(), "caller", progress.observer(), cancel.WithTimeout(time.Minute))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := op.End(nil); err != nil {
		t.Errorf("End = %v", err)
	}
	client.CloseIdleConnections()
	close(release)
	srv.Close()
	if p := progress.all(); len(p) != 0 {
		t.Errorf("progress reports = %+v, want none: closing a body is no cancellation", p)
	}
}

// trIdleCounter is a RoundTripper that counts CloseIdleConnections calls.
type trIdleCounter struct {
	http.RoundTripper
	n atomic.Int32
}

func (c *trIdleCounter) CloseIdleConnections() { c.n.Add(1) }

func TestTransportCloseIdleConnections(t *testing.T) {
	base := &trIdleCounter{}
	(&http.Client{Transport: httpcancel.Transport(base)}).CloseIdleConnections()
	if base.n.Load() != 1 {
		t.Errorf("base CloseIdleConnections called %d times, want 1", base.n.Load())
	}
}

func TestTransportNilBase(t *testing.T) {
	srv, got := trHeaderServer(t, httpcancel.DefaultBudgetHeader)
	client := &http.Client{Transport: httpcancel.Transport(nil)}
	t.Cleanup(client.CloseIdleConnections) // http.DefaultTransport's
	ctx, op := cancel.Start(context.Background(), "caller", cancel.WithTimeout(time.Minute))
	defer op.End(nil)
	trGet(t, ctx, client, srv.URL)
	if v := <-got; len(v) != 1 {
		t.Errorf("budget header = %q", v)
	}
}

// The budget crosses the wire: the server's own operation gets the time the
// client has left.
func TestTransportThroughMiddleware(t *testing.T) {
	type seen struct {
		deadline time.Time
		ok       bool
	}
	got := make(chan seen, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /work", func(w http.ResponseWriter, r *http.Request) {
		d, ok := cancel.FromContext(r.Context()).Deadline()
		got <- seen{d, ok}
	})
	srv := httptest.NewServer(httpcancel.Middleware(httpcancel.WithClientBudget("", time.Minute))(mux))
	t.Cleanup(srv.Close)
	client := trClient(t)

	ctx, op := cancel.Start(context.Background(), "caller", cancel.WithTimeout(5*time.Second))
	defer op.End(nil)
	trGet(t, ctx, client, srv.URL+"/work")
	s := <-got
	if !s.ok {
		t.Fatal("server operation has no deadline")
	}
	// The server's deadline is its start plus the budget, which is the
	// client's time left rounded up to the millisecond: it lies after the
	// client's deadline by at most that rounding plus the time the request
	// took to arrive.
	diff := s.deadline.Sub(mustDeadline(t, op))
	if diff < -time.Millisecond || diff > 250*time.Millisecond {
		t.Errorf("server deadline - client deadline = %v, want within [-1ms, 250ms]", diff)
	}
}

func BenchmarkTransport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	ctx, op := cancel.Start(context.Background(), "caller", cancel.WithTimeout(time.Hour))
	defer op.End(nil)

	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", base},
		{"transport", httpcancel.Transport(base)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			client := &http.Client{Transport: bc.rt}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

func ExampleTransport() {
	// A downstream service that honours client budgets.
	downstream := httptest.NewServer(httpcancel.Middleware(httpcancel.WithClientBudget("", time.Minute))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			deadline, _ := cancel.FromContext(r.Context()).Deadline()
			fmt.Fprintf(w, "%v", time.Until(deadline).Round(time.Second))
		})))
	defer downstream.Close()

	client := &http.Client{Transport: httpcancel.Transport(nil)}
	defer client.CloseIdleConnections()
	logProgress := cancel.WithObserver(cancel.Hooks{OnProgress: func(op *cancel.Operation, p cancel.Progress) {
		for _, a := range p.Attrs {
			if a.Key == "reason" {
				fmt.Printf("%s: %s (%s)\n", op.Name(), p.Message, a.Value)
			}
		}
	}})

	ctx, op := cancel.Start(context.Background(), "checkout", cancel.WithTimeout(3*time.Second), logProgress)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, downstream.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	budget, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println("downstream has", string(budget))

	op.Cancel(cancel.ReasonManual, "customer left")
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, downstream.URL, nil)
	_, err = client.Do(req)
	fmt.Println("reason:", cancel.ReasonOf(err))
	op.End(err)
	// Output:
	// downstream has 3s
	// checkout: outbound call cancelled (manual)
	// reason: manual
}
