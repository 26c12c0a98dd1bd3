package httpcancel_test

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
)

// redacted redacts itself in logs, as slog.LogValuer is meant for.
type redacted struct{ token string }

func (redacted) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// The page shows progress attributes resolved, as slog and the JSON API
// do: a value that redacts itself through LogValue is not shown raw.
func TestAdminPageResolvesLogValuers(t *testing.T) {
	reg := &cancel.Registry{}
	srv, base := admServer(t, reg)
	_, op := admLive(t, context.Background(), reg, "login")
	op.Progress("checking", slog.Any("session", redacted{"hunter2"}),
		slog.Group("user", slog.Any("password", redacted{"s3cret"})))

	if api := string(admGet(t, srv, base+"/operations").body); strings.Contains(api, "hunter2") || strings.Contains(api, "s3cret") {
		t.Fatalf("JSON API shows a redacted: %s", api)
	}
	r := admGet(t, srv, base+"/")
	if r.status != http.StatusOK {
		t.Fatalf("page: %d", r.status)
	}
	page := string(r.body)
	for _, redacted := range []string{"hunter2", "s3cret"} {
		if i := strings.Index(page, redacted); i >= 0 {
			t.Errorf("page shows %q, which its LogValue redacts: ...%s...", redacted, page[max(0, i-60):i+20])
		}
	}
	for _, want := range []string{"session=REDACTED", "user=[password=REDACTED]"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks the resolved attribute %s", want)
		}
	}
	// The operation's own report is left as it was.
	if p := op.Info().LastProgress; p.Attrs[0].Value.Kind() != slog.KindLogValuer {
		t.Errorf("the operation's report was changed: %v", p.Attrs[0].Value.Kind())
	}
}

// One operation with a deadline JSON cannot encode (past year 9999, a
// "never" some code uses) must not fail every list it is in.
func TestAdminFarDeadline(t *testing.T) {
	reg := &cancel.Registry{}
	srv, base := admServer(t, reg)
	admLive(t, context.Background(), reg, "ok")
	_, op := cancel.Start(context.Background(), "forever", cancel.WithRegistry(reg),
		cancel.WithDeadline(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)))
	id := strconv.FormatUint(op.ID(), 10)
	for _, p := range []string{"/operations", "/operations/" + id} {
		if r := admGet(t, srv, base+p); r.status != http.StatusOK {
			t.Errorf("GET %s: %d %s", p, r.status, r.body)
		}
	}
	op.End(nil)
	for _, p := range []string{"/history", "/operations/" + id} {
		if r := admGet(t, srv, base+p); r.status != http.StatusOK {
			t.Errorf("GET %s after the end: %d %s", p, r.status, r.body)
		}
	}
}
