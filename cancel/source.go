package cancel

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// A Source decides when an operation is cancelled. Several sources on one
// operation act as AnyOf: the first to fire wins.
//
// Watch starts watching and must not block. ctx is the operation's context:
// it carries its values and is done once the operation is cancelled or has
// ended. When the source's condition holds, it calls fire with a reason and
// a message; fire may be called from any goroutine, at any time and more
// than once, and every call after the first is ignored. The operation calls
// the returned stop function once when it ends; stop must release everything
// Watch took (goroutines, timers, registrations) before it returns.
type Source interface {
	Watch(ctx context.Context, fire func(reason Reason, message string)) (stop func())
}

// Built-in sources may implement these to be checked at Start and to tell
// the operation's context its deadline.
type (
	validator interface {
		validate(option string) error
	}
	deadliner interface {
		// deadline returns when the source fires by time alone, for an
		// operation started at start.
		deadline(start time.Time) (time.Time, bool)
	}
)

func validateSource(option string, s Source) error {
	if s == nil {
		return &OptionError{Option: option, Problem: "nil Source"}
	}
	if v, ok := s.(validator); ok {
		return v.validate(option)
	}
	return nil
}

func sourceDeadline(s Source, start time.Time) (time.Time, bool) {
	if d, ok := s.(deadliner); ok {
		return d.deadline(start)
	}
	return time.Time{}, false
}

// timeoutSource fires with ReasonTimeout at a fixed time.
type timeoutSource struct {
	after time.Duration // from the start, unless absolute
	at    time.Time
	abs   bool
}

// Timeout returns a Source that fires with ReasonTimeout d after the
// operation starts. Like context.WithTimeout, a d of zero or less fires at
// once. The operation's context reports the deadline.
func Timeout(d time.Duration) Source { return &timeoutSource{after: d} }

// Deadline returns a Source that fires with ReasonTimeout at t. The
// operation's context reports the deadline.
func Deadline(t time.Time) Source { return &timeoutSource{at: t, abs: true} }

func (s *timeoutSource) deadline(start time.Time) (time.Time, bool) {
	if s.abs {
		return s.at, true
	}
	return start.Add(s.after), true
}

func (s *timeoutSource) message() string {
	if s.abs {
		return "deadline " + s.at.Format(time.RFC3339Nano) + " passed"
	}
	return "timed out after " + s.after.String()
}

func (s *timeoutSource) Watch(ctx context.Context, fire func(Reason, string)) func() {
	// Count from the operation's start, as its context's Deadline does:
	// otherwise a timeout inside AnyOf or AllOf would fire a little after
	// the deadline the context reports.
	start := time.Now()
	if op := FromContext(ctx); op != nil {
		start = op.start
	}
	at, _ := s.deadline(start)
	d := time.Until(at)
	if d <= 0 {
		// Like context.WithTimeout: a deadline already passed cancels
		// before Start returns, not a moment later on a timer goroutine.
		fire(ReasonTimeout, s.message())
		return func() {}
	}
	t := time.AfterFunc(d, func() { fire(ReasonTimeout, s.message()) })
	return func() { t.Stop() }
}

// signalSource fires with ReasonSignal when the process receives a signal.
type signalSource struct{ signals []os.Signal }

// Signals returns a Source that fires with ReasonSignal when the process
// receives one of signals; with none, SIGINT or SIGTERM. Until the source
// fires or the operation is cancelled or ends, those signals are delivered to
// it instead of their default action (ending the process). Then the handlers
// are removed: a second Ctrl-C ends a program whose clean-up hangs, as it
// would without the operation.
//
// os.Kill (SIGKILL) cannot be caught: asking for it is an *OptionError.
func Signals(signals ...os.Signal) Source {
	if len(signals) == 0 {
		signals = []os.Signal{os.Interrupt, syscall.SIGTERM}
	}
	return &signalSource{signals: signals}
}

func (s *signalSource) validate(option string) error {
	for _, sig := range s.signals {
		switch sig {
		case nil:
			return &OptionError{Option: option, Problem: "nil os.Signal"}
		case os.Kill:
			return &OptionError{Option: option, Problem: "os.Kill (SIGKILL) cannot be caught"}
		}
	}
	return nil
}

func (s *signalSource) Watch(ctx context.Context, fire func(Reason, string)) func() {
	ch := make(chan os.Signal, 1)
	quit := make(chan struct{})
	exited := make(chan struct{})
	signal.Notify(ch, s.signals...)
	go func() {
		defer close(exited)
		var sig os.Signal
		select {
		case sig = <-ch:
		case <-ctx.Done(): // cancelled otherwise, or ended
		case <-quit:
		}
		// Remove the handlers before firing, so that whoever sees the
		// operation cancelled can count on the next signal's default action.
		signal.Stop(ch)
		if sig != nil {
			fire(ReasonSignal, "received signal "+sig.String())
		}
	}()
	return func() {
		close(quit)
		<-exited
	}
}

// conditionSource polls a predicate.
type conditionSource struct {
	name  string
	check func(context.Context) (bool, error)
	every time.Duration
}

// Condition returns a Source that fires with ReasonCondition once check
// returns true. check is called when the operation starts, on the goroutine
// calling Start, and then every interval on a goroutine of its own until the
// operation is cancelled or ends. ctx is the operation's context; check must
// return soon after it is done, since End waits for it. An error from check
// (or a panic in it) is reported as a progress report of the operation, once
// until check succeeds or fails differently, and polling goes on. name says what the condition is, in the cancellation
// message.
//
// every must be positive and check not nil: otherwise the operation fails at
// Start with an *OptionError.
func Condition(name string, check func(ctx context.Context) (bool, error), every time.Duration) Source {
	return &conditionSource{name: name, check: check, every: every}
}

func (s *conditionSource) validate(option string) error {
	switch {
	case s.check == nil:
		return &OptionError{Option: option, Problem: fmt.Sprintf("condition %q: nil check function", s.name)}
	case s.every <= 0:
		return &OptionError{Option: option, Problem: fmt.Sprintf("condition %q: interval must be positive, got %v", s.name, s.every)}
	}
	return nil
}

// poll checks once and reports whether the condition held.
func (s *conditionSource) poll(ctx context.Context, fire func(Reason, string), lastErr *string) bool {
	ok, err := s.safeCheck(ctx)
	if err != nil {
		// Report a failure once, not at every interval: a broken probe
		// polled often would flood the traces. A new error is reported.
		msg := errorText(err) // not err.Error(): a typed nil must not crash the poller
		if msg == *lastErr {
			return false
		}
		*lastErr = msg
		if op := FromContext(ctx); op != nil && ctx.Err() == nil {
			op.Progress("condition check failed",
				slog.String("condition", s.name), slog.String("error", msg))
		}
		return false
	}
	*lastErr = ""
	if ok {
		if s.name == "" {
			fire(ReasonCondition, "condition met")
		} else {
			fire(ReasonCondition, "condition "+s.name+" met")
		}
	}
	return ok
}

func (s *conditionSource) safeCheck(ctx context.Context) (ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("check panicked: %v", r)
		}
	}()
	return s.check(ctx)
}

func (s *conditionSource) Watch(ctx context.Context, fire func(Reason, string)) func() {
	var lastErr string // per watch: one Source may serve many operations
	if s.poll(ctx, fire, &lastErr) {
		return func() {}
	}
	quit := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(s.every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				// The operation was cancelled (or ended): a later fire
				// would be ignored, so stop calling check.
				return
			case <-t.C:
				if s.poll(ctx, fire, &lastErr) {
					return
				}
			}
		}
	}()
	return func() {
		close(quit)
		<-exited
	}
}

// anyOf fires when the first of its sources fires.
type anyOf struct{ sources []Source }

// AnyOf returns a Source that fires when the first of sources fires, with
// that source's reason and message. Several sources given to one operation
// already act this way; AnyOf is for nesting inside AllOf. At least one
// source is required.
func AnyOf(sources ...Source) Source { return &anyOf{sources: sources} }

func (s *anyOf) validate(string) error { return validateAll("AnyOf", s.sources) }

func (s *anyOf) deadline(start time.Time) (earliest time.Time, ok bool) {
	for _, src := range s.sources {
		if d, has := sourceDeadline(src, start); has && (!ok || d.Before(earliest)) {
			earliest, ok = d, true
		}
	}
	return earliest, ok
}

func (s *anyOf) Watch(ctx context.Context, fire func(Reason, string)) func() {
	return watchAll(ctx, s.sources, func(int) func(Reason, string) { return fire })
}

// allOf fires when every one of its sources has fired.
type allOf struct{ sources []Source }

// AllOf returns a Source that fires once every one of sources has fired,
// with the reason and message of the last to fire. At least one source is
// required.
func AllOf(sources ...Source) Source { return &allOf{sources: sources} }

func (s *allOf) validate(string) error { return validateAll("AllOf", s.sources) }

func (s *allOf) deadline(start time.Time) (latest time.Time, ok bool) {
	for _, src := range s.sources {
		d, has := sourceDeadline(src, start)
		if !has {
			return time.Time{}, false
		}
		if !ok || d.After(latest) {
			latest, ok = d, true
		}
	}
	return latest, ok
}

func (s *allOf) Watch(ctx context.Context, fire func(Reason, string)) func() {
	var mu sync.Mutex
	fired := make([]bool, len(s.sources))
	left := len(s.sources)
	return watchAll(ctx, s.sources, func(i int) func(Reason, string) {
		return func(r Reason, msg string) {
			mu.Lock()
			if fired[i] {
				mu.Unlock()
				return
			}
			fired[i] = true
			left--
			last := left == 0
			mu.Unlock()
			if last {
				fire(r, msg)
			}
		}
	})
}

func validateAll(option string, sources []Source) error {
	if len(sources) == 0 {
		return &OptionError{Option: option, Problem: "no sources"}
	}
	for _, s := range sources {
		if err := validateSource(option, s); err != nil {
			return err
		}
	}
	return nil
}

func watchAll(ctx context.Context, sources []Source, fireFor func(i int) func(Reason, string)) func() {
	stops := make([]func(), 0, len(sources))
	for i, s := range sources {
		stops = append(stops, watch(ctx, s, fireFor(i)))
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// watch starts a source, containing a panic in its Watch and a nil stop.
func watch(ctx context.Context, s Source, fire func(Reason, string)) (stop func()) {
	stop = func() {}
	defer func() {
		if r := recover(); r != nil {
			slog.Error("cancel: Source.Watch panicked", slog.Any("panic", r))
		}
	}()
	if st := s.Watch(ctx, fire); st != nil {
		stop = func() { runCallback(st) }
	}
	return stop
}
