package cancel

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	ctx, op := Start(context.Background(), "smoke", WithTimeout(10*time.Millisecond))
	<-ctx.Done()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("ctx.Err = %v", ctx.Err())
	}
	err := op.End(ctx.Err())
	if ReasonOf(err) != ReasonTimeout || op.Status() != StatusCancelled {
		t.Fatalf("err %v status %v", err, op.Status())
	}
	if c := context.Cause(ctx); c != err {
		t.Fatalf("cause %v", c)
	}
	t.Log(err)
}
