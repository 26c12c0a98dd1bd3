package cancel

import "context"

// Shield runs fn to completion even if ctx is cancelled meanwhile: fn's
// context keeps ctx's values but not its cancellation. The cancellation takes
// effect right after: if fn returns nil and ctx was cancelled, Shield returns
// context.Cause(ctx), so that the caller stops there.
//
// The shielded section is an operation of its own named "shield", a child of
// the operation in ctx with Shielded true, so observers see where it began
// and ended. Bound it if it can hang: start an operation with a timeout
// inside fn. If fn panics (or calls runtime.Goexit), the section ends as
// failed and the panic goes on up, as with Run.
func Shield(ctx context.Context, fn func(ctx context.Context) error) error {
	if ctx == nil {
		ctx = context.Background()
	}
	// Run, not Start and End: a panic in fn must still end the section.
	err := Run(ctx, "shield", fn, func(c *config) { c.shielded = true })
	if err == nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}
