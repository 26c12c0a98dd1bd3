package cancel

import (
	"sync/atomic"
	"time"
)

// now is time.Now at half the cost: where reading the wall clock is slow
// (about 50ns on the virtual machines we measured, against 25ns for the
// monotonic clock), it adds the monotonic time elapsed to a wall time read
// at most a second ago. The error is the wall clock's drift in that second.
func now() time.Time {
	if b := clockBase.Load(); b != nil {
		if d := time.Since(*b); d >= 0 && d < time.Second {
			return b.Add(d)
		}
	}
	t := time.Now()
	clockBase.Store(&t)
	return t
}

var clockBase atomic.Pointer[time.Time]
