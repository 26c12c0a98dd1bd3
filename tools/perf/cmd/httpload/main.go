// Command httpload is the loopback HTTP load run of the performance
// report: it compares the middleware stacks of cmd/perfserver (bare,
// otelhttp, otelhttp+httpcancel, httpcancel) on throughput and latency, and
// prints a markdown table.
//
// Each round starts one perfserver process per stack, in an order that
// rotates from round to round (so that every stack runs early and late
// under whatever else the machine is doing), warms it up, then loads it
// for a fixed time with a fixed number of connections and threads. The
// load comes from wrk (Debian's package: apt-get install wrk) with its
// latency distribution (--latency), or, with -client go or when wrk is not
// installed, from a closed-loop Go client: one goroutine per connection,
// each sending its next request when the previous answer is read (as wrk
// does). Either way the latencies are those of a closed loop (no
// coordinated-omission correction).
//
// The table gives, per stack, the median over the rounds of the requests
// per second, of p50 and of p99 (with their ranges), the server process's
// CPU time per request (from /proc/PID/stat: steadier than wall time on a
// shared machine), and ratios: each stack's throughput and p99 against
// bare's and otelhttp's *of the same round*, the median over the rounds.
// Per-round figures and the load average go to stderr.
//
//	cd tools/perf && go run ./cmd/httpload -rounds 5 -duration 10s -connections 32 -threads 2
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type config struct {
	rounds      int
	duration    time.Duration
	warmup      time.Duration
	connections int
	threads     int
	stacks      []string
	client      string // "wrk" or "go"
	server      string // perfserver binary
	path        string
}

// result is one stack's figures in one round.
type result struct {
	stack        string
	round        int
	requests     int64
	rps          float64
	p50, p99     time.Duration // p50 and p99 latency
	serverCPU    time.Duration // the server process's CPU time during the measured run
	errors       int64         // socket errors and non-2xx answers
	load0, load1 string        // /proc/loadavg's 1-minute figure before and after
}

func (r result) cpuPerReq() float64 {
	return float64(r.serverCPU.Microseconds()) / float64(r.requests)
}

func main() {
	var c config
	stacks := flag.String("stacks", "bare,otelhttp,otelhttp+httpcancel,httpcancel", "comma-separated stacks of perfserver (bare first: the ratios need bare and otelhttp)")
	flag.IntVar(&c.rounds, "rounds", 5, "rounds; each runs every stack once")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "measured load per stack and round")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured load before each measured run")
	flag.IntVar(&c.connections, "connections", 32, "concurrent keep-alive connections")
	flag.IntVar(&c.threads, "threads", 2, "wrk threads (-t)")
	flag.StringVar(&c.client, "client", "auto", `load generator: "wrk", "go" (closed-loop Go client), or "auto" (wrk if installed)`)
	flag.StringVar(&c.server, "server", "", "perfserver binary (default: go build it into a temporary directory; run from the tools/perf module)")
	flag.StringVar(&c.path, "path", "/hello", "the path requested")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("httpload: ")
	c.stacks = strings.Split(*stacks, ",")

	switch c.client {
	case "auto":
		c.client = "go"
		if _, err := exec.LookPath("wrk"); err == nil {
			c.client = "wrk"
		}
	case "wrk", "go":
	default:
		log.Fatalf("-client %q: want wrk, go or auto", c.client)
	}
	if c.server == "" {
		dir, err := os.MkdirTemp("", "httpload")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		c.server = filepath.Join(dir, "perfserver")
		build := exec.Command("go", "build", "-o", c.server, "github.com/cancelable-go/cancelable/tools/perf/cmd/perfserver")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			log.Fatalf("building perfserver (run httpload from the tools/perf module, or give -server): %v", err)
		}
	}

	var results []result
	fmt.Fprintf(os.Stderr, "client %s, %d connections, %d threads, %v per run after %v warm-up, %d rounds\n",
		c.client, c.connections, c.threads, c.duration, c.warmup, c.rounds)
	fmt.Fprintln(os.Stderr, "| round | stack | req/s | p50 | p99 | server CPU µs/req | errors | load before/after |")
	fmt.Fprintln(os.Stderr, "|---:|---|---:|---:|---:|---:|---:|---|")
	for round := range c.rounds {
		for i := range c.stacks {
			stack := c.stacks[(i+round)%len(c.stacks)] // rotate the order
			r, err := run(c, stack)
			if err != nil {
				log.Fatalf("round %d, %s: %v", round+1, stack, err)
			}
			r.round = round
			results = append(results, r)
			fmt.Fprintf(os.Stderr, "| %d | %s | %.0f | %s | %s | %.1f | %d | %s/%s |\n",
				round+1, stack, r.rps, us(r.p50), us(r.p99), r.cpuPerReq(), r.errors, r.load0, r.load1)
		}
	}
	report(os.Stdout, c, results)
}

// run starts the server with stack, warms it up, loads it and stops it.
func run(c config, stack string) (result, error) {
	r := result{stack: stack, load0: loadavg()}
	srv := exec.Command(c.server, "-stack", stack)
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		return r, err
	}
	if err := srv.Start(); err != nil {
		return r, err
	}
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return r, fmt.Errorf("perfserver did not say where it listens: %v", err)
	}
	url := strings.TrimSpace(line) + c.path

	if c.warmup > 0 {
		if _, err := load(c, url, c.warmup); err != nil {
			return r, fmt.Errorf("warm-up: %v", err)
		}
	}
	cpu0, err := procCPU(srv.Process.Pid)
	if err != nil {
		return r, err
	}
	m, err := load(c, url, c.duration)
	if err != nil {
		return r, err
	}
	cpu1, err := procCPU(srv.Process.Pid)
	if err != nil {
		return r, err
	}
	m.stack, m.load0, m.load1 = stack, r.load0, loadavg()
	m.serverCPU = cpu1 - cpu0
	if m.requests == 0 {
		return m, errors.New("no request answered")
	}
	return m, nil
}

func load(c config, url string, d time.Duration) (result, error) {
	if c.client == "wrk" {
		return wrk(c, url, d)
	}
	return goClient(c, url, d)
}

// wrk runs wrk --latency and parses its report.
func wrk(c config, url string, d time.Duration) (result, error) {
	var r result
	secs := max(1, int(math.Round(d.Seconds())))
	cmd := exec.Command("wrk", "--latency", "-t", strconv.Itoa(c.threads), "-c", strconv.Itoa(c.connections),
		"-d", strconv.Itoa(secs)+"s", url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	return parseWrk(string(out))
}

var (
	wrkPercentile = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkRequests   = regexp.MustCompile(`(?m)^\s+(\d+) requests in ([0-9.]+)(us|ms|s|m)`)
	wrkRate       = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkSocket     = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx     = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func parseWrk(out string) (result, error) {
	var r result
	for _, m := range wrkPercentile.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	m := wrkRequests.FindStringSubmatch(out)
	rate := wrkRate.FindStringSubmatch(out)
	if m == nil || rate == nil || r.p99 == 0 {
		return r, fmt.Errorf("cannot read wrk's report:\n%s", out)
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.rps, _ = strconv.ParseFloat(rate[1], 64)
	if s := wrkSocket.FindStringSubmatch(out); s != nil {
		for _, v := range s[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			r.errors += n
		}
	}
	if s := wrkNon2xx.FindStringSubmatch(out); s != nil {
		n, _ := strconv.ParseInt(s[1], 10, 64)
		r.errors += n
	}
	return r, nil
}

// goClient is the closed-loop Go client: c.connections goroutines, each
// with a keep-alive connection of its own, sending requests back to back
// for d.
func goClient(c config, url string, d time.Duration) (result, error) {
	var r result
	tr := &http.Transport{MaxIdleConnsPerHost: c.connections, MaxConnsPerHost: c.connections, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ctx, cancelLoad := context.WithTimeout(context.Background(), d)
	defer cancelLoad()
	lat := make([][]time.Duration, c.connections)
	errs := make([]int64, c.connections)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range c.connections {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			for ctx.Err() == nil {
				t := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs[i]++
					}
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					if ctx.Err() == nil {
						errs[i]++
					}
					continue
				}
				lat[i] = append(lat[i], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return r, errors.New("no request answered")
	}
	slices.Sort(all)
	r.requests = int64(len(all))
	r.rps = float64(len(all)) / elapsed.Seconds()
	r.p50 = all[len(all)*50/100]
	r.p99 = all[min(len(all)-1, len(all)*99/100)]
	for _, e := range errs {
		r.errors += e
	}
	return r, nil
}

// procCPU returns the user+system CPU time of process pid.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of proc(5)
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	const clockTick = 100                       // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTick, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// report prints the summary table.
func report(w io.Writer, c config, results []result) {
	byStack := map[string][]result{}
	byRound := map[int]map[string]result{}
	for _, r := range results {
		byStack[r.stack] = append(byStack[r.stack], r)
		if byRound[r.round] == nil {
			byRound[r.round] = map[string]result{}
		}
		byRound[r.round][r.stack] = r
	}
	fmt.Fprintf(w, "Loopback load: %s, %d connections, %d threads, %v per run (after %v warm-up), %d rounds, stacks interleaved; medians over the rounds [min-max].\n\n",
		c.client, c.connections, c.threads, c.duration, c.warmup, c.rounds)
	fmt.Fprintln(w, "| stack | req/s | p50 µs | p99 µs | server CPU µs/req | req/s vs bare | req/s vs otelhttp | p99 vs bare | p99 vs otelhttp | CPU/req vs otelhttp | CPU/req over bare | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, stack := range c.stacks {
		rs := byStack[stack]
		var rps, p50, p99, cpu []float64
		var errs int64
		for _, r := range rs {
			rps = append(rps, r.rps)
			p50 = append(p50, micros(r.p50))
			p99 = append(p99, micros(r.p99))
			cpu = append(cpu, r.cpuPerReq())
			errs += r.errors
		}
		// Figures of this stack against base's in each round, then their
		// median.
		within := func(base string, f func(s, b result) float64) []float64 {
			var xs []float64
			for _, round := range byRound {
				b, ok1 := round[base]
				s, ok2 := round[stack]
				if ok1 && ok2 {
					xs = append(xs, f(s, b))
				}
			}
			return xs
		}
		ratio := func(base string, f func(result) float64) string {
			xs := within(base, func(s, b result) float64 { return f(s) / f(b) })
			if len(xs) == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2fx", median(xs))
		}
		fRPS := func(r result) float64 { return r.rps }
		fP99 := func(r result) float64 { return float64(r.p99) }
		fCPU := func(r result) float64 { return r.cpuPerReq() }
		over := "-"
		if xs := within("bare", func(s, b result) float64 { return s.cpuPerReq() - b.cpuPerReq() }); len(xs) > 0 {
			over = fmt.Sprintf("%+.1f µs", median(xs))
		}
		fmt.Fprintf(w, "| %s | %.0f [%.0f-%.0f] | %.0f [%.0f-%.0f] | %.0f [%.0f-%.0f] | %.1f [%.1f-%.1f] | %s | %s | %s | %s | %s | %s | %d |\n",
			stack,
			median(rps), slices.Min(rps), slices.Max(rps),
			median(p50), slices.Min(p50), slices.Max(p50),
			median(p99), slices.Min(p99), slices.Max(p99),
			median(cpu), slices.Min(cpu), slices.Max(cpu),
			ratio("bare", fRPS), ratio("otelhttp", fRPS),
			ratio("bare", fP99), ratio("otelhttp", fP99),
			ratio("otelhttp", fCPU), over,
			errs)
	}
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func us(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
