package attrjson

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Whatever the attributes, the map encodes, with the forms slog's text
// handler would show.
func TestMapAlwaysEncodes(t *testing.T) {
	m := Map([]slog.Attr{
		slog.Int("n", 5),
		slog.Float64("nan", math.NaN()),
		slog.Float64("inf", math.Inf(-1)),
		slog.Duration("took", 1500*time.Millisecond),
		slog.Any("err", errors.New("boom")),
		slog.Any("fn", func() {}),
		slog.Any("nil", nil),
		slog.Group("g", slog.String("k", "v")),
		slog.Group("", slog.String("inlined", "yes")),
		slog.Group("empty"),
	})
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"n": 5.0, "nan": "NaN", "inf": "-Inf", "took": "1.5s", "err": "boom", "nil": nil, "inlined": "yes",
	} {
		if got, ok := back[k]; !ok || got != want {
			t.Errorf("%s = %#v, want %#v (in %s)", k, got, want, b)
		}
	}
	if g, ok := back["g"].(map[string]any); !ok || g["k"] != "v" {
		t.Errorf("group g = %#v", back["g"])
	}
	if _, ok := back["fn"].(string); !ok {
		t.Errorf("fn = %#v, want its fmt form", back["fn"])
	}
	if _, ok := back["empty"]; ok {
		t.Errorf("an empty group is kept: %s", b)
	}
	if Map(nil) != nil {
		t.Error("Map(nil) is not nil")
	}
}
