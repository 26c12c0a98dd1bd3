package cancel_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

func ExampleStart() {
	ctx, op := cancel.Start(context.Background(), "resize-images", cancel.WithTimeout(20*time.Millisecond))
	err := op.End(resizeAll(ctx)) // End returns what the caller should return

	fmt.Println(op.Status(), op.Reason())
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	fmt.Println(err)
	// Output:
	// cancelled timeout
	// true
	// resize-images: cancelled (timeout): timed out after 20ms
}

// resizeAll stands for work that honours its context.
func resizeAll(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func ExampleRun() {
	err := cancel.Run(context.Background(), "report", func(ctx context.Context) error {
		op := cancel.FromContext(ctx)
		op.Progress("half way", slog.Int("pages", 10))
		op.Cancel(cancel.ReasonManual, "operator pressed cancel")
		<-ctx.Done()
		return context.Cause(ctx)
	})
	fmt.Println(cancel.ReasonOf(err))
	fmt.Println(err)
	// Output:
	// manual
	// report: cancelled (manual): operator pressed cancel
}

func ExampleToken() {
	tok := cancel.NewToken()
	stop := tok.OnCancel(func() { fmt.Println("callback:", tok.Err()) })
	defer stop()

	// One token can stop many operations.
	ctx1, op1 := cancel.Start(context.Background(), "upload", cancel.WithToken(tok))
	ctx2, op2 := cancel.Start(context.Background(), "transcode", cancel.WithToken(tok))

	fmt.Println(tok.Cancel(cancel.ReasonShutdown, "deploy"))
	fmt.Println(tok.Cancel(cancel.ReasonManual, "too late")) // the first cancel wins
	fmt.Println(op1.End(ctx1.Err()))
	fmt.Println(op2.End(ctx2.Err()))
	// Output:
	// callback: cancelled (shutdown): deploy
	// true
	// false
	// upload: cancelled (shutdown): deploy
	// transcode: cancelled (shutdown): deploy
}

func ExampleRegistry() {
	reg := &cancel.Registry{}
	_, export := cancel.Start(context.Background(), "export", cancel.WithRegistry(reg))
	_, backup := cancel.Start(context.Background(), "backup", cancel.WithRegistry(reg))

	for _, op := range reg.List(cancel.Filter{}) {
		fmt.Println("live:", op.Name(), op.Status())
	}
	fmt.Println("cancelled:", reg.Cancel(export.ID(), cancel.ReasonManual, "operator"))
	export.End(export.Err())
	backup.End(nil)

	for _, info := range reg.History(cancel.Filter{}) {
		fmt.Printf("ended: %s %s %q\n", info.Name, info.Status, info.Reason)
	}
	st := reg.Stats()
	fmt.Println("active:", st.Active, "completed:", st.Completed, "manual:", st.ByReason[cancel.ReasonManual])
	// Output:
	// live: export running
	// live: backup running
	// cancelled: true
	// ended: backup completed ""
	// ended: export cancelled "manual"
	// active: 0 completed: 1 manual: 1
}

func ExampleSeq() {
	ctx, op := cancel.Start(context.Background(), "import", cancel.WithObserver(cancel.Hooks{
		OnProgress: func(_ *cancel.Operation, p cancel.Progress) { fmt.Println("progress:", p.Message) },
	}))
	rows := slices.Values([]string{"a", "b", "c", "d", "e"})
	for row := range cancel.Seq(ctx, rows, cancel.ReportEvery(2)) {
		if row == "d" {
			op.Cancel(cancel.ReasonManual, "enough")
			continue // nothing more is delivered
		}
		fmt.Println("row:", row)
	}
	op.End(nil)
	fmt.Println("delivered:", op.Delivered(), op.Status(), op.Reason())
	// Output:
	// row: a
	// row: b
	// progress: processed 2 items
	// row: c
	// progress: processed 4 items
	// delivered: 4 completed manual
}

func ExampleShield() {
	ctx, op := cancel.Start(context.Background(), "checkout")
	err := cancel.Shield(ctx, func(ctx context.Context) error {
		op.Cancel(cancel.ReasonDisconnect, "client went away")
		// The payment is recorded even though the client left.
		fmt.Println("recording payment, cancelled:", ctx.Err() != nil)
		return nil
	})
	fmt.Println(op.End(err))
	// Output:
	// recording payment, cancelled: false
	// checkout: cancelled (disconnect): client went away
}

func ExampleAnyOf() {
	tok := cancel.NewToken()
	ready := cancel.Condition("queue drained", func(context.Context) (bool, error) { return true, nil }, time.Second)
	// Stop once the queue is drained and either an operator or a timeout says so.
	src := cancel.AllOf(ready, cancel.AnyOf(tok, cancel.Timeout(time.Hour)))
	ctx, op := cancel.Start(context.Background(), "drain", cancel.WithSource(src))
	tok.Cancel(cancel.ReasonManual, "operator")
	<-ctx.Done()
	fmt.Println(op.End(ctx.Err()))
	// Output:
	// drain: cancelled (manual): operator
}
