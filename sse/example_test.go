package sse_test

import (
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/sse"
)

// get prints the body of a GET, as a client reads it.
func get(url string, header ...string) {
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Header.Get("Content-Type"))
	fmt.Print(string(b))
}

func ExampleNew() {
	events := func(w http.ResponseWriter, r *http.Request) {
		s, err := sse.New(w, r, sse.WithHeartbeat(15*time.Second), sse.WithWriteTimeout(10*time.Second))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		err = s.Send(sse.Event{ID: "1", Type: "greeting", Data: "hello\nworld"})
		s.End(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(events))
	defer ts.Close()
	get(ts.URL)
	// Output:
	// text/event-stream
	// id: 1
	// event: greeting
	// data: hello
	// data: world
	//
}

// A stream resumes after the last event its client received: the
// EventSource sends its ID back when it reconnects. IDs are strings.
func ExampleStream_LastEventID() {
	prices := []string{"a1", "b2", "c3", "d4"}
	events := func(w http.ResponseWriter, r *http.Request) {
		s, err := sse.New(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		start := 0
		for i, id := range prices {
			if id == s.LastEventID() {
				start = i + 1
			}
		}
		s.End(s.SendSeq(func(yield func(sse.Event) bool) {
			for i := start; i < len(prices); i++ {
				if !yield(sse.Event{ID: prices[i], Data: "price " + strconv.Itoa(i)}) {
					return
				}
			}
		}))
	}
	ts := httptest.NewServer(http.HandlerFunc(events))
	defer ts.Close()
	get(ts.URL, "Last-Event-ID", "b2")
	// Output:
	// text/event-stream
	// id: c3
	// data: price 2
	//
	// id: d4
	// data: price 3
	//
}

// At a cancellation, here the stream's timeout, the client gets a last
// "cancelled" event that says why, and the stream ends, even while the
// handler waits for its next event.
func ExampleStream_SendChan() {
	updates := make(chan sse.Event) // nothing ever comes
	events := func(w http.ResponseWriter, r *http.Request) {
		s, err := sse.New(w, r, sse.WithOperationOptions(cancel.WithTimeout(50*time.Millisecond)))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		err = s.SendChan(updates)
		fmt.Println("handler:", cancel.ReasonOf(err))
		s.End(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(events))
	defer ts.Close()
	get(ts.URL)
	// Output:
	// handler: timeout
	// text/event-stream
	// event: cancelled
	// data: {"reason":"timeout","message":"the stream timed out"}
	//
}

// With WithProgress, the progress reports of the stream's operation reach
// the client as "progress" events.
func ExampleWithProgress() {
	rows := func(yield func(sse.Event) bool) {
		for i := range 4 {
			if !yield(sse.Event{Data: "row " + strconv.Itoa(i)}) {
				return
			}
		}
	}
	events := func(w http.ResponseWriter, r *http.Request) {
		s, err := sse.New(w, r, sse.WithProgress(), sse.WithName("sse export"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.Operation().Progress("export started", slog.String("format", "csv"))
		s.End(s.SendSeq(iter.Seq[sse.Event](rows), cancel.ReportEvery(2)))
	}
	ts := httptest.NewServer(http.HandlerFunc(events))
	defer ts.Close()
	get(ts.URL)
	// Output:
	// text/event-stream
	// event: progress
	// data: {"message":"export started","attrs":{"format":"csv"}}
	//
	// data: row 0
	//
	// data: row 1
	//
	// event: progress
	// data: {"message":"processed 2 items","attrs":{"items":2}}
	//
	// data: row 2
	//
	// data: row 3
	//
	// event: progress
	// data: {"message":"processed 4 items","attrs":{"items":4}}
	//
}
