// Command perfserver serves a trivial handler ("hello, world\n" at GET
// /hello, through a ServeMux) behind one of the middleware stacks that the
// loopback load run (cmd/httpload) compares:
//
//	bare                 the ServeMux alone
//	otelhttp             otelhttp.NewHandler around it
//	otelhttp+httpcancel  otelhttp.NewHandler(httpcancel.Middleware(...)(mux)),
//	                     the request operations observed by otelcancel
//	httpcancel           httpcancel.Middleware()(mux), no observer
//
// OpenTelemetry is set up as httpcancel's benchmarks do: an SDK tracer
// provider sampling every request with a discarding exporter (WithSyncer),
// and an SDK meter provider with a manual reader (never collected), both
// shared by otelhttp and otelcancel.
//
// With -cpuprofile it writes a CPU profile of its whole run (go tool pprof).
//
// It prints the URL it serves on stdout ("http://127.0.0.1:PORT") once
// listening, and shuts down on SIGINT or SIGTERM.
//
//	go run ./cmd/perfserver -stack otelhttp+httpcancel -addr 127.0.0.1:8080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/httpcancel"
	"github.com/cancelable-go/cancelable/otelcancel"
)

// Stacks are the values -stack accepts.
var stacks = []string{"bare", "otelhttp", "otelhttp+httpcancel", "httpcancel"}

// discardExporter exports spans nowhere: the run measures recording, not
// a network.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

var helloBody = []byte("hello, world\n")

func main() {
	stack := flag.String("stack", "bare", fmt.Sprintf("the middleware stack: one of %q", stacks))
	addr := flag.String("addr", "127.0.0.1:0", "the address to listen on")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("perfserver: ")

	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSyncer(discardExporter{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer tp.Shutdown(context.Background())
	defer mp.Shutdown(context.Background())

	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) { w.Write(helloBody) })
	var h http.Handler
	switch *stack {
	case "bare":
		h = mux
	case "otelhttp":
		h = otelhttp.NewHandler(mux, "server", otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp))
	case "otelhttp+httpcancel":
		obs, err := otelcancel.New(otelcancel.WithTracerProvider(tp), otelcancel.WithMeterProvider(mp))
		if err != nil {
			log.Fatal(err)
		}
		inner := httpcancel.Middleware(httpcancel.WithOperationOptions(cancel.WithObserver(obs)))(mux)
		h = otelhttp.NewHandler(inner, "server", otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp))
	case "httpcancel":
		h = httpcancel.Middleware()(mux)
	default:
		log.Fatalf("unknown -stack %q: want one of %q", *stack, stacks)
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("http://%s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		log.Fatal(err)
	case <-ctx.Done():
	}
	sctx, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Print(err)
	}
}
