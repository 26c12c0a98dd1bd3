package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/otelcancel"
)

// jaegerTrace is the part of Jaeger's /api/traces answer the tests read.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags []jaegerKV `json:"tags"`
		Logs []struct {
			Timestamp int64      `json:"timestamp"`
			Fields    []jaegerKV `json:"fields"`
		} `json:"logs"`
	} `json:"spans"`
}

type jaegerKV struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

func tag(kvs []jaegerKV, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// Spans sent over OTLP to a real Jaeger come back through its query API
// with the cancellation: reason, event and status.
func TestJaegerReceivesCancellations(t *testing.T) {
	j := startJaeger(t)
	service := fmt.Sprintf("cancel-e2e-%d", time.Now().UnixNano())

	exp, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpoint(j.otlpHTTP), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
	)
	obs, err := otelcancel.New(otelcancel.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}

	// A request whose parent gives up: the child says "parent", the parent
	// "timeout"; a progress report on the way; and a manual cancel.
	err = cancel.Run(context.Background(), "checkout", func(ctx context.Context) error {
		cancel.FromContext(ctx).Progress("cart loaded")
		return cancel.Run(ctx, "charge-card", func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}, cancel.WithObserver(obs))
	}, cancel.WithObserver(obs), cancel.WithTimeout(20*time.Millisecond))
	if cancel.ReasonOf(err) != cancel.ReasonTimeout {
		t.Fatalf("checkout: %v", err)
	}
	err = cancel.Run(context.Background(), "export", func(ctx context.Context) error {
		go cancel.FromContext(ctx).Cancel(cancel.ReasonManual, "operator pressed cancel")
		<-ctx.Done()
		return ctx.Err()
	}, cancel.WithObserver(obs))
	if cancel.ReasonOf(err) != cancel.ReasonManual {
		t.Fatalf("export: %v", err)
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatalf("flushing spans to Jaeger: %v", err)
	}

	traces := j.waitTraces(t, service, 2)
	spans := map[string]int{}
	for _, tr := range traces {
		for _, s := range tr.Spans {
			spans[s.OperationName]++
			want := map[string][2]string{ // operation -> reason, outcome
				"checkout":    {"timeout", "cancelled"},
				"charge-card": {"parent", "cancelled"},
				"export":      {"manual", "cancelled"},
			}[s.OperationName]
			if got := tag(s.Tags, "cancel.reason"); got != want[0] {
				t.Errorf("%s: cancel.reason %q, want %q", s.OperationName, got, want[0])
			}
			if got := tag(s.Tags, "cancel.outcome"); got != want[1] {
				t.Errorf("%s: cancel.outcome %q, want %q", s.OperationName, got, want[1])
			}
			if got := tag(s.Tags, "otel.status_code"); got != "ERROR" {
				t.Errorf("%s: status %q, want ERROR", s.OperationName, got)
			}
			if got := tag(s.Tags, "error.type"); got != want[0] {
				t.Errorf("%s: error.type %q, want %q", s.OperationName, got, want[0])
			}
			var requested, progress bool
			for _, l := range s.Logs {
				switch tag(l.Fields, "event") {
				case otelcancel.EventRequested:
					requested = tag(l.Fields, "cancel.reason") == want[0]
				case otelcancel.EventProgress:
					progress = tag(l.Fields, "cancel.message") == "cart loaded"
				}
			}
			if !requested {
				t.Errorf("%s: no cancel.requested event with reason %s: %+v", s.OperationName, want[0], s.Logs)
			}
			if s.OperationName == "checkout" && !progress {
				t.Errorf("checkout: no cancel.progress event: %+v", s.Logs)
			}
			if s.OperationName == "charge-card" && (len(s.References) != 1 || s.References[0].RefType != "CHILD_OF") {
				t.Errorf("charge-card is not a child: %+v", s.References)
			}
		}
	}
	if spans["checkout"] != 1 || spans["charge-card"] != 1 || spans["export"] != 1 {
		t.Fatalf("spans in Jaeger: %v", spans)
	}
}

// waitTraces polls Jaeger's query API until the service has n traces.
func (j *jaeger) waitTraces(t *testing.T, service string, n int) []jaegerTrace {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	q := url.Values{"service": {service}, "limit": {"100"}}
	for {
		var body struct {
			Data []jaegerTrace `json:"data"`
		}
		resp, err := http.Get("http://" + j.query + "/api/traces?" + q.Encode())
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
		}
		if err == nil && len(body.Data) >= n {
			return body.Data
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger has %d traces of %s after 30s (want %d), last error %v", len(body.Data), service, n, err)
		}
		time.Sleep(200 * time.Millisecond) // polling an external service: nothing to wait on
	}
}

var _ = strings.Contains
