//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// browserDemo is canceldemo serve, built from ../../cmd/canceldemo and
// running on a port of 127.0.0.1 until the end of the test.
type browserDemo struct {
	base   string // http://127.0.0.1:port
	client *http.Client
	stdout *browserLog
	stderr *browserLog
}

// browserStartDemo builds the demo (or takes $CANCELDEMO_BIN), starts it and waits until it answers
// its health check. It is stopped with SIGTERM at the end of the test,
// and must then exit cleanly.
func browserStartDemo(t *testing.T) *browserDemo {
	t.Helper()
	bin := os.Getenv("CANCELDEMO_BIN") // a binary built already (make canceldemo)
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "canceldemo")
		goTool, err := exec.LookPath("go")
		if err != nil {
			t.Fatalf("the go command, to build the demo: %v", err)
		}
		build := exec.Command(goTool, "build", "-o", bin, ".")
		build.Dir = filepath.Join("..", "..", "cmd", "canceldemo")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build in %s: %v\n%s", build.Dir, err, out)
		}
	}

	d := &browserDemo{
		stdout: &browserLog{addr: make(chan string, 1)},
		stderr: &browserLog{},
		client: &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			Timeout:   30 * time.Second,
		},
	}
	// Port 0: the demo says on which port it listens, so no other
	// process can take the port between a choice and the listen.
	cmd := exec.Command(bin, "serve", "-addr", "127.0.0.1:0", "-grace", "500ms")
	cmd.Stdout, cmd.Stderr = d.stdout, d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			if waitErr != nil {
				t.Errorf("canceldemo serve after SIGTERM: %v\nstdout:\n%s\nstderr:\n%s", waitErr, d.stdout, d.stderr)
			} else if !strings.Contains(d.stdout.String(), "stopped") {
				t.Errorf("canceldemo serve exited without saying it stopped\nstdout:\n%s", d.stdout)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("canceldemo serve still running 30s after SIGTERM: killed\nstdout:\n%s\nstderr:\n%s", d.stdout, d.stderr)
		}
		if t.Failed() {
			t.Logf("canceldemo stderr:\n%s", d.stderr)
		}
	})

	select {
	case addr := <-d.stdout.addr:
		d.base = "http://" + addr
	case <-exited:
		t.Fatalf("canceldemo serve exited: %v\nstdout:\n%s\nstderr:\n%s", waitErr, d.stdout, d.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("canceldemo serve did not say where it listens within 30s\nstdout:\n%s\nstderr:\n%s", d.stdout, d.stderr)
	}
	d.waitFor(t, "its health check", func() (bool, error) {
		code, _, err := d.get("/healthz")
		return code == http.StatusOK, err
	})
	return d
}

// waitFor polls cond every 20ms until it holds, for at most 15s.
func (d *browserDemo) waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		var ok bool
		if ok, err = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 15s for %s (last error: %v)\ndemo stderr:\n%s", what, err, d.stderr)
		}
		<-tick.C
	}
}

// get returns the status and body of GET path.
func (d *browserDemo) get(path string) (int, []byte, error) {
	return d.do(http.MethodGet, path, "", "")
}

func (d *browserDemo) do(method, path, contentType, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, d.base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// mustJSON sends a request that must answer want, and decodes its JSON
// answer into v.
func (d *browserDemo) mustJSON(t *testing.T, method, path, body string, want int, v any) {
	t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	code, b, err := d.do(method, path, ct, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if code != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// browserOp is what the admin JSON API tells of an operation.
type browserOp struct {
	ID           uint64 `json:"id"`
	Name         string `json:"name"`
	Status       string `json:"status"`
	Reason       string `json:"reason"`
	Message      string `json:"message"`
	LastProgress *struct {
		Message string `json:"message"`
	} `json:"last_progress"`
}

// browserLog is a process's output, safe to read while it is written;
// the first "serving on" line's address goes to addr, if set.
type browserLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	addr chan string
	told bool
}

var browserServingOn = regexp.MustCompile(`canceldemo serving on (\S+)`)

func (l *browserLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.addr != nil && !l.told {
		if m := browserServingOn.FindSubmatch(l.buf.Bytes()); m != nil {
			l.addr <- string(m[1])
			l.told = true
		}
	}
	return len(p), nil
}

func (l *browserLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
