package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"go.opentelemetry.io/otel"
)

// serveCommand runs the demo service until ctx ends (SIGINT, SIGTERM),
// then shuts it down gracefully.
func serveCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := defaultServerConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (the admin page can cancel work: loopback unless you mean it)")
	fs.DurationVar(&cfg.Grace, "grace", cfg.Grace, "at shutdown, how long requests in flight get to finish before they are cancelled (reason shutdown)")
	verbose := fs.Bool("v", false, "log every request that stopped early")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: canceldemo serve [flags]\n\nThe demo service. OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) sends its spans over OTLP/HTTP.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Grace < 0 {
		return fmt.Errorf("-grace must not be negative")
	}
	cfg.OTLPEndpoint = otlpEndpointFromEnv()
	cfg.Log = stderr
	if *verbose {
		cfg.LogLevel = slog.LevelDebug
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	s, err := newServer(ctx, cfg)
	if err != nil {
		ln.Close()
		return err
	}
	// For code that uses the globals (none of ours does: the providers are
	// given explicitly).
	otel.SetTracerProvider(s.tel.tracerProvider)
	otel.SetMeterProvider(s.tel.prom.MeterProvider())
	otel.SetTextMapPropagator(s.tel.propagator)
	slog.SetDefault(s.log)

	s.start(ln)
	base := s.self
	fmt.Fprintf(stdout, "canceldemo serving on %s\n", ln.Addr())
	fmt.Fprintf(stdout, "  index      %s/\n", base)
	fmt.Fprintf(stdout, "  operations %s/admin/\n", base)
	fmt.Fprintf(stdout, "  metrics    %s/metrics\n", base)
	fmt.Fprintf(stdout, "  spans      %s/debug/tracez\n", base)
	if cfg.OTLPEndpoint != "" {
		fmt.Fprintf(stdout, "  traces     sent over OTLP/HTTP to %s\n", cfg.OTLPEndpoint)
		if j := jaegerURL(cfg.OTLPEndpoint); j != "" {
			fmt.Fprintf(stdout, "  jaeger     %s\n", j)
		}
	}
	fmt.Fprintf(stdout, "send traffic with: canceldemo load -target %s\n", base)

	select {
	case <-ctx.Done():
	case <-s.served: // Serve failed
	}
	fmt.Fprintf(stdout, "shutting down: requests in flight get %v, then are cancelled\n", cfg.Grace)
	sctx, stop := context.WithTimeout(context.Background(), cfg.Grace+15*time.Second)
	defer stop()
	err = s.shutdown(sctx)
	if cerr := s.close(sctx); cerr != nil && err == nil {
		err = fmt.Errorf("flushing telemetry: %w", cerr)
	}
	if err == nil {
		fmt.Fprintln(stdout, "stopped")
	}
	return err
}
