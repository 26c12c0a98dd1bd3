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
// context when an item is delivered d or more after the last report. d must
// not be negative; zero turns time-based reports off.
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
	done       <-chan struct{}
	op         *Operation
	count      int64
	lastReport time.Time
}

// newStream returns nil, having reported why, if the options are invalid.
func newStream(ctx context.Context, opts []StreamOption) *stream {
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

// delivered counts an item about to be yielded and reports progress when due.
func (s *stream) delivered() {
	s.count++
	if s.op == nil {
		return
	}
	s.op.delivered.Add(1)
	due := s.every > 0 && s.count%s.every == 0
	if s.interval > 0 {
		if now := time.Now(); due || now.Sub(s.lastReport) >= s.interval {
			due, s.lastReport = true, now
		}
	}
	if due {
		s.op.Progress(fmt.Sprintf("processed %d items", s.count), slog.Int64("items", s.count))
	}
}

// Seq returns an iterator over seq that stops as soon as ctx is done: no
// item is delivered after the cancellation is seen. Items delivered are
// counted on the operation in ctx (see Operation.Delivered), which also
// receives the progress reports the options ask for.
//
// Seq checks ctx between items; a seq that blocks should watch ctx itself,
// or be a channel given to Chan.
func Seq[V any](ctx context.Context, seq iter.Seq[V], opts ...StreamOption) iter.Seq[V] {
	return func(yield func(V) bool) {
		s := newStream(ctx, opts)
		if s == nil || s.cancelled() {
			return
		}
		for v := range seq {
			if s.cancelled() {
				return
			}
			s.delivered()
			if !yield(v) {
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
			if s.cancelled() {
				return
			}
			s.delivered()
			if !yield(k, v) {
				return
			}
		}
	}
}

// Chan returns an iterator over the values received from ch until ch is
// closed or ctx is done. Unlike Seq, a receive that is waiting is
// interrupted by the cancellation at once.
func Chan[V any](ctx context.Context, ch <-chan V, opts ...StreamOption) iter.Seq[V] {
	return func(yield func(V) bool) {
		s := newStream(ctx, opts)
		if s == nil {
			return
		}
		for {
			select {
			case <-s.done:
				return
			case v, ok := <-ch:
				// When both are ready select picks at random: look again
				// so that nothing is delivered after the cancellation.
				if !ok || s.cancelled() {
					return
				}
				s.delivered()
				if !yield(v) {
					return
				}
			}
		}
	}
}
