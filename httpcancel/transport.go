package httpcancel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// A TransportOption configures NewTransport.
type TransportOption func(*transportConfig) error

type transportConfig struct {
	header string
}

// TransportHeader names the header the remaining budget is sent in, in
// place of DefaultBudgetHeader: the name the services downstream read (see
// WithClientBudget).
func TransportHeader(name string) TransportOption {
	return func(c *transportConfig) error {
		if !validHeaderName(name) {
			return fmt.Errorf("httpcancel: TransportHeader: %q is not a valid header name", name)
		}
		c.header = http.CanonicalHeaderKey(name)
		return nil
	}
}

// validHeaderName reports whether s is a token (RFC 9110, section 5.6.2).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// NewTransport returns an http.RoundTripper that sends requests with base
// (http.DefaultTransport if nil), carrying the deadline of the cancel
// operation in their context to the services they call, or an error naming
// the invalid option.
//
// For a request whose context holds an operation (cancel.FromContext) and
// has a deadline (the operation's, or an earlier one set under it), the
// request sent is a copy of the caller's with the time left in the budget
// header (DefaultBudgetHeader, or TransportHeader's), in milliseconds
// rounded up: a server using the Middleware with WithClientBudget gives
// its own operation that much time. A budget the caller set in the header
// is kept when it is shorter; a deadline over a day away is not sent. The
// caller's request is never modified.
//
// A request whose operation is cancelled, or whose deadline has passed, is
// not sent: RoundTrip returns the cancellation at once. A call cut off by
// the cancellation of its operation, while it waits for the response or
// while its body is read, fails with an error for which errors.As finds
// the operation's *cancel.Error (so cancel.ReasonOf gives its reason), and
// is recorded as a progress report of the operation, "outbound call
// cancelled", with the host called, the method and the reason; never the
// path or query, which may hold identifiers or secrets.
//
// Requests without an operation in their context go to base untouched.
func NewTransport(base http.RoundTripper, opts ...TransportOption) (http.RoundTripper, error) {
	t := &transport{base: base, transportConfig: transportConfig{header: DefaultBudgetHeader}}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("httpcancel: NewTransport: nil TransportOption")
		}
		if err := o(&t.transportConfig); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Transport is NewTransport with the default options: it sends the time
// left to the operation of each request in DefaultBudgetHeader.
//
//	client := &http.Client{Transport: httpcancel.Transport(nil)}
//	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil) // ctx from cancel.Start
//	resp, err := client.Do(req)
func Transport(base http.RoundTripper) http.RoundTripper {
	t, err := NewTransport(base)
	if err != nil {
		panic(err) // cannot happen without options
	}
	return t
}

type transport struct {
	base http.RoundTripper
	transportConfig
}

// expiryGrace bounds the wait for the cancellation of a context whose
// deadline has passed: the timer that cancels it is due, and normally fires
// within microseconds.
const expiryGrace = 100 * time.Millisecond

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	ctx := req.Context()
	op := cancel.FromContext(ctx)
	if op == nil {
		return base.RoundTrip(req)
	}
	if ctx.Err() != nil {
		return nil, t.notSent(req, op)
	}
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, t.notSent(req, op)
		}
		if left <= maxBudget && !t.shorterSet(req, left) {
			req = withHeader(req, t.header, formatBudget(left))
		}
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return nil, t.failed(req, op, err)
	}
	if ctx.Done() != nil && resp.Body != nil && resp.Body != http.NoBody &&
		resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body = &body{ReadCloser: resp.Body, req: req, op: op}
	}
	return resp, nil
}

// CloseIdleConnections closes the idle connections of the base transport,
// if it has that method: http.Client.CloseIdleConnections calls it.
func (t *transport) CloseIdleConnections() {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	if c, ok := base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// shorterSet reports whether the caller already put a budget no longer than
// left in the header.
func (t *transport) shorterSet(req *http.Request, left time.Duration) bool {
	v := req.Header.Get(t.header)
	if v == "" {
		return false
	}
	d, err := ParseBudget(v)
	return err == nil && d <= left
}

// withHeader returns a copy of req with the header key set to value. Only
// the header is copied: the caller may not touch req until the response's
// body is closed anyway.
func withHeader(req *http.Request, key, value string) *http.Request {
	r := new(http.Request)
	*r = *req
	r.Header = req.Header.Clone()
	if r.Header == nil {
		r.Header = make(http.Header, 1)
	}
	r.Header[key] = []string{value}
	return r
}

// notSent returns the error of a request that is not sent because its
// context is done, or its deadline has passed and it is about to be.
func (t *transport) notSent(req *http.Request, op *cancel.Operation) error {
	if req.Body != nil {
		req.Body.Close() // a RoundTripper closes the body, even on errors
	}
	ctx := req.Context()
	if ctx.Err() == nil {
		timer := time.NewTimer(expiryGrace)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		timer.Stop()
	}
	cause := context.Cause(ctx)
	if cause == nil { // the deadline passed and, oddly, nothing fired yet
		cause = context.DeadlineExceeded
	}
	if ce := cancellation(req); ce != nil {
		record(req, op, ce)
	}
	return &notSentError{call: callName(req), err: cause}
}

// failed returns the error of a call that failed with err: err itself, or
// err with the operation's *cancel.Error in its chain if that is what cut
// the call off, reported as progress of the operation.
func (t *transport) failed(req *http.Request, op *cancel.Operation, err error) error {
	ce := cancellation(req)
	if ce == nil {
		return err
	}
	record(req, op, ce)
	return withCause(err, ce)
}

// cancellation returns the *cancel.Error that ended the request's context,
// or nil if it is not done, or ended otherwise (a context derived from the
// operation's timed out, the operation ended).
func cancellation(req *http.Request) *cancel.Error {
	ctx := req.Context()
	if ctx.Err() == nil {
		return nil
	}
	var ce *cancel.Error
	if errors.As(context.Cause(ctx), &ce) {
		return ce
	}
	return nil
}

// withCause returns err with ce in its chain.
func withCause(err error, ce *cancel.Error) error {
	var have *cancel.Error
	if errors.As(err, &have) {
		return err // net/http returned the context's cause itself
	}
	return &cancelledCallError{err: err, cause: ce}
}

// record reports a cancelled call as progress of op.
func record(req *http.Request, op *cancel.Operation, ce *cancel.Error) {
	op.Progress("outbound call cancelled",
		slog.String("host", host(req)),
		slog.String("method", method(req)),
		slog.String("reason", ce.Reason.String()))
}

func host(req *http.Request) string {
	if req.URL != nil && req.URL.Host != "" {
		return req.URL.Host
	}
	return req.Host
}

func method(req *http.Request) string {
	if req.Method == "" {
		return http.MethodGet
	}
	return req.Method
}

func callName(req *http.Request) string { return method(req) + " " + host(req) }

// notSentError is the error of a request that was not sent because its
// operation was cancelled or out of time.
type notSentError struct {
	call string // method and host
	err  error  // the context's cause
}

func (e *notSentError) Error() string {
	return "httpcancel: " + e.call + " not sent: " + e.err.Error()
}

func (e *notSentError) Unwrap() error { return e.err }

// cancelledCallError is the error of a call cut off by the cancellation of
// its operation: the transport's error, with the cancellation in front of
// it for errors.As and cancel.ReasonOf.
type cancelledCallError struct {
	err   error
	cause *cancel.Error
}

func (e *cancelledCallError) Error() string {
	msg, why := e.err.Error(), e.cause.Error()
	if strings.Contains(msg, why) {
		return msg
	}
	return msg + " (" + why + ")"
}

func (e *cancelledCallError) Unwrap() []error { return []error{e.cause, e.err} }

// body is the body of a response whose request has an operation: a read
// cut off by the operation's cancellation fails with it, and is reported
// once.
type body struct {
	io.ReadCloser
	req      *http.Request
	op       *cancel.Operation
	reported atomic.Bool
	closed   atomic.Bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == nil || err == io.EOF || b.closed.Load() {
		return n, err
	}
	if ce := cancellation(b.req); ce != nil {
		if !b.reported.Swap(true) {
			record(b.req, b.op, ce)
		}
		err = withCause(err, ce)
	}
	return n, err
}

func (b *body) Close() error {
	b.closed.Store(true)
	return b.ReadCloser.Close()
}
