package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/otelcancel"
)

// stackNoData lists the dashboard panels whose queries may return no data
// in TestStack, with the reason: the load cannot make their metrics. Their
// queries must still run without error. Empty: the load feeds every panel.
var stackNoData = map[string]string{}

// The inspection stack, end to end, with the real programs users run: the
// demo service built from cmd/canceldemo and its load generator, Jaeger v2
// receiving the demo's spans over OTLP, and Debian's Prometheus running the
// committed prometheus.yml and alerts.yml (see stackPromConfig for the few
// changes a test needs). A calm phase, then a phase that cancels a lot,
// then a graceful shutdown with work in flight:
//   - Jaeger returns traces of canceldemo for every cancellation reason the
//     demo produced, each with its cancel.requested event, and the traces
//     the exemplars of the latency buckets link to;
//   - every PromQL query of the committed dashboard runs on that Prometheus
//     and returns data, and its variables find values;
//   - the alert rules load and evaluate; CancelRateHigh stays silent after
//     the calm phase and fires after the heavy one.
func TestStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the demo, Jaeger and Prometheus")
	}
	// Check what the test needs before it builds anything.
	if bin := os.Getenv("JAEGER_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			stackMissing(t, "JAEGER_BIN: %v (make jaeger builds it)", err)
		}
	}
	if _, err := exec.LookPath("prometheus"); err != nil {
		stackMissing(t, "prometheus not found (%v): install Debian's prometheus package", err)
	}

	demoBin := stackBuildDemo(t)
	j := startJaeger(t)
	client := stackClient(t)

	// The demo, sending its spans to Jaeger. Its batch span processor
	// exports every 100ms instead of every 5s, so that the test waits less;
	// a short grace makes the shutdown at the end quick.
	demoAddr := freePort(t)
	base := "http://" + demoAddr
	demo := stackStart(t, "canceldemo serve",
		stackDemoEnv("OTEL_EXPORTER_OTLP_ENDPOINT=http://"+j.otlpHTTP, "OTEL_BSP_SCHEDULE_DELAY=100"),
		demoBin, "serve", "-addr", demoAddr, "-grace", "300ms")
	stackPoll(t, "the demo's /healthz", time.Minute, func() (bool, error) {
		if err := demo.alive(); err != nil {
			return false, stackFatal{err}
		}
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			return false, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})

	prom := stackStartPrometheus(t, demoAddr)
	start := time.Now()
	prom.scrapedAfter(t, start)

	// The rules load, every one healthy.
	var names []string
	for _, r := range prom.evaluatedAfter(t, start) {
		names = append(names, r.Name)
	}
	for _, want := range []string{"CancelRateHigh", "TimeoutSpike", "DisconnectSpike", "StopLatencyHigh"} {
		if !slices.Contains(names, want) {
			t.Errorf("Prometheus loaded rules %v: no %s", names, want)
		}
	}

	t.Run("calm", func(t *testing.T) {
		// The load generator always mixes in every reason: the calm phase is
		// the test's own requests that complete, 20 a second for 5s.
		stackCalm(t, client, base, 100, 20)
		scraped := prom.scrapedAfter(t, time.Now())
		// Loud enough for CancelRateHigh to judge GET /work (its guard:
		// more than 0.1 operations a second), yet nothing cancelled.
		stackPoll(t, "the calm traffic in Prometheus", 30*time.Second, func() (bool, error) {
			v, err := prom.query(`sum by (job, cancel_operation_name) (rate(cancel_operations_total{cancel_operation_name="GET /work"}[5m])) > 0.1`)
			return err == nil && len(v) == 1, err
		})
		// (The exporter shows every reason's series from the start, at 0.)
		if v, err := prom.query(`cancel_operations_total{cancel_outcome!="completed"} > 0`); err != nil || len(v) > 0 {
			t.Fatalf("operations that did not complete in the calm phase: %v %v", v, err)
		}
		prom.evaluatedAfter(t, scraped)
		alerts, err := prom.alerts("CancelRateHigh")
		if err != nil {
			t.Fatal(err)
		}
		if len(alerts) > 0 {
			t.Errorf("CancelRateHigh is %s after the calm phase: %+v", alerts[0].State, alerts)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("cancel-heavy", func(t *testing.T) {
		stackLoad(t, demoBin, base)
		prom.scrapedAfter(t, time.Now())
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("dashboard", func(t *testing.T) { stackCheckDashboard(t, prom) })

	t.Run("alert fires", func(t *testing.T) {
		var firing []stackAlert
		stackPoll(t, "CancelRateHigh firing", time.Minute, func() (bool, error) {
			alerts, err := prom.alerts("CancelRateHigh")
			firing = slices.DeleteFunc(alerts, func(a stackAlert) bool { return a.State != "firing" })
			return len(firing) > 0, err
		})
		for _, a := range firing {
			t.Logf("CancelRateHigh firing for %s (%s cancelled)", a.Labels["cancel_operation_name"], a.Value)
		}
	})

	// Every reason the demo recorded (Prometheus knows them), and those the
	// load makes on purpose: Jaeger has their traces.
	want := []string{cancel.ReasonTimeout.String(), cancel.ReasonDisconnect.String(), cancel.ReasonManual.String()}
	recorded, err := prom.query(`count by (cancel_reason) (cancel_operations_total{cancel_outcome="cancelled"} > 0)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range recorded {
		if r := s.Metric["cancel_reason"]; r != "" && !slices.Contains(want, r) {
			want = append(want, r)
		}
	}
	t.Run("jaeger", func(t *testing.T) {
		for _, reason := range want {
			spans := stackJaegerReason(t, client, j, reason, nil)
			t.Logf("%s: cancel.reason and cancel.requested on spans %v", reason, spans)
		}
		// The exemplars of the latency buckets (the dashboard's links to
		// Jaeger) name traces that Jaeger has.
		stackExemplarTraces(t, client, prom, j)
	})

	t.Run("shutdown", func(t *testing.T) {
		stackShutdown(t, client, j, demo, base)
	})
}

// stackCalm sends n GET /work requests that complete, rate a second, and
// checks they all did.
func stackCalm(t *testing.T, client *http.Client, base string, n int, rate float64) {
	t.Helper()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		<-tick.C
		wg.Go(func() {
			resp, err := client.Get(base + "/work?ms=10")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("GET /work: %s", resp.Status)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// stackLoad runs canceldemo load, the full mix, until it has sent its
// requests: 400 at 50 a second, ~10% to /slow.
func stackLoad(t *testing.T, demoBin, base string) {
	t.Helper()
	ctx, cancelLoad := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelLoad()
	cmd := exec.CommandContext(ctx, demoBin, "load", "-target", base,
		"-n", "400", "-rate", "50", "-concurrency", "64", "-seed", "1",
		"-stall", "3s") // stalled SSE readers: longer than the demo's 2s write timeout, shorter than the 5s default
	cmd.Env = stackDemoEnv()
	var stdout, stderr stackBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("canceldemo load: %v\n%s\n%s", err, stderr.String(), stdout.String())
	}
	t.Logf("canceldemo load:%s", stdout.String())
}

// stackCheckDashboard runs every query of the committed dashboard on
// Prometheus: each parses and runs, and returns data unless stackNoData
// says why it cannot; the dashboard's variables find values.
func stackCheckDashboard(t *testing.T, prom *stackProm) {
	queries, vars := stackDashboardQueries(t)
	if len(queries) == 0 {
		t.Fatalf("%s: no PromQL queries", stackDashboard)
	}
	panels := map[string]bool{}
	for _, q := range queries {
		panels[q.panel] = true
		expr := stackGrafana.Replace(q.expr)
		if m := stackLeftover.FindString(expr); m != "" {
			t.Errorf("panel %q, query %s: unknown variable %q\n%s", q.panel, q.refID, m, q.expr)
			continue
		}
		res, err := prom.query(expr)
		if err != nil {
			t.Errorf("panel %q, query %s: %v\n%s", q.panel, q.refID, err, expr)
			continue
		}
		finite := slices.ContainsFunc(res, func(s stackSample) bool {
			v := s.value()
			return !math.IsNaN(v) && !math.IsInf(v, 0)
		})
		if why, ok := stackNoData[q.panel]; ok {
			t.Logf("panel %q, query %s: %d series (data not required: %s)", q.panel, q.refID, len(res), why)
			continue
		}
		if !finite {
			t.Errorf("panel %q, query %s: no data (%v)\n%s", q.panel, q.refID, res, expr)
		}
	}
	for p := range stackNoData {
		if !panels[p] {
			t.Errorf("stackNoData names panel %q, which the dashboard does not have", p)
		}
	}
	t.Logf("%d queries of %d panels ran", len(queries), len(panels))

	// The variables: label_values(selector, label) is Grafana's, not
	// PromQL; Grafana asks /api/v1/label/<label>/values?match[]=selector.
	for _, v := range vars {
		m := stackLabelValues.FindStringSubmatch(v.query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.name, v.query)
			continue
		}
		selector := stackGrafana.Replace(m[1])
		var values []string
		if err := prom.api("label/"+m[2]+"/values", url.Values{"match[]": {selector}}, &values); err != nil {
			t.Errorf("variable %s: %v", v.name, err)
			continue
		}
		if len(values) == 0 {
			t.Errorf("variable %s: no values for %s", v.name, v.query)
		}
		t.Logf("variable %s: %d values", v.name, len(values))
	}
}

// stackTrace is the part of Jaeger's /api/traces answer TestStack reads.
type stackTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		OperationName string     `json:"operationName"`
		Tags          []stackKV  `json:"tags"`
		Logs          []stackLog `json:"logs"`
		ProcessID     string     `json:"processID"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

type stackKV struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

type stackLog struct {
	Fields []stackKV `json:"fields"`
}

func stackTag(kvs []stackKV, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// stackJaegerReason asks Jaeger for traces of canceldemo with a span
// tagged cancel.reason=reason, until it has such spans carrying their
// cancel.requested event with that reason, on every operation of spans
// (on any, if spans is nil). It returns the operations found.
func stackJaegerReason(t *testing.T, client *http.Client, j *jaeger, reason string, spans []string) []string {
	t.Helper()
	tags, _ := json.Marshal(map[string]string{"cancel.reason": reason})
	q := url.Values{"service": {"canceldemo"}, "tags": {string(tags)}, "limit": {"50"}, "lookback": {"1h"}}
	var found []string
	stackPoll(t, fmt.Sprintf("traces of canceldemo with cancel.reason=%s and its cancel.requested event in Jaeger (spans %v)", reason, spans), 30*time.Second, func() (bool, error) {
		resp, err := client.Get("http://" + j.query + "/api/traces?" + q.Encode())
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		var body struct {
			Data   []stackTrace `json:"data"`
			Errors []any        `json:"errors"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return false, fmt.Errorf("%s: %v", resp.Status, err)
		}
		if resp.StatusCode != http.StatusOK || len(body.Errors) > 0 {
			return false, fmt.Errorf("%s: %v", resp.Status, body.Errors)
		}
		found = found[:0]
		for _, tr := range body.Data {
			for _, s := range tr.Spans {
				if stackTag(s.Tags, "cancel.reason") != reason || tr.Processes[s.ProcessID].ServiceName != "canceldemo" {
					continue
				}
				requested := slices.ContainsFunc(s.Logs, func(l stackLog) bool {
					return stackTag(l.Fields, "event") == otelcancel.EventRequested && stackTag(l.Fields, "cancel.reason") == reason
				})
				if requested && !slices.Contains(found, s.OperationName) {
					found = append(found, s.OperationName)
				}
			}
		}
		slices.Sort(found)
		if spans == nil {
			return len(found) > 0, nil
		}
		for _, s := range spans {
			if !slices.Contains(found, s) {
				return false, fmt.Errorf("found %v", found)
			}
		}
		return true, nil
	})
	return found
}

// stackShutdown stops the demo with SIGTERM while a background job and a
// long request run: after the grace, both are cancelled with reason
// shutdown (the request answered 503), the demo exits 0, and Jaeger has
// both spans with their cancel.requested event.
func stackShutdown(t *testing.T, client *http.Client, j *jaeger, demo *stackProc, base string) {
	resp, err := client.Post(base+"/jobs?s=60", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var job struct {
		ID uint64 `json:"id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&job)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || err != nil {
		t.Fatalf("POST /jobs: %s, %v", resp.Status, err)
	}

	status := make(chan string, 1)
	go func() {
		resp, err := client.Get(base + "/work?ms=20000")
		if err != nil {
			status <- err.Error()
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status <- resp.Status
	}()
	// Both run before the signal: the admin API lists them.
	stackPoll(t, "the long request and the job running", 30*time.Second, func() (bool, error) {
		var ops struct {
			Operations []cancel.Info `json:"operations"`
		}
		resp, err := client.Get(base + "/admin/operations?status=running")
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&ops); err != nil {
			return false, err
		}
		var work, jobRunning bool
		for _, op := range ops.Operations {
			work = work || op.Name == "GET /work"
			jobRunning = jobRunning || op.ID == job.ID
		}
		if !jobRunning {
			return false, stackFatal{fmt.Errorf("job %d is not running: %+v", job.ID, ops.Operations)}
		}
		return work, nil
	})
	client.CloseIdleConnections() // idle keep-alive connections would only delay the server's Shutdown

	if err := demo.stop(30 * time.Second); err != nil {
		t.Errorf("canceldemo serve after SIGTERM: %v", err)
	}
	if out := demo.logs.String(); !strings.Contains(out, "\nstopped\n") {
		t.Errorf("canceldemo serve did not say it stopped:\n%s", out)
	}
	if s := <-status; s != "503 Service Unavailable" {
		t.Errorf("the request in flight at shutdown got %s, want 503", s)
	}
	spans := stackJaegerReason(t, client, j, cancel.ReasonShutdown.String(), []string{"GET /work", "job"})
	t.Logf("shutdown: cancel.reason and cancel.requested on spans %v", spans)
}

// stackExemplarTraces checks that the trace_id of exemplars Prometheus
// stored on cancel_operation_duration_seconds_bucket (the links from the
// dashboard's latency panels to Jaeger) are traces of canceldemo in Jaeger.
func stackExemplarTraces(t *testing.T, client *http.Client, prom *stackProm, j *jaeger) {
	t.Helper()
	var series []struct {
		SeriesLabels map[string]string `json:"seriesLabels"`
		Exemplars    []struct {
			Labels map[string]string `json:"labels"`
		} `json:"exemplars"`
	}
	now := time.Now()
	if err := prom.api("query_exemplars", url.Values{
		"query": {`cancel_operation_duration_seconds_bucket{cancel_outcome="cancelled"}`},
		"start": {strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)},
		"end":   {strconv.FormatInt(now.Add(time.Minute).Unix(), 10)},
	}, &series); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range series {
		for _, e := range s.Exemplars {
			if id := e.Labels["trace_id"]; id != "" && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		t.Fatalf("no exemplars with a trace_id on the buckets of cancelled operations: %+v", series)
	}
	const checked = 5
	for _, id := range ids[:min(len(ids), checked)] {
		stackPoll(t, "the trace of exemplar "+id+" in Jaeger", 30*time.Second, func() (bool, error) {
			resp, err := client.Get("http://" + j.query + "/api/traces/" + id)
			if err != nil {
				return false, err
			}
			defer resp.Body.Close()
			var body struct {
				Data []stackTrace `json:"data"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				return false, fmt.Errorf("%s: %v", resp.Status, err)
			}
			for _, tr := range body.Data {
				for _, s := range tr.Spans {
					if tr.Processes[s.ProcessID].ServiceName == "canceldemo" && stackTag(s.Tags, "cancel.outcome") == "cancelled" {
						return true, nil
					}
				}
			}
			return false, fmt.Errorf("%s: no cancelled span of canceldemo", resp.Status)
		})
	}
	t.Logf("%d exemplar traces of cancelled operations, %d checked in Jaeger", len(ids), min(len(ids), checked))
}
