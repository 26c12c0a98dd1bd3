package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type jaeger struct {
	otlpHTTP string // host:port
	query    string // host:port of the query HTTP API
}

// jaegerBinary returns the Jaeger JAEGER_BIN names (make builds it once),
// or builds it as the Go tool of the tools/jaeger module.
func jaegerBinary(t *testing.T) string {
	if bin := os.Getenv("JAEGER_BIN"); bin != "" {
		return bin
	}
	cmd := exec.Command("go", "tool", "-n", "jaeger")
	cmd.Dir = "../jaeger"
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("building Jaeger (go tool -n jaeger): %v", err)
	}
	return strings.TrimSpace(string(out))
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startJaeger runs Jaeger v2 with in-memory storage, every endpoint bound to
// 127.0.0.1, and stops it at the end of the test.
func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Jaeger")
	}
	j := &jaeger{otlpHTTP: freePort(t), query: freePort(t)}
	health, otlpGRPC, queryGRPC := freePort(t), freePort(t), freePort(t)
	config := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %s
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, health, j.query, queryGRPC, otlpGRPC, j.otlpHTTP)
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(jaegerBinary(t), "--config", path)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Jaeger: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("Jaeger's log:\n%s", logs.String())
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("Jaeger exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get("http://" + health + "/status")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger not healthy after 60s: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond) // polling a process we started: no channel to wait on
	}
}
