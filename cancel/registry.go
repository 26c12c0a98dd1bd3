package cancel

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultHistoryLimit is the number of ended operations a Registry keeps
// when its HistoryLimit is zero.
const DefaultHistoryLimit = 1000

// A Registry lists live operations and keeps a bounded history of ended
// ones, so that an operator can inspect and cancel them. Operations join
// with WithRegistry. A Registry is safe for concurrent use; its memory is
// bounded by the live operations and HistoryLimit.
//
// The zero Registry is ready to use.
type Registry struct {
	// HistoryLimit caps how many ended operations are kept, oldest dropped
	// first: zero means DefaultHistoryLimit, a negative value keeps none.
	// It is read once, when the first operation ends.
	HistoryLimit int

	mu      sync.Mutex
	live    map[uint64]*Operation
	peak    int    // largest len(live) since the map was last rebuilt
	history []Info // ring buffer
	next    int    // where the next ended operation goes in history
	limit   int    // HistoryLimit as read at the first end; -1 for none

	ended          [len(statusNames)]int64
	reasons        [len(reasonNames)]int64
	completedTotal time.Duration
}

// A Filter selects operations. Its zero value selects all; each set field
// narrows the selection.
type Filter struct {
	Name   string    // the name contains this
	Status Status    // the status is this
	Reason Reason    // a cancellation was requested with this reason
	Parent uint64    // the parent operation has this ID
	Since  time.Time // started (for History: ended) at or after this
	Limit  int       // at most this many; zero or less means no limit
}

func (f *Filter) match(i *Info, at time.Time) bool {
	return (f.Name == "" || strings.Contains(i.Name, f.Name)) &&
		(f.Status == 0 || f.Status == i.Status) &&
		(f.Reason == 0 || f.Reason == i.Reason) &&
		(f.Parent == 0 || f.Parent == i.ParentID) &&
		(f.Since.IsZero() || !at.Before(f.Since))
}

func (f *Filter) matchLive(op *Operation) bool {
	i := Info{Name: op.name, Status: op.Status(), Reason: op.Reason()}
	if op.parent != nil {
		i.ParentID = op.parent.id
	}
	return f.match(&i, op.start)
}

// historyLimit returns the limit read at the first ended operation: the
// ring buffer cannot change size under its own feet. r.mu must be held.
func (r *Registry) historyLimit() int {
	if r.limit == 0 {
		switch {
		case r.HistoryLimit == 0:
			r.limit = DefaultHistoryLimit
		case r.HistoryLimit < 0:
			r.limit = -1
		default:
			r.limit = r.HistoryLimit
		}
	}
	return max(r.limit, 0)
}

func (r *Registry) add(op *Operation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live == nil {
		r.live = make(map[uint64]*Operation)
	}
	r.live[op.id] = op
	r.peak = max(r.peak, len(r.live))
}

func (r *Registry) remove(op *Operation) {
	info := op.Info()
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, op.id)
	// Go maps never shrink: rebuild a map that emptied out after a peak,
	// so that a burst of operations does not hold memory for ever.
	if r.peak > 1024 && len(r.live) < r.peak/4 {
		live := make(map[uint64]*Operation, len(r.live)) // not maps.Clone: it keeps the size
		for id, op := range r.live {
			live[id] = op
		}
		r.live = live
		r.peak = len(r.live)
	}
	r.ended[info.Status]++
	if info.Reason != 0 { // cancelled, or completed or failed after the request
		r.reasons[info.Reason]++
	}
	if info.Status == StatusCompleted {
		r.completedTotal += info.Duration
	}
	if limit := r.historyLimit(); limit > 0 {
		if len(r.history) < limit {
			r.history = append(r.history, info)
		} else {
			r.history[r.next] = info
		}
		r.next = (r.next + 1) % limit
	}
}

// List returns the live operations f selects, oldest first.
func (r *Registry) List(f Filter) []*Operation {
	r.mu.Lock()
	ops := make([]*Operation, 0, len(r.live))
	for _, op := range r.live {
		ops = append(ops, op)
	}
	r.mu.Unlock()
	ops = slices.DeleteFunc(ops, func(op *Operation) bool { return !f.matchLive(op) })
	slices.SortFunc(ops, func(a, b *Operation) int { return cmpUint(a.id, b.id) })
	if f.Limit > 0 && len(ops) > f.Limit {
		ops = ops[:f.Limit]
	}
	return ops
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Get returns the live operation with the given ID, or nil.
func (r *Registry) Get(id uint64) *Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live[id]
}

// Lookup returns a snapshot of the operation with the given ID, live or in
// the history.
func (r *Registry) Lookup(id uint64) (Info, bool) {
	if op := r.Get(id); op != nil {
		return op.Info(), true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.history {
		if r.history[i].ID == id {
			return r.history[i], true
		}
	}
	return Info{}, false
}

// Cancel cancels the live operation with the given ID and reports whether
// this call cancelled it: false if there is no such live operation or it was
// already cancelled.
func (r *Registry) Cancel(id uint64, reason Reason, message string) bool {
	op := r.Get(id)
	return op != nil && op.Cancel(reason, message)
}

// CancelAll cancels the live operations f selects and returns how many this
// call cancelled. It cancels the newest first: an operation selected with
// the operation it was started under gets reason and message from this
// call, not ReasonParent from a race with its parent's cancellation.
func (r *Registry) CancelAll(f Filter, reason Reason, message string) int {
	n := 0
	for _, op := range slices.Backward(r.List(f)) {
		if op.Cancel(reason, message) {
			n++
		}
	}
	return n
}

// History returns snapshots of the ended operations f selects, newest
// first. Filter.Since applies to the time they ended.
func (r *Registry) History(f Filter) []Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Info
	n := len(r.history)
	for k := 1; k <= n; k++ {
		i := &r.history[(r.next-k+n)%n]
		if f.match(i, i.Ended) {
			out = append(out, *i)
			if f.Limit > 0 && len(out) == f.Limit {
				break
			}
		}
	}
	return out
}

// Stats are a registry's counts.
type Stats struct {
	Active   int              // live operations
	ByStatus map[Status]int64 // live operations by status, plus every ended one by outcome
	// ByReason counts every ended operation whose cancellation was requested,
	// by reason (including those that completed anyway).
	ByReason    map[Reason]int64
	HistorySize int           // ended operations kept in the history
	Completed   int64         // operations that completed, ever
	AvgDuration time.Duration // mean duration of those
}

// Stats returns the registry's counts. Counts of ended operations cover the
// registry's whole life, not only its history.
func (r *Registry) Stats() Stats {
	r.mu.Lock()
	ops := make([]*Operation, 0, len(r.live))
	for _, op := range r.live {
		ops = append(ops, op)
	}
	s := Stats{
		Active:      len(r.live),
		ByStatus:    make(map[Status]int64),
		ByReason:    make(map[Reason]int64),
		HistorySize: len(r.history),
		Completed:   r.ended[StatusCompleted],
	}
	for st, n := range r.ended {
		if n > 0 {
			s.ByStatus[Status(st)] = n
		}
	}
	for rs, n := range r.reasons {
		if n > 0 {
			s.ByReason[Reason(rs)] = n
		}
	}
	if s.Completed > 0 {
		s.AvgDuration = r.completedTotal / time.Duration(s.Completed)
	}
	r.mu.Unlock()
	for _, op := range ops {
		s.ByStatus[op.Status()]++
	}
	return s
}
