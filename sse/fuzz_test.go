package sse

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzEncode checks that any event either is refused (its ID or type
// could end its field) or reads back exactly through a conforming parser,
// as one event, with the event after it intact: data cannot forge another
// event, an ID or a type.
func FuzzEncode(f *testing.F) {
	f.Add("1", "update", "hello", int64(0))
	f.Add("a:b c", "", "line1\nline2\r\nline3\rline4", int64(1500))
	f.Add("", "message", "", int64(0))
	f.Add("x", "y", "\n\nid: forged\nevent: evil\ndata: x\n\n", int64(0))
	f.Add("x\ny", "t", "d", int64(0))
	f.Add("x", "t\r", "d", int64(0))
	f.Add("x\x00", "t", "d", int64(0))
	f.Add(" lead", " space", " data: \r", int64(-3))
	f.Add("\xef\xbb\xbf", "é", "\xef\xbb\xbfdata", int64(1))
	f.Add("a\xffb", "t", "x\xe2\x82y", int64(0))
	f.Fuzz(func(t *testing.T, id, typ, data string, retryMS int64) {
		e := Event{ID: id, Type: typ, Data: data, Retry: time.Duration(retryMS) * time.Millisecond}
		bad := strings.ContainsAny(id, "\r\n\x00") || strings.ContainsAny(typ, "\r\n\x00") || e.Retry < 0 ||
			!utf8.ValidString(id) || !utf8.ValidString(typ) || !utf8.ValidString(data)
		err := e.Validate()
		if bad != (err != nil) {
			t.Fatalf("Validate(%+v) = %v, want refused: %v", e, err, bad)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidField) {
				t.Fatalf("error %v does not match ErrInvalidField", err)
			}
			return
		}
		b := appendEvent(nil, &e)
		b = appendComment(b, data) // a comment cannot forge anything either
		b = appendEvent(b, &Event{ID: "next", Type: "sentinel", Data: "end"})
		events, comments, retry, err := parseAll(b)
		if err != nil {
			t.Fatalf("parse %q: %v", b, err)
		}
		want := parsed{ID: id, Type: typ, Data: normalize(data)}
		if want.Type == "" {
			want.Type = "message"
		}
		if len(events) != 2 || events[0] != want || events[1] != (parsed{ID: "next", Type: "sentinel", Data: "end"}) {
			t.Fatalf("encoded %q, parsed %+v, want [%+v sentinel]", b, events, want)
		}
		if wantComments := strings.Split(normalize(data), "\n"); len(comments) != len(wantComments) {
			t.Fatalf("comment %q parsed as %q", data, comments)
		}
		if e.Retry > 0 && retry != max(e.Retry.Milliseconds(), 1) {
			t.Fatalf("retry %v parsed as %d ms", e.Retry, retry)
		}
	})
}
