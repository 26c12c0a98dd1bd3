package cancel

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// The strings are a contract: metric label values, span attributes, JSON.
func TestReasonStrings(t *testing.T) {
	want := map[Reason]string{
		ReasonTimeout:    "timeout",
		ReasonManual:     "manual",
		ReasonSignal:     "signal",
		ReasonCondition:  "condition",
		ReasonParent:     "parent",
		ReasonDisconnect: "disconnect",
		ReasonShutdown:   "shutdown",
		ReasonError:      "error",
	}
	all := Reasons()
	if len(all) != len(want) {
		t.Fatalf("Reasons() = %v, want %d reasons", all, len(want))
	}
	// Declaration order, no duplicates, nothing outside the set.
	if !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Fatalf("Reasons() = %v: not in declaration order or duplicated", all)
	}
	for _, r := range all {
		s, ok := want[r]
		if !ok {
			t.Fatalf("Reasons() holds %d, which has no name", uint8(r))
		}
		if r.String() != s {
			t.Errorf("%d.String() = %q, want %q", uint8(r), r.String(), s)
		}
		if s != strings.ToLower(s) {
			t.Errorf("%q is not lower-case", s)
		}
	}
	if s := Reason(0).String(); s != "" {
		t.Errorf("zero Reason.String() = %q, want empty", s)
	}
	if s := Reason(42).String(); s != "reason(42)" {
		t.Errorf("Reason(42).String() = %q", s)
	}
}

func TestStatusStrings(t *testing.T) {
	want := []struct {
		s     Status
		name  string
		ended bool
	}{
		{StatusPending, "pending", false},
		{StatusRunning, "running", false},
		{StatusCompleted, "completed", true},
		{StatusCancelled, "cancelled", true},
		{StatusFailed, "failed", true},
	}
	all := Statuses()
	if len(all) != len(want) {
		t.Fatalf("Statuses() = %v, want %d", all, len(want))
	}
	for i, w := range want {
		if all[i] != w.s {
			t.Errorf("Statuses()[%d] = %v, want %v (life order)", i, all[i], w.s)
		}
		if w.s.String() != w.name {
			t.Errorf("%d.String() = %q, want %q", uint8(w.s), w.s.String(), w.name)
		}
		if w.s.Ended() != w.ended {
			t.Errorf("%v.Ended() = %v", w.s, w.s.Ended())
		}
	}
	if Status(0).String() != "" || Status(0).Ended() {
		t.Errorf("zero Status: %q ended=%v", Status(0).String(), Status(0).Ended())
	}
	if s := Status(9); s.String() != "status(9)" || s.Ended() {
		t.Errorf("Status(9): %q ended=%v", s.String(), s.Ended())
	}
}

func TestReasonTextAndJSONRoundTrip(t *testing.T) {
	for _, r := range append([]Reason{0}, Reasons()...) {
		b, err := r.MarshalText()
		if err != nil || string(b) != r.String() {
			t.Fatalf("%v.MarshalText() = %q, %v", r, b, err)
		}
		var back Reason = ReasonError + 1 // anything but r
		if err := back.UnmarshalText(b); err != nil || back != r {
			t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", b, back, err, r)
		}
		p, err := ParseReason(r.String())
		if err != nil || p != r {
			t.Fatalf("ParseReason(%q) = %v, %v", r.String(), p, err)
		}

		j, err := json.Marshal(r)
		if err != nil || string(j) != `"`+r.String()+`"` {
			t.Fatalf("json.Marshal(%v) = %s, %v", r, j, err)
		}
		var jb Reason
		if err := json.Unmarshal(j, &jb); err != nil || jb != r {
			t.Fatalf("json.Unmarshal(%s) = %v, %v", j, jb, err)
		}
	}

	// As map keys and struct fields, as Stats and Info use them.
	in := map[Reason]int64{ReasonTimeout: 3, ReasonShutdown: 1}
	j, err := json.Marshal(in)
	if err != nil || string(j) != `{"shutdown":1,"timeout":3}` {
		t.Fatalf("map: %s, %v", j, err)
	}
	var out map[Reason]int64
	if err := json.Unmarshal(j, &out); err != nil || len(out) != 2 || out[ReasonTimeout] != 3 || out[ReasonShutdown] != 1 {
		t.Fatalf("map back: %v, %v", out, err)
	}
}

func TestStatusTextAndJSONRoundTrip(t *testing.T) {
	for _, s := range append([]Status{0}, Statuses()...) {
		j, err := json.Marshal(s)
		if err != nil || string(j) != `"`+s.String()+`"` {
			t.Fatalf("json.Marshal(%v) = %s, %v", s, j, err)
		}
		var back Status = 99
		if err := json.Unmarshal(j, &back); err != nil || back != s {
			t.Fatalf("json.Unmarshal(%s) = %v, %v", j, back, err)
		}
		p, err := ParseStatus(s.String())
		if err != nil || p != s {
			t.Fatalf("ParseStatus(%q) = %v, %v", s.String(), p, err)
		}
	}
	j, err := json.Marshal(map[Status]int64{StatusRunning: 2, StatusFailed: 1})
	if err != nil || string(j) != `{"failed":1,"running":2}` {
		t.Fatalf("map: %s, %v", j, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"Timeout", "TIMEOUT", " timeout", "timeout ", "bogus", "reason(1)", "1", "pending"} {
		r, err := ParseReason(s)
		if err == nil || r != 0 {
			t.Errorf("ParseReason(%q) = %v, %v; want an error", s, r, err)
		} else if !strings.Contains(err.Error(), "reason") || !strings.Contains(err.Error(), `"`+s+`"`) {
			t.Errorf("ParseReason(%q) error %q does not name the input", s, err)
		}
	}
	for _, s := range []string{"Running", "canceled", "done", "timeout", "status(1)"} {
		st, err := ParseStatus(s)
		if err == nil || st != 0 {
			t.Errorf("ParseStatus(%q) = %v, %v; want an error", s, st, err)
		} else if !strings.Contains(err.Error(), "status") || !strings.Contains(err.Error(), `"`+s+`"`) {
			t.Errorf("ParseStatus(%q) error %q does not name the input", s, err)
		}
	}

	// A failed decode leaves the value alone and fails the JSON decode.
	r := ReasonSignal
	if err := r.UnmarshalText([]byte("nope")); err == nil || r != ReasonSignal {
		t.Fatalf("UnmarshalText(nope) = %v, value %v", err, r)
	}
	var v struct{ R Reason }
	if err := json.Unmarshal([]byte(`{"R":"canceled"}`), &v); err == nil {
		t.Fatal("json.Unmarshal of an unknown reason succeeded")
	}
	var sv struct{ S Status }
	if err := json.Unmarshal([]byte(`{"S":"canceled"}`), &sv); err == nil {
		t.Fatal("json.Unmarshal of an unknown status succeeded")
	}

	// Values outside the closed sets do not encode: they would be a label
	// value nobody queries for.
	if b, err := Reason(200).MarshalText(); err == nil {
		t.Fatalf("Reason(200).MarshalText() = %q, want an error", b)
	}
	if b, err := json.Marshal(Status(200)); err == nil {
		t.Fatalf("json.Marshal(Status(200)) = %s, want an error", b)
	}
}

func TestReasonValid(t *testing.T) {
	for _, r := range Reasons() {
		if !r.valid() {
			t.Errorf("%v not valid", r)
		}
	}
	for _, r := range []Reason{0, ReasonError + 1, 255} {
		if r.valid() {
			t.Errorf("%d valid", uint8(r))
		}
	}
}
