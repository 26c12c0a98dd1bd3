package sse

import (
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// An Event is one server-sent event. The zero Event is a valid event: a
// "message" event with empty data.
type Event struct {
	// ID, if not empty, becomes the client's last event ID: the value its
	// EventSource sends back in the Last-Event-ID header when it
	// reconnects. Any valid UTF-8 without a newline, carriage return or
	// NUL.
	ID string
	// Type is the event type (the "event" field), which EventSource listens
	// to with addEventListener; empty means "message". Any valid UTF-8
	// without a newline, carriage return or NUL.
	Type string
	// Data is the payload. It may contain any valid UTF-8 (the client
	// decodes the stream as UTF-8: invalid bytes would reach it as
	// U+FFFD): every line ending
	// (\n, \r\n or \r) starts a new "data:" line, and the client joins the
	// lines with \n. Data can never end the event early or forge another.
	Data string
	// Retry, if positive, tells the client how long to wait before it
	// reconnects, in whole milliseconds. It must not be negative.
	Retry time.Duration
}

// ErrInvalidField is matched (errors.Is) by the error Send returns for an
// event whose ID or Type contains a newline, a carriage return or a NUL,
// whose ID, Type or Data is not valid UTF-8, or whose Retry is negative.
// Nothing is written for such an event.
var ErrInvalidField = errors.New("sse: invalid event field")

// fieldError names the field and what is wrong with it.
type fieldError struct {
	field, value, problem string
}

func (e *fieldError) Error() string {
	return "sse: invalid event " + e.field + " " + strconv.Quote(e.value) + ": " + e.problem
}

func (e *fieldError) Is(target error) bool { return target == ErrInvalidField }

// Validate reports whether e can be sent: nil, or an error matching
// ErrInvalidField that names the field.
func (e *Event) Validate() error {
	if i := strings.IndexAny(e.ID, "\n\r\x00"); i >= 0 {
		return &fieldError{"ID", e.ID, "contains " + forbidden(e.ID[i]) + " (it would end the field)"}
	}
	if i := strings.IndexAny(e.Type, "\n\r\x00"); i >= 0 {
		return &fieldError{"Type", e.Type, "contains " + forbidden(e.Type[i]) + " (it would end the field)"}
	}
	// The client decodes the stream as UTF-8, replacing invalid bytes with
	// U+FFFD: it would read another ID (and send it back in Last-Event-ID),
	// another type, other data.
	for _, f := range [...]struct{ name, value string }{{"ID", e.ID}, {"Type", e.Type}, {"Data", e.Data}} {
		if !utf8.ValidString(f.value) {
			v := f.value
			if len(v) > 64 {
				v = v[:64] + "..."
			}
			return &fieldError{f.name, v, "is not valid UTF-8 (the client would read U+FFFD in place of the invalid bytes)"}
		}
	}
	if e.Retry < 0 {
		return &fieldError{"Retry", e.Retry.String(), "must not be negative"}
	}
	return nil
}

func forbidden(c byte) string {
	switch c {
	case '\n':
		return "a newline"
	case '\r':
		return "a carriage return"
	}
	return "a NUL"
}

// appendEvent appends the wire form of e, which must be valid, to b.
func appendEvent(b []byte, e *Event) []byte {
	if e.ID != "" {
		b = append(b, "id: "...)
		b = append(b, e.ID...)
		b = append(b, '\n')
	}
	if e.Type != "" {
		b = append(b, "event: "...)
		b = append(b, e.Type...)
		b = append(b, '\n')
	}
	if e.Retry > 0 {
		b = appendRetry(b, e.Retry)
	}
	b = appendLines(b, "data", e.Data)
	return append(b, '\n')
}

func appendRetry(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, max(d.Milliseconds(), 1), 10)
	return append(b, '\n')
}

// appendLines appends s as lines "prefix: line\n" (or "prefix:\n" for an
// empty line), splitting it on every line ending: \n, \r\n and \r. An
// empty s makes one empty line.
func appendLines(b []byte, prefix, s string) []byte {
	for {
		i := strings.IndexAny(s, "\r\n")
		line := s
		if i >= 0 {
			line = s[:i]
		}
		b = append(b, prefix...)
		if line == "" {
			b = append(b, ':')
		} else {
			b = append(b, ": "...)
			b = append(b, line...)
		}
		b = append(b, '\n')
		if i < 0 {
			return b
		}
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
	}
}

// appendComment appends text as comment lines, split like data.
func appendComment(b []byte, text string) []byte {
	return appendLines(b, "", text)
}
