package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// promServer is a real Prometheus, on loopback, run for one test.
type promServer struct {
	url    string
	client *http.Client
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startPrometheus runs the prometheus binary scraping target every second
// and evaluating alerts.yml every second, with exemplar storage on (as the
// compose stack runs it), and stops it at the end of the test.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Prometheus")
	}
	bin := need(t, "prometheus", "run the dashboards' queries against a real Prometheus")
	alerts, err := filepath.Abs(filepath.Join(prometheusDir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: canceldemo
    static_configs:
      - targets: [%q]
`, alerts, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--enable-feature=exemplar-storage",
		"--log.level=warn",
	)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p := &promServer{url: "http://" + addr, client: &http.Client{Timeout: 10 * time.Second}}
	t.Cleanup(func() {
		p.client.CloseIdleConnections()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", logs.String())
		}
	})
	p.await(t, "Prometheus ready", func() (bool, error) {
		select {
		case err := <-exited:
			exited <- err
			return false, fmt.Errorf("prometheus exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := p.client.Get(p.url + "/-/ready")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return p
}

// await polls cond until it holds, fails or a minute passes.
func (p *promServer) await(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: timed out", what)
		case <-tick.C:
		}
	}
}

// api gets /api/v1/<path> and decodes its data into v.
func (p *promServer) api(path string, params url.Values, v any) error {
	resp, err := p.client.Get(p.url + "/api/v1/" + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Warnings  []string        `json:"warnings"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %s: %v", path, resp.Status, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	if len(r.Warnings) > 0 {
		return fmt.Errorf("%s: warnings %v", path, r.Warnings)
	}
	return json.Unmarshal(r.Data, v)
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s sample) value() float64 {
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// query runs an instant query; its result must be a vector.
func (p *promServer) query(expr string) ([]sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("result of type %s, want vector", data.ResultType)
	}
	var v []sample
	return v, json.Unmarshal(data.Result, &v)
}

// scalar returns the one value of expr, or NaN if it has none.
func (p *promServer) scalar(expr string) (float64, error) {
	v, err := p.query(expr)
	if err != nil || len(v) != 1 {
		return math.NaN(), err
	}
	return v[0].value(), nil
}

// scraped waits until Prometheus has scraped at least ops operations and
// requests of the demo.
func (p *promServer) scraped(t *testing.T, ops, requests int) {
	t.Helper()
	p.await(t, fmt.Sprintf("a scrape with %d operations and %d requests", ops, requests), func() (bool, error) {
		o, err := p.scalar(`sum(cancel_operations_total)`)
		if err != nil {
			return false, err
		}
		r, err := p.scalar(`sum(http_server_request_duration_seconds_count)`)
		if err != nil {
			return false, err
		}
		return o >= float64(ops) && r >= float64(requests), nil
	})
}

// The dashboards' queries, run by a real Prometheus over the metrics of
// real traffic through otelhttp, httpcancel and otelcancel: each returns
// data, and the route variable selects what it should. The alerts load and
// evaluate, and the duration buckets carry trace_id exemplars.
func TestDashboardsOnRealPrometheus(t *testing.T) {
	d := startDemo(t)
	p := startPrometheus(t, d.addr)

	p.await(t, "the demo target up", func() (bool, error) {
		var data struct {
			ActiveTargets []struct {
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		}
		if err := p.api("targets", nil, &data); err != nil {
			return false, err
		}
		return len(data.ActiveTargets) == 1 && data.ActiveTargets[0].Health == "up", nil
	})

	// Two rounds of traffic, each scraped: the first makes the series, the
	// second makes every rate over them positive.
	const rounds = 2
	for i := 1; i <= rounds; i++ {
		d.traffic(t, 1)
		p.scraped(t, i*opsPerRound, i*requestsPerRound)
	}
	if t.Failed() {
		t.FailNow()
	}

	grafana := vars{rateInterval: "1m", route: ".*", instance: ".*"}
	for _, q := range allQueries(t) {
		res, err := p.query(grafana.substitute(q.expr))
		if err != nil {
			t.Errorf("panel %q: %v\n%s", q.panel, err, q.expr)
			continue
		}
		if !slices.ContainsFunc(res, func(s sample) bool { v := s.value(); return !math.IsNaN(v) && !math.IsInf(v, 0) }) {
			t.Errorf("panel %q: no data (%v)\n%s", q.panel, res, q.expr)
		}
	}

	// One route: the panels show that route only, the HTTP ones included
	// (otelhttp names it http_route="/slow").
	slow := vars{rateInterval: "1m", route: grafanaRegex(routeSlow), instance: grafanaRegex(d.addr)}
	for _, q := range allQueries(t) {
		if strings.Contains(q.expr, "cancel_ws_") || strings.Contains(q.expr, "cancel_sse_") {
			continue
		}
		res, err := p.query(slow.substitute(q.expr))
		if err != nil {
			t.Errorf("panel %q, route %s: %v", q.panel, routeSlow, err)
			continue
		}
		if len(res) == 0 {
			t.Errorf("panel %q, route %s: no data\n%s", q.panel, routeSlow, slow.substitute(q.expr))
		}
		for _, s := range res {
			if n, ok := s.Metric[lName]; ok && n != routeSlow {
				t.Errorf("panel %q, route %s: series of %s", q.panel, routeSlow, n)
			}
			if r, ok := s.Metric["http_route"]; ok && r != "/slow" {
				t.Errorf("panel %q, route %s: series of http_route %s", q.panel, routeSlow, r)
			}
		}
	}
	// The websocket and SSE panels find the connections and streams of the
	// routes chosen (Grafana writes several values as (a|b)).
	streams := vars{rateInterval: "1m", route: grafanaRegex(routeWS, routeSSE), instance: ".*"}
	for _, q := range allQueries(t) {
		if !strings.Contains(q.expr, "cancel_ws_") && !strings.Contains(q.expr, "cancel_sse_") {
			continue
		}
		res, err := p.query(streams.substitute(q.expr))
		if err != nil {
			t.Errorf("panel %q, routes %s: %v", q.panel, streams.route, err)
		} else if len(res) == 0 {
			t.Errorf("panel %q, routes %s: no data\n%s", q.panel, streams.route, streams.substitute(q.expr))
		}
	}

	// The HTTP panels tell the statuses of cancelled requests apart.
	res, err := p.query(grafana.substitute(cancelledHTTP("499|503|504", "http_route, http_response_status_code, error_type")))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range res {
		got = append(got, s.Metric["http_route"]+" "+s.Metric["http_response_status_code"]+" "+s.Metric["error_type"])
	}
	slices.Sort(got)
	if want := []string{"/hang 499 disconnect", "/job 503 manual", "/slow 504 timeout"}; !slices.Equal(got, want) {
		t.Errorf("cancelled requests: %q, want %q", got, want)
	}

	// Exemplars link the duration buckets to traces by trace_id, the label
	// the Grafana data source maps to Jaeger.
	var exemplars []struct {
		SeriesLabels map[string]string `json:"seriesLabels"`
		Exemplars    []struct {
			Labels map[string]string `json:"labels"`
		} `json:"exemplars"`
	}
	now := time.Now()
	if err := p.api("query_exemplars", url.Values{
		"query": {`cancel_operation_duration_seconds_bucket`},
		"start": {strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)},
		"end":   {strconv.FormatInt(now.Add(time.Minute).Unix(), 10)},
	}, &exemplars); err != nil {
		t.Fatal(err)
	}
	traceID := regexp.MustCompile(`^[0-9a-f]{32}$`)
	n := 0
	for _, s := range exemplars {
		for _, e := range s.Exemplars {
			if !traceID.MatchString(e.Labels["trace_id"]) {
				t.Errorf("exemplar of %v: labels %v, want a trace_id", s.SeriesLabels, e.Labels)
			}
			n++
		}
	}
	if n == 0 {
		t.Errorf("no exemplars on cancel_operation_duration_seconds_bucket")
	}

	// Every alert loaded and evaluates without error.
	want := map[string]bool{}
	for _, r := range loadAlerts(t) {
		want[r.Alert] = true
	}
	p.await(t, "every alert evaluated", func() (bool, error) {
		var data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Type      string `json:"type"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := p.api("rules", nil, &data); err != nil {
			return false, err
		}
		ok := map[string]bool{}
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				switch r.Health {
				case "ok":
					ok[r.Name] = true
				case "err":
					return false, fmt.Errorf("rule %s: %s", r.Name, r.LastError)
				}
			}
		}
		for name := range want {
			if !ok[name] {
				return false, nil
			}
		}
		return true, nil
	})
}

// grafanaRegex returns values as Grafana writes the values of a multi-value
// variable into a Prometheus query: regex metacharacters escaped for a
// PromQL string (a backslash doubled), several values as (a|b).
func grafanaRegex(values ...string) string {
	escaped := make([]string, len(values))
	for i, v := range values {
		var b strings.Builder
		for _, c := range v {
			switch {
			case c == '\\':
				b.WriteString(`\\\\`)
			case strings.ContainsRune(`$^*{}[]'+?.()|`, c):
				b.WriteString(`\\`)
				b.WriteRune(c)
			default:
				b.WriteRune(c)
			}
		}
		escaped[i] = b.String()
	}
	if len(escaped) == 1 {
		return escaped[0]
	}
	return "(" + strings.Join(escaped, "|") + ")"
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
