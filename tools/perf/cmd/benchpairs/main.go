// Command benchpairs reads `go test -bench` output and prints, as a
// markdown table, every benchmark of the library next to its baseline,
// with the target the issues set for it and a verdict.
//
// The input is one or more files of benchmark output holding several
// rounds: the whole set run once per round (interleaved, the way
// `make bench` runs it), or `-count N`. The k-th result of a benchmark
// belongs to round k. A pair's ratio (or difference) is taken within each
// round, then the median over the rounds is reported with its range; the
// verdict compares the median with the target.
//
//	go run ./cmd/benchpairs bench_cancel.txt bench_otelcancel.txt ...
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A check compares subject with base (or subject alone) on one unit.
type check struct {
	issue   string
	subject string
	base    string // "" for an absolute figure
	unit    string // "ns/op", "allocs/op", "cpu-ns/op", "B/liveop", ...
	kind    string // "ratio", "diff" or "abs"
	limit   float64
	strict  bool // under the limit, not at most
	target  string
}

var checks = []check{
	{"#2", "StartEnd/operation", "StartEnd/context", "ns/op", "ratio", 2, false, "at most 2x"},
	{"#2", "StartEnd/operation", "StartEnd/context", "allocs/op", "diff", 2, false, "at most 2 more allocs"},
	{"#2", "Timeout/operation", "Timeout/context", "ns/op", "ratio", 2, false, "at most 2x"},
	{"#2", "Check/operation", "Check/context", "ns/op", "ratio", 1.2, false, "at most 1.2x"},
	{"#2", "Progress/noobserver", "", "ns/op", "abs", 50, true, "under 50 ns"},
	{"#2", "Progress/noobserver", "", "allocs/op", "abs", 0, false, "0 allocs"},
	{"#2", "Registry/register", "", "ns/op", "abs", 1000, true, "under 1 us"},
	{"#2", "Registry/liveops", "", "B/liveop", "abs", 1024, true, "under 1 KiB per live op"},
	{"#2", "Seq/cancel", "Seq/range", "ns/op", "diff", 30, true, "under 30 ns added per item"},
	{"#3", "OTel/operation", "OTel/bare", "ns/op", "ratio", 1.5, false, "at most 1.5x"},
	{"#3", "OTel/operation", "OTel/bare", "cpu-ns/op", "ratio", 1.5, false, "at most 1.5x"},
	{"#3", "OTel/unsampled", "OTel/core", "ns/op", "ratio", 0, false, "close to the core (reported)"},
	{"#3", "OTel/progress", "", "allocs/op", "abs", 0, false, "reported"},
	{"#4", "Middleware/otelhttp+httpcancel", "Middleware/otelhttp", "ns/op", "ratio", 1.15, false, "at most 1.15x"},
	{"#4", "Middleware/otelhttp+httpcancel", "Middleware/otelhttp", "cpu-ns/op", "ratio", 1.15, false, "at most 1.15x"},
	{"#4", "Middleware/httpcancel", "Middleware/bare", "ns/op", "diff", 2000, false, "at most 2 us over bare"},
	{"#4", "Middleware/httpcancel", "Middleware/bare", "cpu-ns/op", "diff", 2000, false, "at most 2 us over bare"},
	{"#4", "Middleware/httpcancel", "Middleware/bare", "allocs/op", "diff", 10, false, "at most 10 allocs over bare"},
	{"#4", "Middleware/timeouthandler", "Middleware/bare", "ns/op", "diff", 0, false, "reported (http.TimeoutHandler)"},
	{"#4", "MiddlewareHandler/otelhttp+httpcancel", "MiddlewareHandler/otelhttp", "ns/op", "ratio", 1.15, false, "at most 1.15x (in-process)"},
	{"#4", "MiddlewareHandler/httpcancel", "MiddlewareHandler/bare", "ns/op", "diff", 2000, false, "at most 2 us over bare (in-process)"},
	{"#4", "MiddlewareHandler/httpcancel", "MiddlewareHandler/bare", "allocs/op", "diff", 10, false, "at most 10 allocs over bare (in-process)"},
	{"#5", "SSE/writer", "SSE/raw", "ns/op", "ratio", 1.3, false, "at most 1.3x per event"},
	{"#5", "SSEInProcess/writer", "SSEInProcess/raw", "ns/op", "ratio", 1.3, false, "at most 1.3x per event (in-process)"},
	{"#5", "WS/wscancel", "WS/raw", "ns/op", "ratio", 1.2, false, "at most 1.2x per message"},
	{"#5", "WS/interleaved", "", "median-ratio", "abs", 1.2, false, "at most 1.2x per message (batches alternated)"},
}

// results[name][unit] holds a benchmark's values, one per round.
type results map[string]map[string][]float64

var line = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?\s+\d+\s+(.*)$`)

func parse(r io.Reader, res results) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name := m[1]
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			if res[name] == nil {
				res[name] = map[string][]float64{}
			}
			res[name][f[i+1]] = append(res[name][f[i+1]], v)
		}
	}
	return sc.Err()
}

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: benchpairs [bench output files...] (default: stdin)")
		flag.PrintDefaults()
	}
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("benchpairs: ")
	res := results{}
	if flag.NArg() == 0 {
		if err := parse(os.Stdin, res); err != nil {
			log.Fatal(err)
		}
	}
	for _, name := range flag.Args() {
		f, err := os.Open(name)
		if err != nil {
			log.Fatal(err)
		}
		err = parse(f, res)
		f.Close()
		if err != nil {
			log.Fatal(err)
		}
	}

	fmt.Println("| issue | benchmark | baseline | unit | baseline (median) | benchmark (median) | figure (median of rounds) [range] | rounds | target | verdict |")
	fmt.Println("|---|---|---|---|---:|---:|---:|---:|---|---|")
	for _, c := range checks {
		s := res[c.subject][c.unit]
		if len(s) == 0 {
			continue // not run
		}
		var b []float64
		var xs []float64
		if c.base != "" {
			b = res[c.base][c.unit]
			for i := range min(len(s), len(b)) {
				switch c.kind {
				case "ratio":
					if b[i] != 0 {
						xs = append(xs, s[i]/b[i])
					}
				case "diff":
					xs = append(xs, s[i]-b[i])
				}
			}
		} else {
			xs = s
		}
		if len(xs) == 0 {
			continue
		}
		fig := median(xs)
		baseCol := "-"
		if len(b) > 0 {
			baseCol = num(median(b))
		}
		verdict := "-" // a figure the issues only ask to report
		if !strings.Contains(c.target, "reported") {
			ok := fig <= c.limit
			if c.strict {
				ok = fig < c.limit
			}
			verdict = map[bool]string{true: "met", false: "**missed**"}[ok]
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s [%s, %s] | %d | %s | %s |\n",
			c.issue, c.subject, or(c.base, "-"), c.unit, baseCol, num(median(s)),
			fmtFig(c.kind, fig), fmtFig(c.kind, slices.Min(xs)), fmtFig(c.kind, slices.Max(xs)),
			len(xs), c.target, verdict)
	}
}

func fmtFig(kind string, v float64) string {
	switch kind {
	case "ratio":
		return fmt.Sprintf("%.2fx", v)
	case "diff":
		return fmt.Sprintf("%+g", round3(v))
	}
	return num(v)
}

func num(v float64) string { return strconv.FormatFloat(round3(v), 'f', -1, 64) }

// round3 keeps three significant digits (at least the integer part).
func round3(v float64) float64 {
	a := v
	if a < 0 {
		a = -a
	}
	switch {
	case a >= 100:
		return float64(int64(v + 0.5*sign(v)))
	case a >= 10:
		return float64(int64(v*10+0.5*sign(v))) / 10
	case a >= 1:
		return float64(int64(v*100+0.5*sign(v))) / 100
	}
	return float64(int64(v*1000+0.5*sign(v))) / 1000
}

func sign(v float64) float64 {
	if v < 0 {
		return -1
	}
	return 1
}

func or(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
