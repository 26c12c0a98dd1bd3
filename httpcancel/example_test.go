package httpcancel_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
)

// Wrap a ServeMux: each request is an operation named after its route,
// listed in the registry while it runs, and cancelled with a reason when
// the client goes away or its timeout passes.
func ExampleMiddleware() {
	reg := new(cancel.Registry)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		op := cancel.FromContext(r.Context())
		fmt.Printf("operation %q, %d live\n", op.Name(), len(reg.List(cancel.Filter{})))
		fmt.Fprintf(w, "item %s\n", r.PathValue("id"))
	})
	handler := httpcancel.Middleware(
		httpcancel.WithTimeout(10*time.Second),
		httpcancel.WithRegistry(reg),
	)(mux)

	srv := httptest.NewServer(handler)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/items/42")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(resp.Status, ": ", string(body))
	for _, info := range reg.History(cancel.Filter{}) {
		fmt.Println(info.Name, info.Status)
	}
	// Output:
	// operation "GET /items/{id}", 1 live
	// 200 OK: item 42
	// GET /items/{id} completed
}

// Give one route a timeout of its own. A handler that runs past it, here
// one that ignores its context, does not keep the client waiting: the
// client gets 504 with a problem document at the deadline, and the
// handler's late writes go nowhere.
func ExampleTimeout() {
	release := make(chan struct{})
	lateWrite := make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fast", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "fast")
	})
	mux.Handle("GET /report", httpcancel.Timeout(50*time.Millisecond, http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			<-release // slow work that ignores r.Context()
			_, err := fmt.Fprintln(w, "report")
			lateWrite <- err
		})))
	srv := httptest.NewServer(httpcancel.Middleware(httpcancel.WithTimeout(5 * time.Second))(mux))
	defer srv.Close()

	for _, path := range []string{"/fast", "/report"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%s: %s %s\n%s", path, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	close(release)
	fmt.Println("late write:", <-lateWrite)
	// Output:
	// /fast: 200 OK text/plain; charset=utf-8
	// fast
	// /report: 504 Gateway Timeout application/problem+json
	// {"type":"https://pkg.go.dev/github.com/cancelable-go/cancelable/cancel#ReasonTimeout","title":"Gateway Timeout","status":504,"reason":"timeout"}
	// late write: http: Handler timeout
}
