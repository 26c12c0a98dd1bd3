package cancel

import (
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/cancelable-go/cancelable/internal/attrjson"
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
		Attrs:     attrjson.Map(op.Attrs()),
		Duration:  op.ended,
	}
	if op.ended != 0 {
		i.Ended = op.start.Add(op.ended)
	} else {
		i.Duration = time.Since(op.start)
	}
	if op.cause != nil {
		i.Error = errorText(op.cause) // under the lock: it must not panic
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
	// A deadline JSON cannot encode (past year 9999, a "never" some code
	// uses) is left out: time.Time.MarshalJSON would fail the whole
	// snapshot, and every list holding it.
	if d, ok := op.Deadline(); ok && d.Year() >= 0 && d.Year() <= 9999 {
		i.Deadline = d
	}
	return i
}

// MarshalJSON encodes the report with its attributes as a JSON object.
func (p Progress) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Time    time.Time      `json:"time"`
		Message string         `json:"message"`
		Attrs   map[string]any `json:"attrs,omitempty"`
	}{p.Time, p.Message, attrjson.Map(p.Attrs)})
}

// UnmarshalJSON decodes what MarshalJSON encodes, so that a client can read
// snapshots back into Info. The attributes come back sorted by key, objects
// as groups, with the types JSON has (numbers are float64).
func (p *Progress) UnmarshalJSON(b []byte) error {
	var v struct {
		Time    time.Time      `json:"time"`
		Message string         `json:"message"`
		Attrs   map[string]any `json:"attrs"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = Progress{Time: v.Time, Message: v.Message, Attrs: mapAttrs(v.Attrs)}
	return nil
}

// mapAttrs is the inverse of attrsMap, for decoded JSON.
func mapAttrs(m map[string]any) []slog.Attr {
	if len(m) == 0 {
		return nil
	}
	attrs := make([]slog.Attr, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if g, ok := m[k].(map[string]any); ok {
			attrs = append(attrs, slog.Attr{Key: k, Value: slog.GroupValue(mapAttrs(g)...)})
		} else {
			attrs = append(attrs, slog.Any(k, m[k]))
		}
	}
	return attrs
}
