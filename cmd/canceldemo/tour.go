package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// runTour is the tour subcommand: it runs a handful of operations, each
// stopped by a different reason, prints every event an observer sees, and
// ends with the registry's history and counts.
func runTour(w io.Writer) error {
	// Observers are called from whatever goroutine reports or cancels.
	out := &lockedWriter{w: w}
	start := time.Now()
	events := cancel.Hooks{
		OnStart: func(op *cancel.Operation) {
			fmt.Fprintf(out, "%7s  #%-3d %-14s started\n", since(start), op.ID(), op.Name())
		},
		OnProgress: func(op *cancel.Operation, p cancel.Progress) {
			fmt.Fprintf(out, "%7s  #%-3d %-14s progress: %s\n", since(start), op.ID(), op.Name(), p.Message)
		},
		OnCancel: func(op *cancel.Operation, e *cancel.Error) {
			fmt.Fprintf(out, "%7s  #%-3d %-14s cancel requested: %s\n", since(start), op.ID(), op.Name(), e.Reason)
		},
		OnEnd: func(op *cancel.Operation) {
			fmt.Fprintf(out, "%7s  #%-3d %-14s ended %s\n", since(start), op.ID(), op.Name(), op.Status())
		},
	}
	reg := &cancel.Registry{}
	opts := []cancel.Option{cancel.WithObserver(events), cancel.WithRegistry(reg)}
	ctx := context.Background()

	fmt.Fprintln(out, "Cancelable for Go: every operation below stops for a different reason.")
	fmt.Fprintln(out)

	// Completes: nothing stops it.
	cancel.Run(ctx, "render", func(ctx context.Context) error { return pause(ctx, 5*time.Millisecond) }, opts...)

	// Timeout.
	cancel.Run(ctx, "slow-query", func(ctx context.Context) error { return pause(ctx, time.Hour) },
		append(opts, cancel.WithTimeout(30*time.Millisecond))...)

	// An operator cancels it through the registry.
	cancel.Run(ctx, "export", func(ctx context.Context) error {
		go reg.CancelAll(cancel.Filter{Name: "export"}, cancel.ReasonManual, "operator pressed cancel")
		return pause(ctx, time.Hour)
	}, opts...)

	// One token, shared by two uploads, stops both when the server drains.
	drain := cancel.NewToken()
	ctxA, upA := cancel.Start(ctx, "upload", append(opts, cancel.WithToken(drain))...)
	ctxB, upB := cancel.Start(ctx, "upload", append(opts, cancel.WithToken(drain))...)
	drain.Cancel(cancel.ReasonShutdown, "deploy in progress")
	upA.End(pause(ctxA, time.Hour))
	upB.End(pause(ctxB, time.Hour))

	// A parent that times out stops its children, who say so.
	cancel.Run(ctx, "batch", func(ctx context.Context) error {
		return cancel.Run(ctx, "batch-item", func(ctx context.Context) error { return pause(ctx, time.Hour) }, opts...)
	}, append(opts, cancel.WithTimeout(20*time.Millisecond))...)

	// A polled condition: a quota running out.
	var used atomic.Int64
	quotaGone := func(context.Context) (bool, error) { return used.Load() >= 3, nil }
	cancel.Run(ctx, "crawl", func(ctx context.Context) error {
		for ctx.Err() == nil {
			used.Add(1)
			pause(ctx, 5*time.Millisecond)
		}
		return ctx.Err()
	}, append(opts, cancel.WithCondition("quota used up", quotaGone, 2*time.Millisecond))...)

	// A stream with progress reports, stopped half way; the partial result
	// (items delivered) is kept.
	cancel.Run(ctx, "import", func(ctx context.Context) error {
		for n := range cancel.Seq(ctx, slices.Values(make([]int, 100)), cancel.ReportEvery(20)) {
			_ = n
			if op := cancel.FromContext(ctx); op.Delivered() == 50 {
				op.Cancel(cancel.ReasonError, "disk full")
			}
		}
		return ctx.Err()
	}, opts...)

	// A shielded section finishes although the client left.
	cancel.Run(ctx, "checkout", func(ctx context.Context) error {
		return cancel.Shield(ctx, func(context.Context) error {
			cancel.FromContext(ctx).Cancel(cancel.ReasonDisconnect, "client went away")
			return nil // the payment is recorded anyway
		})
	}, opts...)

	// An OS signal: the process sends itself SIGINT while the operation
	// listens for it, so it is caught instead of ending the demo.
	signalled := cancel.Run(ctx, "wait-signal", func(ctx context.Context) error {
		p, err := os.FindProcess(os.Getpid())
		if err == nil {
			err = p.Signal(os.Interrupt)
		}
		if err != nil {
			return err // no signals here (Windows): the operation fails instead
		}
		return pause(ctx, 5*time.Second)
	}, append(opts, cancel.WithSignals())...)
	if cancel.ReasonOf(signalled) != cancel.ReasonSignal {
		slog.Warn("signal demo did not get a signal", "error", signalled)
	}

	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOPERATION\tSTATUS\tREASON\tDURATION\tERROR")
	history := reg.History(cancel.Filter{})
	slices.Reverse(history)
	for _, i := range history {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", i.ID, i.Name, i.Status, i.Reason, i.Duration.Round(time.Millisecond), i.Error)
	}
	tw.Flush()

	st := reg.Stats()
	fmt.Fprintf(out, "\n%d operations: %d completed, %d cancelled, %d failed. By reason:",
		st.ByStatus[cancel.StatusCompleted]+st.ByStatus[cancel.StatusCancelled]+st.ByStatus[cancel.StatusFailed],
		st.ByStatus[cancel.StatusCompleted], st.ByStatus[cancel.StatusCancelled], st.ByStatus[cancel.StatusFailed])
	for _, r := range cancel.Reasons() {
		if n := st.ByReason[r]; n > 0 {
			fmt.Fprintf(out, " %s=%d", r, n)
		}
	}
	fmt.Fprintln(out)
	if st.Active != 0 {
		return errors.New("operations left running")
	}
	return nil
}

// pause waits for d or until ctx is done, like work that honours its context.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func since(start time.Time) string {
	return fmt.Sprintf("%dms", time.Since(start).Milliseconds())
}
