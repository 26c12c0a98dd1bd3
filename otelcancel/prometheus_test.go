package otelcancel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
)

// promHarness is an Observer whose metrics go to a Prometheus exposition.
type promHarness struct {
	prom *Prometheus
	tp   *sdktrace.TracerProvider
	obs  *Observer
}

func newPromHarness(t *testing.T, opts ...sdkmetric.Option) *promHarness {
	t.Helper()
	prom, err := NewPrometheus(opts...)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() {
		if err := prom.Shutdown(context.Background()); err != nil {
			t.Errorf("Prometheus.Shutdown: %v", err)
		}
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Errorf("TracerProvider.Shutdown: %v", err)
		}
	})
	obs, err := New(WithTracerProvider(tp), WithMeterProvider(prom.MeterProvider()))
	if err != nil {
		t.Fatal(err)
	}
	return &promHarness{prom: prom, tp: tp, obs: obs}
}

// scrape gets the metrics, in OpenMetrics if openMetrics.
func (p *promHarness) scrape(t *testing.T, openMetrics bool) (body, contentType string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if openMetrics {
		r.Header.Set("Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	}
	w := httptest.NewRecorder()
	p.prom.Handler().ServeHTTP(w, r)
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", res.Status, b)
	}
	return string(b), res.Header.Get("Content-Type")
}

// run makes one operation of each outcome, and returns the trace ID of the
// cancelled one.
func (p *promHarness) run(t *testing.T) string {
	t.Helper()
	start := func(name string) (context.Context, *cancel.Operation) {
		return cancel.Start(context.Background(), name, cancel.WithObserver(p.obs))
	}
	_, op := start("GET /items")
	op.Progress("p")
	op.End(nil)
	_, op = start("GET /items")
	op.End(errors.New("boom"))
	ctx, op := start("GET /items")
	op.Cancel(cancel.ReasonTimeout, "slow")
	op.End(ctx.Err())
	return trace.SpanContextFromContext(ctx).TraceID().String()
}

// runStreams makes a websocket connection and an SSE stream of each kind of
// end, as wscancel and sse record them.
func (p *promHarness) runStreams(t *testing.T) {
	t.Helper()
	start := func(name string) (context.Context, *cancel.Operation) {
		return cancel.Start(context.Background(), name, cancel.WithObserver(p.obs))
	}
	_, op := start("ws /chat")
	op.Event("ws.open", slog.String("ws.subprotocol", ""))
	op.Count("ws.messages.in", 1)
	op.Count("ws.messages.out", 1)
	op.Count("ws.messages.out", 1)
	op.Event("ws.close", slog.Int("ws.close.code", 1000), slog.String("ws.close.by", "peer"), slog.String("cancel.reason", ""))
	op.End(nil)
	ctx, op := start("ws /chat")
	op.Event("ws.open", slog.String("ws.subprotocol", ""))
	op.Cancel(cancel.ReasonShutdown, "draining")
	op.Event("ws.close", slog.Int("ws.close.code", 1001), slog.String("ws.close.by", "local"), slog.String("cancel.reason", "shutdown"))
	op.End(ctx.Err())
	_, open := start("ws /chat") // still open
	open.Event("ws.open", slog.String("ws.subprotocol", "chat"))
	t.Cleanup(func() { open.End(nil) })

	_, op = start("sse /feed")
	op.Event("sse.open", slog.Bool("sse.resumed", false))
	op.Count("sse.events", 1)
	op.Event("sse.close", slog.String("cancel.reason", ""), slog.Int64("sse.events", 1))
	op.End(nil)
	ctx, op = start("sse /feed")
	op.Event("sse.open", slog.Bool("sse.resumed", true))
	op.Cancel(cancel.ReasonDisconnect, "")
	op.Event("sse.close", slog.String("cancel.reason", "disconnect"), slog.Int64("sse.events", 0))
	op.End(ctx.Err())
}

func TestPrometheusStreamsExposition(t *testing.T) {
	p := newPromHarness(t)
	p.runStreams(t)
	body, _ := p.scrape(t, false)
	const ws, sse = `cancel_operation_name="ws /chat"`, `cancel_operation_name="sse /feed"`
	for _, want := range []string{
		"# TYPE cancel_ws_messages_total counter",
		`cancel_ws_messages_total{` + ws + `,cancel_ws_direction="in"} 1`,
		`cancel_ws_messages_total{` + ws + `,cancel_ws_direction="out"} 2`,
		"# TYPE cancel_ws_closes_total counter",
		`cancel_ws_closes_total{` + ws + `,cancel_reason="",cancel_ws_close_code="1000"} 1`,
		`cancel_ws_closes_total{` + ws + `,cancel_reason="shutdown",cancel_ws_close_code="1001"} 1`,
		"# TYPE cancel_ws_connections_active gauge",
		`cancel_ws_connections_active{` + ws + `} 1`,
		"# TYPE cancel_ws_connection_duration_seconds histogram",
		`cancel_ws_connection_duration_seconds_bucket{` + ws + `,cancel_outcome="completed",cancel_reason="",le="14400"} 1`,
		`cancel_ws_connection_duration_seconds_count{` + ws + `,cancel_outcome="cancelled",cancel_reason="shutdown"} 1`,
		"# TYPE cancel_sse_events_total counter",
		`cancel_sse_events_total{` + sse + `} 1`,
		"# TYPE cancel_sse_streams_active gauge",
		`cancel_sse_streams_active{` + sse + `} 0`,
		"# TYPE cancel_sse_ends_total counter",
		`cancel_sse_ends_total{` + sse + `,cancel_outcome="completed",cancel_reason=""} 1`,
		`cancel_sse_ends_total{` + sse + `,cancel_outcome="cancelled",cancel_reason="disconnect"} 1`,
		`cancel_sse_ends_total{` + sse + `,cancel_outcome="cancelled",cancel_reason="timeout"} 0`,
		"# TYPE cancel_sse_stream_duration_seconds histogram",
		`cancel_sse_stream_duration_seconds_bucket{` + sse + `,cancel_outcome="completed",cancel_reason="",le="0.1"} 1`,
		`cancel_sse_stream_duration_seconds_count{` + sse + `,cancel_outcome="cancelled",cancel_reason="disconnect"} 1`,
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want+" ") {
			t.Errorf("exposition lacks %q", want)
		}
	}
	for _, bad := range []string{"otel_scope_", "{1}", "_ratio", "_1"} {
		if strings.Contains(grepLines(body, "cancel_"), bad) {
			t.Errorf("exposition contains %q", bad)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", grepLines(body, "cancel_"))
	}
}

func TestPrometheusExposition(t *testing.T) {
	p := newPromHarness(t)
	p.run(t)
	body, ct := p.scrape(t, false)
	if !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text format", ct)
	}
	const name = `cancel_operation_name="GET /items"`
	for _, want := range []string{
		"# TYPE cancel_operations_total counter",
		`cancel_operations_total{` + name + `,cancel_outcome="completed",cancel_reason=""} 1`,
		`cancel_operations_total{` + name + `,cancel_outcome="failed",cancel_reason=""} 1`,
		`cancel_operations_total{` + name + `,cancel_outcome="cancelled",cancel_reason="timeout"} 1`,
		`cancel_operations_total{` + name + `,cancel_outcome="cancelled",cancel_reason="shutdown"} 0`,
		"# TYPE cancel_operation_duration_seconds histogram",
		`cancel_operation_duration_seconds_bucket{` + name + `,cancel_outcome="cancelled",cancel_reason="timeout",le="3600"} 1`,
		`cancel_operation_duration_seconds_bucket{` + name + `,cancel_outcome="completed",cancel_reason="",le="+Inf"} 1`,
		`cancel_operation_duration_seconds_count{` + name + `,cancel_outcome="failed",cancel_reason=""} 1`,
		"# TYPE cancel_operation_active gauge",
		`cancel_operation_active{` + name + `} 0`,
		"# TYPE cancel_stop_latency_seconds histogram",
		`cancel_stop_latency_seconds_count{` + name + `,cancel_reason="timeout"} 1`,
		`cancel_stop_latency_seconds_bucket{` + name + `,cancel_reason="timeout",le="30"} 1`,
		"# TYPE cancel_progress_reports_total counter",
		`cancel_progress_reports_total{` + name + `} 1`,
		"# TYPE go_goroutines gauge",
		"# TYPE process_cpu_seconds_total counter",
		"# TYPE process_resident_memory_bytes gauge",
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want+" ") {
			t.Errorf("exposition lacks %q", want)
		}
	}
	// No scope labels, no unit annotations in names, no exemplars in the
	// text format.
	for _, bad := range []string{"otel_scope_", "{operation}", "_ratio", "trace_id"} {
		if strings.Contains(body, bad) {
			t.Errorf("exposition contains %q", bad)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", body)
	}
}

func TestPrometheusOpenMetricsExemplar(t *testing.T) {
	p := newPromHarness(t)
	traceID := p.run(t)
	body, ct := p.scrape(t, true)
	if !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type %q, want OpenMetrics", ct)
	}
	// One bucket of the cancelled operation's duration carries the
	// exemplar of its trace.
	// The exporter writes the exemplar's two labels in either order.
	re := regexp.MustCompile(`(?m)^cancel_operation_duration_seconds_bucket\{cancel_operation_name="GET /items",cancel_outcome="cancelled",cancel_reason="timeout",le="[^"]+"\} 1 # \{(?:trace_id="([0-9a-f]{32})",span_id="[0-9a-f]{16}"|span_id="[0-9a-f]{16}",trace_id="([0-9a-f]{32})")\} \S+`)
	m := re.FindAllStringSubmatch(body, -1)
	if len(m) != 1 {
		t.Fatalf("%d duration buckets with an exemplar, want 1:\n%s", len(m), grepLines(body, "cancel_operation_duration_seconds_bucket"))
	}
	if got := m[0][1] + m[0][2]; got != traceID {
		t.Errorf("exemplar of trace %s, want %s", got, traceID)
	}
	if !strings.HasSuffix(body, "# EOF\n") {
		t.Errorf("OpenMetrics exposition does not end with # EOF")
	}
}

func grepLines(body, substr string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The exposition passes the real promtool's lint: what Prometheus users run.
func TestPrometheusPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("promtool not found (%v): CI must install Debian's prometheus package", err)
		}
		t.Skipf("promtool not found (%v); install Debian's prometheus package to run this test", err)
	}
	p := newPromHarness(t, sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", "promtool-test"))))
	p.run(t)
	p.runStreams(t)
	body, _ := p.scrape(t, false)

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil || out.Len() != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}

	// The check can fail: a counter without _total is reported.
	cmd = exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader("# HELP bad_count A counter.\n# TYPE bad_count counter\nbad_count 1\n")
	out.Reset()
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err == nil || !strings.Contains(out.String(), "_total") {
		t.Errorf("promtool accepted a counter without _total (%v): %s", err, out.String())
	}
}

// Registry is the one Handler serves: collectors added to it are exposed.
func TestPrometheusRegistry(t *testing.T) {
	p := newPromHarness(t)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "my_own_total", Help: "Mine."})
	c.Inc()
	p.prom.Registry().MustRegister(c)
	if body, _ := p.scrape(t, false); !strings.Contains(body, "my_own_total 1\n") {
		t.Errorf("own collector not exposed")
	}
}
