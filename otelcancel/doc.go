// Package otelcancel records cancellable operations with OpenTelemetry:
// every operation is a span, every progress report and cancellation request
// a span event, and every outcome a metric labelled with its reason.
//
// An Observer implements cancel.Observer. Set it as the default observer
// once, and every operation started with the cancel package reports to it:
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
// NewPrometheus gives a MeterProvider and a ready /metrics handler, and
// NewLogHandler adds the operation and trace to slog records.
package otelcancel
