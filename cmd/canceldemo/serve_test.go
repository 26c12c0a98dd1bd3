package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// startServer serves the demo on a loopback port, with timings shortened
// for tests. The caller shuts it down (stopServer).
func startServer(t *testing.T) *server {
	t.Helper()
	cfg := defaultServerConfig()
	cfg.Grace = 200 * time.Millisecond
	cfg.SSEHeartbeat = time.Second
	cfg.SSEWriteTimeout = 300 * time.Millisecond
	cfg.WSTick = 50 * time.Millisecond
	cfg.JobStep = 20 * time.Millisecond
	logs := &syncBuffer{}
	cfg.Log = logs
	cfg.LogLevel = slog.LevelWarn
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	s, err := newServer(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.start(ln)
	return s
}

// stopServer shuts s down and checks that nothing runs any more: no
// operation in the registry, cancel_operation_active at 0 for every name.
// It returns the metrics as they were after the shutdown.
func stopServer(t *testing.T, s *server) []sample {
	t.Helper()
	ctx, stop := context.WithTimeout(context.Background(), 15*time.Second)
	defer stop()
	start := time.Now()
	if err := s.shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	t.Logf("shutdown took %v", time.Since(start).Round(time.Millisecond))
	if n := s.reg.Stats().Active; n != 0 {
		t.Errorf("%d operations still running after shutdown", n)
	}
	// The server no longer listens: read the exposition from its handler.
	rec := httptest.NewRecorder()
	s.tel.prom.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	metrics, err := parseMetrics(rec.Body.String())
	if err != nil {
		t.Fatalf("parsing the metrics: %v", err)
	}
	active := 0
	for _, m := range metrics {
		if m.name == "cancel_operation_active" {
			active++
			if m.value != 0 {
				t.Errorf("after shutdown, %s = %v", m, m.value)
			}
		}
	}
	if active == 0 {
		t.Error("no cancel_operation_active series")
	}
	if err := s.close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
	return metrics
}

// The load generator, run against the service, produces every reason; the
// clients see what they should; the metrics, traces and admin API say so.
func TestLoadAgainstServer(t *testing.T) {
	s := startServer(t)
	const n = 200
	rep, err := runLoad(t.Context(), loadConfig{
		Target:      s.self,
		Rate:        2000,
		Concurrency: 32,
		N:           n,
		Seed:        42,
		StallFor:    2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	var summary bytes.Buffer
	rep.write(&summary)
	t.Logf("load summary:%s", summary.String())

	if rep.Sent != n || rep.Total() != n {
		t.Errorf("sent %d, outcomes for %d; want %d of each", rep.Sent, rep.Total(), n)
	}
	// What each client must see. A chain call whose budget ran out
	// downstream first gets the 504 of /work. A route whose work ends just
	// as its deadline comes answers with a declared length, whole, and the
	// middleware lets it go out; a chain call copying /work's answer when
	// its deadline comes is cut, so that no response looks whole that is
	// not ("connection closed").
	allowed := map[string][]string{
		"work":           {"200"},
		"budget":         {"504"},
		"client-timeout": {"client timeout"},
		"hangup":         {"hung up"},
		"slow":           {"200", "504"},
		"stubborn":       {"200", "504"},
		"chain":          {"200", "504", "connection closed"},
		"sse":            {"complete"},
		"sse-hangup":     {"hung up"},
		"sse-stalled":    {"cut off"},
		"ws":             {"closed 1000"},
		"ws-vanish":      {"vanished"},
		"job-cancel":     {"job cancelled"},
	}
	for _, sc := range scenarios {
		if len(rep.Counts[sc.name]) == 0 {
			t.Errorf("scenario %s never ran", sc.name)
		}
		for outcome, c := range rep.Counts[sc.name] {
			if !contains(allowed[sc.name], outcome) {
				t.Errorf("scenario %s: %d clients saw %q; want only %q", sc.name, c, outcome, allowed[sc.name])
			}
		}
		if got := len(rep.Latencies[sc.name]); got != sumCounts(rep.Counts[sc.name]) {
			t.Errorf("scenario %s: %d latencies for %d requests", sc.name, got, sumCounts(rep.Counts[sc.name]))
		}
	}

	// The service's metrics tell every reason the load produced.
	metrics := scrape(t, s.self+"/metrics")
	byReason, byOutcome := map[string]float64{}, map[string]float64{}
	for _, m := range metrics {
		if m.name == "cancel_operations_total" {
			byReason[m.labels["cancel_reason"]] += m.value
			byOutcome[m.labels["cancel_outcome"]] += m.value
		}
	}
	for _, r := range []string{"timeout", "disconnect", "manual"} {
		if byReason[r] == 0 {
			t.Errorf("cancel_operations_total has no operation cancelled with reason %s: %v", r, byReason)
		}
	}
	if byOutcome["completed"] == 0 {
		t.Errorf("cancel_operations_total has no completed operation: %v", byOutcome)
	}
	if v := find(metrics, "cancel_stop_latency_seconds_count", "cancel_operation_name", "GET /stubborn", "cancel_reason", "timeout"); v == 0 {
		t.Error("no stop latency recorded for GET /stubborn")
	}
	if v := find(metrics, "cancel_ws_closes_total", "cancel_ws_close_code", "1006"); v == 0 {
		t.Error("no websocket recorded as vanished (1006)")
	}
	if v := find(metrics, "cancel_sse_ends_total", "cancel_reason", "disconnect"); v == 0 {
		t.Error("no SSE stream recorded as ended by a disconnect")
	}

	// zpages has the spans, the admin API the operations.
	if page := get(t, s.self+"/debug/tracez"); !strings.Contains(page, "GET /work") {
		t.Errorf("/debug/tracez lists no GET /work span:\n%.2000s", page)
	}
	if stats := get(t, s.self+"/admin/stats"); !strings.Contains(stats, `"manual"`) {
		t.Errorf("/admin/stats tells no manual cancellation: %s", stats)
	}
	for _, path := range []string{"/", "/healthz", "/admin/"} {
		get(t, s.self+path)
	}
	if err := checkHealth(t.Context(), s.self+"/healthz"); err != nil {
		t.Error(err)
	}

	stopServer(t, s)
}

// Shutting down in the middle of the load ends the SSE streams with a last
// "cancelled" event whose reason is shutdown, and leaves nothing running.
func TestShutdownMidLoad(t *testing.T) {
	s := startServer(t)

	loadCtx, stopLoad := context.WithCancel(t.Context())
	defer stopLoad()
	type result struct {
		rep *loadReport
		err error
	}
	loadDone := make(chan result, 1)
	go func() {
		rep, err := runLoad(loadCtx, loadConfig{Target: s.self, Rate: 300, Concurrency: 16, Seed: 7, StallFor: 2 * time.Second})
		loadDone <- result{rep, err}
	}()

	// Long streams, which only the shutdown ends.
	l, err := newLoader(t.Context(), loadConfig{Target: s.self, Rate: 1, Concurrency: 1, StallFor: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	const streams = 3
	outcomes := make([]string, streams)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() { outcomes[i], _ = l.readEvents(t.Context(), "/events?n=100000&every=20ms", -1) })
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.reg.List(cancel.Filter{Name: "sse "})) < streams {
		if time.Now().After(deadline) {
			t.Fatal("the streams did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the load is under way

	metrics := stopServer(t, s)
	wg.Wait()
	for i, o := range outcomes {
		if o != "cancelled: shutdown" {
			t.Errorf("stream %d: the client saw %q, want a cancelled event with reason shutdown", i, o)
		}
	}
	shutdowns := 0.0
	for _, m := range metrics {
		if m.name == "cancel_operations_total" && m.labels["cancel_reason"] == "shutdown" {
			shutdowns += m.value
		}
	}
	if shutdowns < streams {
		t.Errorf("cancel_operations_total counts %v operations cancelled by the shutdown, want at least %d", shutdowns, streams)
	}

	stopLoad()
	res := <-loadDone
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.rep.Total() != res.rep.Sent {
		t.Errorf("load: sent %d, outcomes for %d", res.rep.Sent, res.rep.Total())
	}
	var summary bytes.Buffer
	res.rep.write(&summary)
	t.Logf("load summary:%s", summary.String())
}

// The subcommands parse their flags and run: load prints its summary,
// health says whether the service answers.
func TestCommands(t *testing.T) {
	s := startServer(t)
	var out, errOut bytes.Buffer
	code := mainExit([]string{"load", "-target", s.self, "-n", "13", "-rate", "500", "-stall", "1s", "-seed", "3"}, &out, &errOut)
	if code != 0 {
		t.Errorf("load: exit %d\n%s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "\ntotal") || !strings.Contains(out.String(), "13 requests") {
		t.Errorf("load summary:\n%s", out.String())
	}
	if code := mainExit([]string{"health", "-url", s.self + "/healthz"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("health of a running service: exit %d", code)
	}
	if code := mainExit([]string{"load", "-rate", "0"}, io.Discard, io.Discard); code != 1 {
		t.Errorf("load -rate 0: exit %d, want 1", code)
	}
	if code := mainExit([]string{"load", "-bogus"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("load -bogus: exit %d, want 2", code)
	}
	if code := mainExit([]string{"frobnicate"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	stopServer(t, s)
	if code := mainExit([]string{"health", "-url", s.self + "/healthz", "-timeout", "1s"}, io.Discard, io.Discard); code != 1 {
		t.Errorf("health of a stopped service: exit %d, want 1", code)
	}
}

// sample and parseMetrics are the harness's reader of the Prometheus text
// exposition (harness_check.go), under the names these tests use.
type sample = expoSample

func parseMetrics(text string) ([]sample, error) { return parseExposition(text) }

func TestParseMetrics(t *testing.T) {
	ms, err := parseMetrics("# HELP x y\nx_total{a=\"1\",b=\"q\\\"\\\\\\n\"} 3\ny 2.5 1700000000\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].name != "x_total" || ms[0].labels["a"] != "1" || ms[0].labels["b"] != "q\"\\\n" || ms[0].value != 3 ||
		ms[1].name != "y" || ms[1].value != 2.5 {
		t.Errorf("parsed %+v", ms)
	}
}

// find sums the samples named name whose labels match the pairs given.
func find(ms []sample, name string, pairs ...string) float64 {
	sum := 0.0
next:
	for _, m := range ms {
		if m.name != name {
			continue
		}
		for i := 0; i+1 < len(pairs); i += 2 {
			if m.labels[pairs[i]] != pairs[i+1] {
				continue next
			}
		}
		sum += m.value
	}
	return sum
}

func scrape(t *testing.T, url string) []sample {
	t.Helper()
	ms, err := parseMetrics(get(t, url))
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return ms
}

// get fetches url and fails the test unless it answers 200.
func get(t *testing.T, url string) string {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(body)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// syncBuffer is a bytes.Buffer for several goroutines.
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

// A client resuming after an ID at or past the end of the stream (any
// integer, the largest included) gets the end of the stream at once, not
// an endless one.
func TestEventsResumeAfterEnd(t *testing.T) {
	s := startServer(t)
	defer stopServer(t, s)
	for _, last := range []string{"2", "3", "9223372036854775807"} {
		req, _ := http.NewRequest("GET", s.self+"/events?n=3&every=10ms", nil)
		req.Header.Set("Last-Event-ID", last)
		ctx, cancelReq := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			cancelReq()
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancelReq()
		if err != nil || strings.Contains(string(body), "event: tick") {
			t.Errorf("Last-Event-ID %s: %q, %v; want the end at once, no tick", last, body, err)
		}
	}
}
