package otelcancel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/cancelable-go/cancelable/cancel"
)

// 10,000 operations from many goroutines, with every outcome and reason,
// some cancelled by a token another goroutine cancels: the totals are exact.
func TestConcurrentOperations(t *testing.T) {
	const (
		goroutines = 50
		each       = 200 // operations per goroutine
		total      = goroutines * each
	)
	h := newHarness(t, nil)
	names := []string{"read", "write", "scan"}
	reasons := cancel.Reasons()

	tok := cancel.NewToken()
	var waiting sync.WaitGroup // operations waiting for the token
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := map[string]int64{}
	for _, n := range names {
		maps.Copy(want, zeroSeries(n))
	}
	count := func(name, outcome, reason string) {
		mu.Lock()
		want[ended3(name, outcome, reason)]++
		mu.Unlock()
	}
	var wrong []string
	check := func(op *cancel.Operation, status cancel.Status, reason cancel.Reason) {
		if op.Status() != status || op.Reason() != reason {
			mu.Lock()
			wrong = append(wrong, fmt.Sprintf("%s %d: %v/%v, want %v/%v", op.Name(), op.ID(), op.Status(), op.Reason(), status, reason))
			mu.Unlock()
		}
	}

	// Every tokenCase-th operation waits for the shared token; the others
	// end on their own.
	const tokenCase = 7
	tokenOps, requests := 0, 0 // operations waiting for the token; cancel requests
	for n := range total {
		if n%tokenCase == 0 {
			tokenOps++
			requests++
		} else if n%4 >= 2 {
			requests++
		}
	}
	waiting.Add(tokenOps)

	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var tokenWait sync.WaitGroup
			for i := range each {
				n := g*each + i
				name := names[n%len(names)]
				if n%tokenCase == 0 {
					ctx, op := h.start(context.Background(), name, cancel.WithToken(tok))
					tokenWait.Add(1)
					go func() {
						defer tokenWait.Done()
						waiting.Done()
						<-ctx.Done()
						op.End(ctx.Err())
						check(op, cancel.StatusCancelled, cancel.ReasonShutdown)
						count(name, "cancelled", "shutdown")
					}()
					continue
				}
				ctx, op := h.start(context.Background(), name)
				op.Progress("working")
				switch n % 4 {
				case 0:
					op.End(nil)
					check(op, cancel.StatusCompleted, 0)
					count(name, "completed", "")
				case 1:
					op.End(errors.New("boom"))
					check(op, cancel.StatusFailed, 0)
					count(name, "failed", "")
				case 2, 3:
					r := reasons[(n/4)%len(reasons)]
					op.Cancel(r, "stop")
					if n%4 == 2 {
						op.End(ctx.Err())
						check(op, cancel.StatusCancelled, r)
						count(name, "cancelled", r.String())
					} else {
						op.End(nil) // finished anyway
						check(op, cancel.StatusCompleted, r)
						count(name, "completed", "")
					}
				}
			}
			tokenWait.Wait()
		}()
	}
	canceller := make(chan struct{})
	go func() {
		defer close(canceller)
		waiting.Wait() // every token operation has started
		tok.Cancel(cancel.ReasonShutdown, "draining")
	}()
	wg.Wait()
	<-canceller

	for _, w := range wrong {
		t.Error(w)
	}
	rm := h.collect(t)
	got := sums(t, mustMetric(t, rm, "cancel.operations"))
	if !maps.Equal(got, want) {
		t.Errorf("cancel.operations =\n%v\nwant\n%v", got, want)
	}
	var sum int64
	for _, v := range got {
		sum += v
	}
	if sum != total {
		t.Errorf("%d operations counted, want %d", sum, total)
	}
	var durations uint64
	for _, dp := range histograms(t, mustMetric(t, rm, "cancel.operation.duration")) {
		durations += dp.Count
	}
	if durations != total {
		t.Errorf("%d durations recorded, want %d", durations, total)
	}
	for k, v := range sums(t, mustMetric(t, rm, "cancel.operation.active")) {
		if v != 0 {
			t.Errorf("active %s = %d, want 0", k, v)
		}
	}
	var progress int64
	for _, v := range sums(t, mustMetric(t, rm, "cancel.progress.reports")) {
		progress += v
	}
	if progress != total-int64(tokenOps) {
		t.Errorf("%d progress reports, want %d", progress, total-tokenOps)
	}
	if n := len(h.spans.Ended()); n != total {
		t.Errorf("%d spans ended, want %d", n, total)
	}
	requested := 0
	for _, s := range h.spans.Ended() {
		requested += len(eventsNamed(s, EventRequested))
	}
	if requested != requests {
		t.Errorf("%d cancel.requested events, want %d", requested, requests)
	}
	var stops uint64
	for _, dp := range histograms(t, mustMetric(t, rm, "cancel.stop.latency")) {
		stops += dp.Count
	}
	if stops != uint64(requests) {
		t.Errorf("%d stop latencies recorded, want %d", stops, requests)
	}
}
