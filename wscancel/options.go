package wscancel

import (
	"errors"
	"fmt"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/coder/websocket"
)

// An Option configures the connections accepted by Accept, NewHandler or
// Handler. An invalid option makes the constructor return an error naming
// it; nothing is accepted.
type Option func(*config) error

type config struct {
	name         string
	opOptions    []cancel.Option
	acceptOpts   *websocket.AcceptOptions
	pingEvery    time.Duration
	pingLimit    time.Duration
	idle         time.Duration
	lifetime     time.Duration
	readLimit    int64
	hasLimit     bool
	closeTimeout time.Duration
	status       func(cancel.Reason) (websocket.StatusCode, string)
	progress     bool
}

// DefaultCloseTimeout is how long closing a connection may take by
// default: the close frame written and the peer's answer read. See
// WithCloseTimeout.
const DefaultCloseTimeout = 5 * time.Second

func newConfig(opts []Option) (*config, error) {
	c := &config{closeTimeout: DefaultCloseTimeout, status: DefaultCloseStatus}
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("wscancel: option %d is nil", i)
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// WithName names the connection operations. The default is "ws " followed
// by the pattern of the ServeMux route (r.Pattern), or "ws" without one.
// Names are metric labels: never put a raw path or an ID in one.
func WithName(name string) Option {
	return func(c *config) error {
		if name == "" {
			return errors.New("wscancel: WithName: empty name")
		}
		c.name = name
		return nil
	}
}

// WithOperationOptions adds options to every connection operation:
// cancel.WithRegistry to list connections for operators,
// cancel.WithObserver, sources such as cancel.WithToken, attributes.
// They apply to the connection's operation only, not to its parent (the
// request's operation). An invalid one (see cancel.CheckOptions) is an
// error of NewHandler and Accept.
func WithOperationOptions(opts ...cancel.Option) Option {
	return func(c *config) error {
		for i, o := range opts {
			if o == nil {
				return fmt.Errorf("wscancel: WithOperationOptions: option %d is nil", i)
			}
		}
		if err := cancel.CheckOptions(opts...); err != nil {
			// Else every connection's operation would fail at its start.
			return fmt.Errorf("wscancel: WithOperationOptions: %w", err)
		}
		c.opOptions = append(c.opOptions, opts...)
		return nil
	}
}

// WithAcceptOptions sets the options of the websocket handshake:
// subprotocols, origins, compression. They are copied.
func WithAcceptOptions(o *websocket.AcceptOptions) Option {
	return func(c *config) error {
		if o == nil {
			return errors.New("wscancel: WithAcceptOptions: nil options")
		}
		cp := *o
		c.acceptOpts = &cp
		return nil
	}
}

// WithHeartbeat pings the peer every interval. A peer from which nothing
// was heard (no pong, no message) for limit is taken as gone: the
// operation is cancelled with cancel.ReasonDisconnect ("pings unanswered")
// and the connection closed without a close frame, since nobody would read
// it. limit must be longer than interval. While the handler is slow to
// Read a message the connection has received, the peer is not counted as
// silent: it is the handler that is not listening.
//
// Without it, a peer that vanished without a TCP reset (a pulled cable, a
// suspended laptop) is only noticed when a write fails.
func WithHeartbeat(interval, limit time.Duration) Option {
	return func(c *config) error {
		if interval <= 0 {
			return fmt.Errorf("wscancel: WithHeartbeat: interval must be positive, got %v", interval)
		}
		if limit <= interval {
			return fmt.Errorf("wscancel: WithHeartbeat: limit (%v) must be longer than the interval (%v)", limit, interval)
		}
		c.pingEvery, c.pingLimit = interval, limit
		return nil
	}
}

// WithIdleTimeout cancels the operation with cancel.ReasonTimeout when no
// data message went either way for d. The peer is closed with the timeout
// code (StatusTimeout by default). Pings do not count as activity.
func WithIdleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("wscancel: WithIdleTimeout: timeout must be positive, got %v", d)
		}
		c.idle = d
		return nil
	}
}

// WithMaxLifetime cancels the operation with cancel.ReasonTimeout d after
// the connection opened, however busy it is: clients reconnect, and land on
// a fresh server after a deploy.
func WithMaxLifetime(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("wscancel: WithMaxLifetime: lifetime must be positive, got %v", d)
		}
		c.lifetime = d
		return nil
	}
}

// WithReadLimit sets the largest message the peer may send, in bytes
// (websocket.Conn.SetReadLimit; coder/websocket's default is 32 KiB, -1
// means no limit). A larger message closes the connection with
// websocket.StatusMessageTooBig (1009) and cancels the operation with
// cancel.ReasonError.
func WithReadLimit(n int64) Option {
	return func(c *config) error {
		if n < -1 || n == 0 {
			return fmt.Errorf("wscancel: WithReadLimit: limit must be positive or -1 (none), got %d", n)
		}
		c.readLimit, c.hasLimit = n, true
		return nil
	}
}

// WithCloseTimeout bounds closing a connection: writing the close frame and
// waiting for the peer's. After d the connection is dropped as with
// websocket.Conn.CloseNow. The default is DefaultCloseTimeout.
func WithCloseTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("wscancel: WithCloseTimeout: timeout must be positive, got %v", d)
		}
		c.closeTimeout = d
		return nil
	}
}

// WithCloseStatus replaces DefaultCloseStatus, the close code and reason
// text the peer gets for the root reason of a cancellation (say
// websocket.StatusServiceRestart for cancel.ReasonShutdown). It is not
// called for cancel.ReasonDisconnect. Code 0 means DefaultCloseStatus's
// code and text, so that the function need only name the reasons it
// changes. A code that cannot be sent (1005, 1006, 1015, outside
// 1000-4999) is replaced by websocket.StatusInternalError; a text longer
// than 123 bytes is cut.
func WithCloseStatus(status func(cancel.Reason) (websocket.StatusCode, string)) Option {
	return func(c *config) error {
		if status == nil {
			return errors.New("wscancel: WithCloseStatus: nil function")
		}
		c.status = status
		return nil
	}
}

// WithProgress sends the progress reports of the connection's operation
// (Operation.Progress) to the peer, as text messages holding the JSON
// object {"type":"progress","message":...,"attrs":{...}}. The reports'
// messages and attributes reach the client: report nothing secret. A
// report waits for its message to be written, as Write does.
func WithProgress() Option {
	return func(c *config) error {
		c.progress = true
		return nil
	}
}
