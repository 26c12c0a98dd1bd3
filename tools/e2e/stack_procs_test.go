package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The processes of TestStack: the demo, its load generator, Prometheus
// (Jaeger is startJaeger's). Every identifier of these files starts with
// stack, so that they do not collide with the other tests of the package.

// stackMissing skips the test for lack of a program it needs, or fails it
// when it runs in CI (env CI set), which must have everything.
func stackMissing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// stackBuffer collects a process's output; safe for the process's writes
// and the test's reads while it runs.
type stackBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *stackBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *stackBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// stackProc is a process started by the test.
type stackProc struct {
	name   string
	cmd    *exec.Cmd
	logs   *stackBuffer
	exited chan struct{} // closed once Wait returned; err is set then
	err    error
}

// stackStart starts a long-running process. At the end of the test it is
// sent SIGTERM, then killed if it has not exited 10s later; its output is
// logged if the test failed.
func stackStart(t *testing.T, name string, env []string, bin string, args ...string) *stackProc {
	t.Helper()
	p := &stackProc{name: name, logs: &stackBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if err := p.stop(10 * time.Second); err != nil {
			t.Logf("%s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("%s's output:\n%s", name, p.logs.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for the process to exit, killing it after
// timeout. It returns how the process exited (nil: status 0).
func (p *stackProc) stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("did not stop within %v of SIGTERM: killed", timeout)
	}
}

// alive returns an error if the process has exited.
func (p *stackProc) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.logs.String())
	default:
		return nil
	}
}

// stackPoll calls cond until it reports done, returns an error (the test
// fails at once), or timeout passes. Polling is the only way to wait for
// the state of another process; no fixed sleeps.
func stackPoll(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		done, err := cond()
		if done {
			return
		}
		if err != nil {
			if fatal, ok := err.(stackFatal); ok {
				t.Fatalf("waiting for %s: %v", what, fatal.error)
			}
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: not after %v (last error: %v)", what, timeout, last)
		case <-tick.C:
		}
	}
}

// stackFatal wraps an error that ends a stackPoll at once; other errors
// are retried (a server still starting, say).
type stackFatal struct{ error }

// stackBuildDemo builds cmd/canceldemo (a module of its own) with the go
// command on PATH and the test's environment, and returns the binary.
func stackBuildDemo(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "cmd", "canceldemo"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "canceldemo")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the demo (go build in %s): %v\n%s", dir, err, out)
	}
	return bin
}

// stackDemoEnv is the environment of the demo and the load generator: the
// test's, without any OpenTelemetry settings of its own (they would send
// the spans elsewhere or rename the service), plus extra.
func stackDemoEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// stackClient is the test's HTTP client; its idle connections are closed
// at the end of the test (goleak).
func stackClient(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}
