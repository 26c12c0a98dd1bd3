// Package sse writes Server-Sent Events (the text/event-stream responses
// that browsers read with EventSource) on top of the cancel core.
//
// Each stream is a cancel operation, so it says why it stopped, and its
// client is told too: at the cancellation the stream writes a last
// "cancelled" event with the reason ({"reason":"timeout",...}) and ends.
// A client that went away or stopped reading is noticed at the next write
// (see WithHeartbeat and WithWriteTimeout) and counted as
// cancel.ReasonDisconnect.
//
//	func events(w http.ResponseWriter, r *http.Request) {
//		s, err := sse.New(w, r, sse.WithHeartbeat(15*time.Second), sse.WithWriteTimeout(10*time.Second))
//		if err != nil {
//			http.Error(w, err.Error(), http.StatusInternalServerError)
//			return
//		}
//		s.End(s.SendChan(updates(s.Context(), s.LastEventID())))
//	}
//
// Events are encoded so that no data can forge another event: data is
// split into "data:" lines on every line ending (\n, \r\n, \r; the client
// joins them with \n), and IDs and event types containing a newline,
// carriage return or NUL are refused, as are fields that are not valid
// UTF-8 (the client would read them otherwise).
//
// Observers of the stream's operation that implement cancel.EventObserver
// (otelcancel's does) hear of the stream: an event "sse.open" (attribute
// sse.resumed) once the headers are sent, a count "sse.events" for each
// event written (not comments or heartbeats), and an event "sse.close"
// (attributes cancel.reason, the root reason of the cancellation as the
// client was told it, and sse.events) just before the operation ends.
package sse
