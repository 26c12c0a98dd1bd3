package cancel

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// An Error is the cause of every cancellation: the context of a cancelled
// operation returns it from context.Cause, and Operation.Err and
// Operation.End return it (or an error wrapping it).
//
// errors.Is(err, context.Canceled) holds for every *Error, and
// errors.Is(err, context.DeadlineExceeded) holds for a timeout, and for an
// operation whose parent timed out.
type Error struct {
	Reason  Reason    // why: a closed set, see Reason
	Message string    // what the canceller said; for people, not for matching
	Op      string    // name of the cancelled operation; empty for a Token
	OpID    uint64    // ID of the cancelled operation; zero for a Token
	Time    time.Time // when the cancellation was requested
	Cause   error     // what led to it: for ReasonParent, the parent's cause
}

// Error returns "op: cancelled (reason): message: cause", leaving out the
// parts that are empty, and the cause when the message is its text.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString("cancelled")
	if e.Reason != 0 {
		b.WriteString(" (")
		b.WriteString(e.Reason.String())
		b.WriteString(")")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	// A canceller that gives an error as both message (for span events,
	// which carry no cause) and cause should not see it said twice.
	if e.Cause != nil {
		if cause := errorText(e.Cause); cause != e.Message {
			b.WriteString(": ")
			b.WriteString(cause)
		}
	}
	return b.String()
}

// Unwrap returns the cause, so that errors.Is and errors.As see through a
// chain of parents to the first cancellation.
func (e *Error) Unwrap() error { return e.Cause }

// Is reports whether e matches context.Canceled (always) or
// context.DeadlineExceeded (for ReasonTimeout).
func (e *Error) Is(target error) bool {
	switch target {
	case context.Canceled:
		return true
	case context.DeadlineExceeded:
		return e.Reason == ReasonTimeout
	}
	return false
}

// ReasonOf returns the reason of the first *Error in err's chain. Without
// one, it returns ReasonTimeout for an error that is
// context.DeadlineExceeded, and the zero Reason otherwise.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ReasonTimeout
	}
	return 0
}

// RootReason is ReasonOf the cancellation a chain of parents started from:
// for an operation cancelled because its parent was (ReasonParent), the
// reason of the parent's cancellation, and so on up. It is what a user
// should be told (a websocket stopped by a server shutting down was stopped
// by the shutdown), while ReasonOf says how the cancellation reached this
// operation.
func RootReason(err error) Reason {
	r := ReasonOf(err)
	for r == ReasonParent {
		var e *Error
		if !errors.As(err, &e) || e.Cause == nil {
			return r
		}
		err = e.Cause
		if r = ReasonOf(err); r == 0 {
			return ReasonParent
		}
	}
	return r
}

// ErrEnded is the context cause of an operation that ended without being
// cancelled: work still holding its context after End sees this instead of a
// bare context.Canceled.
var ErrEnded = errors.New("cancel: operation ended")

// An OptionError reports an invalid option or source. An operation started
// with one fails at once with it: Start returns a context that is already
// done, End and Run return the OptionError, and Run does not call its
// function.
type OptionError struct {
	Option  string // the constructor that was misused, such as "WithCondition"
	Problem string // what is wrong with its arguments
}

func (e *OptionError) Error() string {
	return "cancel: invalid " + e.Option + ": " + e.Problem
}

// cancelledError is what End returns when the body failed with an error of
// its own after a cancellation was requested: the body's error, with the
// cancellation in front of it for errors.As and ReasonOf.
type cancelledError struct {
	err   error
	cause *Error
}

func (e *cancelledError) Error() string {
	msg, why := errorText(e.err), e.cause.Error()
	if strings.Contains(msg, why) {
		return msg
	}
	return msg + " (" + why + ")"
}

func (e *cancelledError) Unwrap() []error { return []error{e.cause, e.err} }

// withCancellation returns what End should return for a body that failed
// with err after the cancellation ce was requested.
func withCancellation(err error, ce *Error) error {
	if err == context.Canceled || err == context.DeadlineExceeded {
		return ce
	}
	var first *Error
	if errors.As(err, &first) && first == ce {
		return err
	}
	return &cancelledError{err: err, cause: ce}
}

// errorText is err's text as fmt prints it: a typed nil (a nil pointer
// whose Error method dereferences it) or an Error method that panics gives
// a placeholder instead of a panic inside End.
func errorText(err error) string { return fmt.Sprint(err) }
