package otelcancel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cancelable-go/cancelable/cancel"
)

// zeroSeries returns the cancel.operations series a name starts with.
func zeroSeries(name string) map[string]int64 {
	m := map[string]int64{
		ended3(name, "completed", ""): 0,
		ended3(name, "failed", ""):    0,
	}
	for _, r := range cancel.Reasons() {
		m[ended3(name, "cancelled", r.String())] = 0
	}
	return m
}

func TestInstruments(t *testing.T) {
	h := newHarness(t, nil)
	_, op := h.start(context.Background(), "x")
	op.Progress("p")
	op.Cancel(cancel.ReasonManual, "")
	op.End(context.Canceled)
	rm := h.collect(t)

	for _, tc := range []struct {
		name, unit string
		kind       string // counter, updown, histogram
	}{
		{"cancel.operations", "{operation}", "counter"},
		{"cancel.operation.duration", "s", "histogram"},
		{"cancel.operation.active", "{operation}", "updown"},
		{"cancel.stop.latency", "s", "histogram"},
		{"cancel.progress.reports", "{report}", "counter"},
	} {
		checkInstrument(t, rm, tc.name, tc.unit, tc.kind)
	}
	var names []string
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, ScopeName)
		}
		for _, m := range sm.Metrics {
			names = append(names, m.Name)
		}
	}
	if len(names) != 5 {
		t.Errorf("metrics %v, want the 5 of the contract", names)
	}
}

func TestKnownSeriesStartAtZero(t *testing.T) {
	h := newHarness(t, nil)
	_, op := h.start(context.Background(), "first")
	op.End(nil)
	rm := h.collect(t)

	want := zeroSeries("first")
	want[ended3("first", "completed", "")] = 1
	if got := sums(t, mustMetric(t, rm, "cancel.operations")); !maps.Equal(got, want) {
		t.Errorf("cancel.operations = %v\nwant %v", got, want)
	}
	if got := sums(t, mustMetric(t, rm, "cancel.progress.reports")); !maps.Equal(got, map[string]int64{nameKey("first"): 0}) {
		t.Errorf("cancel.progress.reports = %v, want first at 0", got)
	}
	if got := sums(t, mustMetric(t, rm, "cancel.operation.active")); !maps.Equal(got, map[string]int64{nameKey("first"): 0}) {
		t.Errorf("cancel.operation.active = %v, want first at 0", got)
	}
	if got := slices.Collect(maps.Keys(histograms(t, mustMetric(t, rm, "cancel.operation.duration")))); !slices.Equal(got, []string{ended3("first", "completed", "")}) {
		t.Errorf("duration series %v, want the completed one", got)
	}
	if m, ok := findMetric(rm, "cancel.stop.latency"); ok {
		if got := histograms(t, m); len(got) != 0 {
			t.Errorf("stop latency recorded without a cancellation: %v", got)
		}
	}

	// A second name gets its own zero series; the first keeps its counts.
	_, op = h.start(context.Background(), "second")
	op.End(errors.New("boom"))
	rm = h.collect(t)
	maps.Copy(want, zeroSeries("second"))
	want[ended3("second", "failed", "")] = 1
	if got := sums(t, mustMetric(t, rm, "cancel.operations")); !maps.Equal(got, want) {
		t.Errorf("cancel.operations = %v\nwant %v", got, want)
	}
}

// Every outcome and reason is counted under its own series, with its
// duration and, whenever a cancellation was requested, its stop latency.
func TestMetricsPerOutcomeAndReason(t *testing.T) {
	h := newHarness(t, nil)
	want := zeroSeries("op")
	wantDur := map[string]float64{}
	wantStop := map[string]float64{}
	wantStopCount := map[string]uint64{}
	record := func(op *cancel.Operation, outcome, reason string) {
		want[ended3("op", outcome, reason)]++
		wantDur[ended3("op", outcome, reason)] += op.Duration().Seconds()
		var e *cancel.Error
		if errors.As(op.Err(), &e) {
			k := stopKey("op", e.Reason.String())
			wantStop[k] += op.EndTime().Sub(e.Time).Seconds()
			wantStopCount[k]++
		}
	}

	_, op := h.start(context.Background(), "op")
	op.End(nil)
	record(op, "completed", "")
	_, op = h.start(context.Background(), "op")
	op.End(errors.New("boom"))
	record(op, "failed", "")
	for _, r := range cancel.Reasons() {
		ctx, op := h.start(context.Background(), "op")
		cancelFromOtherGoroutine(t, op, r, "")
		op.End(ctx.Err())
		record(op, "cancelled", r.String())

		_, op = h.start(context.Background(), "op")
		cancelFromOtherGoroutine(t, op, r, "")
		op.End(nil) // finished anyway: completed, but the stop latency counts
		record(op, "completed", "")
	}

	rm := h.collect(t)
	if got := sums(t, mustMetric(t, rm, "cancel.operations")); !maps.Equal(got, want) {
		t.Errorf("cancel.operations = %v\nwant %v", got, want)
	}
	durs := histograms(t, mustMetric(t, rm, "cancel.operation.duration"))
	if len(durs) != len(wantDur) {
		t.Errorf("%d duration series, want %d", len(durs), len(wantDur))
	}
	for k, sum := range wantDur {
		dp, ok := durs[k]
		if !ok {
			t.Errorf("no duration series %s", k)
			continue
		}
		if dp.Count != uint64(want[k]) || dp.Sum != sum {
			t.Errorf("duration %s: count %d sum %v, want %d and %v", k, dp.Count, dp.Sum, want[k], sum)
		}
		if !slices.Equal(dp.Bounds, DefaultDurationBuckets) {
			t.Errorf("duration bounds %v, want DefaultDurationBuckets", dp.Bounds)
		}
	}
	stops := histograms(t, mustMetric(t, rm, "cancel.stop.latency"))
	if len(stops) != len(cancel.Reasons()) {
		t.Errorf("%d stop latency series, want one per reason", len(stops))
	}
	for k, sum := range wantStop {
		dp := stops[k]
		if dp.Count != wantStopCount[k] || dp.Sum != sum {
			t.Errorf("stop latency %s: count %d sum %v, want %d and %v", k, dp.Count, dp.Sum, wantStopCount[k], sum)
		}
		if dp.Sum <= 0 {
			t.Errorf("stop latency %s: sum %v, want > 0", k, dp.Sum)
		}
		if !slices.Equal(dp.Bounds, DefaultStopLatencyBuckets) {
			t.Errorf("stop latency bounds %v, want DefaultStopLatencyBuckets", dp.Bounds)
		}
	}
}

func TestActiveAndProgressCounts(t *testing.T) {
	h := newHarness(t, nil)
	active := func() map[string]int64 {
		t.Helper()
		return sums(t, mustMetric(t, h.collect(t), "cancel.operation.active"))
	}
	_, a := h.start(context.Background(), "a")
	_, b := h.start(context.Background(), "a")
	_, c := h.start(context.Background(), "c")
	if got, want := active(), map[string]int64{nameKey("a"): 2, nameKey("c"): 1}; !maps.Equal(got, want) {
		t.Errorf("active = %v, want %v", got, want)
	}
	for range 3 {
		a.Progress("p")
	}
	b.Progress("p")
	a.End(nil)
	b.Cancel(cancel.ReasonTimeout, "")
	b.End(context.Canceled)
	if got, want := active(), map[string]int64{nameKey("a"): 0, nameKey("c"): 1}; !maps.Equal(got, want) {
		t.Errorf("active = %v, want %v", got, want)
	}
	c.End(errors.New("x"))
	if got, want := active(), map[string]int64{nameKey("a"): 0, nameKey("c"): 0}; !maps.Equal(got, want) {
		t.Errorf("active = %v, want %v", got, want)
	}
	got := sums(t, mustMetric(t, h.collect(t), "cancel.progress.reports"))
	if want := map[string]int64{nameKey("a"): 4, nameKey("c"): 0}; !maps.Equal(got, want) {
		t.Errorf("progress reports = %v, want %v", got, want)
	}
}

func exemplarsOf(t *testing.T, h *harness, key string) []metricdata.Exemplar[float64] {
	t.Helper()
	dp, ok := histograms(t, mustMetric(t, h.collect(t), "cancel.operation.duration"))[key]
	if !ok {
		t.Fatalf("no duration series %s", key)
	}
	return dp.Exemplars
}

func TestDurationExemplar(t *testing.T) {
	t.Run("sampled", func(t *testing.T) {
		h := newHarness(t, nil)
		_, op := h.start(context.Background(), "op")
		op.End(nil)
		sc := h.span(t, "op").SpanContext()
		ex := exemplarsOf(t, h, ended3("op", "completed", ""))
		if len(ex) != 1 {
			t.Fatalf("exemplars %v, want 1", ex)
		}
		if trace.TraceID(ex[0].TraceID) != sc.TraceID() || trace.SpanID(ex[0].SpanID) != sc.SpanID() {
			t.Errorf("exemplar of trace %x span %x, want %v %v", ex[0].TraceID, ex[0].SpanID, sc.TraceID(), sc.SpanID())
		}
		if ex[0].Value != op.Duration().Seconds() {
			t.Errorf("exemplar value %v, want %v", ex[0].Value, op.Duration().Seconds())
		}
	})
	t.Run("adopted", func(t *testing.T) {
		h := newHarness(t, nil)
		ctx, server := h.tp.Tracer("http").Start(context.Background(), "GET /")
		_, op := h.start(ctx, "GET /", cancel.AdoptSpan())
		op.End(nil)
		server.End()
		ex := exemplarsOf(t, h, ended3("GET /", "completed", ""))
		if len(ex) != 1 || trace.SpanID(ex[0].SpanID) != server.SpanContext().SpanID() {
			t.Errorf("exemplars %v, want one of the adopted span %v", ex, server.SpanContext().SpanID())
		}
	})
	t.Run("never sampled", func(t *testing.T) {
		h := newHarness(t, []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.NeverSample())})
		_, op := h.start(context.Background(), "op")
		op.End(nil)
		if ex := exemplarsOf(t, h, ended3("op", "completed", "")); len(ex) != 0 {
			t.Errorf("exemplars %v of an unsampled operation", ex)
		}
	})
	t.Run("parent not sampled", func(t *testing.T) {
		h := newHarness(t, []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))})
		remote := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}, Remote: true, // not sampled
		})
		_, op := h.start(trace.ContextWithRemoteSpanContext(context.Background(), remote), "op")
		op.End(nil)
		if ex := exemplarsOf(t, h, ended3("op", "completed", "")); len(ex) != 0 {
			t.Errorf("exemplars %v of an unsampled operation", ex)
		}
	})
}

func TestMaxNames(t *testing.T) {
	h := newHarness(t, nil, WithMaxNames(2))
	for _, n := range []string{"a", "b", "c", "d", "c", "a"} {
		_, op := h.start(context.Background(), n)
		op.Progress("p")
		op.End(nil)
	}
	rm := h.collect(t)
	want := zeroSeries("a")
	maps.Copy(want, zeroSeries("b"))
	maps.Copy(want, zeroSeries(OtherName))
	want[ended3("a", "completed", "")] = 2
	want[ended3("b", "completed", "")] = 1
	want[ended3(OtherName, "completed", "")] = 3
	if got := sums(t, mustMetric(t, rm, "cancel.operations")); !maps.Equal(got, want) {
		t.Errorf("cancel.operations = %v\nwant %v", got, want)
	}
	wantProgress := map[string]int64{nameKey("a"): 2, nameKey("b"): 1, nameKey(OtherName): 3}
	if got := sums(t, mustMetric(t, rm, "cancel.progress.reports")); !maps.Equal(got, wantProgress) {
		t.Errorf("cancel.progress.reports = %v, want %v", got, wantProgress)
	}
	// Spans keep the real names.
	if n := len(h.ended("c")); n != 2 {
		t.Errorf("%d spans named c, want 2", n)
	}
	if n := len(h.ended(OtherName)); n != 0 {
		t.Errorf("%d spans named %s", n, OtherName)
	}
}

// Names beyond the cap, from many goroutines at once: the cap holds.
func TestMaxNamesConcurrent(t *testing.T) {
	h := newHarness(t, nil, WithMaxNames(10))
	const goroutines, each = 8, 50
	done := make(chan struct{})
	for g := range goroutines {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				_, op := h.start(context.Background(), fmt.Sprint("n", g, "-", i))
				op.End(nil)
			}
		}()
	}
	for range goroutines {
		<-done
	}
	got := sums(t, mustMetric(t, h.collect(t), "cancel.operations"))
	var total int64
	for _, v := range got {
		total += v
	}
	perName := len(zeroSeries("x"))
	if len(got) != 11*perName {
		t.Errorf("%d series, want %d: 10 names and %s", len(got), 11*perName, OtherName)
	}
	if total != goroutines*each {
		t.Errorf("%d operations counted, want %d", total, goroutines*each)
	}
}

func TestCustomBuckets(t *testing.T) {
	h := newHarness(t, nil, WithDurationBuckets(0.5, 1, 2), WithStopLatencyBuckets(0.001))
	_, op := h.start(context.Background(), "op")
	op.Cancel(cancel.ReasonManual, "")
	op.End(context.Canceled)
	rm := h.collect(t)
	dp := histograms(t, mustMetric(t, rm, "cancel.operation.duration"))[ended3("op", "cancelled", "manual")]
	if !slices.Equal(dp.Bounds, []float64{0.5, 1, 2}) || len(dp.BucketCounts) != 4 {
		t.Errorf("duration bounds %v counts %v", dp.Bounds, dp.BucketCounts)
	}
	dp = histograms(t, mustMetric(t, rm, "cancel.stop.latency"))[stopKey("op", "manual")]
	if !slices.Equal(dp.Bounds, []float64{0.001}) {
		t.Errorf("stop latency bounds %v", dp.Bounds)
	}
}

func TestDefaultBuckets(t *testing.T) {
	for name, b := range map[string][]float64{"duration": DefaultDurationBuckets, "stop": DefaultStopLatencyBuckets} {
		if err := checkBuckets(name, b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Request latencies and long streams both land in a bucket of their
	// own, not in +Inf.
	if DefaultDurationBuckets[0] > 0.001 || DefaultDurationBuckets[len(DefaultDurationBuckets)-1] < 3600 {
		t.Errorf("duration buckets %v do not span 1ms to an hour", DefaultDurationBuckets)
	}
}

// With the default cap on names and the SDK's default cardinality limit
// (2000 series per instrument), no series collapses into the SDK's overflow
// series, which would lose the operation name: names beyond the cap are
// counted under OtherName instead.
func TestDefaultMaxNamesFitsCardinalityLimit(t *testing.T) {
	h := newHarness(t, nil)
	const names = 300
	for i := range names {
		_, op := h.start(context.Background(), fmt.Sprint("route-", i))
		op.Cancel(cancel.Reasons()[i%len(cancel.Reasons())], "")
		op.End(context.Canceled)
	}
	rm := h.collect(t)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var sets []attribute.Set
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					sets = append(sets, dp.Attributes)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					sets = append(sets, dp.Attributes)
				}
			}
			other := false
			for _, set := range sets {
				if set.HasValue("otel.metric.overflow") {
					t.Errorf("%s: overflow series %s: the SDK's cardinality limit was hit", m.Name, key(set))
					break
				}
				if v, _ := set.Value(KeyOperationName); v.AsString() == OtherName {
					other = true
				}
			}
			if !other {
				t.Errorf("%s: no %s series", m.Name, OtherName)
			}
		}
	}
	if got := sums(t, mustMetric(t, rm, "cancel.operations")); len(got) != (DefaultMaxNames+1)*len(zeroSeries("x")) {
		t.Errorf("%d series, want %d names and %s", len(got)/len(zeroSeries("x")), DefaultMaxNames, OtherName)
	}
}

// An observer set as the default and also given with WithObserver (as
// README's SetDefaultObserver plus httpcancel.WithOperationOptions would)
// must count each operation once, end every span it starts, and never
// report a negative number of open connections.
func TestDefaultAndOwnObserverCountOnce(t *testing.T) {
	h := newHarness(t, nil)
	prev := cancel.DefaultObserver()
	cancel.SetDefaultObserver(h.obs)
	t.Cleanup(func() { cancel.SetDefaultObserver(prev) })

	c := h.wsOpen(context.Background(), "ws /x", "") // h.start adds WithObserver(h.obs)
	c.read(2)
	c.close(1000, "peer", nil)

	rm := h.collect(t)
	if got := sums(t, mustMetric(t, rm, "cancel.operations"))[ended3("ws /x", "completed", "")]; got != 1 {
		t.Errorf("cancel.operations completed = %d, want 1", got)
	}
	if got := sums(t, mustMetric(t, rm, "cancel.ws.messages"))[dirKey("ws /x", "in")]; got != 2 {
		t.Errorf("cancel.ws.messages in = %d, want 2", got)
	}
	if got := sums(t, mustMetric(t, rm, "cancel.ws.connections.active"))[nameKey("ws /x")]; got != 0 {
		t.Errorf("cancel.ws.connections.active = %d, want 0", got)
	}
	if s, e := len(h.spans.Started()), len(h.spans.Ended()); s != 1 || e != 1 {
		t.Errorf("spans started %d, ended %d; want 1 and 1", s, e)
	}
}

// checkInstrument checks an instrument's unit, description and kind
// (counter, updown or histogram), and returns it.
func checkInstrument(t *testing.T, rm metricdata.ResourceMetrics, name, unit, kind string) metricdata.Metrics {
	t.Helper()
	m := mustMetric(t, rm, name)
	if m.Unit != unit {
		t.Errorf("%s: unit %q, want %q", name, m.Unit, unit)
	}
	if m.Description == "" {
		t.Errorf("%s: no description", name)
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		if want := kind == "counter"; d.IsMonotonic != want || kind == "histogram" {
			t.Errorf("%s: sum, monotonic %v, want a %s", name, d.IsMonotonic, kind)
		}
		if d.Temporality != metricdata.CumulativeTemporality {
			t.Errorf("%s: temporality %v", name, d.Temporality)
		}
	case metricdata.Histogram[float64]:
		if kind != "histogram" {
			t.Errorf("%s: histogram, want a %s", name, kind)
		}
	default:
		t.Errorf("%s: data %T", name, m.Data)
	}
	return m
}
