package cancel

import (
	"encoding/json"
	"testing"
)

// Reason and status names come from clients (the admin API, JSON): any
// string either parses to the value whose name it is, or fails; nothing
// else parses, and values round-trip through JSON.
func FuzzParseNames(f *testing.F) {
	for _, r := range Reasons() {
		f.Add(r.String())
	}
	for _, s := range Statuses() {
		f.Add(s.String())
	}
	f.Add("")
	f.Add("Timeout")
	f.Add("timeout\x00")
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseReason(s); err == nil {
			if r.String() != s {
				t.Fatalf("ParseReason(%q) = %v, named %q", s, r, r.String())
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var back Reason
			if err := json.Unmarshal(b, &back); err != nil || back != r {
				t.Fatalf("%v round-trips to %v, %v", r, back, err)
			}
		}
		if st, err := ParseStatus(s); err == nil && st.String() != s {
			t.Fatalf("ParseStatus(%q) = %v, named %q", s, st, st.String())
		}
		var r Reason
		if err := json.Unmarshal([]byte(s), &r); err == nil && r != 0 && !r.valid() {
			t.Fatalf("JSON %q decoded to an invalid reason %d", s, r)
		}
	})
}
