package cancel

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// scaleLive is how many operations BenchmarkRegistryScale keeps live in
// one Registry (issue 7: "100,000 concurrent live operations").
const scaleLive = 100_000

// BenchmarkRegistryScale keeps 100,000 operations live in one Registry and
// measures what an operator's view of them costs. One iteration starts
// them all, lists them, cancels them all and ends them; ns/op is that whole
// cycle. Reported, as medians of the iterations:
//
//   - heap-B/liveop: live heap per operation after a full collection
//     (runtime.MemStats.HeapAlloc before and after starting them);
//   - stack-B/liveop: goroutine stack per operation (StackInuse), for
//     /goroutines;
//   - list-ms: Registry.List(Filter{}) of all of them (a copy, sorted by ID);
//   - stats-ms: Registry.Stats();
//   - cancelall-ms: Registry.CancelAll(Filter{}, ReasonManual, ...), until
//     it returns (every operation's context cancelled);
//   - end-ms: from CancelAll's start until every operation has ended and
//     left the registry.
//
// /ops holds the operations in a slice and ends them from the benchmark's
// goroutine: the registry's and the operations' own cost. /goroutines is
// what a server looks like: every operation is waited on by a goroutine of
// its own (blocked on ctx.Done(), then End), so the figures include a
// goroutine per operation and end-ms is the time for all of them to wake
// up and end.
//
// It is a benchmark, not a test, so that `go test` does not run it:
//
//	go test -run '^$' -bench '^BenchmarkRegistryScale$' -benchtime 3x ./cancel/
func BenchmarkRegistryScale(b *testing.B) {
	b.Run("ops", func(b *testing.B) { registryScale(b, scaleLive, false) })
	b.Run("goroutines", func(b *testing.B) { registryScale(b, scaleLive, true) })
}

func registryScale(b *testing.B, n int, goroutines bool) {
	bg := context.Background()
	var heap, stack, list, stats, cancelAll, end []float64
	ops := make([]*Operation, n)
	for b.Loop() {
		var r Registry
		var wg sync.WaitGroup
		h0, s0 := scaleMem()
		if goroutines {
			for range n {
				ctx, op := Start(bg, "scale", WithRegistry(&r))
				wg.Go(func() {
					<-ctx.Done()
					op.End(ctx.Err())
				})
			}
		} else {
			for i := range ops {
				_, ops[i] = Start(bg, "scale", WithRegistry(&r))
			}
		}
		h1, s1 := scaleMem()
		heap = append(heap, float64(h1-h0)/float64(n))
		stack = append(stack, float64(s1-s0)/float64(n))

		t := time.Now()
		all := r.List(Filter{})
		list = append(list, scaleMS(time.Since(t)))
		if len(all) != n {
			b.Fatalf("List returned %d operations, want %d", len(all), n)
		}
		all = nil

		t = time.Now()
		st := r.Stats()
		stats = append(stats, scaleMS(time.Since(t)))
		if st.Active != n {
			b.Fatalf("Stats().Active = %d, want %d", st.Active, n)
		}

		t = time.Now()
		got := r.CancelAll(Filter{}, ReasonManual, "scale benchmark")
		cancelAll = append(cancelAll, scaleMS(time.Since(t)))
		if got != n {
			b.Fatalf("CancelAll cancelled %d operations, want %d", got, n)
		}
		if goroutines {
			wg.Wait()
		} else {
			for i, op := range ops {
				op.End(op.Err())
				ops[i] = nil
			}
		}
		end = append(end, scaleMS(time.Since(t)))
		if st := r.Stats(); st.Active != 0 || st.ByStatus[StatusCancelled] != int64(n) {
			b.Fatalf("after CancelAll: %d active, %d cancelled; want 0 and %d", st.Active, st.ByStatus[StatusCancelled], n)
		}
	}
	b.ReportMetric(scaleMedian(heap), "heap-B/liveop")
	if goroutines {
		b.ReportMetric(scaleMedian(stack), "stack-B/liveop")
	}
	b.ReportMetric(scaleMedian(list), "list-ms")
	b.ReportMetric(scaleMedian(stats), "stats-ms")
	b.ReportMetric(scaleMedian(cancelAll), "cancelall-ms")
	b.ReportMetric(scaleMedian(end), "end-ms")
}

// scaleMem returns the live heap and the goroutine stacks in use, in bytes,
// after a full collection.
func scaleMem() (heap, stack int64) {
	runtime.GC()
	runtime.GC() // finalizers and sweeping of the first one
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.StackInuse)
}

func scaleMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func scaleMedian(xs []float64) float64 {
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
