package sse

import (
	"errors"
	"fmt"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// An Option configures a Stream. An invalid option makes New fail with an
// error naming it, before anything is written.
type Option func(*config) error

type config struct {
	name         string
	nameSet      bool
	heartbeat    time.Duration
	writeTimeout time.Duration
	retry        time.Duration
	progress     bool
	query        string // Last-Event-ID query parameter fallback; "" for none
	opOptions    []cancel.Option
}

// WithName names the stream's operation. The default is "sse " + the
// pattern of the ServeMux route (r.Pattern), or "sse" without one. The name
// is a metric label: never put a raw path or an ID in it.
func WithName(name string) Option {
	return func(c *config) error {
		if name == "" {
			return errors.New("sse: WithName: empty name")
		}
		c.name, c.nameSet = name, true
		return nil
	}
}

// WithHeartbeat writes a comment line (": heartbeat") whenever the stream
// has been silent for d, so that proxies and load balancers with idle
// timeouts keep the connection open, and a client that went away is
// noticed even when there is nothing to send. Zero, the default, sends
// none.
func WithHeartbeat(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("sse: WithHeartbeat: negative interval %v", d)
		}
		c.heartbeat = d
		return nil
	}
}

// WithWriteTimeout gives every write (event, comment, heartbeat, with its
// flush) at most d to reach the client's connection: a client that stopped
// reading is cut off once the socket buffers are full and d has passed,
// and the stream's operation is cancelled with cancel.ReasonDisconnect. The
// deadline rolls with each write, so the stream may last any time, whatever
// http.Server.WriteTimeout says. Zero, the default, sets no deadline: a
// write to a client that stopped reading then blocks until the client
// closes the connection or the operation is cancelled. It needs a
// ResponseWriter that supports http.ResponseController.SetWriteDeadline (the
// net/http server's does, through wrappers that implement Unwrap); without
// it, New fails.
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("sse: WithWriteTimeout: negative timeout %v", d)
		}
		c.writeTimeout = d
		return nil
	}
}

// WithRetry sends the client's reconnection delay (the "retry" field) with
// the response headers. Zero, the default, leaves the client's own (a few
// seconds in browsers).
func WithRetry(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("sse: WithRetry: negative delay %v", d)
		}
		c.retry = d
		return nil
	}
}

// WithProgress forwards the progress reports of the stream's operation
// (Operation.Progress, and the reports of SendSeq and SendChan when they
// are given cancel.ReportEvery or cancel.ReportInterval) to the client as
// "progress" events whose data is {"message":"...","attrs":{...}}. Reports
// are written on the goroutine that makes them. Attributes are sent to the
// client as they are: do not report secrets.
func WithProgress() Option {
	return func(c *config) error {
		c.progress = true
		return nil
	}
}

// WithLastEventIDQuery makes the stream read the last event ID from the
// query parameter param when the request has no Last-Event-ID header: for
// clients that cannot set headers, and to resume on a first connection
// (new EventSource("/events?lastEventId=41")).
func WithLastEventIDQuery(param string) Option {
	return func(c *config) error {
		if param == "" {
			return errors.New("sse: WithLastEventIDQuery: empty parameter name")
		}
		c.query = param
		return nil
	}
}

// WithOperationOptions adds options to the stream's operation: sources
// (cancel.WithTimeout, cancel.WithToken, ...), cancel.WithRegistry,
// cancel.WithObserver, cancel.WithAttrs. They apply after the stream's own,
// so a cancel.WithParentReason given here replaces the stream's.
func WithOperationOptions(opts ...cancel.Option) Option {
	return func(c *config) error {
		for i, o := range opts {
			if o == nil {
				return fmt.Errorf("sse: WithOperationOptions: option %d is nil", i)
			}
		}
		c.opOptions = append(c.opOptions, opts...)
		return nil
	}
}
