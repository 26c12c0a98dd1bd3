package dashboards

import (
	"slices"
	"strings"
)

// Label names of the telemetry contract, as the Prometheus exporter writes
// the OpenTelemetry attributes (dots become underscores).
const (
	lName      = "cancel_operation_name"
	lOutcome   = "cancel_outcome"
	lReason    = "cancel_reason"
	lDirection = "cancel_ws_direction"
	lCloseCode = "cancel_ws_close_code"
)

// A family is a metric of the contract.
type family struct {
	histogram bool     // exposed as _bucket (with le), _count and _sum
	labels    []string // besides job and instance, which Prometheus adds
	optional  []string // labels some series have and others not
}

// contract holds the metrics that dashboards and alerts may query: those
// of DESIGN.md's telemetry contract, of the package documentation of otelcancel (websockets and
// SSE) and otelhttp's request duration, by Prometheus name.
var contract = map[string]family{
	"cancel_operations_total":           {labels: []string{lName, lOutcome, lReason}},
	"cancel_operation_duration_seconds": {histogram: true, labels: []string{lName, lOutcome, lReason}},
	"cancel_operation_active":           {labels: []string{lName}},
	"cancel_stop_latency_seconds":       {histogram: true, labels: []string{lName, lReason}},
	"cancel_progress_reports_total":     {labels: []string{lName}},

	"cancel_ws_connections_active":          {labels: []string{lName}},
	"cancel_ws_messages_total":              {labels: []string{lName, lDirection}},
	"cancel_ws_closes_total":                {labels: []string{lName, lCloseCode, lReason}},
	"cancel_ws_connection_duration_seconds": {histogram: true, labels: []string{lName, lOutcome, lReason}},
	"cancel_sse_streams_active":             {labels: []string{lName}},
	"cancel_sse_events_total":               {labels: []string{lName}},
	"cancel_sse_stream_duration_seconds":    {histogram: true, labels: []string{lName, lOutcome, lReason}},
	"cancel_sse_ends_total":                 {labels: []string{lName, lOutcome, lReason}},

	"http_server_request_duration_seconds": {histogram: true,
		labels: []string{"http_request_method", "http_response_status_code", "http_route",
			"network_protocol_name", "network_protocol_version", "server_address", "server_port", "url_scheme"},
		// Our Labeler's cancellation reason; absent for requests that
		// were not cancelled.
		optional: []string{"error_type"},
	},
}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

// seriesFamily returns the family of a series name (a histogram's _bucket,
// _count or _sum included), and whether the series is a bucket.
func seriesFamily(series string) (name string, f family, bucket, ok bool) {
	if f, ok := contract[series]; ok && !f.histogram {
		return series, f, false, true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		base, found := strings.CutSuffix(series, suffix)
		if f, ok := contract[base]; found && ok && f.histogram {
			return base, f, suffix == "_bucket", true
		}
	}
	return "", family{}, false, false
}

// labelAllowed tells whether a series of the contract has the label.
func labelAllowed(series, label string) bool {
	_, f, bucket, ok := seriesFamily(series)
	if !ok {
		return false
	}
	return label == "__name__" || slices.Contains(targetLabels, label) ||
		slices.Contains(f.labels, label) || slices.Contains(f.optional, label) ||
		(bucket && label == "le")
}

// contractLabels returns every label name of the contract.
func contractLabels() map[string]bool {
	all := map[string]bool{"le": true}
	for _, l := range targetLabels {
		all[l] = true
	}
	for _, f := range contract {
		for _, l := range append(slices.Clone(f.labels), f.optional...) {
			all[l] = true
		}
	}
	return all
}
