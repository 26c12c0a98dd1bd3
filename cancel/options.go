package cancel

import (
	"context"
	"log/slog"
	"os"
	"time"
)

// An Option configures an operation at Start.
type Option func(*config)

type config struct {
	timeout    timeoutSource // the first WithTimeout or WithDeadline, kept inline
	hasTimeout bool
	sources    []Source
	observers  []Observer
	observer1  [1]Observer // backs observers while there is one: no allocation
	registry   *Registry
	attrs      []slog.Attr
	shielded   bool
	adopt      bool
	parent     func(cause error) (Reason, string) // WithParentReason
	err        error                              // the first invalid option
}

// CheckOptions returns the *OptionError an operation started with opts
// would fail with (a nil option, a nil token, check or source, an invalid
// interval, ...), or nil, without starting anything: no source is watched,
// no observer told, no registry joined. Wrappers that take options for the
// operations they will start (httpcancel.WithOperationOptions, say) call it
// to refuse invalid ones when they are built rather than at every start.
func CheckOptions(opts ...Option) error {
	var c config
	for _, o := range opts {
		if o == nil {
			return &OptionError{Option: "Option", Problem: "nil Option"}
		}
		o(&c)
		if c.err != nil {
			return c.err
		}
	}
	return nil
}

func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

func (c *config) addSource(option string, s Source) {
	if err := validateSource(option, s); err != nil {
		c.fail(err)
		return
	}
	c.sources = append(c.sources, s)
}

// WithTimeout cancels the operation with ReasonTimeout d after it starts. Its
// context reports the deadline, and its Err is context.DeadlineExceeded
// once it passed.
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.addTimeout(timeoutSource{after: d}) }
}

// WithDeadline cancels the operation with ReasonTimeout at t.
func WithDeadline(t time.Time) Option {
	return func(c *config) { c.addTimeout(timeoutSource{at: t, abs: true}) }
}

func (c *config) addTimeout(t timeoutSource) {
	if !c.hasTimeout {
		c.timeout, c.hasTimeout = t, true
		return
	}
	more := new(timeoutSource) // not &t: that would move every t to the heap
	*more = t
	c.sources = append(c.sources, more)
}

// WithToken cancels the operation when tok is cancelled, with tok's reason
// and message. The operation's callback is removed from tok when it ends.
func WithToken(tok *Token) Option {
	return func(c *config) {
		if tok == nil { // a nil *Token is a non-nil Source: check it here
			c.fail(&OptionError{Option: "WithToken", Problem: "nil *Token"})
			return
		}
		c.addSource("WithToken", tok)
	}
}

// WithSignals cancels the operation with ReasonSignal when the process
// receives one of signals (SIGINT or SIGTERM when none are given). See
// Signals.
func WithSignals(signals ...os.Signal) Option {
	return func(c *config) { c.addSource("WithSignals", Signals(signals...)) }
}

// WithCondition cancels the operation with ReasonCondition once check
// returns true, polling every interval. See Condition.
func WithCondition(name string, check func(ctx context.Context) (bool, error), every time.Duration) Option {
	return func(c *config) { c.addSource("WithCondition", Condition(name, check, every)) }
}

// WithSource cancels the operation when s fires. Use it for AnyOf, AllOf
// and sources of your own.
func WithSource(s Source) Option {
	return func(c *config) { c.addSource("WithSource", s) }
}

// WithObserver adds o to the observers of the operation, after the default
// one (see SetDefaultObserver). It applies to this operation only, not to
// the operations started under it, so the same options can be given to a
// whole tree of operations without telling an observer twice; nor is an
// observer that is the default already, or given twice, told twice (when
// it is a pointer: other observers cannot be compared). A nil o is
// ignored.
func WithObserver(o Observer) Option {
	return func(c *config) {
		if c.observers == nil {
			c.observers = c.observer1[:0]
		}
		c.observers = appendObservers(c.observers, o)
	}
}

// WithRegistry lists the operation in r while it runs, and in r's history
// after it ended. Registration is per operation: children are not listed
// unless they ask too.
func WithRegistry(r *Registry) Option {
	return func(c *config) {
		if r == nil {
			c.fail(&OptionError{Option: "WithRegistry", Problem: "nil *Registry"})
			return
		}
		c.registry = r
	}
}

// WithAttrs attaches attributes to the operation: observers turn them into
// span attributes and log fields. Give only values of bounded cardinality if
// an observer turns them into metric labels.
func WithAttrs(attrs ...slog.Attr) Option {
	return func(c *config) { c.attrs = append(c.attrs, attrs...) }
}

// AdoptSpan tells observers that the operation stands for the work the span
// already in its context stands for: a tracing observer then records the
// operation on that span (an HTTP server span started by otelhttp, say)
// instead of starting a child span. Without a span in the context, it has no
// effect.
func AdoptSpan() Option {
	return func(c *config) { c.adopt = true }
}

// WithParentReason decides the reason the operation is cancelled with when
// its parent context is cancelled: reason is given the parent's cause and
// returns a reason and a message. The default, and what a zero Reason,
// ReasonParent or a Reason outside the closed set from reason means, is
// ReasonParent wrapping the cause. It is
// for contexts whose cancellation means something of its own: net/http
// cancels a request's context without a cause when the client goes away.
// The cause is kept as the *Error's Cause unless it is a bare
// context.Canceled.
func WithParentReason(reason func(cause error) (Reason, string)) Option {
	return func(c *config) {
		if reason == nil {
			c.fail(&OptionError{Option: "WithParentReason", Problem: "nil function"})
			return
		}
		c.parent = reason
	}
}
