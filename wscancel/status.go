package wscancel

import (
	"unicode/utf8"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/coder/websocket"
)

// StatusTimeout is the close code a peer gets when its connection timed
// out: an idle timeout, the maximum lifetime, a timeout of the operation or
// of an enclosing one. It is in the private-use range (4000-4999) of RFC
// 6455, mirroring 1008 (policy violation), so that a client can tell a
// timeout from other policy closes and reconnect. WithCloseStatus can
// replace it.
const StatusTimeout websocket.StatusCode = 4008

// DefaultCloseStatus is the close code and reason text a peer gets when
// the connection's operation is cancelled, for the root reason of the
// cancellation (cancel.RootReason: a connection stopped because the server
// is shutting down was stopped by the shutdown, not by its parent):
//
//	shutdown, signal      1001 websocket.StatusGoingAway
//	timeout               4008 StatusTimeout
//	error                 1011 websocket.StatusInternalError
//	manual, condition     1000 websocket.StatusNormalClosure
//	parent (no root)      1001 websocket.StatusGoingAway
//	disconnect            nothing is sent: the peer is gone (1006 is recorded)
//
// The text is the reason's name ("shutdown", "timeout", ...): stable, for
// clients to match, and never the cancellation's message, which is for
// operators.
func DefaultCloseStatus(r cancel.Reason) (websocket.StatusCode, string) {
	switch r {
	case cancel.ReasonTimeout:
		return StatusTimeout, r.String()
	case cancel.ReasonError:
		return websocket.StatusInternalError, r.String()
	case cancel.ReasonManual, cancel.ReasonCondition:
		return websocket.StatusNormalClosure, r.String()
	case cancel.ReasonDisconnect:
		return websocket.StatusAbnormalClosure, r.String()
	case 0:
		return websocket.StatusNormalClosure, ""
	default: // shutdown, signal, parent
		return websocket.StatusGoingAway, r.String()
	}
}

// Close codes and texts of a connection that ended without a cancellation.
const (
	textInternalError = "internal error"
	maxCloseText      = 123 // a control frame's 125 bytes less the code
)

// sendable reports whether code may be sent in a close frame (RFC 6455
// section 7.4).
func sendable(code websocket.StatusCode) bool {
	switch code {
	case 1004, websocket.StatusNoStatusRcvd, websocket.StatusAbnormalClosure, websocket.StatusTLSHandshake:
		return false
	}
	return code >= 1000 && code <= 1014 || code >= 3000 && code <= 4999
}

// closeFrame makes code and text fit in a close frame.
func closeFrame(code websocket.StatusCode, text string) (websocket.StatusCode, string) {
	if !sendable(code) {
		code = websocket.StatusInternalError
	}
	if len(text) > maxCloseText {
		n := maxCloseText
		for n > 0 && !utf8.RuneStart(text[n]) {
			n-- // do not cut a character in two
		}
		text = text[:n]
	}
	return code, text
}
