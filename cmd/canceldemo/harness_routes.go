package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
)

// The harness's own routes (added to the demo's through
// serverConfig.extraRoutes): each behaves deterministically, so that what
// a client does fixes how its request ends, and the accounting can be
// exact.
const (
	hOK       = "GET /h/ok"        // answers 200 at once: completed
	hHangup   = "POST /h/hangup"   // reads the body, then waits for its context: a client hanging up makes it disconnect
	hBudget   = "GET /h/budget"    // waits for its context: a client's Request-Timeout budget makes it timeout
	hOpCancel = "GET /h/opcancel"  // waits for its context: an operator cancel (admin API) makes it manual
	hVictim   = "GET /h/victim"    // waits for its context: only the shutdown ends it
	hTimeout  = "GET /h/timeout"   // waits for its context, with a route timeout: timeout
	hStubborn = "GET /h/stubborn"  // works on past its route timeout, ignoring its context: timeout, with a stop latency
	hDrip     = "GET /h/drip"      // streams a chunk every few ms until its context ends: disconnect or shutdown
	hItem     = "GET /h/item/{id}" // answers 200: raw paths for the cardinality check
	hUpload   = "POST /h/upload"   // reads a body of at most harnessUploadLimit: 200 or 413

	// Names of the demo's own routes and of the operations they start.
	hWork     = "GET /work"
	hEvents   = "GET /events"
	hSSE      = "sse GET /events"
	hWS       = "GET /ws"
	hWSConn   = "ws GET /ws"
	hJobs     = "POST /jobs"
	hJob      = "job"
	hAdmin    = "/admin/"
	hMetrics  = "GET /metrics"
	hNotFound = "GET"    // a GET no route matches
	hOther    = "_OTHER" // a method nobody knows
)

const (
	harnessRouteTimeout    = 30 * time.Millisecond
	harnessStubbornTimeout = 20 * time.Millisecond
	harnessStubbornOver    = 50 * time.Millisecond
	harnessUploadLimit     = 64 << 10
)

// harnessRoutes adds the harness's routes to the demo's mux.
func harnessRoutes(_ *server, mux *http.ServeMux) {
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	}
	// hold reads the request's body (which sends "100 Continue" to a
	// client that expects it: the client then knows its request is being
	// served), then waits until its context ends. The middleware answers
	// with the reason's status.
	hold := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	})
	mux.HandleFunc(hOK, ok)
	mux.HandleFunc(hItem, ok)
	mux.Handle(hHangup, httpcancel.Timeout(0, hold))
	mux.Handle(hBudget, httpcancel.Timeout(0, hold))
	mux.Handle(hOpCancel, httpcancel.Timeout(0, hold))
	mux.Handle(hVictim, httpcancel.Timeout(0, hold))
	mux.Handle(hTimeout, httpcancel.Timeout(harnessRouteTimeout, hold))
	// stubborn's work takes no context and outlasts the route's timeout by
	// harnessStubbornOver, however late the timeout fires on a busy
	// machine (a fixed sleep would not: the timeout could come after it).
	// The client gets its 504 at the deadline; the operation ends when the
	// work does (cancel_stop_latency_seconds).
	mux.Handle(hStubborn, httpcancel.Timeout(harnessStubbornTimeout, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-cancel.FromContext(r.Context()).Done()
		time.Sleep(harnessStubbornOver)
		if r.Context().Err() == nil {
			ok(w, r)
		}
	})))
	mux.Handle(hDrip, httpcancel.Timeout(0, http.HandlerFunc(harnessDrip)))
	mux.HandleFunc(hUpload, harnessUpload)
}

// harnessDrip writes 256 bytes every ?every= (default 5ms) until its
// context ends.
func harnessDrip(w http.ResponseWriter, r *http.Request) {
	every := 5 * time.Millisecond
	if v := r.URL.Query().Get("every"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond || d > time.Second {
			http.Error(w, "every: a duration from 1ms to 1s", http.StatusBadRequest)
			return
		}
		every = d
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	chunk := bytes.Repeat([]byte("d"), 256)
	rc := http.NewResponseController(w)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := w.Write(chunk); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

// harnessUpload reads a body of at most harnessUploadLimit bytes: 413 for
// a larger one (at once when its Content-Length says so).
func harnessUpload(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > harnessUploadLimit {
		http.Error(w, fmt.Sprintf("body larger than %d bytes", harnessUploadLimit), http.StatusRequestEntityTooLarge)
		return
	}
	n, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, harnessUploadLimit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("body larger than %d bytes", harnessUploadLimit), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the body failed", http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%d bytes\n", n)
}
