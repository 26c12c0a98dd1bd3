package cancel

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"time"
)

// A StreamOption configures the progress reports of Seq, Seq2 and Chan.
type StreamOption func(*streamConfig)

type streamConfig struct {
	every    int64
	interval time.Duration
	err      error
}

// ReportEvery makes the stream report progress to the operation in its
// context every n delivered items. n must not be negative; zero turns
// count-based reports off.
func ReportEvery(n int) StreamOption {
	return func(c *streamConfig) {
		if n < 0 && c.err == nil {
			c.err = &OptionError{Option: "ReportEvery", Problem: fmt.Sprintf("n must not be negative, got %d", n)}
		}
		c.every = int64(max(n, 0))
	}
}

// ReportInterval makes the stream report progress to the operation in its
// context once the loop body has had an item d or more after the last
// report (or the start of the iteration). Reports come with items, not with
// a timer: a stream that waits for its next item reports nothing while it
// waits. d must not be negative; zero turns time-based reports off.
func ReportInterval(d time.Duration) StreamOption {
	return func(c *streamConfig) {
		if d < 0 && c.err == nil {
			c.err = &OptionError{Option: "ReportInterval", Problem: fmt.Sprintf("interval must not be negative, got %v", d)}
		}
		c.interval = max(d, 0)
	}
}

// stream is the state of one iteration.
type stream struct {
	streamConfig
	done        <-chan struct{}
	op          *Operation
	reports     bool  // op != nil and some report is asked for
	count       int64 // items delivered
	untilReport int64 // items left before the next ReportEvery report
	lastReport  time.Time
}

// newStream returns nil, having reported why, if the options are invalid.
func newStream(ctx context.Context, opts []StreamOption) *stream {
	if ctx == nil {
		ctx = context.Background()
	}
	s := &stream{done: ctx.Done(), op: FromContext(ctx)}
	for _, o := range opts {
		if o != nil {
			o(&s.streamConfig)
		}
	}
	if s.err != nil {
		// An iterator cannot return an error: stop the work it belongs to
		// with one that names the option, or say it in the log.
		if s.op != nil {
			s.op.cancel(ReasonError, s.err.Error(), s.err)
		} else {
			slog.Error("cancel: stream not started", slog.Any("error", s.err))
		}
		return nil
	}
	s.reports = s.op != nil && (s.every > 0 || s.interval > 0)
	s.untilReport = s.every
	if s.interval > 0 {
		s.lastReport = time.Now()
	}
	return s
}

func (s *stream) cancelled() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// admit reports whether an item may be delivered, and counts it if so: no
// item is delivered once the context is done.
func (s *stream) admit() bool {
	if s.cancelled() {
		return false
	}
	s.count++
	if s.op != nil {
		s.op.delivered.Add(1)
	}
	return true
}

// processed reports progress when due, once the loop body has had the item.
func (s *stream) processed() {
	due := false
	if s.every > 0 {
		// A countdown rather than count%every: a division per item costs
		// more than the rest of the bookkeeping.
		if s.untilReport--; s.untilReport == 0 {
			due, s.untilReport = true, s.every
		}
	}
	if s.interval > 0 {
		// time.Since reads only the monotonic clock, at half the cost of
		// time.Now where the wall clock is slow to read.
		if d := time.Since(s.lastReport); due || d >= s.interval {
			due, s.lastReport = true, s.lastReport.Add(d)
		}
	}
	if due {
		s.op.Progress(fmt.Sprintf("processed %d items", s.count), slog.Int64("items", s.count))
	}
}

// Seq returns an iterator over seq that stops as soon as ctx is done: no
// item is delivered once the cancellation is visible, whether it came from
// the loop body, another goroutine or an observer. Items delivered are
// counted on the operation in ctx (see Operation.Delivered), and that
// operation receives the progress reports the options ask for: a report,
// "processed N items" with the attribute items=N, is made after the loop
// body has had item N. Without an operation in ctx, Seq still stops at
// cancellation but neither counts nor reports.
//
// Seq checks ctx between items; a seq that blocks should watch ctx itself,
// or be a channel given to Chan.
//
// With an invalid option nothing is delivered, and the operation in ctx is
// cancelled with ReasonError and a message naming the option (without one,
// the error is logged with slog). A nil ctx is taken as
// context.Background().
func Seq[V any](ctx context.Context, seq iter.Seq[V], opts ...StreamOption) iter.Seq[V] {
	return func(yield func(V) bool) {
		s := newStream(ctx, opts)
		if s == nil || s.cancelled() {
			return
		}
		for v := range seq {
			if !s.admit() {
				return
			}
			more := yield(v)
			if s.reports {
				s.processed()
			}
			if !more {
				return
			}
		}
	}
}

// Seq2 is Seq for pairs.
func Seq2[K, V any](ctx context.Context, seq iter.Seq2[K, V], opts ...StreamOption) iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		s := newStream(ctx, opts)
		if s == nil || s.cancelled() {
			return
		}
		for k, v := range seq {
			if !s.admit() {
				return
			}
			more := yield(k, v)
			if s.reports {
				s.processed()
			}
			if !more {
				return
			}
		}
	}
}

// Chan returns an iterator over the values received from ch until ch is
// closed or ctx is done, counting and reporting like Seq. Unlike Seq, a
// receive that is waiting is interrupted by the cancellation at once. A
// value received at the moment of the cancellation is dropped, not
// delivered.
func Chan[V any](ctx context.Context, ch <-chan V, opts ...StreamOption) iter.Seq[V] {
	return func(yield func(V) bool) {
		s := newStream(ctx, opts)
		if s == nil {
			return
		}
		for {
			var v V
			var ok bool
			// Take a waiting item without the two-channel select, which
			// locks both channels; wait on both only when ch is empty.
			select {
			case v, ok = <-ch:
			default:
				select {
				case <-s.done:
					return
				case v, ok = <-ch:
				}
			}
			// admit looks at the cancellation again: nothing is delivered
			// after it, even when the item was ready at the same moment.
			if !ok || !s.admit() {
				return
			}
			more := yield(v)
			if s.reports {
				s.processed()
			}
			if !more {
				return
			}
		}
	}
}
