// Package attrjson turns slog attributes into values encoding/json can
// always encode: for the core's snapshots (cancel.Info, cancel.Progress)
// and the progress messages of sse and wscancel, so that they all agree.
package attrjson

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
)

// Map turns attributes into a map for JSON; groups become nested maps.
func Map(attrs []slog.Attr) map[string]any {
	if len(attrs) == 0 {
		return nil
	}
	m := make(map[string]any, len(attrs))
	for _, a := range attrs {
		v := a.Value.Resolve()
		switch v.Kind() {
		case slog.KindGroup:
			if g := Map(v.Group()); g != nil {
				if a.Key == "" { // an unnamed group is inlined, as slog does
					for k, gv := range g {
						m[k] = gv
					}
				} else {
					m[a.Key] = g
				}
			}
		default:
			m[a.Key] = jsonValue(v)
		}
	}
	return m
}

// jsonValue returns a resolved, non-group attribute value as something
// encoding/json can always encode: one odd attribute must not make a whole
// snapshot (or an admin page listing many) fail to encode, nor End panic
// while it records the operation in a registry. Durations become strings as
// slog's text form has them, errors their message, NaN and infinities their
// names, and values json cannot encode (funcs, channels, a failing or
// panicking MarshalJSON) their fmt form.
func jsonValue(v slog.Value) any {
	switch v.Kind() {
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindFloat64:
		if f := v.Float64(); math.IsNaN(f) || math.IsInf(f, 0) {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case nil:
			return nil
		case error:
			return fmt.Sprint(x) // fmt survives a nil receiver or a panic in Error
		default:
			if !encodesAsJSON(x) {
				return fmt.Sprint(x)
			}
		}
	}
	return v.Any()
}

func encodesAsJSON(x any) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_, err := json.Marshal(x)
	return err == nil
}
