// Package scaletest holds what the scale benchmarks of sse and wscancel
// share: a client process holding thousands of connections (so that the
// benchmark's own process holds only the server side), and the readings
// of memory, goroutines and CPU time.
package scaletest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Child is a running client process.
type Child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// StartChild starts the clients' process (this test binary again, with
// env added to its environment, which its init must catch) and waits
// until it says "ready".
func StartChild(b *testing.B, env ...string) *Child {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &Child{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	if !c.out.Scan() || c.out.Text() != "ready" {
		stdin.Close()
		cmd.Wait()
		b.Fatalf("client process: %q, want ready", c.out.Text())
	}
	return c
}

// Stop has the child close its connections and waits for it to exit.
func (c *Child) Stop(b *testing.B) {
	b.Helper()
	c.stdin.Close()
	for c.out.Scan() { // until the child exits
	}
	if err := c.cmd.Wait(); err != nil {
		b.Fatalf("client process: %v", err)
	}
}

// Count asks the child for its count (heartbeats or pings received).
func (c *Child) Count(b *testing.B) int64 {
	b.Helper()
	if _, err := io.WriteString(c.stdin, "count\n"); err != nil {
		b.Fatal(err)
	}
	if !c.out.Scan() {
		b.Fatal("client process: no count")
	}
	n, err := strconv.ParseInt(c.out.Text(), 10, 64)
	if err != nil {
		b.Fatalf("client process: %v", err)
	}
	return n
}

// RaiseNoFile raises the soft limit of open files to at least n, or skips
// the benchmark when the hard limit is lower.
func RaiseNoFile(b *testing.B, n uint64) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Fatal(err)
	}
	if l.Cur >= n {
		return
	}
	if l.Max < n {
		b.Skipf("needs %d open files; the hard limit is %d", n, l.Max)
	}
	l.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Skipf("needs %d open files: %v", n, err)
	}
}

// WaitFor waits up to a minute for cond.
func WaitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Mem returns the live heap, the goroutine stacks in use and the
// number of goroutines, after a full collection.
func Mem() (heap, stack, goroutines int64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.StackInuse), int64(runtime.NumGoroutine())
}

// CPUTime returns the CPU time the process has used so far.
func CPUTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Median returns the median of xs.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
