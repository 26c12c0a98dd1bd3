package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// opKey is a series of cancel_operations_total: an operation name, an
// outcome and a reason ("" unless cancelled).
type opKey struct{ Name, Outcome, Reason string }

func (k opKey) String() string {
	if k.Reason == "" {
		return k.Name + " " + k.Outcome
	}
	return k.Name + " " + k.Outcome + "/" + k.Reason
}

const (
	completed = "completed"
	cancelled = "cancelled"
	failed    = "failed"
)

// truth is what the clients know: from what each did and saw, the
// operations the service must have recorded, and a few other counts.
type truth struct {
	mu          sync.Mutex
	ops         map[opKey]int
	progress    map[string]int    // progress reports, by operation name
	stopLatency map[[2]string]int // stop latency observations, by name and reason (on top of the cancelled operations)
	wsCloses    map[string]int    // "code reason" of cancel_ws_closes_total
	statuses    map[string]int    // "status error.type" of otelhttp's http_server_request_duration_seconds_count
	saw         map[string]map[string]int
	unexpected  []string
	cancelsOK   int // admin cancel requests answered {"cancelled":true}
	cut         int // responses httpcancel cut, which otelhttp does not record
	endCuts     int // SSE streams cut after their End (sse's write deadline left on the connection)
	requests    int // HTTP requests (and websocket handshakes) sent
	noOp        int // requests that the clients know never became an operation
}

func newTruth() *truth {
	return &truth{
		ops:         map[opKey]int{},
		progress:    map[string]int{},
		stopLatency: map[[2]string]int{},
		wsCloses:    map[string]int{},
		statuses:    map[string]int{},
		saw:         map[string]map[string]int{},
	}
}

// stop expects a stop latency observation of an operation that was asked
// to stop with reason but did not end cancelled (a websocket session whose
// peer said goodbye completes).
func (t *truth) stop(name, reason string) {
	t.mu.Lock()
	t.stopLatency[[2]string{name, reason}]++
	t.mu.Unlock()
}

// op expects one operation.
func (t *truth) op(name, outcome, reason string) {
	t.mu.Lock()
	t.ops[opKey{name, outcome, reason}]++
	t.mu.Unlock()
}

// req expects the operation of an HTTP request, which otelhttp records
// with status (499 for a client that went away) and, if cancelled, with
// error.type = the reason.
func (t *truth) req(name, outcome, reason string, status int) {
	t.mu.Lock()
	t.ops[opKey{name, outcome, reason}]++
	t.statuses[statusKey(status, reason)]++
	t.mu.Unlock()
}

// reqCut expects the operation of an HTTP request whose response
// httpcancel cut (a stream cancelled by a timeout, the shutdown or an
// operator after its 200 went out): over HTTP/1 the middleware closes the
// hijacked connection, so otelhttp still records the request, with its 200
// and error.type the reason.
func (t *truth) reqCut(name, outcome, reason string) {
	t.mu.Lock()
	t.ops[opKey{name, outcome, reason}]++
	t.statuses[statusKey(200, reason)]++
	t.cut++
	t.mu.Unlock()
}

func (t *truth) endCut() {
	t.mu.Lock()
	t.endCuts++
	t.mu.Unlock()
}

func statusKey(status int, errorType string) string {
	if errorType == "" {
		return strconv.Itoa(status)
	}
	return strconv.Itoa(status) + " " + errorType
}

func (t *truth) addProgress(name string, n int) {
	t.mu.Lock()
	t.progress[name] += n
	t.mu.Unlock()
}

func (t *truth) wsClose(code int, reason string) {
	t.mu.Lock()
	t.wsCloses[strconv.Itoa(code)+" "+reason]++
	t.mu.Unlock()
}

func (t *truth) sent(n int) {
	t.mu.Lock()
	t.requests += n
	t.mu.Unlock()
}

func (t *truth) lostRequest() {
	t.mu.Lock()
	t.noOp++
	t.mu.Unlock()
}

func (t *truth) cancelOK() {
	t.mu.Lock()
	t.cancelsOK++
	t.mu.Unlock()
}

// see records what a client of a scenario saw.
func (t *truth) see(scenario, observation string) {
	t.mu.Lock()
	if t.saw[scenario] == nil {
		t.saw[scenario] = map[string]int{}
	}
	t.saw[scenario][observation]++
	t.mu.Unlock()
}

// wrong records an observation the design rules out; the run fails.
func (t *truth) wrong(scenario, format string, args ...any) {
	msg := scenario + ": " + fmt.Sprintf(format, args...)
	t.mu.Lock()
	if len(t.unexpected) < 100 {
		t.unexpected = append(t.unexpected, msg)
	}
	t.mu.Unlock()
	t.see(scenario, "UNEXPECTED")
}

// spanTally counts ended spans by the operation they record (attributes
// cancel.operation.name, cancel.outcome, cancel.reason), keeping nothing
// else: tracetest's InMemoryExporter keeps every span, hundreds of
// megabytes for a long run. With keep, it also hands every span to a
// tracetest.InMemoryExporter, which the test tallies again.
type spanTally struct {
	mu     sync.Mutex
	ops    map[opKey]int
	others map[string]int // spans without cancel.operation.name, by span name
	names  map[string]int // spans by name: their number must stay bounded too
	total  int
	mem    *tracetest.InMemoryExporter
}

func newSpanTally(keep bool) *spanTally {
	t := &spanTally{ops: map[opKey]int{}, others: map[string]int{}, names: map[string]int{}}
	if keep {
		t.mem = tracetest.NewInMemoryExporter()
	}
	return t
}

// processors returns the span processors for serverConfig.spanProcessors:
// synchronous, so that a span is counted when it ends.
func (t *spanTally) processors() []sdktrace.SpanProcessor {
	ps := []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(t)}
	if t.mem != nil {
		ps = append(ps, sdktrace.NewSimpleSpanProcessor(t.mem))
	}
	return ps
}

// ExportSpans implements sdktrace.SpanExporter.
func (t *spanTally) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range spans {
		t.total++
		t.names[s.Name()]++
		k, ok := spanKey(s.Name(), s.Attributes())
		if !ok {
			t.others[k.Name]++
			continue
		}
		t.ops[k]++
	}
	return nil
}

// Shutdown implements sdktrace.SpanExporter.
func (t *spanTally) Shutdown(context.Context) error { return nil }

func spanKey(spanName string, attrs []attribute.KeyValue) (opKey, bool) {
	var k opKey
	named := false
	for _, a := range attrs {
		switch a.Key {
		case "cancel.operation.name":
			k.Name, named = a.Value.AsString(), true
		case "cancel.outcome":
			k.Outcome = a.Value.AsString()
		case "cancel.reason":
			k.Reason = a.Value.AsString()
		}
	}
	if !named {
		return opKey{Name: spanName}, false
	}
	return k, true
}

func (t *spanTally) snapshot() (ops map[opKey]int, others map[string]int, names int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.ops), maps.Clone(t.others), len(t.names)
}

// memTally tallies the spans the InMemoryExporter kept, and drops them.
func (t *spanTally) memTally() map[opKey]int {
	if t.mem == nil {
		return nil
	}
	out := map[opKey]int{}
	for _, s := range t.mem.GetSpans() {
		if k, ok := spanKey(s.Name, s.Attributes); ok {
			out[k]++
		}
	}
	t.mem.Reset()
	return out
}

// expoSample is one line of the Prometheus text exposition.
type expoSample struct {
	name   string
	labels map[string]string
	value  float64
}

func (m expoSample) String() string { return fmt.Sprintf("%s%v", m.name, m.labels) }

// parseExposition reads the Prometheus text format (no exemplars).
func parseExposition(text string) ([]expoSample, error) {
	var out []expoSample
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		m := expoSample{labels: map[string]string{}}
		i := strings.IndexAny(line, "{ ")
		if i < 0 {
			return nil, fmt.Errorf("no value: %q", line)
		}
		m.name, line = line[:i], line[i:]
		if line[0] == '{' {
			line = line[1:]
			for {
				line = strings.TrimLeft(line, ", ")
				if strings.HasPrefix(line, "}") {
					line = line[1:]
					break
				}
				k, rest, ok := strings.Cut(line, `="`)
				if !ok {
					return nil, fmt.Errorf("bad labels in %q", line)
				}
				var v strings.Builder
				j := 0
				for ; j < len(rest) && rest[j] != '"'; j++ {
					if rest[j] == '\\' && j+1 < len(rest) {
						j++
						if rest[j] == 'n' {
							v.WriteByte('\n')
							continue
						}
					}
					v.WriteByte(rest[j])
				}
				if j == len(rest) {
					return nil, fmt.Errorf("unterminated label value in %q", line)
				}
				m.labels[k] = v.String()
				line = rest[j+1:]
			}
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return nil, fmt.Errorf("no value for %s", m.name)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("value of %s: %v", m.name, err)
		}
		m.value = v
		out = append(out, m)
	}
	return out, nil
}

// opsFromMetrics reads cancel_operations_total, leaving out zero series
// (known label sets are initialised to 0).
func opsFromMetrics(ms []expoSample) map[opKey]int {
	out := map[opKey]int{}
	for _, m := range ms {
		if m.name == "cancel_operations_total" && m.value != 0 {
			out[opKey{m.labels["cancel_operation_name"], m.labels["cancel_outcome"], m.labels["cancel_reason"]}] += int(m.value)
		}
	}
	return out
}

// sumSamples sums the samples named name whose labels match the pairs.
func sumSamples(ms []expoSample, name string, pairs ...string) float64 {
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

// diffCounts compares two tallies and describes every difference.
func diffCounts[K comparable](what string, want, got map[K]int, name func(K) string) []string {
	keys := map[K]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		if want[k] != got[k] {
			out = append(out, fmt.Sprintf("%s %s: expected %d, got %d", what, name(k), want[k], got[k]))
		}
	}
	slices.Sort(out)
	return out
}

func sumValues[K comparable](m map[K]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
