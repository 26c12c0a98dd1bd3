package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// loadConfig configures a load run.
type loadConfig struct {
	Target      string        // the service's base URL
	Rate        float64       // requests started per second, at most
	Concurrency int           // requests in flight, at most
	Duration    time.Duration // stop starting requests after this; 0: until interrupted (or N)
	N           int           // stop after this many requests; 0: no limit
	Seed        uint64        // the mix and the timings; 0: random
	StallFor    time.Duration // how long a stalled SSE reader stops reading

	Progress    io.Writer // a progress line every second; nil: none
	ProgressTTY bool      // rewrite the line in place (a terminal)
}

func defaultLoadConfig() loadConfig {
	return loadConfig{
		Target:      "http://localhost:8080",
		Rate:        20,
		Concurrency: 16,
		Duration:    30 * time.Second,
		StallFor:    5 * time.Second,
	}
}

// loadCommand runs the load generator until its duration or count is
// reached, or ctx ends (SIGINT), and prints the summary.
func loadCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := defaultLoadConfig()
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Target, "target", cfg.Target, "base URL of the demo service")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "requests started per second, at most")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "requests in flight, at most")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to send requests; 0 means until interrupted")
	fs.IntVar(&cfg.N, "n", 0, "stop after this many requests (0: no limit)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the mix and the timings, to repeat a run (0: random)")
	fs.DurationVar(&cfg.StallFor, "stall", cfg.StallFor, "how long the stalled SSE readers stop reading (longer than the service's SSE write timeout, 2s)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: canceldemo load [flags]\n\nSends a mix of requests that stop for every reason:\n\n")
		for _, sc := range scenarios {
			fmt.Fprintf(fs.Output(), "  %-15s %s\n", sc.name, sc.what)
		}
		fmt.Fprintf(fs.Output(), "\nflags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg.Progress = stderr
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			cfg.ProgressTTY = true
		}
	}
	rep, err := runLoad(ctx, cfg)
	if err != nil {
		return err
	}
	rep.write(stdout)
	return nil
}

// A scenario is one kind of client behaviour. run returns the outcome the
// client saw: a status code, a close code, "hung up", ...; a small set,
// for the summary.
type scenario struct {
	name   string
	weight int
	what   string // what the client does, and what the service should record
	run    func(l *loader, ctx context.Context, rng *rand.Rand) string
}

// scenarios is the mix. The first requests of a run go through each once,
// so that even a short run produces every reason.
var scenarios = []scenario{
	{"work", 25, "GET /work: completes (completed)", (*loader).work},
	{"budget", 8, "GET /work with a Request-Timeout budget shorter than the work (timeout, 504)", (*loader).budget},
	{"client-timeout", 6, "GET /work, the client gives up first (disconnect)", (*loader).clientTimeout},
	{"hangup", 8, "GET /work, the client hangs up at a random moment (disconnect)", (*loader).hangup},
	{"slow", 12, "GET /slow: 100-400ms against a 250ms route timeout (some timeout, 504)", (*loader).slow},
	{"stubborn", 5, "GET /stubborn: ignores its context (timeout, stop latency)", (*loader).stubborn},
	{"chain", 8, "GET /chain: calls /work with the remaining budget (some timeout)", (*loader).chain},
	{"sse", 5, "GET /events: reads the whole stream (completed)", (*loader).sseAll},
	{"sse-hangup", 5, "GET /events: hangs up after a few events (disconnect)", (*loader).sseHangup},
	{"sse-stalled", 2, "GET /events: stops reading; the write deadline cuts it (disconnect)", (*loader).sseStalled},
	{"ws", 4, "GET /ws: echoes, then closes normally (1000)", (*loader).wsNormal},
	{"ws-vanish", 4, "GET /ws: the TCP connection closes without a close frame (disconnect, 1006)", (*loader).wsVanish},
	{"job-cancel", 4, "POST /jobs, then an operator cancels it through /admin/ (manual)", (*loader).jobCancel},
}

// loader runs scenarios against a target.
type loader struct {
	cfg       loadConfig
	base      *url.URL
	transport *http.Transport
	client    *http.Client
	stop      context.Context // the run's: done when interrupted
}

// newLoader checks cfg and returns a loader whose requests end when ctx
// does. close closes its idle connections.
func newLoader(ctx context.Context, cfg loadConfig) (*loader, error) {
	base, err := url.Parse(cfg.Target)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("-target: an http:// or https:// URL, such as http://localhost:8080")
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	switch {
	case !(cfg.Rate > 0 && cfg.Rate <= 100_000):
		return nil, fmt.Errorf("-rate: requests per second, more than 0 and at most 100000")
	case cfg.Concurrency < 1:
		return nil, fmt.Errorf("-concurrency: at least 1")
	case cfg.Duration < 0 || cfg.N < 0:
		return nil, fmt.Errorf("-duration and -n must not be negative")
	case cfg.StallFor <= 0:
		return nil, fmt.Errorf("-stall: a positive duration")
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	l := &loader{cfg: cfg, base: base, stop: ctx}
	l.transport = &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: cfg.Concurrency,
		IdleConnTimeout:     30 * time.Second,
	}
	l.client = &http.Client{Transport: l.transport}
	return l, nil
}

func (l *loader) close() { l.transport.CloseIdleConnections() }

// loadReport is what a run saw.
type loadReport struct {
	Target    string
	Seed      uint64
	Sent      int // requests started; each has one outcome
	Elapsed   time.Duration
	Counts    map[string]map[string]int  // scenario -> outcome -> requests
	Latencies map[string][]time.Duration // scenario -> latencies, sorted

	order     []string       // scenarios in the order of the mix
	mu        sync.Mutex     // guards Counts, Latencies and byOutcome while running
	byOutcome map[string]int // outcome -> requests, for the progress line
	finished  atomic.Int64   // requests done
	inFlight  atomic.Int64   // requests running
}

func (r *loadReport) record(sc, outcome string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Counts[sc] == nil {
		r.Counts[sc] = map[string]int{}
	}
	r.Counts[sc][outcome]++
	r.byOutcome[outcome]++
	r.Latencies[sc] = append(r.Latencies[sc], d)
}

// Total is the number of requests with an outcome.
func (r *loadReport) Total() int {
	n := 0
	for _, m := range r.Counts {
		for _, c := range m {
			n += c
		}
	}
	return n
}

// runLoad sends requests until cfg.Duration or cfg.N is reached, or ctx
// ends; then it waits for the requests in flight (interrupted ones count
// as "interrupted") and returns what the clients saw.
func runLoad(ctx context.Context, cfg loadConfig) (*loadReport, error) {
	l, err := newLoader(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer l.close()
	cfg = l.cfg
	rep := &loadReport{
		Target:    cfg.Target,
		Seed:      cfg.Seed,
		Counts:    map[string]map[string]int{},
		Latencies: map[string][]time.Duration{},
		byOutcome: map[string]int{},
	}
	for _, sc := range scenarios {
		rep.order = append(rep.order, sc.name)
	}

	// Requests are started until sending ends; those in flight then run to
	// their end, unless ctx (an interrupt) stops them too.
	sending := ctx
	if cfg.Duration > 0 {
		var stop context.CancelFunc
		sending, stop = context.WithTimeout(ctx, cfg.Duration)
		defer stop()
	}
	start := time.Now()
	progressDone := make(chan struct{})
	progressStop := make(chan struct{})
	go func() {
		defer close(progressDone)
		rep.progress(cfg, start, progressStop)
	}()

	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	pick := picker(rng, scenarios, func(sc scenario) int { return sc.weight })

	slots := make(chan struct{}, cfg.Concurrency)
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	defer tick.Stop()
	var wg sync.WaitGroup
send:
	for cfg.N == 0 || rep.Sent < cfg.N {
		select {
		case <-sending.Done():
			break send
		case <-tick.C:
		}
		select {
		case <-sending.Done():
			break send
		case slots <- struct{}{}:
		}
		sc := pick(rep.Sent)
		r := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		rep.Sent++
		rep.inFlight.Add(1)
		wg.Go(func() {
			defer func() { <-slots }()
			t0 := time.Now()
			outcome := sc.run(l, ctx, r)
			rep.record(sc.name, outcome, time.Since(t0))
			rep.inFlight.Add(-1)
			rep.finished.Add(1)
		})
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	close(progressStop)
	<-progressDone
	for _, ls := range rep.Latencies {
		slices.Sort(ls)
	}
	return rep, nil
}

// progress writes a line every second until stop is closed.
func (r *loadReport) progress(cfg loadConfig, start time.Time, stop <-chan struct{}) {
	if cfg.Progress == nil {
		<-stop
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			if cfg.ProgressTTY {
				fmt.Fprint(cfg.Progress, "\r\x1b[K")
			}
			return
		case <-t.C:
		}
		line := r.progressLine(time.Since(start))
		if cfg.ProgressTTY {
			fmt.Fprint(cfg.Progress, "\r\x1b[K"+line)
		} else {
			fmt.Fprintln(cfg.Progress, line)
		}
	}
}

func (r *loadReport) progressLine(elapsed time.Duration) string {
	r.mu.Lock()
	outcomes := make([]string, 0, len(r.byOutcome))
	for o, n := range r.byOutcome {
		outcomes = append(outcomes, fmt.Sprintf("%s=%d", o, n))
	}
	r.mu.Unlock()
	sort.Strings(outcomes)
	done := r.finished.Load()
	return fmt.Sprintf("%5.0fs  done %d (%.0f/s)  in flight %d  %s",
		elapsed.Seconds(), done, float64(done)/max(elapsed.Seconds(), 0.001), r.inFlight.Load(), strings.Join(outcomes, " "))
}

// write prints the summary: per scenario, the outcomes the clients saw and
// the latency percentiles.
func (r *loadReport) write(w io.Writer) {
	fmt.Fprintf(w, "\n%d requests to %s in %v (seed %d)\n\n", r.Sent, r.Target, r.Elapsed.Round(time.Millisecond), r.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tREQUESTS\tP50\tP90\tP99\tOUTCOMES (what the client saw)")
	for _, sc := range r.order {
		counts := r.Counts[sc]
		if len(counts) == 0 {
			continue
		}
		outcomes := make([]string, 0, len(counts))
		n := 0
		for o, c := range counts {
			outcomes = append(outcomes, fmt.Sprintf("%s×%d", o, c))
			n += c
		}
		sort.Strings(outcomes)
		ls := r.Latencies[sc]
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", sc, n,
			fmtLatency(percentile(ls, 0.50)), fmtLatency(percentile(ls, 0.90)), fmtLatency(percentile(ls, 0.99)),
			strings.Join(outcomes, ", "))
	}
	fmt.Fprintf(tw, "total\t%d\n", r.Total())
	tw.Flush()
}

// percentile returns the p-quantile of sorted latencies (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func fmtLatency(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(100 * time.Microsecond).String()
	}
}

// picker returns the i-th client's item: each item once, in order, then
// items picked at random, in proportion to their weight.
func picker[T any](rng *rand.Rand, items []T, weight func(T) int) func(i int) T {
	total := 0
	for _, it := range items {
		total += weight(it)
	}
	return func(i int) T {
		if i < len(items) {
			return items[i]
		}
		n := rng.IntN(total)
		for _, it := range items {
			if n < weight(it) {
				return it
			}
			n -= weight(it)
		}
		panic("unreachable")
	}
}
