package cancel

import (
	"fmt"
	"strconv"
)

// A Reason says why an operation was cancelled. The zero Reason means the
// operation was not cancelled.
//
// Reasons form a closed set. Their strings are stable and lower-case: they
// are used as metric label values, span attributes and JSON values.
type Reason uint8

const (
	ReasonTimeout    Reason = iota + 1 // a timeout or deadline passed
	ReasonManual                       // someone asked: Operation.Cancel, a Token, an operator
	ReasonSignal                       // the process received an OS signal
	ReasonCondition                    // a polled condition held
	ReasonParent                       // the enclosing operation or context was cancelled
	ReasonDisconnect                   // the peer went away
	ReasonShutdown                     // the server is draining
	ReasonError                        // a failure elsewhere forced the stop
)

var reasonNames = [...]string{
	ReasonTimeout:    "timeout",
	ReasonManual:     "manual",
	ReasonSignal:     "signal",
	ReasonCondition:  "condition",
	ReasonParent:     "parent",
	ReasonDisconnect: "disconnect",
	ReasonShutdown:   "shutdown",
	ReasonError:      "error",
}

// Reasons returns every Reason, in declaration order. Exporters use it to
// create metric series for all reasons before the first cancellation.
func Reasons() []Reason {
	rs := make([]Reason, 0, len(reasonNames)-1)
	for r := ReasonTimeout; int(r) < len(reasonNames); r++ {
		rs = append(rs, r)
	}
	return rs
}

// String returns the stable name of r: "timeout", "manual", and so on, or ""
// for the zero Reason.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

func (r Reason) valid() bool { return r != 0 && int(r) < len(reasonNames) }

// MarshalText encodes r as its name.
func (r Reason) MarshalText() ([]byte, error) {
	if r != 0 && !r.valid() {
		return nil, fmt.Errorf("cancel: invalid reason %d", uint8(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText decodes a name produced by MarshalText.
func (r *Reason) UnmarshalText(b []byte) error {
	v, err := ParseReason(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseReason returns the Reason named s. The empty string is the zero Reason.
func ParseReason(s string) (Reason, error) {
	for i, n := range reasonNames {
		if n == s {
			return Reason(i), nil
		}
	}
	return 0, fmt.Errorf("cancel: unknown reason %q", s)
}

// A Status is where an operation is in its life: pending, then running, then
// completed, cancelled or failed. The zero Status matches any status in a
// Filter and is never the status of an operation.
type Status uint8

const (
	StatusPending   Status = iota + 1 // created, observers are being told
	StatusRunning                     // started, not ended
	StatusCompleted                   // ended without error
	StatusCancelled                   // ended with an error after a cancellation was requested
	StatusFailed                      // ended with an error and no cancellation
)

var statusNames = [...]string{
	StatusPending:   "pending",
	StatusRunning:   "running",
	StatusCompleted: "completed",
	StatusCancelled: "cancelled",
	StatusFailed:    "failed",
}

// Statuses returns every Status, in life order.
func Statuses() []Status {
	return []Status{StatusPending, StatusRunning, StatusCompleted, StatusCancelled, StatusFailed}
}

// String returns the stable name of s: "pending", "running", "completed",
// "cancelled" or "failed"; "" for the zero Status.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Ended reports whether s is an outcome: completed, cancelled or failed.
func (s Status) Ended() bool { return s >= StatusCompleted && int(s) < len(statusNames) }

// MarshalText encodes s as its name.
func (s Status) MarshalText() ([]byte, error) {
	if int(s) >= len(statusNames) {
		return nil, fmt.Errorf("cancel: invalid status %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes a name produced by MarshalText.
func (s *Status) UnmarshalText(b []byte) error {
	v, err := ParseStatus(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseStatus returns the Status named s. The empty string is the zero Status.
func ParseStatus(s string) (Status, error) {
	for i, n := range statusNames {
		if n == s {
			return Status(i), nil
		}
	}
	return 0, fmt.Errorf("cancel: unknown status %q", s)
}
