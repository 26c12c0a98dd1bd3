package httpcancel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// budgetValid are budgets ParseBudget accepts, with their value.
var budgetValid = []struct {
	in   string
	want time.Duration
}{
	{"1.5s", 1500 * time.Millisecond},
	{"250ms", 250 * time.Millisecond},
	{"2", 2 * time.Second},
	{"0.25", 250 * time.Millisecond},
	{" 3 ", 3 * time.Second},
	{"\t4\r\n", 4 * time.Second},
	{"1.5", 1500 * time.Millisecond}, // seconds, like "0.25"
	{".5", 500 * time.Millisecond},
	{"3.", 3 * time.Second},
	{"0001", time.Second},
	{"1h2m", time.Hour + 2*time.Minute},
	{"1ns", time.Nanosecond},
	{"1µs", time.Microsecond},
	{"+5s", 5 * time.Second}, // time.ParseDuration's own syntax
	{"24h", 24 * time.Hour},  // the largest
	{"86400", 24 * time.Hour},
	{"1439m59.999999999s", 24*time.Hour - time.Nanosecond},
	{strings.Repeat("0", 61) + "1ms", time.Millisecond},          // 64 bytes: the longest
	{"  " + strings.Repeat("0", 61) + "1ms  ", time.Millisecond}, // spaces do not count
	{"0.0000000015", time.Nanosecond},                            // rounded down to nanoseconds
}

// budgetInvalid are budgets ParseBudget refuses.
var budgetInvalid = []string{
	"",
	"   ",
	"-1",
	"-1s",
	"-0s",
	"0",
	"0s",
	"0.0",
	"0.0000000001", // 0.1ns: zero once in nanoseconds
	"NaN",
	"nan",
	"Inf",
	"+Inf",
	"-Inf",
	"infinity",
	"1e309",
	"1e3", // no exponents
	"1E3",
	"99999999999",
	"86400.000001",
	"24h0m0.000000001s",
	"25h",
	"9223372036854775807ns", // fits a Duration, still over a day
	"9223372036854775808ns", // overflows it
	"99999999999999999999h",
	"abc",
	"1h2x",
	"1.5.5",
	".",
	"..",
	"+2", // a number of seconds has no sign
	"0x10",
	"0x1p4", // hexadecimal floats, which strconv.ParseFloat would take
	"1_000",
	"2 s",
	"1,5",
	"s",
	"ms",
	"1\n2",
	"\x00",
	"5s\x00",
	strings.Repeat("0", 62) + "1ms", // 65 bytes
	strings.Repeat("9", 1<<16),
	strings.Repeat(" ", 100),
}

// budgetErrors are all the errors ParseBudget returns: none quotes the
// client's value.
var budgetErrors = []error{errBudgetEmpty, errBudgetTooLong, errBudgetSyntax, errBudgetNotPositive, errBudgetTooLarge}

func TestParseBudgetValid(t *testing.T) {
	for _, c := range budgetValid {
		got, err := ParseBudget(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseBudget(%q) = %v, %v; want %v, nil", c.in, got, err, c.want)
		}
	}
}

func TestParseBudgetInvalid(t *testing.T) {
	for _, in := range budgetInvalid {
		got, err := ParseBudget(in)
		if err == nil || got != 0 {
			t.Errorf("ParseBudget(%.40q) = %v, %v; want 0 and an error", in, got, err)
			continue
		}
		if !knownBudgetError(err) {
			t.Errorf("ParseBudget(%.40q): unexpected error %v", in, err)
		}
	}
}

// TestParseBudgetErrors checks that each error says what is wrong.
func TestParseBudgetErrors(t *testing.T) {
	for _, c := range []struct {
		in   string
		want error
	}{
		{"", errBudgetEmpty},
		{" ", errBudgetEmpty},
		{strings.Repeat("1", 65), errBudgetTooLong},
		{"abc", errBudgetSyntax},
		{"1e309", errBudgetSyntax},
		{"-1", errBudgetSyntax},
		{"0", errBudgetNotPositive},
		{"-5s", errBudgetNotPositive},
		{"99999999999", errBudgetTooLarge},
		{"25h", errBudgetTooLarge},
	} {
		if _, err := ParseBudget(c.in); err != c.want {
			t.Errorf("ParseBudget(%q) error = %v, want %v", c.in, err, c.want)
		}
	}
}

func knownBudgetError(err error) bool {
	for _, e := range budgetErrors {
		if err == e {
			return true
		}
	}
	return false
}

func TestFormatBudget(t *testing.T) {
	for _, c := range []struct {
		in   time.Duration
		want string
	}{
		{time.Nanosecond, "1ms"},
		{time.Millisecond, "1ms"},
		{time.Millisecond + 1, "2ms"},
		{1500 * time.Millisecond, "1500ms"},
		{24 * time.Hour, "86400000ms"},
		{48 * time.Hour, "86400000ms"},         // capped: ParseBudget would refuse it
		{1<<63 - 1, "86400000ms"},              // no overflow while rounding up
		{24*time.Hour - 1, "86400000ms"},       // rounded up, still accepted
		{24*time.Hour + 1, "86400000ms"},       // capped before rounding
		{time.Duration(1 << 62), "86400000ms"}, // large
	} {
		got := formatBudget(c.in)
		if got != c.want {
			t.Errorf("formatBudget(%v) = %q, want %q", c.in, got, c.want)
		}
		if d, err := ParseBudget(got); err != nil || d < min(c.in, maxBudget) {
			t.Errorf("ParseBudget(formatBudget(%v)) = %v, %v; want at least %v", c.in, d, err, min(c.in, maxBudget))
		}
	}
}

// FuzzParseBudget checks that ParseBudget never panics, accepts only
// budgets in (0, 24h], returns zero with every error, never quotes the
// input in its errors, and that what formatBudget writes parses back.
func FuzzParseBudget(f *testing.F) {
	for _, c := range budgetValid {
		f.Add(c.in)
	}
	for _, in := range budgetInvalid {
		if len(in) <= 1024 { // the corpus is for mutating, not for size
			f.Add(in)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseBudget(s)
		if err != nil {
			if d != 0 {
				t.Fatalf("ParseBudget(%q) = %v with error %v; want 0", s, d, err)
			}
			if !knownBudgetError(err) {
				t.Fatalf("ParseBudget(%q): error %v is not one of the known ones", s, err)
			}
			return
		}
		if d <= 0 || d > maxBudget {
			t.Fatalf("ParseBudget(%q) = %v, outside (0, 24h]", s, d)
		}
		if len(strings.TrimSpace(s)) > maxBudgetLen {
			t.Fatalf("ParseBudget(%q) accepted %d bytes", s, len(strings.TrimSpace(s)))
		}
		// What a Transport would send on parses back, rounded up to the
		// millisecond.
		back, err := ParseBudget(formatBudget(d))
		if err != nil || back < d || back-d >= time.Millisecond {
			t.Fatalf("ParseBudget(formatBudget(%v)) = %v, %v", d, back, err)
		}
	})
}

// budgetRecorder collects what the request operations tell an observer.
type budgetRecorder struct {
	mu       sync.Mutex
	progress map[uint64][]cancel.Progress
	ended    chan *cancel.Operation
}

func newBudgetRecorder() *budgetRecorder {
	return &budgetRecorder{progress: make(map[uint64][]cancel.Progress), ended: make(chan *cancel.Operation, 16)}
}

func (b *budgetRecorder) hooks() cancel.Hooks {
	return cancel.Hooks{
		OnProgress: func(op *cancel.Operation, p cancel.Progress) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.progress[op.ID()] = append(b.progress[op.ID()], p)
		},
		OnEnd: func(op *cancel.Operation) { b.ended <- op },
	}
}

func (b *budgetRecorder) reports(id uint64) []cancel.Progress {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.progress[id]
}

// waitEnded returns the next operation to end.
func (b *budgetRecorder) waitEnded(t *testing.T) *cancel.Operation {
	t.Helper()
	select {
	case op := <-b.ended:
		return op
	case <-time.After(10 * time.Second):
		t.Fatal("no request operation ended within 10s")
		return nil
	}
}

// budgetTimeoutHandler answers with the timeout of its request operation,
// as its context's deadline tells it, or "none".
func budgetTimeoutHandler(w http.ResponseWriter, r *http.Request) {
	op := cancel.FromContext(r.Context())
	if op == nil {
		http.Error(w, "no operation", http.StatusInternalServerError)
		return
	}
	dl, ok := r.Context().Deadline()
	w.Header().Set("X-Op-ID", fmt.Sprint(op.ID()))
	if !ok {
		io.WriteString(w, "none")
		return
	}
	io.WriteString(w, dl.Sub(op.StartTime()).String())
}

func budgetGet(t *testing.T, ts *httptest.Server, path string, header http.Header) (status int, body string, h http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// TestClientBudget serves requests with budgets through a real server: a
// valid budget shortens the timeout, never lengthens it, is capped at the
// server's maximum, and a malformed one is ignored and reported on the
// request's operation.
func TestClientBudget(t *testing.T) {
	const ignored = "request budget ignored"
	for _, c := range []struct {
		name    string
		opts    []Option
		route   time.Duration // per-route Timeout, if not zero
		header  string
		value   string
		want    string // the operation's timeout, or "none"
		problem error  // the progress report's problem; nil if none
	}{
		{name: "no budget", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			want: "10s"},
		{name: "go duration", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: "250ms", want: "250ms"},
		{name: "seconds", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: "2", want: "2s"},
		{name: "fraction with spaces", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: " 0.25 ", want: "250ms"},
		{name: "over max", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: "30s", want: "5s"},
		{name: "over max without timeout", opts: []Option{WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: "3600", want: "5s"},
		{name: "under max, under timeout", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 20*time.Second)},
			header: DefaultBudgetHeader, value: "8s", want: "8s"},
		{name: "never lengthens", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 20*time.Second)},
			header: DefaultBudgetHeader, value: "15s", want: "10s"},
		{name: "shortens a route timeout", opts: []Option{WithClientBudget("", 20*time.Second)}, route: 3 * time.Second,
			header: DefaultBudgetHeader, value: "1s", want: "1s"},
		{name: "never lengthens a route timeout", opts: []Option{WithClientBudget("", 20*time.Second)}, route: 3 * time.Second,
			header: DefaultBudgetHeader, value: "5s", want: "3s"},
		{name: "custom header", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("x-budget", 5*time.Second)},
			header: "X-Budget", value: "100ms", want: "100ms"},
		{name: "custom header, default one not read", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("X-Budget", 5*time.Second)},
			header: DefaultBudgetHeader, value: "100ms", want: "10s"},
		{name: "not enabled", opts: []Option{WithTimeout(10 * time.Second)},
			header: DefaultBudgetHeader, value: "100ms", want: "10s"},
		{name: "not enabled, malformed", opts: []Option{WithTimeout(10 * time.Second)},
			header: DefaultBudgetHeader, value: "garbage", want: "10s"},
		{name: "malformed", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: "abc", want: "10s", problem: errBudgetSyntax},
		{name: "malformed without timeout", opts: []Option{WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: "1h2x", want: "none", problem: errBudgetSyntax},
		{name: "negative", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: "-1s", want: "10s", problem: errBudgetNotPositive},
		{name: "zero", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: "0", want: "10s", problem: errBudgetNotPositive},
		{name: "huge", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: "99999999999", want: "10s", problem: errBudgetTooLarge},
		{name: "not a number", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: "NaN", want: "10s", problem: errBudgetSyntax},
		{name: "overlong", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: strings.Repeat("1", 200) + "ms", want: "10s", problem: errBudgetTooLong},
		{name: "markup", opts: []Option{WithTimeout(10 * time.Second), WithClientBudget("", 5*time.Second)},
			header: DefaultBudgetHeader, value: "<script>alert(1)</script>", want: "10s", problem: errBudgetSyntax},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := newBudgetRecorder()
			mux := http.NewServeMux()
			var h http.Handler = http.HandlerFunc(budgetTimeoutHandler)
			if c.route > 0 {
				h = Timeout(c.route, h)
			}
			mux.Handle("GET /t", h)
			opts := append(c.opts[:len(c.opts):len(c.opts)], WithOperationOptions(cancel.WithObserver(rec.hooks())))
			ts := httptest.NewServer(Middleware(opts...)(mux))
			defer ts.Close()

			var header http.Header
			if c.header != "" {
				header = http.Header{http.CanonicalHeaderKey(c.header): {c.value}}
			}
			status, body, rh := budgetGet(t, ts, "/t", header)
			op := rec.waitEnded(t)
			if status != http.StatusOK || body != c.want {
				t.Fatalf("got %d %q, want 200 %q", status, body, c.want)
			}
			if id := rh.Get("X-Op-ID"); id != fmt.Sprint(op.ID()) {
				t.Fatalf("the handler ran in operation %s, operation %d ended", id, op.ID())
			}
			if op.Status() != cancel.StatusCompleted {
				t.Errorf("operation %s: status %v, want completed", op.Name(), op.Status())
			}
			reports := rec.reports(op.ID())
			if c.problem == nil {
				if len(reports) != 0 {
					t.Errorf("progress reports %v, want none", reports)
				}
				return
			}
			if len(reports) != 1 || reports[0].Message != ignored {
				t.Fatalf("progress reports %v, want one %q", reports, ignored)
			}
			attrs := map[string]string{}
			for _, a := range reports[0].Attrs {
				attrs[a.Key] = a.Value.String()
			}
			want := map[string]string{"header": http.CanonicalHeaderKey(c.header), "problem": c.problem.Error()}
			if fmt.Sprint(attrs) != fmt.Sprint(want) {
				t.Errorf("report attributes %v, want %v", attrs, want)
			}
			if last, ok := op.LastProgress(); !ok || last.Message != ignored {
				t.Errorf("LastProgress = %v, %v; want %q", last, ok, ignored)
			}
		})
	}
}

// TestClientBudgetTimesOut checks that a budget is really the timeout: the
// request is cancelled with ReasonTimeout at the budget and the client gets
// 504, while the server's own timeout is far away.
func TestClientBudgetTimesOut(t *testing.T) {
	rec := newBudgetRecorder()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	ts := httptest.NewServer(Middleware(WithTimeout(time.Minute), WithClientBudget("", time.Minute),
		WithOperationOptions(cancel.WithObserver(rec.hooks())))(mux))
	defer ts.Close()

	start := time.Now()
	status, body, h := budgetGet(t, ts, "/wait", http.Header{DefaultBudgetHeader: {"50ms"}})
	elapsed := time.Since(start)
	op := rec.waitEnded(t)
	if status != http.StatusGatewayTimeout {
		t.Fatalf("status %d (%s), want 504", status, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	if elapsed < 50*time.Millisecond || elapsed > 30*time.Second {
		t.Errorf("504 after %v, want it at the 50ms budget", elapsed)
	}
	if op.Status() != cancel.StatusCancelled || op.Reason() != cancel.ReasonTimeout {
		t.Errorf("operation %v/%v, want cancelled/timeout", op.Status(), op.Reason())
	}
	if !errors.Is(op.Cause(), context.DeadlineExceeded) {
		t.Errorf("cause %v is not DeadlineExceeded", op.Cause())
	}
}

// TestClientBudgetOption checks the option's own validation.
func TestClientBudgetOption(t *testing.T) {
	for _, max := range []time.Duration{0, -time.Second} {
		if _, err := New(WithClientBudget("", max)); err == nil {
			t.Errorf("WithClientBudget(%v) accepted", max)
		}
	}
	if _, err := New(WithClientBudget("", time.Second)); err != nil {
		t.Errorf("WithClientBudget(1s): %v", err)
	}
}
