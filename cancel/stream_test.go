package cancel

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// streamKind makes one of the three streams over a source of ints, so that
// every behaviour is checked for Seq, Seq2 and Chan alike.
type streamKind struct {
	name string
	wrap func(t *testing.T, ctx context.Context, src iter.Seq[int], opts ...StreamOption) iter.Seq[int]
}

var streamKinds = []streamKind{
	{"Seq", func(_ *testing.T, ctx context.Context, src iter.Seq[int], opts ...StreamOption) iter.Seq[int] {
		return Seq(ctx, src, opts...)
	}},
	{"Seq2", func(t *testing.T, ctx context.Context, src iter.Seq[int], opts ...StreamOption) iter.Seq[int] {
		pairs := Seq2(ctx, func(yield func(int, int) bool) {
			i := 0
			for v := range src {
				if !yield(i, v) {
					return
				}
				i++
			}
		}, opts...)
		return func(yield func(int) bool) {
			want := 0
			for i, v := range pairs {
				if i != want {
					t.Errorf("Seq2 delivered key %d, want %d", i, want)
				}
				want++
				if !yield(v) {
					return
				}
			}
		}
	}},
	// Chan runs the source on a goroutine of its own that sends each item
	// on an unbuffered channel, and closes the channel at the end.
	{"Chan", func(t *testing.T, ctx context.Context, src iter.Seq[int], opts ...StreamOption) iter.Seq[int] {
		ch := make(chan int)
		stop, exited := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(exited)
			defer close(ch)
			for v := range src {
				select {
				case ch <- v:
				case <-stop:
					return
				}
			}
		}()
		t.Cleanup(func() {
			close(stop)
			<-exited
		})
		return Chan(ctx, ch, opts...)
	}},
}

// upTo returns a source of 0, 1, ..., n-1 that records how many items it
// produced and whether it was told to stop.
type upTo struct {
	n        int
	mu       sync.Mutex
	produced int
	stopped  bool
}

func (s *upTo) seq(yield func(int) bool) {
	for i := range s.n {
		s.mu.Lock()
		s.produced++
		s.mu.Unlock()
		if !yield(i) {
			s.mu.Lock()
			s.stopped = true
			s.mu.Unlock()
			return
		}
	}
}

func (s *upTo) state() (produced int, stopped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.produced, s.stopped
}

// forever is a source that never ends by itself.
func forever(yield func(int) bool) {
	for i := 0; ; i++ {
		if !yield(i) {
			return
		}
	}
}

// progressLog is an observer that keeps the progress reports of streams.
type progressLog struct {
	mu       sync.Mutex
	items    []int64  // the "items" attribute of each report
	messages []string // the message of each report
	seen     []int    // how many items the loop body had when the report came
	received *[]int   // the loop body's items, read when a report comes
	cancels  []*Error
}

func (l *progressLog) observer() Observer {
	return Hooks{
		OnProgress: func(_ *Operation, p Progress) {
			l.mu.Lock()
			defer l.mu.Unlock()
			n := int64(-1)
			for _, a := range p.Attrs {
				if a.Key == "items" {
					n = a.Value.Int64()
				}
			}
			l.items = append(l.items, n)
			l.messages = append(l.messages, p.Message)
			if l.received != nil {
				l.seen = append(l.seen, len(*l.received))
			}
		},
		OnCancel: func(_ *Operation, err *Error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.cancels = append(l.cancels, err)
		},
	}
}

func (l *progressLog) reports() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.items)
}

// checkDelivered checks that the operation counted exactly the items its
// loop body received.
func checkDelivered(t *testing.T, op *Operation, received []int) {
	t.Helper()
	if got := op.Delivered(); got != int64(len(received)) {
		t.Errorf("op.Delivered() = %d, the loop body received %d: %v", got, len(received), received)
	}
	if got := op.Info().Delivered; got != int64(len(received)) {
		t.Errorf("op.Info().Delivered = %d, the loop body received %d", got, len(received))
	}
}

func streamWait(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second): // a watchdog: the test failed
		t.Fatalf("%s: still waiting after 10s", what)
	}
}

func TestStreamDeliversAll(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			var log progressLog
			ctx, op := Start(context.Background(), "stream", WithObserver(log.observer()))
			src := &upTo{n: 100}
			var received []int
			for v := range k.wrap(t, ctx, src.seq) {
				received = append(received, v)
			}
			if !slices.Equal(received, slices.Collect(func(y func(int) bool) { (&upTo{n: 100}).seq(y) })) {
				t.Errorf("received %v", received)
			}
			checkDelivered(t, op, received)
			if r := log.reports(); len(r) != 0 {
				t.Errorf("reports %v without ReportEvery or ReportInterval", r)
			}
			if err := op.End(nil); err != nil || op.Status() != StatusCompleted || op.Delivered() != 100 {
				t.Errorf("End = %v, status %v, delivered %d", err, op.Status(), op.Delivered())
			}
		})
	}
}

func TestStreamCancelInsideLoop(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			ctx, op := Start(context.Background(), "stream")
			src := &upTo{n: 100}
			var received []int
			for v := range k.wrap(t, ctx, src.seq) {
				received = append(received, v)
				if v == 5 {
					if !op.Cancel(ReasonManual, "enough") {
						t.Fatal("Cancel returned false")
					}
				}
			}
			if !slices.Equal(received, []int{0, 1, 2, 3, 4, 5}) {
				t.Errorf("received %v, want 0..5: nothing after the cancellation", received)
			}
			checkDelivered(t, op, received)
			if k.name != "Chan" {
				// The source was told to stop at the first item it offered
				// after the cancellation.
				if produced, stopped := src.state(); produced != 7 || !stopped {
					t.Errorf("source produced %d, stopped %v; want 7, true", produced, stopped)
				}
			}
			err := op.End(ctx.Err())
			if ReasonOf(err) != ReasonManual || op.Status() != StatusCancelled || op.Delivered() != 6 {
				t.Errorf("End = %v, status %v, delivered %d", err, op.Status(), op.Delivered())
			}
		})
	}
}

// TestStreamCancelFromAnotherGoroutine: while the loop body works on item
// 4, another goroutine cancels the operation. Nothing more is delivered.
func TestStreamCancelFromAnotherGoroutine(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			ctx, op := Start(context.Background(), "stream")
			ready, cancelled := make(chan struct{}), make(chan struct{})
			go func() {
				<-ready
				op.Cancel(ReasonShutdown, "draining")
				close(cancelled)
			}()
			src := &upTo{n: 100}
			var received []int
			for v := range k.wrap(t, ctx, src.seq) {
				received = append(received, v)
				if v == 4 {
					close(ready)
					<-cancelled
				}
			}
			if !slices.Equal(received, []int{0, 1, 2, 3, 4}) {
				t.Errorf("received %v, want 0..4: nothing after the cancellation", received)
			}
			checkDelivered(t, op, received)
			if k.name != "Chan" {
				if produced, stopped := src.state(); produced != 6 || !stopped {
					t.Errorf("source produced %d, stopped %v; want 6, true", produced, stopped)
				}
			}
			if err := op.End(ctx.Err()); ReasonOf(err) != ReasonShutdown {
				t.Errorf("End = %v", err)
			}
		})
	}
}

// TestSeqCancelWhileSourceWaits: the source stops after 5 items until
// another goroutine has cancelled the operation, then offers more. None of
// them is delivered, and the source is told to stop at the first.
func TestSeqCancelWhileSourceWaits(t *testing.T) {
	for _, k := range streamKinds[:2] { // Seq, Seq2: Chan's source runs elsewhere
		t.Run(k.name, func(t *testing.T) {
			ctx, op := Start(context.Background(), "stream")
			ready, cancelled := make(chan struct{}), make(chan struct{})
			go func() {
				<-ready
				op.Cancel(ReasonShutdown, "draining")
				close(cancelled)
			}()
			offeredAfter := 0
			src := func(yield func(int) bool) {
				for i := range 5 {
					if !yield(i) {
						return
					}
				}
				close(ready)
				<-cancelled
				for i := 5; i < 10; i++ {
					offeredAfter++
					if !yield(i) {
						return
					}
				}
			}
			var received []int
			for v := range k.wrap(t, ctx, src) {
				received = append(received, v)
			}
			if !slices.Equal(received, []int{0, 1, 2, 3, 4}) {
				t.Errorf("received %v, want 0..4: nothing after the cancellation", received)
			}
			checkDelivered(t, op, received)
			if offeredAfter != 1 {
				t.Errorf("the source offered %d items after the cancellation; it should have been stopped at the first", offeredAfter)
			}
			if err := op.End(ctx.Err()); ReasonOf(err) != ReasonShutdown {
				t.Errorf("End = %v", err)
			}
		})
	}
}

// TestStreamCancelRace cancels from another goroutine at whatever moment it
// gets to run, while the loop goes on: the count stays exact, and at most
// the one item already past the check when the cancellation came is
// delivered after Cancel returned.
func TestStreamCancelRace(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			for range 30 {
				ctx, op := Start(context.Background(), "stream")
				atCancel := make(chan int64, 1)
				go func() {
					op.Cancel(ReasonManual, "race")
					atCancel <- op.Delivered()
				}()
				var received []int
				for v := range k.wrap(t, ctx, forever) {
					received = append(received, v)
				}
				checkDelivered(t, op, received)
				if at := <-atCancel; int64(len(received)) > at+1 {
					t.Fatalf("%d items delivered after Cancel returned (delivered %d then, %d in the end)",
						int64(len(received))-at, at, len(received))
				}
				op.End(ctx.Err())
			}
		})
	}
}

func TestStreamAlreadyCancelled(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			ctx, op := Start(context.Background(), "stream")
			op.Cancel(ReasonManual, "before")
			src := &upTo{n: 10}
			for v := range k.wrap(t, ctx, src.seq) {
				t.Errorf("delivered %d after the cancellation", v)
			}
			if k.name != "Chan" {
				if produced, _ := src.state(); produced != 0 {
					t.Errorf("the source was started and produced %d items", produced)
				}
			}
			checkDelivered(t, op, nil)
			op.End(ctx.Err())
		})
	}
}

func TestStreamBreak(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			var log progressLog
			ctx, op := Start(context.Background(), "stream", WithObserver(log.observer()))
			src := &upTo{n: 100}
			var received []int
			s := k.wrap(t, ctx, src.seq, ReportEvery(4))
			for v := range s {
				received = append(received, v)
				if v == 3 {
					break
				}
			}
			checkDelivered(t, op, received)
			if len(received) != 4 {
				t.Errorf("received %v, want 0..3", received)
			}
			if k.name != "Chan" {
				if produced, stopped := src.state(); produced != 4 || !stopped {
					t.Errorf("source produced %d, stopped %v; want 4, true", produced, stopped)
				}
			}
			// The body had item 4 before it broke: that is reported too.
			if r := log.reports(); !slices.Equal(r, []int64{4}) {
				t.Errorf("reports %v, want [4]", r)
			}
			if err := op.End(nil); err != nil || op.Delivered() != 4 {
				t.Errorf("End = %v, delivered %d", err, op.Delivered())
			}
		})
	}
}

// TestSeqDeliveredAddsUp: an operation counts what all its streams
// delivered; each stream reports its own count.
func TestSeqDeliveredAddsUp(t *testing.T) {
	var log progressLog
	ctx, op := Start(context.Background(), "stream", WithObserver(log.observer()))
	defer op.End(nil)
	s := Seq(ctx, slices.Values([]int{1, 2, 3}), ReportEvery(3))
	for range s {
	}
	for v := range s {
		if v == 2 {
			break
		}
	}
	for range Seq(ctx, slices.Values([]int{4, 5})) {
	}
	if op.Delivered() != 7 {
		t.Errorf("delivered %d, want 3+2+2", op.Delivered())
	}
	if r := log.reports(); !slices.Equal(r, []int64{3}) {
		t.Errorf("reports %v, want [3]", r)
	}
}

func TestStreamReportEvery(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			var received []int
			log := progressLog{received: &received}
			ctx, op := Start(context.Background(), "stream", WithObserver(log.observer()))
			src := &upTo{n: 35}
			for v := range k.wrap(t, ctx, src.seq, ReportEvery(10)) {
				received = append(received, v)
			}
			checkDelivered(t, op, received)
			op.End(nil)
			log.mu.Lock()
			defer log.mu.Unlock()
			if !slices.Equal(log.items, []int64{10, 20, 30}) {
				t.Errorf("reports at %v, want [10 20 30]", log.items)
			}
			if !slices.Equal(log.seen, []int{10, 20, 30}) {
				t.Errorf("the loop body had %v items at the reports: a report comes after the body had the item", log.seen)
			}
			if len(log.messages) > 0 && log.messages[0] != "processed 10 items" {
				t.Errorf("message %q", log.messages[0])
			}
			if p, ok := op.LastProgress(); !ok || p.Message != "processed 30 items" {
				t.Errorf("last progress %+v, %v", p, ok)
			}
		})
	}
}

// TestStreamReportInterval: a source that lets more than the interval pass
// between items (it sleeps so that the clock moves, not to wait for another
// goroutine) gets a report after every item; with an interval of an hour,
// none.
func TestStreamReportInterval(t *testing.T) {
	const interval = 2 * time.Millisecond
	slow := func(yield func(int) bool) {
		for i := range 4 {
			time.Sleep(interval)
			if !yield(i) {
				return
			}
		}
	}
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			var received []int
			log := progressLog{received: &received}
			ctx, op := Start(context.Background(), "stream", WithObserver(log.observer()))
			for v := range k.wrap(t, ctx, slow, ReportInterval(interval)) {
				received = append(received, v)
			}
			checkDelivered(t, op, received)
			if r := log.reports(); !slices.Equal(r, []int64{1, 2, 3, 4}) {
				t.Errorf("reports %v, want one per item", r)
			}

			var log2 progressLog
			ctx2, op2 := Start(context.Background(), "stream", WithObserver(log2.observer()))
			n := 0
			for range k.wrap(t, ctx2, (&upTo{n: 1000}).seq, ReportInterval(time.Hour)) {
				n++
			}
			if r := log2.reports(); len(r) != 0 || n != 1000 {
				t.Errorf("%d items, reports %v; want 1000 items and no report within an hour", n, r)
			}
			op.End(nil)
			op2.End(nil)
		})
	}
}

func TestStreamReportEveryAndInterval(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			var log progressLog
			ctx, op := Start(context.Background(), "stream", WithObserver(log.observer()))
			defer op.End(nil)
			for range k.wrap(t, ctx, (&upTo{n: 10}).seq, ReportEvery(3), ReportInterval(time.Hour), nil) {
			}
			if r := log.reports(); !slices.Equal(r, []int64{3, 6, 9}) {
				t.Errorf("reports %v, want [3 6 9]", r)
			}
			var log0 progressLog
			ctx0, op0 := Start(context.Background(), "stream", WithObserver(log0.observer()))
			defer op0.End(nil)
			for range k.wrap(t, ctx0, (&upTo{n: 10}).seq, ReportEvery(0), ReportInterval(0)) {
			}
			if r := log0.reports(); len(r) != 0 {
				t.Errorf("zero options reported %v", r)
			}
		})
	}
}

// TestStreamObserverCancels: an observer that cancels the operation from
// its progress callback stops the stream before the next item.
func TestStreamObserverCancels(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			ctx, op := Start(context.Background(), "stream", WithObserver(Hooks{
				OnProgress: func(op *Operation, p Progress) { op.Cancel(ReasonCondition, p.Message) },
			}))
			var received []int
			for v := range k.wrap(t, ctx, forever, ReportEvery(5)) {
				received = append(received, v)
			}
			if len(received) != 5 {
				t.Errorf("received %v, want 0..4", received)
			}
			checkDelivered(t, op, received)
			if err := op.End(ctx.Err()); ReasonOf(err) != ReasonCondition || !strings.Contains(err.Error(), "processed 5 items") {
				t.Errorf("End = %v", err)
			}
		})
	}
}

// TestChanInterruptsBlockedReceive: a loop waiting on a channel nobody
// sends to ends as soon as the operation is cancelled.
func TestChanInterruptsBlockedReceive(t *testing.T) {
	ctx, op := Start(context.Background(), "stream")
	ch := make(chan int)
	got := make(chan int)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for v := range Chan(ctx, ch) {
			got <- v
		}
	}()
	ch <- 1 // the loop is running: it received this
	if v := <-got; v != 1 {
		t.Fatalf("got %d", v)
	}
	// Now the loop waits on ch, which stays empty and open.
	op.Cancel(ReasonDisconnect, "peer went away")
	streamWait(t, exited, "Chan after cancellation")
	if op.Delivered() != 1 {
		t.Errorf("delivered %d, want 1", op.Delivered())
	}
	if err := op.End(ctx.Err()); ReasonOf(err) != ReasonDisconnect {
		t.Errorf("End = %v", err)
	}
}

// TestChanNothingAfterCancelWhenItemsReady: once cancelled, items already
// waiting in the channel are not delivered, although select may pick the
// channel when both it and the cancellation are ready.
func TestChanNothingAfterCancelWhenItemsReady(t *testing.T) {
	for range 200 {
		ctx, op := Start(context.Background(), "stream")
		ch := make(chan int, 10)
		for i := range 10 {
			ch <- i
		}
		var received []int
		for v := range Chan(ctx, ch) {
			received = append(received, v)
			if v == 2 {
				op.Cancel(ReasonManual, "enough")
			}
		}
		if len(received) != 3 {
			t.Fatalf("received %v, want 0..2", received)
		}
		checkDelivered(t, op, received)
		op.End(ctx.Err())
	}
}

func TestChanClosed(t *testing.T) {
	ctx, op := Start(context.Background(), "stream")
	defer op.End(nil)
	ch := make(chan string, 3)
	ch <- "a"
	ch <- "b"
	close(ch)
	got := slices.Collect(Chan(ctx, ch))
	if !slices.Equal(got, []string{"a", "b"}) || op.Delivered() != 2 {
		t.Errorf("got %v, delivered %d", got, op.Delivered())
	}
}

// TestStreamWithoutOperation: with a plain context the streams still stop
// at cancellation, and options are accepted with nowhere to report to.
func TestStreamWithoutOperation(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			var received []int
			for v := range k.wrap(t, ctx, forever, ReportEvery(1), ReportInterval(time.Nanosecond)) {
				received = append(received, v)
				if v == 2 {
					cancel(errors.New("stop"))
				}
			}
			if !slices.Equal(received, []int{0, 1, 2}) {
				t.Errorf("received %v, want 0..2", received)
			}
		})
	}
	t.Run("Chan blocked", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		exited := make(chan struct{})
		go func() {
			defer close(exited)
			for range Chan(ctx, make(chan int)) {
				t.Error("delivered an item from an empty channel")
			}
		}()
		cancel(errors.New("stop"))
		streamWait(t, exited, "Chan without operation after cancellation")
	})
}

// TestStreamContextDerivedFromOperation: a stream watches the context it
// was given and counts on the operation found in it.
func TestStreamContextDerivedFromOperation(t *testing.T) {
	octx, op := Start(context.Background(), "stream")
	defer op.End(nil)
	ctx, cancel := context.WithCancel(octx)
	defer cancel()
	var received []int
	for v := range Seq(ctx, forever) {
		received = append(received, v)
		if v == 3 {
			cancel()
		}
	}
	checkDelivered(t, op, received)
	if len(received) != 4 || op.Err() != nil {
		t.Errorf("received %v, op.Err %v", received, op.Err())
	}
}

func TestStreamInvalidOptions(t *testing.T) {
	options := []struct {
		option string
		opt    StreamOption
	}{
		{"ReportEvery", ReportEvery(-1)},
		{"ReportInterval", ReportInterval(-time.Second)},
	}
	for _, k := range streamKinds {
		for _, o := range options {
			t.Run(k.name+"/"+o.option, func(t *testing.T) {
				var log progressLog
				ctx, op := Start(context.Background(), "stream", WithObserver(log.observer()))
				src := &upTo{n: 10}
				for v := range k.wrap(t, ctx, src.seq, ReportEvery(2), o.opt) {
					t.Errorf("delivered %d despite an invalid option", v)
				}
				if k.name != "Chan" {
					if produced, _ := src.state(); produced != 0 {
						t.Errorf("the source was started and produced %d items", produced)
					}
				}
				checkDelivered(t, op, nil)
				if ctx.Err() == nil {
					t.Fatal("the operation was not cancelled")
				}
				log.mu.Lock()
				if len(log.cancels) != 1 || log.cancels[0].Reason != ReasonError {
					t.Errorf("observers saw cancellations %v, want one with reason error", log.cancels)
				}
				log.mu.Unlock()
				err := op.End(ctx.Err())
				if ReasonOf(err) != ReasonError || op.Status() != StatusCancelled {
					t.Errorf("End = %v, status %v", err, op.Status())
				}
				var oe *OptionError
				if !errors.As(err, &oe) || oe.Option != o.option {
					t.Errorf("End = %v, want an *OptionError for %s", err, o.option)
				}
				if n := strings.Count(err.Error(), "negative"); n != 1 {
					t.Errorf("End = %q, says what is wrong %d times, want once", err, n)
				}
				if msg := op.Info().Message; !strings.Contains(msg, o.option) || !strings.Contains(msg, "negative") {
					t.Errorf("cancellation message %q does not name %s and what is wrong", msg, o.option)
				}
			})
		}
	}
}

// TestStreamInvalidOptionsWithoutOperation: without an operation to cancel,
// the stream delivers nothing and logs why. Not parallel: it swaps the
// default logger.
func TestStreamInvalidOptionsWithoutOperation(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &buf}, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })

	called := false
	for range Seq(context.Background(), func(yield func(int) bool) { called = true; yield(1) }, ReportEvery(-5)) {
		t.Error("delivered an item despite an invalid option")
	}
	if called {
		t.Error("the source was started")
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "ReportEvery") || !strings.Contains(out, "level=ERROR") {
		t.Errorf("log %q does not name the option", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestStreamNilContext: a nil context is taken as context.Background.
func TestStreamNilContext(t *testing.T) {
	//nolint:staticcheck // a nil context on purpose
	got := slices.Collect(Seq(nil, slices.Values([]int{1, 2}))) //lint:ignore SA1012 on purpose
	if !slices.Equal(got, []int{1, 2}) {
		t.Errorf("got %v", got)
	}
}
