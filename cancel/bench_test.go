package cancel

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"runtime"
	"testing"
	"time"
)

// The benchmarks come in pairs, as sub-benchmarks of one function, so that
// the standard library's cost and ours run side by side under the same load:
// go test -run '^$' -bench . -benchmem -count 6 ./cancel/ (see BENCHMARKS.md).

// Sinks keep the compiler from removing the work measured.
var (
	sinkErr error
	sinkInt int
)

var errBench = errors.New("bench: cancelled")

// BenchmarkStartEnd: an operation with no sources and no observer against
// the context it wraps. Target: at most 2x the time, at most 2 more allocs.
func BenchmarkStartEnd(b *testing.B) {
	bg := context.Background()
	b.Run("context", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, cancel := context.WithCancelCause(bg)
			cancel(errBench)
		}
	})
	b.Run("operation", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, op := Start(bg, "bench")
			sinkErr = op.End(nil)
		}
	})
}

// BenchmarkTimeout: an operation with a timeout against
// context.WithTimeoutCause. Target: at most 2x the time.
func BenchmarkTimeout(b *testing.B) {
	bg := context.Background()
	b.Run("context", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, cancel := context.WithTimeoutCause(bg, time.Minute, errBench)
			cancel()
		}
	})
	b.Run("operation", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, op := Start(bg, "bench", WithTimeout(time.Minute))
			sinkErr = op.End(nil)
		}
	})
}

// BenchmarkCheck: the check a loop makes between steps. Target: op.Err at
// most 1.2x ctx.Err. /opcontext (ctx.Err of an operation's context) is for
// information.
func BenchmarkCheck(b *testing.B) {
	bg := context.Background()
	b.Run("context", func(b *testing.B) {
		ctx, cancel := context.WithCancelCause(bg)
		defer cancel(nil)
		b.ReportAllocs()
		for b.Loop() {
			sinkErr = ctx.Err()
		}
	})
	b.Run("operation", func(b *testing.B) {
		_, op := Start(bg, "bench")
		defer op.End(nil)
		b.ReportAllocs()
		for b.Loop() {
			sinkErr = op.Err()
		}
	})
	b.Run("opcontext", func(b *testing.B) {
		ctx, op := Start(bg, "bench")
		defer op.End(nil)
		b.ReportAllocs()
		for b.Loop() {
			sinkErr = ctx.Err()
		}
	})
}

// BenchmarkProgress: a progress report. Target for /noobserver: under 50 ns
// and no allocation. The others are for information: /noobserver_attr
// passes an attribute, /hooks has a no-op Hooks observer.
func BenchmarkProgress(b *testing.B) {
	bg := context.Background()
	b.Run("noobserver", func(b *testing.B) {
		_, op := Start(bg, "bench")
		defer op.End(nil)
		b.ReportAllocs()
		for b.Loop() {
			op.Progress("working")
		}
	})
	b.Run("noobserver_attr", func(b *testing.B) {
		_, op := Start(bg, "bench")
		defer op.End(nil)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			op.Progress("working", slog.Int("items", i))
		}
	})
	b.Run("hooks", func(b *testing.B) {
		_, op := Start(bg, "bench", WithObserver(Hooks{OnProgress: func(*Operation, Progress) {}}))
		defer op.End(nil)
		b.ReportAllocs()
		for b.Loop() {
			op.Progress("working")
		}
	})
}

// BenchmarkRegistry: /register is an operation registered at Start and
// unregistered at End; target under 1 us. /liveops starts 100,000
// registered operations and reports the heap each one holds as B/liveop;
// target under 1 KiB. /liveops_context is the same for bare
// context.WithCancelCause contexts, for comparison.
func BenchmarkRegistry(b *testing.B) {
	bg := context.Background()
	b.Run("register", func(b *testing.B) {
		var r Registry
		b.ReportAllocs()
		for b.Loop() {
			_, op := Start(bg, "bench", WithRegistry(&r))
			sinkErr = op.End(nil)
		}
	})
	const live = 100_000
	b.Run("liveops", func(b *testing.B) {
		var r Registry
		ops := make([]*Operation, live)
		var perOp float64
		for b.Loop() {
			before := benchHeapAlloc()
			for i := range ops {
				_, ops[i] = Start(bg, "bench", WithRegistry(&r))
			}
			perOp = float64(benchHeapAlloc()-before) / live
			if got := r.Stats().Active; got != live {
				b.Fatalf("%d live operations, want %d", got, live)
			}
			for i, op := range ops {
				op.End(nil)
				ops[i] = nil
			}
		}
		b.ReportMetric(perOp, "B/liveop")
	})
	b.Run("liveops_context", func(b *testing.B) {
		cancels := make([]context.CancelCauseFunc, live)
		var perCtx float64
		for b.Loop() {
			before := benchHeapAlloc()
			for i := range cancels {
				_, cancels[i] = context.WithCancelCause(bg)
			}
			perCtx = float64(benchHeapAlloc()-before) / live
			for i, cancel := range cancels {
				cancel(nil)
				cancels[i] = nil
			}
		}
		b.ReportMetric(perCtx, "B/liveop")
	})
}

// benchHeapAlloc returns the bytes of live heap objects after a full collection.
func benchHeapAlloc() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// benchCount returns an iterator over 0, 1, ..., n-1.
func benchCount(n int) iter.Seq[int] {
	return func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	}
}

// BenchmarkSeq: ns/op is per item. Target: /cancel (cancel.Seq inside an
// operation) adds under 30 ns per item to /range. /cancel_report, with a
// report every 1000 items and a no-op observer, and /cancel_interval, which
// reads the clock at every item for ReportInterval, are for information.
func BenchmarkSeq(b *testing.B) {
	bg := context.Background()
	b.Run("range", func(b *testing.B) {
		b.ReportAllocs()
		sum := 0
		for v := range benchCount(b.N) {
			sum += v
		}
		sinkInt = sum
	})
	b.Run("cancel", func(b *testing.B) {
		ctx, op := Start(bg, "bench")
		defer op.End(nil)
		b.ReportAllocs()
		sum := 0
		for v := range Seq(ctx, benchCount(b.N)) {
			sum += v
		}
		sinkInt = sum
		if op.Delivered() != int64(b.N) {
			b.Fatalf("delivered %d, want %d", op.Delivered(), b.N)
		}
	})
	b.Run("cancel_report", func(b *testing.B) {
		ctx, op := Start(bg, "bench", WithObserver(Hooks{OnProgress: func(*Operation, Progress) {}}))
		defer op.End(nil)
		b.ReportAllocs()
		sum := 0
		for v := range Seq(ctx, benchCount(b.N), ReportEvery(1000)) {
			sum += v
		}
		sinkInt = sum
	})
	b.Run("cancel_interval", func(b *testing.B) {
		ctx, op := Start(bg, "bench", WithObserver(Hooks{OnProgress: func(*Operation, Progress) {}}))
		defer op.End(nil)
		b.ReportAllocs()
		sum := 0
		for v := range Seq(ctx, benchCount(b.N), ReportInterval(time.Second)) {
			sum += v
		}
		sinkInt = sum
	})
}

// BenchmarkChan: ns/op is per item received from a buffered channel fed by
// another goroutine; for information.
func BenchmarkChan(b *testing.B) {
	bg := context.Background()
	feed := func(n int) <-chan int {
		ch := make(chan int, 1024)
		go func() {
			defer close(ch)
			for i := range n {
				ch <- i
			}
		}()
		return ch
	}
	b.Run("range", func(b *testing.B) {
		b.ReportAllocs()
		ch := feed(b.N)
		sum := 0
		for v := range ch {
			sum += v
		}
		sinkInt = sum
	})
	b.Run("cancel", func(b *testing.B) {
		ctx, op := Start(bg, "bench")
		defer op.End(nil)
		b.ReportAllocs()
		ch := feed(b.N)
		sum := 0
		for v := range Chan(ctx, ch) {
			sum += v
		}
		sinkInt = sum
		if op.Delivered() != int64(b.N) {
			b.Fatalf("delivered %d, want %d", op.Delivered(), b.N)
		}
	})
}
