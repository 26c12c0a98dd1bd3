package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// canceldemo harness: the demo service in process, on 127.0.0.1:0, under
// mixed traffic and faults, then a graceful shutdown in the middle of it;
// afterwards every operation the clients caused must be in
// cancel_operations_total and in the spans, exactly, and nothing may be
// left running (goroutines, heap, cancel_operation_active).

// harnessConfig configures a harness run.
type harnessConfig struct {
	n           int           // requests of the mixed traffic
	concurrency int           // clients of the mixed traffic at once
	victims     int           // long-lived clients of each kind that only the shutdown ends
	paths       int           // distinct raw paths of the cardinality check
	seed        uint64        // the mix; 0: random
	grace       time.Duration // the service's shutdown grace: longer than any client of the mix takes
	sseWrite    time.Duration // the service's SSE write timeout; the stalled readers stop reading 1s longer
	heapSlack   uint64        // heap in use after the run may exceed the baseline by this much
	keepSpans   bool          // also keep every span in a tracetest.InMemoryExporter, and tally it again
	progress    io.Writer     // a progress line every second; nil: none
}

func defaultHarnessConfig() harnessConfig {
	return harnessConfig{
		n:           20000,
		concurrency: 256,
		victims:     20,
		paths:       100_000,
		grace:       5 * time.Second,
		sseWrite:    time.Second,
		heapSlack:   16 << 20,
	}
}

func harnessCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := defaultHarnessConfig()
	fs := flag.NewFlagSet("harness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.n, "n", cfg.n, "requests of the mixed traffic")
	fs.IntVar(&cfg.concurrency, "c", cfg.concurrency, "clients at once")
	fs.IntVar(&cfg.victims, "victims", cfg.victims, "long-lived clients of each kind (request, stream, SSE, websocket, job) that the shutdown ends")
	fs.IntVar(&cfg.paths, "paths", cfg.paths, "distinct raw paths for the cardinality check")
	fs.Uint64Var(&cfg.seed, "seed", 0, "seed of the mix (0: random)")
	fs.DurationVar(&cfg.grace, "grace", cfg.grace, "the service's shutdown grace: longer than any client of the mix takes (sse-write + 2s)")
	fs.DurationVar(&cfg.sseWrite, "sse-write", cfg.sseWrite, "the service's SSE write timeout, which cuts the stalled readers")
	heapSlack := fs.Int("heap-slack", int(cfg.heapSlack>>20), "MiB the heap in use may grow over the run (global caches, first uses)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: canceldemo harness [flags]\n\nRuns the demo service in process under mixed traffic and faults, shuts it down in the middle, and checks that every operation is accounted for, exactly, and that nothing leaked. The clients:\n\n")
		for _, sc := range harnessScenarios {
			fmt.Fprintf(fs.Output(), "  %-22s %s\n", sc.name, sc.what)
		}
		fmt.Fprintf(fs.Output(), "\nflags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case cfg.n < len(harnessScenarios):
		return fmt.Errorf("-n: at least %d, one request of each scenario", len(harnessScenarios))
	case cfg.concurrency < 1 || cfg.victims < 0 || cfg.paths < 0:
		return fmt.Errorf("-c must be positive, -victims and -paths not negative")
	case cfg.sseWrite < 100*time.Millisecond:
		return fmt.Errorf("-sse-write: at least 100ms")
	case cfg.grace < cfg.sseWrite+2*time.Second:
		return fmt.Errorf("-grace: at least -sse-write + 2s, longer than any client of the mix takes")
	case *heapSlack < 0:
		return fmt.Errorf("-heap-slack must not be negative")
	}
	cfg.heapSlack = uint64(*heapSlack) << 20
	cfg.progress = stderr
	rep, err := runHarness(ctx, cfg)
	if rep != nil {
		rep.command = "canceldemo harness " + strings.Join(args, " ")
		rep.write(stdout)
	}
	if err != nil {
		return err
	}
	if len(rep.failures) > 0 {
		return fmt.Errorf("%d checks failed", len(rep.failures))
	}
	return nil
}

// harness is a run: the service, the clients and what they know.
type harness struct {
	cfg      harnessConfig
	s        *server
	addr     string // 127.0.0.1:port
	base     string // http://127.0.0.1:port
	tr       *http.Transport
	client   *http.Client
	truth    *truth
	shutdown atomic.Bool // the shutdown has begun

	started, done atomic.Int64 // clients of the mixed traffic
}

// harnessReport is what a run found.
type harnessReport struct {
	command  string
	cfg      harnessConfig
	seed     uint64
	failures []string

	mixedElapsed time.Duration
	mixedOps     int // operations the mixed phase and its victims caused
	requests     int // HTTP requests sent in all
	noOp         int // requests the clients know made no operation
	saw          map[string]map[string]int

	expected, metrics, spans map[opKey]int
	otherSpans               map[string]int
	spanNames                int
	activeNonZero            int
	activeSeries             int

	pathsElapsed                           time.Duration
	seriesBefore, seriesFirst, seriesAfter int

	progressWant, progressGot map[string]int
	wsClosesWant, wsClosesGot map[string]int
	statusesWant, statusesGot map[string]int
	cancelsOK                 int
	cut                       int
	endCuts                   int

	goroutinesBefore, goroutinesAfter, goroutinesMax int
	heapBefore, heapAfter, heapMax                   uint64
	shutdownTook                                     time.Duration
	shutdownClients, shutdownLive                    int // mixed clients running, operations live, when the shutdown began
	panics                                           int
	logLines                                         int
	logSample                                        []string // the first lines of the service's log
}

func (r *harnessReport) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// runHarness runs the harness. The error is for a run that could not be
// made; the checks that failed are in the report.
func runHarness(ctx context.Context, cfg harnessConfig) (*harnessReport, error) {
	if cfg.seed == 0 {
		cfg.seed = rand.Uint64()
	}
	rep := &harnessReport{cfg: cfg, seed: cfg.seed}

	// The baseline.
	runtime.GC()
	runtime.GC()
	rep.goroutinesBefore = runtime.NumGoroutine()
	rep.heapBefore = heapInUse()

	// Logs: the service's (warnings and up) and the default logger's, which
	// httpcancel uses for panics after a request was answered.
	logs := &lockedBuffer{}
	prevLog := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	defer slog.SetDefault(prevLog)

	tally := newSpanTally(cfg.keepSpans)
	scfg := defaultServerConfig()
	scfg.Grace = cfg.grace
	scfg.SSEHeartbeat = time.Second
	scfg.SSEWriteTimeout = cfg.sseWrite
	scfg.WSTick = 50 * time.Millisecond
	scfg.WSIdle = time.Hour // the websocket victims idle until the shutdown
	scfg.JobStep = 100 * time.Millisecond
	scfg.Log = logs
	scfg.LogLevel = slog.LevelWarn
	scfg.extraRoutes = harnessRoutes
	scfg.spanProcessors = tally.processors()
	s, err := newServer(ctx, scfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.close(ctx)
		return nil, err
	}
	s.start(ln)
	h := &harness{cfg: cfg, s: s, addr: ln.Addr().String(), truth: newTruth()}
	h.base = "http://" + h.addr
	h.tr = &http.Transport{
		Proxy:                 nil,
		MaxIdleConnsPerHost:   cfg.concurrency,
		IdleConnTimeout:       30 * time.Second,
		ExpectContinueTimeout: 10 * time.Second, // wait for 100 Continue before sending a body
		DisableCompression:    true,
	}
	h.client = &http.Client{Transport: h.tr} // no timeout: the victims live as long as the run

	sampler := startSampler()
	defer sampler.stop()

	// 1. Cardinality: distinct raw paths, bounded series.
	before, err := h.scrape(ctx)
	if err != nil {
		h.abort()
		return rep, err
	}
	// The first paths bring the three names they are counted under; the
	// rest must add no series at all.
	first := min(cfg.paths, 300)
	t0 := time.Now()
	h.rawPaths(ctx, 0, first)
	mid, err := h.scrape(ctx)
	if err != nil {
		h.abort()
		return rep, err
	}
	h.rawPaths(ctx, first, cfg.paths)
	rep.pathsElapsed = time.Since(t0)
	after, err := h.scrape(ctx)
	if err != nil {
		h.abort()
		return rep, err
	}
	rep.seriesBefore, rep.seriesFirst, rep.seriesAfter = len(before), len(mid), len(after)
	checkCardinality(rep, after, first, cfg.paths)

	// 2. The victims: long-lived clients that only the shutdown ends.
	opsBefore := sumValues(h.truth.ops)
	var victims sync.WaitGroup
	h.startVictims(ctx, &victims)
	if err := h.waitVictims(ctx); err != nil {
		h.abort()
		return rep, err
	}

	// 3. The mixed traffic, and the shutdown once all of it is under way.
	t0 = time.Now()
	stopProgress := h.startProgress(t0)
	var shutdownErr error
	shutdownDone := make(chan struct{})
	h.mixed(ctx, func() {
		rep.shutdownClients = int(h.started.Load() - h.done.Load())
		rep.shutdownLive = s.reg.Stats().Active
		h.shutdown.Store(true)
		go func() {
			defer close(shutdownDone)
			sctx, stop := context.WithTimeout(context.WithoutCancel(ctx), cfg.grace+30*time.Second)
			defer stop()
			start := time.Now()
			shutdownErr = s.shutdown(sctx)
			rep.shutdownTook = time.Since(start)
		}()
		// New connections are refused once the listener is closed.
		h.afterClose(ctx)
	})
	rep.mixedElapsed = time.Since(t0)
	victims.Wait()
	<-shutdownDone
	stopProgress()
	if shutdownErr != nil {
		rep.fail("shutdown: %v", shutdownErr)
	}
	if n := s.reg.Stats().Active; n != 0 {
		rep.fail("%d operations still in the registry after the shutdown", n)
	}
	rep.mixedOps = sumValues(h.truth.ops) - opsBefore

	// 4. The accounting, from the service's exposition (it no longer
	// listens) and the spans.
	rec := httptest.NewRecorder()
	s.tel.prom.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	final, err := parseExposition(rec.Body.String())
	if err != nil {
		rep.fail("parsing the final exposition: %v", err)
	}
	h.account(rep, final, tally)

	if err := s.close(context.WithoutCancel(ctx)); err != nil {
		rep.fail("closing the telemetry: %v", err)
	}
	h.tr.CloseIdleConnections()
	sampler.stop()
	rep.goroutinesMax, rep.heapMax = sampler.maxGoroutines, sampler.maxHeap

	// 5. Leaks: goroutines back to the baseline, heap near it, no panic.
	rep.goroutinesAfter = waitGoroutines(rep.goroutinesBefore, 15*time.Second)
	if rep.goroutinesAfter > rep.goroutinesBefore {
		rep.fail("goroutines: %d before, %d after:\n%s", rep.goroutinesBefore, rep.goroutinesAfter, goroutineDump())
	}
	h, s, tally = nil, nil, nil // let the service go
	runtime.GC()
	runtime.GC()
	rep.heapAfter = heapInUse()
	if rep.heapAfter > rep.heapBefore+cfg.heapSlack {
		rep.fail("heap in use: %s before, %s after (bound: +%s)", mib(rep.heapBefore), mib(rep.heapAfter), mib(cfg.heapSlack))
	}
	logText := logs.String()
	rep.logLines = strings.Count(logText, "\n")
	for line := range strings.Lines(logText) {
		if len(rep.logSample) < 5 {
			rep.logSample = append(rep.logSample, strings.TrimSpace(line))
		}
		if strings.Contains(strings.ToLower(line), "panic") {
			rep.panics++
			if rep.panics <= 5 {
				rep.fail("panic in the logs: %s", strings.TrimSpace(line))
			}
		}
	}
	if ctx.Err() != nil {
		return rep, fmt.Errorf("interrupted: %w", context.Cause(ctx))
	}
	return rep, nil
}

// abort stops the service after a failed setup.
func (h *harness) abort() {
	h.shutdown.Store(true)
	ctx, stop := context.WithTimeout(context.Background(), h.cfg.grace+30*time.Second)
	defer stop()
	h.s.shutdown(ctx)
	h.s.close(ctx)
	h.tr.CloseIdleConnections()
}

// scrape reads /metrics through the service (an operation too).
func (h *harness) scrape(ctx context.Context) ([]expoSample, error) {
	a, err := h.do(ctx, "GET", "/metrics", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("scraping /metrics: %w", err)
	}
	if a.status != 200 {
		return nil, fmt.Errorf("scraping /metrics: status %d", a.status)
	}
	h.truth.req(hMetrics, completed, "", 200)
	return parseExposition(string(a.body))
}

// rawPaths sends the requests from to to, each to a path never seen
// before: a route with a wildcard, no route at all, or a method nobody
// knows.
func (h *harness) rawPaths(ctx context.Context, from, to int) {
	const sc = "raw-paths"
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for range min(h.cfg.concurrency, 64) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(to) {
					return
				}
				id := strconv.FormatInt(i, 10) + "-" + strconv.FormatUint(rand.Uint64(), 36)
				switch i % 3 {
				case 0:
					a, err := h.do(ctx, "GET", "/h/item/"+id, nil, nil)
					h.expectAnswer(sc, hItem, a, err, 200, completed, "")
				case 1:
					a, err := h.do(ctx, "GET", "/raw/"+id+"/x", nil, nil)
					h.expectAnswer(sc, hNotFound, a, err, 404, completed, "")
				case 2:
					a, err := h.do(ctx, "M"+strings.ReplaceAll(id, "-", ""), "/h/ok", nil, nil)
					h.expectAnswer(sc, hOther, a, err, 405, completed, "")
				}
			}
		})
	}
	wg.Wait()
}

// checkCardinality: the first raw paths add a bounded number of series
// (those of the three names they are counted under, and otelhttp's), the
// rest none; no series names a raw path or method.
func checkCardinality(rep *harnessReport, after []expoSample, first, paths int) {
	const bound = 400
	if d := rep.seriesFirst - rep.seriesBefore; d > bound {
		rep.fail("cardinality: the first %d distinct paths added %d series (bound %d)", first, d, bound)
	}
	if d := rep.seriesAfter - rep.seriesFirst; d != 0 {
		rep.fail("cardinality: %d more distinct paths added %d series (want none)", paths-first, d)
	}
	for _, m := range after {
		for k, v := range m.labels {
			if strings.Contains(v, "/raw/") || strings.HasPrefix(v, "/h/item/") && !strings.Contains(v, "{id}") || strings.HasPrefix(v, "M") && len(v) > 8 {
				rep.fail("cardinality: series %s has %s=%q", m.name, k, v)
				return
			}
		}
	}
}

// startVictims starts the long-lived clients: requests waiting for their
// context, streamed bodies, SSE streams, websockets, jobs.
func (h *harness) startVictims(ctx context.Context, wg *sync.WaitGroup) {
	const sc = "victim"
	for range h.cfg.victims {
		wg.Go(func() {
			a, err := h.do(ctx, "GET", "/h/victim", nil, nil)
			h.expectAnswer(sc+" request", hVictim, a, err, 503, cancelled, "shutdown")
			if a != nil && a.header.Get("Retry-After") == "" {
				h.truth.wrong(sc+" request", "503 without Retry-After")
			}
		})
		wg.Go(func() {
			const sc = "victim drip"
			req, _ := h.newRequest(ctx, "GET", "/h/drip?every=100ms", nil, nil)
			resp, err := h.client.Do(req)
			if err != nil {
				h.truth.wrong(sc, "%v", err)
				return
			}
			defer resp.Body.Close()
			_, err = io.Copy(io.Discard, resp.Body)
			switch {
			case errors.Is(err, io.ErrUnexpectedEOF) || isReset(err):
				h.truth.reqCut(hDrip, cancelled, "shutdown")
				h.truth.see(sc, "cut off")
			default:
				h.truth.wrong(sc, "the body ended with %v, want it cut off", err)
			}
		})
		wg.Go(func() {
			const sc = "victim sse"
			resp, err := h.sse(ctx, "/events?n=100000&every=100ms", nil)
			if err != nil {
				h.truth.wrong(sc, "%v", err)
				return
			}
			defer resp.Body.Close()
			h.sseEnded(sc, readSSE(resp.Body, 0), -1, "")
		})
		wg.Go(func() {
			const sc = "victim ws"
			c := h.dialWS(ctx, sc)
			if c == nil {
				return
			}
			defer c.CloseNow()
			var err error
			for err == nil {
				_, _, err = c.Read(ctx)
			}
			if !h.wsShutdown(sc, err) {
				h.truth.wrong(sc, "ended with %v, want 1001", err)
			}
		})
		wg.Go(func() {
			if h.jobStart(ctx, "victim job") != 0 {
				h.truth.op(hJob, cancelled, "shutdown")
				h.truth.see("victim job", "running")
			}
		})
	}
}

// waitVictims waits until every victim runs.
func (h *harness) waitVictims(ctx context.Context) error {
	want := h.cfg.victims
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, name := range []string{hVictim, hDrip, hSSE, hWSConn, hJob} {
			if h.live(name) < want {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the victims did not all start within 30s")
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

// live counts the running operations named name.
func (h *harness) live(name string) int {
	n := 0
	for _, op := range h.s.reg.List(cancel.Filter{Name: name}) {
		if op.Name() == name {
			n++
		}
	}
	return n
}

// mixed runs the mixed traffic: cfg.n clients, cfg.concurrency at once, the
// first of each scenario, then picked by weight. Once the last has
// started, it calls shutdown, and waits for all of them.
func (h *harness) mixed(ctx context.Context, shutdown func()) {
	rng := rand.New(rand.NewPCG(h.cfg.seed, h.cfg.seed^0x9e3779b97f4a7c15))
	pick := picker(rng, harnessScenarios, func(sc harnessScenario) int { return sc.weight })
	slots := make(chan struct{}, h.cfg.concurrency)
	var wg sync.WaitGroup
	for i := range h.cfg.n {
		if ctx.Err() != nil {
			break // interrupted
		}
		slots <- struct{}{}
		sc := pick(i)
		r := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		h.started.Add(1)
		wg.Go(func() {
			defer func() { <-slots }()
			// A bound, should the service hang: no client of the mix takes
			// more than a few seconds.
			ctx, stop := context.WithTimeout(ctx, time.Minute)
			defer stop()
			sc.run(h, ctx, r)
			h.done.Add(1)
		})
	}
	shutdown()
	wg.Wait()
}

// afterClose waits until the listener refuses connections, then sends a
// few requests: refused, or served on a connection still open.
func (h *harness) afterClose(ctx context.Context) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", h.addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(5 * time.Millisecond)
	}
	for range 10 {
		a, err := h.do(ctx, "GET", "/h/ok", nil, nil)
		h.expectAnswer("after close", hOK, a, err, 200, completed, "")
	}
}

// maxSpanNames bounds the distinct span names of a run: its routes and
// operation names, not its raw paths or methods.
const maxSpanNames = 64

// account compares what the clients know with the metrics and the spans.
func (h *harness) account(rep *harnessReport, final []expoSample, tally *spanTally) {
	t := h.truth
	t.mu.Lock()
	defer t.mu.Unlock()
	rep.expected = t.ops
	rep.requests, rep.noOp, rep.saw, rep.cancelsOK, rep.cut, rep.endCuts = t.requests, t.noOp, t.saw, t.cancelsOK, t.cut, t.endCuts
	for _, u := range t.unexpected {
		rep.fail("client saw: %s", u)
	}

	rep.metrics = opsFromMetrics(final)
	for _, d := range diffCounts("cancel_operations_total", t.ops, rep.metrics, opKey.String) {
		rep.fail("%s", d)
	}
	spans, others, names := tally.snapshot()
	rep.spans, rep.otherSpans, rep.spanNames = spans, others, names
	// Span names come from closed sets too (zpages keeps samples per
	// name: a raw method or path in a name grows the heap without bound).
	if names > maxSpanNames {
		rep.fail("%d distinct span names (bound %d): a raw method or path in a span name?", names, maxSpanNames)
	}
	for _, d := range diffCounts("spans", t.ops, spans, opKey.String) {
		rep.fail("%s", d)
	}
	for name, n := range others {
		rep.fail("%d spans %q record no operation", n, name)
	}
	if mem := tally.memTally(); mem != nil {
		for _, d := range diffCounts("tracetest.InMemoryExporter spans", t.ops, mem, opKey.String) {
			rep.fail("%s", d)
		}
	}

	// Nothing runs.
	for _, m := range final {
		if m.name == "cancel_operation_active" {
			rep.activeSeries++
			if m.value != 0 {
				rep.activeNonZero++
				rep.fail("after the shutdown, cancel_operation_active{%s} = %v", m.labels["cancel_operation_name"], m.value)
			}
		}
	}
	if rep.activeSeries == 0 {
		rep.fail("no cancel_operation_active series")
	}

	// Progress reports: 4 per /work, one per ignored budget.
	rep.progressWant, rep.progressGot = t.progress, map[string]int{}
	for name := range t.progress {
		rep.progressGot[name] = int(sumSamples(final, "cancel_progress_reports_total", "cancel_operation_name", name))
	}
	for _, d := range diffCounts("cancel_progress_reports_total", t.progress, rep.progressGot, func(s string) string { return s }) {
		rep.fail("%s", d)
	}

	// A stop latency for every operation asked to stop (the cancelled ones,
	// and the others the clients know of), by the reason of the request.
	stopWant, stopGot := map[opKey]int{}, map[opKey]int{}
	for k, n := range t.ops {
		if k.Outcome == cancelled {
			stopWant[opKey{Name: k.Name, Reason: k.Reason}] += n
		}
	}
	for k, n := range t.stopLatency {
		stopWant[opKey{Name: k[0], Reason: k[1]}] += n
	}
	for _, m := range final {
		if m.name == "cancel_stop_latency_seconds_count" && m.value != 0 {
			stopGot[opKey{Name: m.labels["cancel_operation_name"], Reason: m.labels["cancel_reason"]}] += int(m.value)
		}
	}
	for _, d := range diffCounts("cancel_stop_latency_seconds_count", stopWant, stopGot, opKey.String) {
		rep.fail("%s", d)
	}

	// Websocket closes, by code and root reason.
	rep.wsClosesWant, rep.wsClosesGot = t.wsCloses, map[string]int{}
	for _, m := range final {
		if m.name == "cancel_ws_closes_total" && m.value != 0 {
			rep.wsClosesGot[m.labels["cancel_ws_close_code"]+" "+m.labels["cancel_reason"]] += int(m.value)
		}
	}
	for _, d := range diffCounts("cancel_ws_closes_total", t.wsCloses, rep.wsClosesGot, func(s string) string { return s }) {
		rep.fail("%s", d)
	}

	// otelhttp's request metrics: every request by status and error.type.
	rep.statusesWant, rep.statusesGot = t.statuses, map[string]int{}
	for _, m := range final {
		if m.name == "http_server_request_duration_seconds_count" && m.value != 0 {
			code, _ := strconv.Atoi(m.labels["http_response_status_code"])
			rep.statusesGot[statusKey(code, m.labels["error_type"])] += int(m.value)
		}
	}
	for _, d := range diffCounts("http_server_request_duration_seconds_count", t.statuses, rep.statusesGot, func(s string) string { return s }) {
		rep.fail("%s", d)
	}

	// The operator cancels that succeeded are the manual cancellations.
	manual := t.ops[opKey{hJob, cancelled, "manual"}] + t.ops[opKey{hOpCancel, cancelled, "manual"}]
	if t.cancelsOK != manual {
		rep.fail("%d admin cancels answered cancelled:true, %d operations cancelled manual", t.cancelsOK, manual)
	}
}

// sampler samples the heap in use and the goroutines.
type sampler struct {
	maxHeap       uint64
	maxGoroutines int
	quit          chan struct{}
	done          chan struct{}
	once          sync.Once
}

func startSampler() *sampler {
	s := &sampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			s.maxHeap = max(s.maxHeap, heapInUse())
			s.maxGoroutines = max(s.maxGoroutines, runtime.NumGoroutine())
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop stops the sampler; its maxima can be read after.
func (s *sampler) stop() {
	s.once.Do(func() { close(s.quit); <-s.done })
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// waitGoroutines polls until at most want goroutines run, or the timeout;
// it returns the last count.
func waitGoroutines(want int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func goroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// startProgress writes a line every second to cfg.progress; the func
// returned stops it.
func (h *harness) startProgress(start time.Time) func() {
	if h.cfg.progress == nil {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			d := h.done.Load()
			fmt.Fprintf(h.cfg.progress, "%5.0fs  mixed: %d of %d done, %d running, %d operations live%s\n",
				time.Since(start).Seconds(), d, h.cfg.n, h.started.Load()-d, h.s.reg.Stats().Active,
				map[bool]string{true: ", shutting down", false: ""}[h.shutdown.Load()])
		}
	}()
	return func() { close(quit); <-done }
}

// write prints the report, in Markdown, for BENCHMARKS.md.
func (r *harnessReport) write(w io.Writer) {
	fmt.Fprintf(w, "### Load and faults: `%s`\n\n", strings.TrimSpace(r.command))
	fmt.Fprintf(w, "%s/%s, %d CPUs, %s; seed %d\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), r.seed)
	verdict := "PASS"
	if len(r.failures) > 0 {
		verdict = fmt.Sprintf("FAIL (%d checks)", len(r.failures))
	}
	ops := sumValues(r.expected)
	fmt.Fprintf(w, "- result: **%s**\n", verdict)
	fmt.Fprintf(w, "- requests: %d HTTP requests and websocket handshakes in all, %d operations expected by the clients; %d requests never reached a handler (net/http refused them, or the shutdown did)\n", r.requests, ops, r.noOp)
	if r.mixedElapsed > 0 {
		fmt.Fprintf(w, "- mixed traffic: %d clients, %d at once, plus %d victims of each of 5 kinds: %d operations in %v, %.0f operations/s\n",
			r.cfg.n, r.cfg.concurrency, r.cfg.victims, r.mixedOps, r.mixedElapsed.Round(time.Millisecond),
			float64(r.mixedOps)/r.mixedElapsed.Seconds())
		fmt.Fprintf(w, "- graceful shutdown (grace %v) once the last client started, with %d clients running and %d operations live; it took %v\n",
			r.cfg.grace, r.shutdownClients, r.shutdownLive, r.shutdownTook.Round(time.Millisecond))
	}
	if r.pathsElapsed > 0 {
		fmt.Fprintf(w, "- cardinality: %d distinct raw paths (a wildcard route, no route, unknown methods) in %v (%.0f/s): series %d before, %d after the first %d (+%d), %d after all (+%d)\n",
			r.cfg.paths, r.pathsElapsed.Round(time.Millisecond), float64(r.cfg.paths)/r.pathsElapsed.Seconds(),
			r.seriesBefore, r.seriesFirst, min(r.cfg.paths, 300), r.seriesFirst-r.seriesBefore, r.seriesAfter, r.seriesAfter-r.seriesFirst)
		fmt.Fprintf(w, "- span names: %d distinct in the whole run (bound %d)\n", r.spanNames, maxSpanNames)
	}
	fmt.Fprintf(w, "- leaks found: %d (goroutines %d before, %d after, %d at most; heap in use %s before, %s after (bound +%s), %s at most; cancel_operation_active non-zero: %d of %d series)\n",
		r.leaks(), r.goroutinesBefore, r.goroutinesAfter, r.goroutinesMax,
		mib(r.heapBefore), mib(r.heapAfter), mib(r.cfg.heapSlack), mib(r.heapMax), r.activeNonZero, r.activeSeries)
	fmt.Fprintf(w, "- panics: %d; service log lines (warnings and up): %d; admin cancels answered cancelled:true: %d\n\n", r.panics, r.logLines, r.cancelsOK)

	// Operations by name, outcome and reason.
	keys := map[opKey]bool{}
	for _, m := range []map[opKey]int{r.expected, r.metrics, r.spans} {
		for k := range m {
			keys[k] = true
		}
	}
	sorted := slices.SortedFunc(maps.Keys(keys), func(a, b opKey) int { return strings.Compare(a.String(), b.String()) })
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| operation\t outcome\t reason\t expected (clients)\t cancel_operations_total\t spans\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---:\t---:\t---:\t")
	byReason := map[string][3]int{}
	for _, k := range sorted {
		e, m, s := r.expected[k], r.metrics[k], r.spans[k]
		mark := ""
		if e != m || e != s {
			mark = " ✗"
		}
		fmt.Fprintf(tw, "| %s\t %s\t %s\t %d\t %d\t %d%s\t\n", k.Name, k.Outcome, k.Reason, e, m, s, mark)
		rk := k.Outcome
		if k.Reason != "" {
			rk = k.Reason
		}
		v := byReason[rk]
		byReason[rk] = [3]int{v[0] + e, v[1] + m, v[2] + s}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| outcome or reason\t expected\t metrics\t spans\t")
	fmt.Fprintln(tw, "|---\t---:\t---:\t---:\t")
	for _, rk := range slices.Sorted(maps.Keys(byReason)) {
		v := byReason[rk]
		fmt.Fprintf(tw, "| %s\t %d\t %d\t %d\t\n", rk, v[0], v[1], v[2])
	}
	v := [3]int{sumValues(r.expected), sumValues(r.metrics), sumValues(r.spans)}
	fmt.Fprintf(tw, "| total\t %d\t %d\t %d\t\n", v[0], v[1], v[2])
	tw.Flush()

	fmt.Fprintf(w, "\nprogress reports (expected/observed):")
	for _, name := range slices.Sorted(maps.Keys(r.progressWant)) {
		fmt.Fprintf(w, " %s %d/%d;", name, r.progressWant[name], r.progressGot[name])
	}
	fmt.Fprintf(w, "\ncancel_ws_closes_total by code and reason (expected/observed):")
	for _, k := range slices.Sorted(maps.Keys(mergeKeys(r.wsClosesWant, r.wsClosesGot))) {
		fmt.Fprintf(w, " %s %d/%d;", k, r.wsClosesWant[k], r.wsClosesGot[k])
	}
	fmt.Fprintf(w, "\nhttp_server_request_duration_seconds_count by status and error.type (expected/observed):")
	for _, k := range slices.Sorted(maps.Keys(mergeKeys(r.statusesWant, r.statusesGot))) {
		fmt.Fprintf(w, " %s %d/%d;", k, r.statusesWant[k], r.statusesGot[k])
	}
	fmt.Fprintf(w, "\n\nKnown deviations (the expectations follow the library as it is):\n\n")
	if r.endCuts > 0 {
		fmt.Fprintf(w, "- %d SSE streams ended (Stream.End, all events sent, both operations completed) but reached their client cut: net/http's last chunk, written when the handler returns, failed on the deadline End leaves (the write timeout plus 5 s: a very busy machine).\n", r.endCuts)
	}
	fmt.Fprintf(w, "- A websocket the client closes normally (1000) is recorded cancelled/disconnect (documented: a peer that closes cancels the connection's operation).\n")
	fmt.Fprintf(w, "\nWhat the clients saw:\n\n")
	for _, sc := range slices.Sorted(maps.Keys(r.saw)) {
		var parts []string
		for o, n := range r.saw[sc] {
			parts = append(parts, fmt.Sprintf("%s ×%d", o, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "- %s: %s\n", sc, strings.Join(parts, ", "))
	}
	if len(r.logSample) > 0 {
		fmt.Fprintf(w, "\nThe service's first log lines:\n\n")
		for _, l := range r.logSample {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
	if len(r.failures) > 0 {
		fmt.Fprintf(w, "\nFailed checks:\n\n")
		for _, f := range r.failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
	}
}

// leaks counts the leak checks that failed.
func (r *harnessReport) leaks() int {
	n := r.activeNonZero
	if r.goroutinesAfter > r.goroutinesBefore {
		n++
	}
	if r.heapAfter > r.heapBefore+r.cfg.heapSlack {
		n++
	}
	return n
}

func mergeKeys[K comparable](a, b map[K]int) map[K]int {
	out := map[K]int{}
	for k := range a {
		out[k] = 0
	}
	for k := range b {
		out[k] = 0
	}
	return out
}

// lockedBuffer is a strings.Builder for several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
