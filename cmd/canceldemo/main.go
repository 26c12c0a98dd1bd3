// Command canceldemo shows why work stops.
//
//	canceldemo [serve] [-addr 127.0.0.1:8080] [-grace 5s]   a small service built on the library (the default)
//	canceldemo load [-target URL] [-rate 20] ...   traffic that makes it stop for every reason
//	canceldemo tour                                a console tour: one operation per reason
//	canceldemo health [-url URL]                   exit 0 if the service answers (container health checks)
//	canceldemo harness [-n 20000] ...              load and faults in process, every operation accounted for
//
// serve exposes its operations at /admin/, its metrics at /metrics and
// its recent spans at /debug/tracez; with OTEL_EXPORTER_OTLP_ENDPOINT set it
// also sends its spans there over OTLP/HTTP (to Jaeger, say). load sends a
// mix of requests that complete, time out on either side, hang up, stop
// reading, vanish or get cancelled by an operator, and ends with a table of
// what the clients saw.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: canceldemo [command] [flags]

commands:
  serve    run the demo service (the default): canceldemo serve -addr 127.0.0.1:8080 -grace 5s
  load     send traffic that stops for every reason: canceldemo load -target http://localhost:8080
  tour     a console tour of every reason, without a server
  health   check that a service answers: canceldemo health -url http://localhost:8080/healthz
  harness  load and faults against an in-process service, with exact accounting: canceldemo harness -n 20000

Run "canceldemo <command> -h" for the flags of a command.
`

// mainExit runs the command named by args and returns the exit code.
func mainExit(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	// SIGINT and SIGTERM stop serve and load cleanly; a second one kills.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch cmd {
	case "serve":
		err = serveCommand(ctx, args, stdout, stderr)
	case "load":
		err = loadCommand(ctx, args, stdout, stderr)
	case "tour":
		stop() // the tour sends itself SIGINT, and catches it
		if len(args) > 0 {
			err = fmt.Errorf("tour takes no arguments")
			break
		}
		err = runTour(stdout)
	case "health":
		err = healthCommand(ctx, args, stderr)
	case "harness": // harness.go
		err = harnessCommand(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "canceldemo: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintln(stderr, "canceldemo:", err)
		return 1
	}
}

// errUsage reports bad flags, which the flag package already explained.
var errUsage = errors.New("usage")

// parseFlags parses args with fs, which prints its own errors and usage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}
