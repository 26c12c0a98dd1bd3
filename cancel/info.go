package cancel

import (
	"encoding/json"
	"log/slog"
	"time"
)

// Info is a snapshot of an operation, ready for JSON.
type Info struct {
	ID       uint64 `json:"id"`
	Name     string `json:"name"`
	ParentID uint64 `json:"parent_id,omitempty"`
	Status   Status `json:"status"`
	// Reason and Message are those of the cancellation request, if any.
	Reason  Reason `json:"reason,omitzero"`
	Message string `json:"message,omitempty"`
	// Error is what End returned, for a cancelled or failed operation.
	Error           string         `json:"error,omitempty"`
	Shielded        bool           `json:"shielded,omitempty"`
	Started         time.Time      `json:"started"`
	Ended           time.Time      `json:"ended,omitzero"`
	CancelRequested time.Time      `json:"cancel_requested,omitzero"`
	Deadline        time.Time      `json:"deadline,omitzero"`
	Duration        time.Duration  `json:"duration_ns"`
	Delivered       int64          `json:"delivered,omitempty"`
	LastProgress    *Progress      `json:"last_progress,omitempty"`
	Attrs           map[string]any `json:"attrs,omitempty"`
}

// Info returns a snapshot of the operation.
func (op *Operation) Info() Info {
	op.mu.Lock()
	i := Info{
		ID:        op.id,
		Name:      op.name,
		Status:    op.status,
		Shielded:  op.Shielded(),
		Started:   op.start,
		Delivered: op.delivered.Load(),
		Attrs:     attrsMap(op.Attrs()),
		Duration:  op.ended,
	}
	if op.ended != 0 {
		i.Ended = op.start.Add(op.ended)
	} else {
		i.Duration = time.Since(op.start)
	}
	if op.cause != nil {
		i.Error = op.cause.Error()
	}
	if op.progress != nil {
		p := *op.progress
		i.LastProgress = &p
	}
	op.mu.Unlock()
	if op.parent != nil {
		i.ParentID = op.parent.id
	}
	if e := op.cancelErr.Load(); e != nil {
		i.Reason, i.Message, i.CancelRequested = e.Reason, e.Message, e.Time
	}
	i.Deadline, _ = op.Deadline()
	return i
}

// MarshalJSON encodes the report with its attributes as a JSON object.
func (p Progress) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Time    time.Time      `json:"time"`
		Message string         `json:"message"`
		Attrs   map[string]any `json:"attrs,omitempty"`
	}{p.Time, p.Message, attrsMap(p.Attrs)})
}

// attrsMap turns attributes into a map for JSON; groups become nested maps.
func attrsMap(attrs []slog.Attr) map[string]any {
	if len(attrs) == 0 {
		return nil
	}
	m := make(map[string]any, len(attrs))
	for _, a := range attrs {
		v := a.Value.Resolve()
		switch v.Kind() {
		case slog.KindGroup:
			if g := attrsMap(v.Group()); g != nil {
				if a.Key == "" { // an unnamed group is inlined, as slog does
					for k, gv := range g {
						m[k] = gv
					}
				} else {
					m[a.Key] = g
				}
			}
		case slog.KindDuration:
			m[a.Key] = v.Duration().String()
		default:
			if err, ok := v.Any().(error); ok {
				m[a.Key] = err.Error()
			} else {
				m[a.Key] = v.Any()
			}
		}
	}
	return m
}
