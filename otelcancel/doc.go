// Package otelcancel records cancellable operations with OpenTelemetry:
// every operation is a span, every progress report and cancellation request
// a span event, and every outcome a metric labelled with its reason.
//
// An Observer implements cancel.Observer and cancel.EventObserver. Set it as
// the default observer once, and every operation started with the cancel
// package reports to it:
//
//	obs, err := otelcancel.New() // the global tracer and meter providers
//	if err != nil { ... }
//	cancel.SetDefaultObserver(obs)
//
// Spans are named after their operation and carry cancel.operation.id and
// cancel.operation.name. Their events are cancel.progress (the message and
// the report's attributes) and cancel.requested (the reason and message, at
// the moment of the request). At the end they get cancel.outcome, and
// cancel.reason for a cancelled operation; a cancelled or failed one gets
// status Error and error.type (the reason, or the Go type of the error). An
// operation started with cancel.AdoptSpan records all of that on the span
// already in its context instead of starting one, and leaves ending it to
// whoever started it; a span context propagated from another process is no
// span to adopt, so there the operation starts a child span as usual. A
// shielded section (cancel.Shield) is a child span named "shield" with
// cancel.shielded=true, and an operation whose streams delivered items gets
// cancel.delivered.
//
// Metrics, with their names as Prometheus shows them:
//
//	cancel_operations_total{cancel_operation_name, cancel_outcome, cancel_reason}
//	cancel_operation_duration_seconds{cancel_operation_name, cancel_outcome, cancel_reason}
//	cancel_operation_active{cancel_operation_name}
//	cancel_stop_latency_seconds{cancel_operation_name, cancel_reason}
//	cancel_progress_reports_total{cancel_operation_name}
//
// cancel_stop_latency_seconds is the time from a cancellation request to the
// end of the operation: it shows work that ignores its context. It is
// recorded whenever a cancellation was requested, also for an operation that
// completed anyway. The first time an operation name is seen, its counters
// exist at zero for every outcome and reason, so rate() and alerts work from
// the first event. The duration histogram carries exemplars with the trace
// and span IDs of sampled operations. Operation names beyond WithMaxNames
// are counted under OtherName.
//
// # Websockets and Server-Sent Events
//
// The Observer is a cancel.EventObserver: it hears the events and counts
// that the wscancel and sse packages record on their connections'
// operations (Operation.Event, Operation.Count). Every event becomes a
// span event named "cancel." and the event's name (EventWSOpen,
// EventWSClose, EventSSEOpen, EventSSEClose, and likewise for events of
// your own), with its attributes mapped as those of progress reports. The
// websocket and SSE events and counts also feed these metrics:
//
//	cancel_ws_connections_active{cancel_operation_name}
//	cancel_ws_messages_total{cancel_operation_name, cancel_ws_direction}
//	cancel_ws_closes_total{cancel_operation_name, cancel_ws_close_code, cancel_reason}
//	cancel_ws_connection_duration_seconds{cancel_operation_name, cancel_outcome, cancel_reason}
//	cancel_sse_streams_active{cancel_operation_name}
//	cancel_sse_events_total{cancel_operation_name}
//	cancel_sse_ends_total{cancel_operation_name, cancel_outcome, cancel_reason}
//	cancel_sse_stream_duration_seconds{cancel_operation_name, cancel_outcome, cancel_reason}
//
// Their OpenTelemetry names have dots and no unit or _total suffix:
// cancel.ws.messages, cancel.ws.connection.duration (in seconds), and so
// on. A connection is open from its "ws.open" event (a stream from "sse.open") to the end of its operation,
// when its duration, and for a stream its end, are recorded by the
// operation's outcome and root reason (cancel.RootReason: a stream whose
// request timed out ended by "timeout", not "parent", as its client was
// told). Messages are counted by direction
// (cancel.ws.direction: "in", "out") from "ws.messages.in" and
// "ws.messages.out" counts, SSE events from "sse.events" counts; other
// counts are ignored. Each "ws.close" event counts a close by its code
// (cancel.ws.close.code: "1000" to "1015", "4000" to "4099", or "other";
// see CloseCodeOther) and the reason it carries. The durations use their
// own buckets, from a tenth of a second to hours (DefaultStreamBuckets,
// WithStreamBuckets). The first time a name is seen as a websocket, its
// message counts and active connections exist at zero, and as an SSE
// stream, its event count, active streams and ends by every outcome and
// reason; close counts appear with their first close.
//
// NewPrometheus gives a MeterProvider and a ready /metrics handler, and
// NewLogHandler adds the operation and trace to slog records.
package otelcancel
