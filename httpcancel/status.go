package httpcancel

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/cancelable-go/cancelable/cancel"
)

// StatusClientClosedRequest is the status recorded for a request whose
// client went away (nginx's 499). Nobody receives it; logs and metrics do.
const StatusClientClosedRequest = 499

// DefaultStatus maps a cancellation reason to the status of the response
// when the handler has written nothing: timeout 504, disconnect 499,
// anything else 503.
func DefaultStatus(r cancel.Reason) int {
	switch r {
	case cancel.ReasonTimeout:
		return http.StatusGatewayTimeout
	case cancel.ReasonDisconnect:
		return StatusClientClosedRequest
	}
	return http.StatusServiceUnavailable
}

// WriteProblem answers a cancelled request with an RFC 9457 problem
// document: its title and status, the reason, and as its type the
// reason's documentation (https://pkg.go.dev/github.com/cancelable-go/cancelable/cancel#ReasonTimeout
// for a timeout). It says nothing of the internal message. For
// ReasonShutdown it sets Retry-After, so that clients try another
// instance.
func WriteProblem(w http.ResponseWriter, status int, reason cancel.Reason) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	if reason == cancel.ReasonShutdown {
		h.Set("Retry-After", "1")
	}
	title := http.StatusText(status)
	if status == StatusClientClosedRequest {
		title = "Client Closed Request"
	}
	body := `{"type":"` + problemType(reason) + `","title":"` + title +
		`","status":` + strconv.Itoa(status) + `,"reason":"` + reason.String() + `"}` + "\n"
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write([]byte(body))
}

// problemType is the type URI of the problem document for reason: the
// documentation of its constant, a page this module owns.
func problemType(reason cancel.Reason) string {
	name := reason.String()
	if name == "" {
		return "about:blank"
	}
	return "https://pkg.go.dev/github.com/cancelable-go/cancelable/cancel#Reason" + strings.ToUpper(name[:1]) + name[1:]
}
