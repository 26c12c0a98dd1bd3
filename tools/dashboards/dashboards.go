// Package dashboards builds the Grafana dashboards of Cancelable for Go as
// code, with the Grafana Foundation SDK. Run the generator (cmd/gen) after
// changing them: it writes the JSON that Grafana provisions from
// dashboards/grafana/dashboards, and the tests fail while the committed
// JSON and the generator disagree.
//
// Every query reads the metrics of the telemetry contract (DESIGN.md and
// the package documentation of otelcancel) as the OpenTelemetry Prometheus exporter names them:
// cancel_* from otelcancel, http_server_request_duration_seconds from
// otelhttp.
package dashboards

//go:generate go run ./cmd/gen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// DatasourceUID is the uid of the Prometheus data source the panels query:
// the one dashboards/grafana/provisioning/datasources provisions.
const DatasourceUID = "prometheus"

// A File is a generated dashboard: its file name in
// dashboards/grafana/dashboards and its JSON.
type File struct {
	Name string
	JSON []byte
}

// Dashboards returns every dashboard, as the files the generator writes.
func Dashboards() ([]File, error) {
	var files []File
	for _, d := range []struct {
		name  string
		build func() (dashboard.Dashboard, error)
	}{
		{"cancelable.json", Cancelable},
	} {
		db, err := d.build()
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", d.name, err)
		}
		b, err := marshal(db)
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", d.name, err)
		}
		files = append(files, File{Name: d.name, JSON: b})
	}
	return files, nil
}

// marshal returns the JSON of a dashboard, indented, without HTML escapes
// (PromQL's < and > stay readable), ending in a newline.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Label selectors of the dashboard variables.
const (
	// opSel selects the operations of the chosen routes and instances.
	opSel = `cancel_operation_name=~"$route", instance=~"$instance"`
	// streamSel selects the websocket connections and SSE streams of the
	// chosen routes: wscancel and sse name their operations "ws " or
	// "sse " followed by the route's.
	streamSel = `cancel_operation_name=~"(?:ws |sse )?$route", instance=~"$instance"`
	// rateWindow is Grafana's rate window: at least four scrape intervals.
	rateWindow = "[$__rate_interval]"
)

func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr(DatasourceUID)}
}

// query is a range query with a legend.
func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(datasource()).
		Expr(expr).
		LegendFormat(legend).
		Range()
}

// quantiles are the percentiles of the latency panels.
var quantiles = []struct {
	q     string
	label string
}{{"0.5", "p50"}, {"0.95", "p95"}, {"0.99", "p99"}}

// histogramQuantiles returns one query per percentile of histogram (a
// base name, without _bucket) by the labels in by, with exemplars on the
// first one (the exemplars are those of the series, whatever the
// percentile: asking once is enough).
func histogramQuantiles(histogram, sel, by string, exemplars bool) []cog.Builder[variants.Dataquery] {
	var qs []cog.Builder[variants.Dataquery]
	for i, q := range quantiles {
		expr := fmt.Sprintf("histogram_quantile(%s, sum by (le, %s) (rate(%s_bucket{%s}%s)))", q.q, by, histogram, sel, rateWindow)
		b := query(expr, q.label+" {{"+by+"}}").RefId(strings.ToUpper(q.label))
		if exemplars && i == 0 {
			b = b.Exemplar(true)
		}
		qs = append(qs, b)
	}
	return qs
}

// cancelledHTTP returns the rate of the cancelled requests answered status
// (a regex) by the routes chosen, summed by the labels in by. A request is
// cancelled when it has an error_type (otelcancel puts the reason on
// otelhttp's Labeler; otelhttp sets none on server requests): a handler's
// own 503 or 504 is not a cancellation. otelhttp labels them
// with http_route ("/items") and http_request_method ("GET") where the
// operations are named after the whole pattern ("GET /items", or "/items"
// when it has no method): both names are rebuilt from those labels and
// kept when an operation of the chosen routes has it.
func cancelledHTTP(status, by string) string {
	counts := fmt.Sprintf(`rate(http_server_request_duration_seconds_count{http_response_status_code=~%q, error_type!="", instance=~"$instance"}%s)`, status, rateWindow)
	withMethod := fmt.Sprintf(`label_replace(label_join(%s, "cancel_operation_name", " ", "http_request_method", "http_route"), "cancel_operation_name", "$1", "cancel_operation_name", "(.*?) ?")`, counts)
	withoutMethod := fmt.Sprintf(`label_replace(%s, "cancel_operation_name", "$1", "http_route", "(.+)")`, counts)
	routes := fmt.Sprintf(`group by (cancel_operation_name) (cancel_operation_active{%s})`, opSel)
	return fmt.Sprintf("sum by (%s) ((%s or %s) and on (cancel_operation_name) %s)", by, withMethod, withoutMethod, routes)
}

// panel sizes
const (
	fullWidth  = 24
	halfWidth  = 12
	thirdWidth = 8
	statWidth  = 6
	height     = 8
	statHeight = 4
)

func timeseriesPanel(title, description, unit string, width uint32, targets ...cog.Builder[variants.Dataquery]) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Unit(unit).
		Min(0).
		Span(width).
		Height(height).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true).
			Calcs([]string{"mean", "max", "lastNotNull"})).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending)).
		Targets(targets)
}

func statPanel(title, description, unit string, target cog.Builder[variants.Dataquery]) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Unit(unit).
		Span(statWidth).
		Height(statHeight).
		ColorMode(common.BigValueColorModeValue).
		GraphMode(common.BigValueGraphModeArea).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		WithTarget(target)
}

// thresholds colours values from threshold on red.
func thresholds(threshold float64) *dashboard.ThresholdsConfigBuilder {
	return dashboard.NewThresholdsConfigBuilder().
		Mode(dashboard.ThresholdsModeAbsolute).
		Steps([]dashboard.Threshold{
			{Color: "green"},
			{Value: cog.ToPtr(threshold), Color: "red"},
		})
}

// Cancelable is the dashboard of the cancellations of a service: what is
// cancelled, why, how long it ran and how long it took to stop, its
// websockets and SSE streams, and what the HTTP clients were told.
func Cancelable() (dashboard.Dashboard, error) {
	routeVar := dashboard.NewQueryVariableBuilder("route").
		Label("Route").
		Description("Operations by name: the route patterns of the HTTP requests, and the names of other operations.").
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(`label_values(cancel_operations_total{instance=~"$instance"}, cancel_operation_name)`)}).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: cog.ToPtr("All")}, Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("$__all")}})
	instanceVar := dashboard.NewQueryVariableBuilder("instance").
		Label("Instance").
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(`label_values(cancel_operations_total, instance)`)}).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: cog.ToPtr("All")}, Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("$__all")}})

	cancelled := `cancel_outcome="cancelled", ` + opSel
	b := dashboard.NewDashboardBuilder("Cancelable: cancellations").
		Uid("cancelable").
		Description("What is cancelled, why, how long it ran and took to stop; websockets, SSE streams and the HTTP answers of cancelled requests. Metrics of otelcancel and otelhttp.").
		Tags([]string{"cancelable", "cancellation", "otel"}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("10s").
		Time("now-30m", "now").
		Timezone(common.TimeZoneBrowser).
		WithVariable(instanceVar).
		WithVariable(routeVar).

		// Overview
		WithRow(dashboard.NewRowBuilder("Overview")).
		WithPanel(statPanel("Cancelled",
			"Share of the operations that ended cancelled (any reason).",
			"percentunit",
			query(fmt.Sprintf(`sum(rate(cancel_operations_total{%s}%s)) / sum(rate(cancel_operations_total{%s}%s))`, cancelled, rateWindow, opSel, rateWindow), "cancelled")).
			Thresholds(thresholds(0.1))).
		WithPanel(statPanel("Operations running",
			"Operations started and not ended yet.",
			"short",
			query(fmt.Sprintf(`sum(cancel_operation_active{%s})`, opSel), "running"))).
		WithPanel(statPanel("Open websockets",
			"Websocket connections accepted and not closed yet.",
			"short",
			query(fmt.Sprintf(`sum(cancel_ws_connections_active{%s})`, streamSel), "open"))).
		WithPanel(statPanel("Open SSE streams",
			"Server-Sent Events streams started and not ended yet.",
			"short",
			query(fmt.Sprintf(`sum(cancel_sse_streams_active{%s})`, streamSel), "open"))).

		// Cancellations
		WithRow(dashboard.NewRowBuilder("Cancellations")).
		WithPanel(timeseriesPanel("Cancellations by reason",
			"Operations cancelled per second, by reason: timeout (a deadline passed), disconnect (the client went away), shutdown (the server is draining), manual (an operator or the code), parent, signal, condition, error.",
			"ops", halfWidth,
			query(fmt.Sprintf(`sum by (cancel_reason) (rate(cancel_operations_total{%s}%s))`, cancelled, rateWindow), "{{cancel_reason}}"))).
		WithPanel(timeseriesPanel("Cancellations by route",
			"Operations cancelled per second, by operation name (route pattern).",
			"ops", halfWidth,
			query(fmt.Sprintf(`sum by (cancel_operation_name) (rate(cancel_operations_total{%s}%s))`, cancelled, rateWindow), "{{cancel_operation_name}}"))).
		WithPanel(timeseriesPanel("Outcomes",
			"Operations ended per second: completed, cancelled or failed.",
			"ops", halfWidth,
			query(fmt.Sprintf(`sum by (cancel_outcome) (rate(cancel_operations_total{%s}%s))`, opSel, rateWindow), "{{cancel_outcome}}")).
			Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))).
		WithPanel(timeseriesPanel("Cancelled share by route",
			"Cancelled operations over all operations ended, by route. The CancelRateHigh alert fires above 10% for 5 minutes.",
			"percentunit", halfWidth,
			query(fmt.Sprintf(`sum by (cancel_operation_name) (rate(cancel_operations_total{%s}%s)) / sum by (cancel_operation_name) (rate(cancel_operations_total{%s}%s))`, cancelled, rateWindow, opSel, rateWindow), "{{cancel_operation_name}}")).
			Max(1).
			Thresholds(thresholds(0.1)).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))).

		// Latency
		WithRow(dashboard.NewRowBuilder("Latency")).
		WithPanel(timeseriesPanel("Duration by outcome",
			"How long operations ran, by outcome. Exemplars (dots) link to the trace of an operation in Jaeger.",
			"s", halfWidth,
			histogramQuantiles("cancel_operation_duration_seconds", opSel, "cancel_outcome", true)...)).
		WithPanel(timeseriesPanel("Stop latency by reason",
			"Time from the cancel request to the operation actually ending: high values are work that ignores its context. The StopLatencyHigh alert fires when p99 stays above 1s.",
			"s", halfWidth,
			histogramQuantiles("cancel_stop_latency_seconds", opSel, "cancel_reason", true)...).
			Thresholds(thresholds(1)).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))).
		WithPanel(timeseriesPanel("Slowest to stop (p99 by route)",
			"The routes whose work takes longest to stop once cancelled: look at their handlers for blocking calls that do not take the context.",
			"s", halfWidth,
			query(fmt.Sprintf(`histogram_quantile(0.99, sum by (le, cancel_operation_name) (rate(cancel_stop_latency_seconds_bucket{%s}%s)))`, opSel, rateWindow), "{{cancel_operation_name}}").Exemplar(true))).
		WithPanel(timeseriesPanel("Duration of cancelled operations (p95 by reason)",
			"How long cancelled operations ran before they were cancelled, by reason: timeouts cluster at the route's timeout.",
			"s", halfWidth,
			query(fmt.Sprintf(`histogram_quantile(0.95, sum by (le, cancel_reason) (rate(cancel_operation_duration_seconds_bucket{%s}%s)))`, cancelled, rateWindow), "{{cancel_reason}}").Exemplar(true))).

		// Activity
		WithRow(dashboard.NewRowBuilder("Activity")).
		WithPanel(timeseriesPanel("Operations running by route",
			"Operations started and not ended yet, by name.",
			"short", halfWidth,
			query(fmt.Sprintf(`sum by (cancel_operation_name) (cancel_operation_active{%s})`, opSel), "{{cancel_operation_name}}"))).
		WithPanel(timeseriesPanel("Progress reports",
			"Progress reports per second, by operation name: long operations that stop reporting are stuck.",
			"ops", halfWidth,
			query(fmt.Sprintf(`sum by (cancel_operation_name) (rate(cancel_progress_reports_total{%s}%s))`, opSel, rateWindow), "{{cancel_operation_name}}"))).

		// Websockets
		WithRow(dashboard.NewRowBuilder("Websockets")).
		WithPanel(timeseriesPanel("Websocket closes by code",
			"Connections closed per second, by close code and cancellation reason: 1000 normal, 1001 going away (shutdown), 1006 vanished without a close frame, 1008 policy, 1009 too big, 1011 internal error, 1012 restart, 1013 try again later, 4000-4099 application codes.",
			"ops", thirdWidth,
			query(fmt.Sprintf(`sum by (cancel_ws_close_code, cancel_reason) (rate(cancel_ws_closes_total{%s}%s))`, streamSel, rateWindow), "{{cancel_ws_close_code}} {{cancel_reason}}"))).
		WithPanel(timeseriesPanel("Websocket messages",
			"Data messages per second, read (in) and written (out).",
			"ops", thirdWidth,
			query(fmt.Sprintf(`sum by (cancel_ws_direction) (rate(cancel_ws_messages_total{%s}%s))`, streamSel, rateWindow), "{{cancel_ws_direction}}"))).
		WithPanel(timeseriesPanel("Websocket connections open",
			"Connections accepted and not closed yet, by name.",
			"short", thirdWidth,
			query(fmt.Sprintf(`sum by (cancel_operation_name) (cancel_ws_connections_active{%s})`, streamSel), "{{cancel_operation_name}}"))).
		WithPanel(timeseriesPanel("Websocket connection lifetime",
			"How long connections lasted, by cancellation reason (empty: closed normally).",
			"s", fullWidth,
			histogramQuantiles("cancel_ws_connection_duration_seconds", streamSel, "cancel_reason", false)...)).

		// SSE
		WithRow(dashboard.NewRowBuilder("Server-Sent Events")).
		WithPanel(timeseriesPanel("SSE stream ends by reason",
			"Streams ended per second, by outcome and cancellation reason: disconnect (the client went away), shutdown, timeout (lifetime or write deadline).",
			"ops", thirdWidth,
			query(fmt.Sprintf(`sum by (cancel_outcome, cancel_reason) (rate(cancel_sse_ends_total{%s}%s))`, streamSel, rateWindow), "{{cancel_outcome}} {{cancel_reason}}"))).
		WithPanel(timeseriesPanel("SSE events sent",
			"Events written per second (not comments or heartbeats), by name.",
			"ops", thirdWidth,
			query(fmt.Sprintf(`sum by (cancel_operation_name) (rate(cancel_sse_events_total{%s}%s))`, streamSel, rateWindow), "{{cancel_operation_name}}"))).
		WithPanel(timeseriesPanel("SSE streams open",
			"Streams started and not ended yet, by name.",
			"short", thirdWidth,
			query(fmt.Sprintf(`sum by (cancel_operation_name) (cancel_sse_streams_active{%s})`, streamSel), "{{cancel_operation_name}}"))).
		WithPanel(timeseriesPanel("SSE stream lifetime",
			"How long streams lasted, by cancellation reason (empty: ended normally).",
			"s", fullWidth,
			histogramQuantiles("cancel_sse_stream_duration_seconds", streamSel, "cancel_reason", false)...)).

		// HTTP
		WithRow(dashboard.NewRowBuilder("HTTP answers to cancelled requests (otelhttp)")).
		WithPanel(timeseriesPanel("Cancelled requests by status",
			"Requests per second answered 499 (the client went away: recorded, never sent), 504 (timeout) or 503 (shutdown, manual and other reasons), with otelhttp's error_type: the cancellation reason.",
			"reqps", halfWidth,
			query(cancelledHTTP("499|503|504", "http_response_status_code, error_type"), "{{http_response_status_code}} {{error_type}}"))).
		WithPanel(timeseriesPanel("Cancelled requests by route",
			"Requests per second answered 499, 503 or 504, by route and status.",
			"reqps", halfWidth,
			query(cancelledHTTP("499|503|504", "http_route, http_response_status_code"), "{{http_route}} {{http_response_status_code}}")))

	db, err := b.Build()
	if err != nil {
		return db, err
	}
	number(&db)
	return db, nil
}

// number gives every panel and row a unique id, in order, and every query
// without one a refId (A, B, ...), as Grafana would when saving: the JSON
// stays the same from one generation to the next.
func number(db *dashboard.Dashboard) {
	var id uint32
	for _, p := range db.Panels {
		id++
		switch {
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		case p.Panel != nil:
			p.Panel.Id = cog.ToPtr(id)
			for i, t := range p.Panel.Targets {
				if q, ok := t.(prometheus.Dataquery); ok && q.RefId == nil {
					q.RefId = cog.ToPtr(string(rune('A' + i)))
					p.Panel.Targets[i] = q
				}
			}
		}
	}
}
