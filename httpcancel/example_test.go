package httpcancel_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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

// Shut a server down gracefully: the requests still running when the
// grace ends are cancelled with the reason shutdown, and those that wrote
// nothing are answered 503 with Retry-After, so that their clients try
// another instance. A request that ends within the grace is not touched.
func ExampleOnShutdown() {
	shuttingDown := make(chan struct{})
	started := make(chan struct{}, 2)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /quick", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-shuttingDown // work that ends during the grace
		fmt.Fprintln(w, "done")
	})
	mux.HandleFunc("GET /export", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done() // work that only stops when cancelled
	})

	srv := httptest.NewUnstartedServer(nil) // in a program: &http.Server{Addr: ":8080"}
	drain := httpcancel.OnShutdown(srv.Config, 500*time.Millisecond)
	srv.Config.Handler = httpcancel.Middleware(httpcancel.WithDrain(drain))(mux)
	srv.Config.RegisterOnShutdown(func() { close(shuttingDown) })
	srv.Start()
	defer srv.Close()

	answers := map[string]chan string{"/quick": make(chan string, 1), "/export": make(chan string, 1)}
	for path, answer := range answers {
		go func() {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				answer <- err.Error()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answer <- fmt.Sprintf("%s, Retry-After %q: %s", resp.Status, resp.Header.Get("Retry-After"), body)
		}()
	}
	<-started
	<-started

	// On SIGTERM, say. Shutdown waits for the requests in flight; then
	// Drain.Wait for the handlers Shutdown does not wait for (hijacked
	// connections; on HTTP/2, cancelled ones that ignore their context).
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := srv.Config.Shutdown(ctx); err != nil {
		fmt.Println("shutdown:", err)
	}
	if err := drain.Wait(ctx); err != nil {
		fmt.Println("drain:", err)
	}
	fmt.Print("/quick: ", <-answers["/quick"])
	fmt.Print("/export: ", <-answers["/export"])
	// Output:
	// /quick: 200 OK, Retry-After "": done
	// /export: 503 Service Unavailable, Retry-After "1": {"type":"https://pkg.go.dev/github.com/cancelable-go/cancelable/cancel#ReasonShutdown","title":"Service Unavailable","status":503,"reason":"shutdown"}
}

// Serve the admin handler beside the application, outside the middleware
// (its own requests are then not operations crowding the registry), behind
// your own authentication. An operator lists the live requests through the
// JSON API and cancels one with a reason and a message; AdminAuthorize
// decides who may cancel.
func ExampleAdmin() {
	reg := new(cancel.Registry)
	started := make(chan struct{})
	cause := make(chan error, 1)
	app := http.NewServeMux()
	app.HandleFunc("GET /export", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done() // stuck until someone cancels it
		cause <- context.Cause(r.Context())
	})
	admin := httpcancel.Admin(reg, httpcancel.AdminAuthorize(func(r *http.Request) bool {
		user, _, _ := r.BasicAuth()
		return user == "oncall"
	}))
	operators := func(h http.Handler) http.Handler { // your authentication
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, password, _ := r.BasicAuth(); password != "s3cret" {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	root := http.NewServeMux()
	root.Handle("/", httpcancel.Middleware(httpcancel.WithRegistry(reg))(app))
	root.Handle("/debug/operations/", http.StripPrefix("/debug/operations", operators(admin)))
	srv := httptest.NewServer(root)
	defer srv.Close()

	exported := make(chan string, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/export")
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		exported <- resp.Status
	}()
	<-started

	call := func(user, method, path, body string) []byte {
		req, _ := http.NewRequest(method, srv.URL+"/debug/operations"+path, strings.NewReader(body))
		req.SetBasicAuth(user, "s3cret")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Println(user, method, resp.Status)
		return b
	}
	var live struct{ Operations []cancel.Info }
	json.Unmarshal(call("viewer", "GET", "/operations", ""), &live)
	for _, op := range live.Operations {
		fmt.Println("live:", op.Name, op.Status)
	}
	cancelPath := fmt.Sprintf("/operations/%d/cancel", live.Operations[0].ID)
	reason := `{"reason":"manual","message":"stuck export, ticket 4711"}`
	call("viewer", "POST", cancelPath, reason)
	fmt.Print(string(call("oncall", "POST", cancelPath, reason)))
	fmt.Println("handler:", <-cause)
	fmt.Println("client:", <-exported)
	// Output:
	// viewer GET 200 OK
	// live: GET /export running
	// viewer POST 403 Forbidden
	// oncall POST 200 OK
	// {"cancelled":true}
	// handler: GET /export: cancelled (manual): stuck export, ticket 4711
	// client: 503 Service Unavailable
}

// Let clients ask for less time than the server's timeout, in the
// Request-Timeout header (as Transport sends it): a client that allows
// 50ms gets 504 at 50ms rather than waiting for the server's 10s.
func ExampleWithClientBudget() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /search", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // a slow search
	})
	srv := httptest.NewServer(httpcancel.Middleware(
		httpcancel.WithTimeout(10*time.Second),
		httpcancel.WithClientBudget("", 10*time.Second), // Request-Timeout, at most 10s
	)(mux))
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/search", nil)
	req.Header.Set("Request-Timeout", "50ms") // or "0.05", in seconds
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("%s\n%s", resp.Status, body)
	// Output:
	// 504 Gateway Timeout
	// {"type":"https://pkg.go.dev/github.com/cancelable-go/cancelable/cancel#ReasonTimeout","title":"Gateway Timeout","status":504,"reason":"timeout"}
}
