package cancel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// regHeapAlloc returns the bytes of live heap objects after a full
// collection.
func regHeapAlloc() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func regOpIDs(ops []*Operation) []uint64 {
	ids := make([]uint64, len(ops))
	for i, op := range ops {
		ids[i] = op.ID()
	}
	return ids
}

func regInfoIDs(infos []Info) []uint64 {
	ids := make([]uint64, len(infos))
	for i, in := range infos {
		ids[i] = in.ID
	}
	return ids
}

func TestRegistryZeroValue(t *testing.T) {
	var r Registry
	if ops := r.List(Filter{}); len(ops) != 0 {
		t.Fatalf("List = %v", ops)
	}
	if r.Get(1) != nil {
		t.Fatal("Get on an empty registry")
	}
	if _, ok := r.Lookup(1); ok {
		t.Fatal("Lookup on an empty registry")
	}
	if r.Cancel(1, ReasonManual, "") || r.CancelAll(Filter{}, ReasonManual, "") != 0 {
		t.Fatal("cancelled something in an empty registry")
	}
	if h := r.History(Filter{}); len(h) != 0 {
		t.Fatalf("History = %v", h)
	}
	st := r.Stats()
	if st.Active != 0 || st.HistorySize != 0 || st.Completed != 0 || st.AvgDuration != 0 ||
		st.ByStatus == nil || st.ByReason == nil || len(st.ByStatus) != 0 || len(st.ByReason) != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	// Zero value used for real.
	_, op := Start(context.Background(), "job", WithRegistry(&r))
	if r.Get(op.ID()) != op || r.Stats().Active != 1 {
		t.Fatal("zero Registry does not register")
	}
	op.End(nil)
	if r.Get(op.ID()) != nil || r.Stats().HistorySize != 1 {
		t.Fatal("zero Registry does not unregister")
	}
}

func TestRegistryNilIsAnOptionError(t *testing.T) {
	err := Run(context.Background(), "job", func(context.Context) error { return nil }, WithRegistry(nil))
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Option != "WithRegistry" {
		t.Fatalf("Run = %v", err)
	}
}

// Registration is per operation: children are listed only if they ask.
func TestRegistryOptIn(t *testing.T) {
	var r Registry
	pctx, parent := Start(context.Background(), "parent", WithRegistry(&r))
	_, plain := Start(pctx, "plain")
	_, listed := Start(pctx, "listed", WithRegistry(&r))
	_, outside := Start(context.Background(), "outside")

	if got := regOpIDs(r.List(Filter{})); !slices.Equal(got, []uint64{parent.ID(), listed.ID()}) {
		t.Fatalf("List = %v, want parent %d and listed %d", got, parent.ID(), listed.ID())
	}
	if r.Get(plain.ID()) != nil || r.Get(outside.ID()) != nil {
		t.Fatal("an operation without WithRegistry is listed")
	}
	plain.End(nil)
	outside.End(nil)
	listed.End(nil)
	parent.End(nil)
	if got := regInfoIDs(r.History(Filter{})); !slices.Equal(got, []uint64{parent.ID(), listed.ID()}) {
		t.Fatalf("History = %v", got)
	}
	if _, ok := r.Lookup(plain.ID()); ok {
		t.Fatal("an unregistered operation is in the history")
	}
	if st := r.Stats(); st.Completed != 2 || st.Active != 0 {
		t.Fatalf("Stats %+v", st)
	}
}

func TestRegistryListFilter(t *testing.T) {
	var r Registry
	bg := context.Background()
	ictx, imp := Start(bg, "import", WithRegistry(&r))
	_, users := Start(ictx, "import/users", WithRegistry(&r))
	_, orders := Start(ictx, "import/orders", WithRegistry(&r))
	mid := time.Now()
	_, export := Start(bg, "export/users", WithRegistry(&r))
	_, other := Start(bg, "other", WithRegistry(&r))
	all := []*Operation{imp, users, orders, export, other}
	defer func() {
		for _, op := range slices.Backward(all) {
			op.End(nil)
		}
	}()
	orders.Cancel(ReasonManual, "operator")
	other.Cancel(ReasonShutdown, "drain")

	for _, tc := range []struct {
		name string
		f    Filter
		want []*Operation
	}{
		{"all, oldest first", Filter{}, all},
		{"name substring", Filter{Name: "users"}, []*Operation{users, export}},
		{"name prefix", Filter{Name: "import"}, []*Operation{imp, users, orders}},
		{"name no match", Filter{Name: "nope"}, nil},
		{"status running", Filter{Status: StatusRunning}, all},
		{"status completed (none live)", Filter{Status: StatusCompleted}, nil},
		{"reason manual", Filter{Reason: ReasonManual}, []*Operation{orders}},
		{"reason shutdown", Filter{Reason: ReasonShutdown}, []*Operation{other}},
		{"reason timeout", Filter{Reason: ReasonTimeout}, nil},
		{"parent", Filter{Parent: imp.ID()}, []*Operation{users, orders}},
		{"parent without children", Filter{Parent: export.ID()}, nil},
		{"since", Filter{Since: mid}, []*Operation{export, other}},
		{"since future", Filter{Since: time.Now().Add(time.Hour)}, nil},
		{"limit keeps the oldest", Filter{Limit: 2}, []*Operation{imp, users}},
		{"limit above count", Filter{Limit: 10}, all},
		{"negative limit", Filter{Limit: -1}, all},
		{"combined", Filter{Name: "import/", Parent: imp.ID(), Reason: ReasonManual}, []*Operation{orders}},
		{"combined limit", Filter{Name: "s", Limit: 2}, []*Operation{users, orders}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := regOpIDs(r.List(tc.f)), regOpIDs(tc.want); !slices.Equal(got, want) {
				t.Fatalf("List(%+v) = %v, want %v", tc.f, got, want)
			}
		})
	}
}

func TestRegistryGetAndLookup(t *testing.T) {
	var r Registry
	_, op := Start(context.Background(), "job", WithRegistry(&r), WithAttrs(slog.String("k", "v")))
	if r.Get(op.ID()) != op {
		t.Fatal("Get does not return the live operation")
	}
	info, ok := r.Lookup(op.ID())
	if !ok || info.ID != op.ID() || info.Status != StatusRunning || info.Name != "job" || info.Attrs["k"] != "v" {
		t.Fatalf("Lookup live = %+v, %v", info, ok)
	}
	op.Cancel(ReasonManual, "bye")
	op.End(op.Err())
	if r.Get(op.ID()) != nil {
		t.Fatal("Get returns an ended operation")
	}
	info, ok = r.Lookup(op.ID())
	if !ok || info.Status != StatusCancelled || info.Reason != ReasonManual || info.Message != "bye" || info.Ended.IsZero() {
		t.Fatalf("Lookup ended = %+v, %v", info, ok)
	}
	if _, ok := r.Lookup(op.ID() + 1_000_000); ok {
		t.Fatal("Lookup of an unknown ID")
	}
	if _, ok := r.Lookup(0); ok {
		t.Fatal("Lookup(0)")
	}
}

func TestRegistryCancel(t *testing.T) {
	var r Registry
	var l obsLog
	ctx, op := Start(context.Background(), "job", WithRegistry(&r), WithObserver(l.observer("o")))
	if r.Cancel(op.ID()+1_000_000, ReasonManual, "") {
		t.Fatal("Cancel of an unknown ID returned true")
	}
	if !r.Cancel(op.ID(), ReasonShutdown, "operator") {
		t.Fatal("first Cancel returned false")
	}
	if r.Cancel(op.ID(), ReasonManual, "again") || op.Cancel(ReasonManual, "again") {
		t.Fatal("a second Cancel returned true")
	}
	select {
	case <-ctx.Done():
	default:
		t.Fatal("not cancelled when Cancel returned")
	}
	e, _ := context.Cause(ctx).(*Error)
	if e == nil || e.Reason != ReasonShutdown || e.Message != "operator" {
		t.Fatalf("cause %v", context.Cause(ctx))
	}
	// Still live until its owner ends it, and listed as cancel-requested.
	if got := r.List(Filter{Reason: ReasonShutdown}); len(got) != 1 || got[0] != op {
		t.Fatalf("List by reason = %v", got)
	}
	op.End(ctx.Err())
	if r.Cancel(op.ID(), ReasonManual, "") {
		t.Fatal("Cancel of an ended operation returned true")
	}
	// An operation cancelled otherwise first: false.
	_, op2 := Start(context.Background(), "job2", WithRegistry(&r))
	defer op2.End(nil)
	op2.Cancel(ReasonTimeout, "")
	if r.Cancel(op2.ID(), ReasonManual, "") {
		t.Fatal("Cancel of an already-cancelled operation returned true")
	}
	obsWantLines(t, &l, "o start job", "o cancel job shutdown", "o end job cancelled")
}

func TestRegistryCancelAll(t *testing.T) {
	var r Registry
	bg := context.Background()
	var ops []*Operation
	var ctxs []context.Context
	for _, name := range []string{"sync/a", "sync/b", "sync/c", "sync/d", "report"} {
		ctx, op := Start(bg, name, WithRegistry(&r))
		ops, ctxs = append(ops, op), append(ctxs, ctx)
	}
	defer func() {
		for i, op := range ops {
			op.End(ctxs[i].Err())
		}
	}()
	ops[1].Cancel(ReasonTimeout, "") // already cancelled: not counted

	if n := r.CancelAll(Filter{Name: "sync/", Limit: 2}, ReasonShutdown, "drain"); n != 1 {
		// The limit selects a and b; b was already cancelled.
		t.Fatalf("CancelAll with limit = %d, want 1", n)
	}
	if n := r.CancelAll(Filter{Name: "sync/"}, ReasonShutdown, "drain"); n != 2 {
		t.Fatalf("CancelAll = %d, want 2 (c and d)", n)
	}
	if n := r.CancelAll(Filter{Name: "sync/"}, ReasonShutdown, "drain"); n != 0 {
		t.Fatalf("CancelAll again = %d, want 0", n)
	}
	for i, want := range []Reason{ReasonShutdown, ReasonTimeout, ReasonShutdown, ReasonShutdown, 0} {
		if ops[i].Reason() != want {
			t.Fatalf("%s: reason %v, want %v", ops[i].Name(), ops[i].Reason(), want)
		}
	}
	if n := r.CancelAll(Filter{}, ReasonManual, ""); n != 1 || ops[4].Reason() != ReasonManual {
		t.Fatalf("CancelAll(all) = %d", n)
	}
}

// CancelAll over a tree: every selected operation is cancelled by the call
// itself, whatever the order in which the parent's cancellation reaches its
// children; the count is exact.
func TestRegistryCancelAllTree(t *testing.T) {
	for round := range 50 {
		var r Registry
		pctx, parent := Start(context.Background(), "import", WithRegistry(&r))
		kids := make([]*Operation, 20)
		for i := range kids {
			_, kids[i] = Start(pctx, "import/part", WithRegistry(&r))
		}
		_, other := Start(pctx, "unrelated", WithRegistry(&r))
		if n := r.CancelAll(Filter{Name: "import"}, ReasonShutdown, "operator"); n != 21 {
			t.Fatalf("round %d: CancelAll = %d, want 21", round, n)
		}
		for _, k := range kids {
			if e, _ := k.Err().(*Error); e == nil || e.Reason != ReasonShutdown || e.Message != "operator" {
				t.Fatalf("round %d: child cancelled with %v, want the call's reason", round, k.Err())
			}
			k.End(nil)
		}
		// Not selected: reached by its parent's cancellation.
		select {
		case <-other.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the parent's cancellation did not reach an unselected child")
		}
		if other.Reason() != ReasonParent {
			t.Fatalf("unselected child reason %v", other.Reason())
		}
		other.End(nil)
		parent.End(nil)
	}
}

// History: newest first, filtered by what happened; Since is the end time.
func TestRegistryHistory(t *testing.T) {
	var r Registry
	bg := context.Background()
	pctx, parent := Start(bg, "parent", WithRegistry(&r))
	boom := errors.New("boom")
	end := func(name string, ctx context.Context, cancel Reason, err error) *Operation {
		_, op := Start(ctx, name, WithRegistry(&r))
		if cancel != 0 {
			op.Cancel(cancel, "why")
		}
		op.End(err)
		return op
	}
	a := end("a", bg, 0, nil)
	b := end("b", pctx, 0, boom)
	mid := time.Now()
	c := end("c", pctx, ReasonManual, context.Canceled)
	d := end("d", bg, ReasonTimeout, nil) // completed after the request
	e := end("e", bg, ReasonManual, io.EOF)
	parent.End(nil)

	for _, tc := range []struct {
		name string
		f    Filter
		want []*Operation
	}{
		{"all, newest first", Filter{}, []*Operation{parent, e, d, c, b, a}},
		{"limit keeps the newest", Filter{Limit: 2}, []*Operation{parent, e}},
		{"status completed", Filter{Status: StatusCompleted}, []*Operation{parent, d, a}},
		{"status cancelled", Filter{Status: StatusCancelled}, []*Operation{e, c}},
		{"status failed", Filter{Status: StatusFailed}, []*Operation{b}},
		{"status running", Filter{Status: StatusRunning}, nil},
		{"reason manual", Filter{Reason: ReasonManual}, []*Operation{e, c}},
		{"reason timeout", Filter{Reason: ReasonTimeout}, []*Operation{d}},
		{"since: by end time", Filter{Since: mid}, []*Operation{parent, e, d, c}},
		{"since future", Filter{Since: time.Now().Add(time.Hour)}, nil},
		{"parent", Filter{Parent: parent.ID()}, []*Operation{c, b}},
		{"name", Filter{Name: "a"}, []*Operation{parent, a}},
		{"status + limit", Filter{Status: StatusCompleted, Limit: 2}, []*Operation{parent, d}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := regInfoIDs(r.History(tc.f)), regOpIDs(tc.want); !slices.Equal(got, want) {
				t.Fatalf("History(%+v) = %v, want %v", tc.f, got, want)
			}
		})
	}
	// Snapshots carry the outcome.
	h := r.History(Filter{Name: "e", Status: StatusCancelled})
	if len(h) != 1 || h[0].Status != StatusCancelled || h[0].Reason != ReasonManual || !strings.Contains(h[0].Error, "EOF") {
		t.Fatalf("history of e: %+v", h)
	}
	// The snapshots are copies: changing them changes nothing.
	h[0].Name = "changed"
	if r.History(Filter{Name: "e", Status: StatusCancelled})[0].Name != "e" {
		t.Fatal("History returned the registry's own storage")
	}
}

func TestRegistryHistoryLimit(t *testing.T) {
	for _, tc := range []struct {
		limit, ended, want int
	}{
		{0, DefaultHistoryLimit + 5, DefaultHistoryLimit},
		{3, 10, 3},
		{3, 2, 2},
		{1, 5, 1},
		{-1, 5, 0},
	} {
		t.Run(fmt.Sprintf("limit=%d/ended=%d", tc.limit, tc.ended), func(t *testing.T) {
			r := Registry{HistoryLimit: tc.limit}
			ids := make([]uint64, tc.ended)
			for i := range ids {
				_, op := Start(context.Background(), "job", WithRegistry(&r))
				ids[i] = op.ID()
				op.End(nil)
			}
			h := r.History(Filter{})
			st := r.Stats()
			if len(h) != tc.want || st.HistorySize != tc.want {
				t.Fatalf("history %d, HistorySize %d; want %d", len(h), st.HistorySize, tc.want)
			}
			// The newest are kept, newest first; the oldest are gone.
			slices.Reverse(ids)
			if got := regInfoIDs(h); !slices.Equal(got, ids[:tc.want]) {
				t.Fatalf("history %v, want %v", got, ids[:tc.want])
			}
			if tc.want < tc.ended {
				if _, ok := r.Lookup(ids[tc.want]); ok {
					t.Fatal("Lookup finds a dropped operation")
				}
			}
			// Counts cover the registry's whole life, not only the history.
			if st.Completed != int64(tc.ended) || st.ByStatus[StatusCompleted] != int64(tc.ended) {
				t.Fatalf("Stats %+v", st)
			}
		})
	}
}

func TestRegistryStats(t *testing.T) {
	var r Registry
	bg := context.Background()
	boom := errors.New("boom")
	run := func(cancel Reason, err error) {
		_, op := Start(bg, "job", WithRegistry(&r))
		if cancel != 0 {
			op.Cancel(cancel, "")
		}
		op.End(err)
	}
	run(0, nil)
	run(0, nil)
	run(ReasonShutdown, nil) // completed, but asked to stop: counted by reason
	run(0, boom)
	run(ReasonTimeout, context.DeadlineExceeded)
	run(ReasonTimeout, boom)
	run(ReasonManual, context.Canceled)
	_, live1 := Start(bg, "live", WithRegistry(&r))
	_, live2 := Start(bg, "live", WithRegistry(&r))
	live2.Cancel(ReasonDisconnect, "") // requested, not ended: not in ByReason yet
	defer live1.End(nil)
	defer live2.End(nil)

	st := r.Stats()
	wantStatus := map[Status]int64{StatusRunning: 2, StatusCompleted: 3, StatusFailed: 1, StatusCancelled: 3}
	wantReason := map[Reason]int64{ReasonShutdown: 1, ReasonTimeout: 2, ReasonManual: 1}
	if st.Active != 2 || st.HistorySize != 7 || st.Completed != 3 {
		t.Fatalf("Stats %+v", st)
	}
	if fmt.Sprint(st.ByStatus) != fmt.Sprint(wantStatus) {
		t.Fatalf("ByStatus %v, want %v", st.ByStatus, wantStatus)
	}
	if fmt.Sprint(st.ByReason) != fmt.Sprint(wantReason) {
		t.Fatalf("ByReason %v, want %v", st.ByReason, wantReason)
	}
	// AvgDuration is the mean of the completed operations' durations.
	var sum time.Duration
	for _, in := range r.History(Filter{Status: StatusCompleted}) {
		sum += in.Duration
	}
	if st.AvgDuration != sum/3 || st.AvgDuration <= 0 {
		t.Fatalf("AvgDuration %v, want %v", st.AvgDuration, sum/3)
	}
	// Stats are copies.
	st.ByStatus[StatusFailed] = 100
	if r.Stats().ByStatus[StatusFailed] != 1 {
		t.Fatal("Stats returned the registry's own map")
	}
	// JSON: the maps have the stable names as keys.
	b, err := json.Marshal(st.ByReason)
	if err != nil || string(b) != `{"manual":1,"shutdown":1,"timeout":2}` {
		t.Fatalf("ByReason JSON %s, %v", b, err)
	}
}

// Many goroutines start, end, cancel, list and read a registry at once;
// every count comes out exact.
func TestRegistryConcurrent(t *testing.T) {
	const workers, perWorker = 16, 150
	r := Registry{HistoryLimit: 500}
	boom := errors.New("boom")
	var completed, failed, manual atomic.Int64
	var shutdown atomic.Int64 // operations CancelAll got
	var victims atomic.Int64  // operations CancelAll may get
	var swept atomic.Int64    // victims that ended cancelled
	stop := make(chan struct{})
	var bg sync.WaitGroup

	// A canceller sweeps victims with CancelAll, and readers read.
	bg.Add(1)
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			shutdown.Add(int64(r.CancelAll(Filter{Name: "victim"}, ReasonShutdown, "sweep")))
			runtime.Gosched()
		}
	}()
	for range 2 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, op := range r.List(Filter{Limit: 5}) {
					_ = op.Info()
					_, _ = r.Lookup(op.ID())
				}
				st := r.Stats()
				var n int64
				for _, c := range st.ByStatus {
					n += c
				}
				if n < int64(st.Active) {
					t.Errorf("ByStatus %v counts fewer than %d live", st.ByStatus, st.Active)
					return
				}
				_ = r.History(Filter{Status: StatusCancelled, Limit: 3})
				runtime.Gosched()
			}
		}()
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				switch (w + i) % 4 {
				case 0:
					_, op := Start(context.Background(), "plain", WithRegistry(&r))
					op.Progress("x")
					op.End(nil)
					completed.Add(1)
				case 1:
					_, op := Start(context.Background(), "failing", WithRegistry(&r))
					op.End(boom)
					failed.Add(1)
				case 2:
					ctx, op := Start(context.Background(), "self", WithRegistry(&r))
					if !r.Cancel(op.ID(), ReasonManual, "me") {
						t.Error("Cancel of a live operation returned false")
					}
					op.End(ctx.Err())
					manual.Add(1)
				case 3:
					ctx, op := Start(context.Background(), "victim", WithRegistry(&r))
					victims.Add(1)
					runtime.Gosched()
					// Ends cancelled if the sweep got it before ctx.Err was
					// read, completed otherwise (with reason shutdown if the
					// sweep got it in between).
					if err := op.End(ctx.Err()); err == nil {
						completed.Add(1)
					} else if ReasonOf(err) != ReasonShutdown {
						t.Errorf("victim ended with %v", err)
					} else {
						swept.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	bg.Wait()

	total := int64(workers * perWorker)
	st := r.Stats()
	if st.Active != 0 || len(r.List(Filter{})) != 0 {
		t.Fatalf("Active %d after all ended", st.Active)
	}
	if swept.Load()+completed.Load()+failed.Load()+manual.Load() != total || swept.Load() > shutdown.Load() {
		t.Fatalf("accounting: swept %d (of %d) completed %d failed %d manual %d, total %d",
			swept.Load(), shutdown.Load(), completed.Load(), failed.Load(), manual.Load(), total)
	}
	want := map[Status]int64{
		StatusCompleted: completed.Load(),
		StatusFailed:    failed.Load(),
		StatusCancelled: manual.Load() + swept.Load(),
	}
	for s := range want {
		if want[s] == 0 {
			delete(want, s)
		}
	}
	wantReasons := map[Reason]int64{ReasonManual: manual.Load(), ReasonShutdown: shutdown.Load()}
	if shutdown.Load() == 0 {
		delete(wantReasons, ReasonShutdown)
	}
	if fmt.Sprint(st.ByStatus) != fmt.Sprint(want) || fmt.Sprint(st.ByReason) != fmt.Sprint(wantReasons) {
		t.Fatalf("ByStatus %v want %v; ByReason %v want %v", st.ByStatus, want, st.ByReason, wantReasons)
	}
	if st.Completed != completed.Load() || st.HistorySize != 500 || len(r.History(Filter{})) != 500 {
		t.Fatalf("Stats %+v", st)
	}
	t.Logf("%d of %d victims swept, %d of them completed anyway", shutdown.Load(), victims.Load(), shutdown.Load()-swept.Load())
}

// Endless churn through a registry keeps its memory bounded: the history
// stays at its limit, and the live map shrinks back after a burst.
func TestRegistryMemoryBounded(t *testing.T) {
	churn, burst := 200_000, 60_000
	if testing.Short() {
		churn, burst = 20_000, 20_000
	}
	r := Registry{HistoryLimit: 100}
	bg := context.Background()
	attrs := WithAttrs(slog.String("tenant", "acme"))
	for range 1000 { // warm up, and fill the history
		_, op := Start(bg, "warm", WithRegistry(&r), attrs)
		op.End(nil)
	}
	base := regHeapAlloc()

	for i := range churn {
		_, op := Start(bg, "churn", WithRegistry(&r), attrs)
		op.Progress("p", slog.Int("i", i))
		op.End(nil)
	}
	afterChurn := regHeapAlloc()
	if st := r.Stats(); st.HistorySize != 100 || st.Active != 0 || st.Completed != int64(churn+1000) {
		t.Fatalf("after churn: %+v", st)
	}
	if growth := afterChurn - base; growth > 1<<20 {
		t.Fatalf("heap grew by %d bytes over %d operations", growth, churn)
	}

	// A burst of live operations, then all end.
	ops := make([]*Operation, burst)
	for i := range ops {
		_, ops[i] = Start(bg, "burst", WithRegistry(&r))
	}
	atPeak := regHeapAlloc()
	if r.Stats().Active != burst {
		t.Fatalf("Active %d, want %d", r.Stats().Active, burst)
	}
	for i, op := range ops {
		op.End(nil)
		ops[i] = nil
	}
	afterBurst := regHeapAlloc()
	if len(r.live) != 0 || r.peak > 1024 {
		t.Fatalf("live map: %d entries, peak %d", len(r.live), r.peak)
	}
	// The operations are gone and so is the map that held them (a map of
	// 60,000 entries alone holds about 1.4 MB).
	if growth := afterBurst - base; growth > 512<<10 {
		t.Fatalf("heap after the burst %d bytes above the start (peak was %d above)", growth, atPeak-base)
	}
	t.Logf("heap: base %d, after churn %+d, at peak %+d, after burst %+d", base, afterChurn-base, atPeak-base, afterBurst-base)
}

// The live map is rebuilt once it empties out after a peak; a steady load
// below the threshold never rebuilds it.
func TestRegistryLiveMapRebuild(t *testing.T) {
	var r Registry
	ops := make([]*Operation, 4000)
	for i := range ops {
		_, ops[i] = Start(context.Background(), "op", WithRegistry(&r))
	}
	if r.peak != 4000 {
		t.Fatalf("peak %d", r.peak)
	}
	for i, op := range ops {
		op.End(nil)
		// Whatever the rebuilds, the live ones are all still there.
		if i%500 == 0 {
			if got := len(r.List(Filter{})); got != len(ops)-i-1 {
				t.Fatalf("after %d ended: %d listed", i+1, got)
			}
			if r.Get(ops[len(ops)-1].ID()) != ops[len(ops)-1] {
				t.Fatal("a live operation was lost in a rebuild")
			}
		}
	}
	if r.peak > 1024 || len(r.live) != 0 {
		t.Fatalf("peak %d, live %d after all ended", r.peak, len(r.live))
	}
}

func TestInfoJSON(t *testing.T) {
	ctx, op := Start(context.Background(), "job",
		WithTimeout(time.Hour),
		WithAttrs(
			slog.String("tenant", "acme"),
			slog.Group("req", slog.String("method", "GET"), slog.Int("size", 3), slog.Group("peer", slog.String("ip", "10.0.0.1"))),
			slog.Group("", slog.Bool("inline", true)),
			slog.Group("empty"),
			slog.Duration("budget", 1500*time.Millisecond),
			slog.Any("err", io.EOF),
		))
	_, child := Start(ctx, "child")
	op.Progress("half", slog.Int("done", 50), slog.Float64("ratio", 0.5))
	op.Cancel(ReasonManual, "operator")
	child.End(nil)
	op.End(ctx.Err())

	b, err := json.Marshal(op.Info())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id":      float64(op.ID()),
		"name":    "job",
		"status":  "cancelled",
		"reason":  "manual",
		"message": "operator",
		"attrs": map[string]any{
			"tenant": "acme",
			"req":    map[string]any{"method": "GET", "size": float64(3), "peer": map[string]any{"ip": "10.0.0.1"}},
			"inline": true,
			"budget": "1.5s",
			"err":    "EOF",
		},
	}
	for k, v := range want {
		if fmt.Sprint(m[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
	for _, k := range []string{"started", "ended", "cancel_requested", "deadline"} {
		s, _ := m[k].(string)
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			t.Errorf("%s = %#v: not a time", k, m[k])
		}
	}
	if d, _ := m["duration_ns"].(float64); d <= 0 {
		t.Errorf("duration_ns = %v", m["duration_ns"])
	}
	if e, _ := m["error"].(string); !strings.Contains(e, "cancelled (manual): operator") {
		t.Errorf("error = %v", m["error"])
	}
	if _, ok := m["parent_id"]; ok {
		t.Error("parent_id present for a root operation")
	}
	lp, _ := m["last_progress"].(map[string]any)
	if lp == nil || lp["message"] != "half" || fmt.Sprint(lp["attrs"]) != "map[done:50 ratio:0.5]" {
		t.Errorf("last_progress = %#v", m["last_progress"])
	} else if _, err := time.Parse(time.RFC3339Nano, lp["time"].(string)); err != nil {
		t.Errorf("last_progress.time = %v", lp["time"])
	}

	// A child has its parent's ID and the parent reason.
	b, _ = json.Marshal(child.Info())
	var cm map[string]any
	json.Unmarshal(b, &cm)
	if cm["parent_id"] != float64(op.ID()) || cm["reason"] != "parent" || cm["status"] != "completed" {
		t.Errorf("child JSON %s", b)
	}
}

func TestInfoJSONOmitsWhatDidNotHappen(t *testing.T) {
	_, op := Start(context.Background(), "job")
	defer op.End(nil)
	b, err := json.Marshal(op.Info())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	if m["status"] != "running" {
		t.Fatalf("status %v", m["status"])
	}
	for _, k := range []string{"reason", "message", "error", "ended", "cancel_requested", "deadline", "last_progress", "attrs", "parent_id", "shielded", "delivered"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s present in %s", k, b)
		}
	}
	for _, k := range []string{"id", "name", "status", "started", "duration_ns"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s missing in %s", k, b)
		}
	}
}

// One odd attribute must not make the snapshot fail to encode: an admin page
// listing many operations would fail for all of them.
func TestInfoJSONOddAttributes(t *testing.T) {
	ch := make(chan int)
	var nilErr *infoNilErr
	var reg Registry
	_, op := Start(context.Background(), "job", WithRegistry(&reg), WithAttrs(
		slog.Any("nilerr", nilErr),
		slog.Any("panics", infoPanicJSON{}),
		slog.Float64("nan", math.NaN()),
		slog.Float64("inf", math.Inf(-1)),
		slog.Any("func", func() {}),
		slog.Any("chan", ch),
		slog.Any("bad", infoBadJSON{}),
		slog.Any("nil", nil),
		slog.Any("struct", struct{ A int }{7}),
		slog.Any("valuer", infoLazyValue{}),
		slog.Time("at", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
	))
	op.Progress("p", slog.Float64("rate", math.Inf(1)))
	b, err := json.Marshal(op.Info())
	if err != nil {
		t.Fatalf("json.Marshal(Info) = %v", err)
	}
	var m struct {
		Attrs        map[string]any `json:"attrs"`
		LastProgress struct {
			Attrs map[string]any `json:"attrs"`
		} `json:"last_progress"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	a := m.Attrs
	if a["nan"] != "NaN" || a["inf"] != "-Inf" || a["bad"] != "bad{}" || a["nil"] != nil ||
		fmt.Sprint(a["struct"]) != "map[A:7]" || a["valuer"] != "resolved" || a["at"] != "2026-01-02T03:04:05Z" {
		t.Fatalf("attrs %v", a)
	}
	if s, _ := a["func"].(string); !strings.HasPrefix(s, "0x") {
		t.Fatalf("func = %v", a["func"])
	}
	if m.LastProgress.Attrs["rate"] != "+Inf" {
		t.Fatalf("progress attrs %v", m.LastProgress.Attrs)
	}
	if a["nilerr"] != "<nil>" || a["panics"] != "{}" {
		t.Fatalf("nilerr %v, panics %v", a["nilerr"], a["panics"])
	}
	// End records the snapshot in the registry: it must not panic either.
	if err := op.End(nil); err != nil {
		t.Fatal(err)
	}
	if h := reg.History(Filter{}); len(h) != 1 || h[0].Attrs["nan"] != "NaN" {
		t.Fatalf("history %+v", h)
	}
	if _, err := json.Marshal(reg.History(Filter{})); err != nil {
		t.Fatalf("json.Marshal(History) = %v", err)
	}
}

type infoNilErr struct{ msg string }

func (e *infoNilErr) Error() string { return e.msg } // panics on a nil *infoNilErr

type infoPanicJSON struct{}

func (infoPanicJSON) MarshalJSON() ([]byte, error) { panic("MarshalJSON exploded") }

type infoBadJSON struct{}

func (infoBadJSON) MarshalJSON() ([]byte, error) { return nil, errors.New("no") }
func (infoBadJSON) String() string               { return "bad{}" }

type infoLazyValue struct{}

func (infoLazyValue) LogValue() slog.Value { return slog.StringValue("resolved") }

// A snapshot read back from JSON (a client of an admin endpoint) decodes
// into Info, progress attributes included.
func TestInfoJSONRoundTrip(t *testing.T) {
	ctx, op := Start(context.Background(), "job", WithAttrs(slog.String("tenant", "acme"), slog.Group("req", slog.Int("n", 2))))
	op.Progress("half", slog.Int("done", 50), slog.Group("g", slog.String("k", "v")))
	op.Cancel(ReasonShutdown, "drain")
	op.End(ctx.Err())
	in := op.Info()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Info
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("json.Unmarshal(Info) = %v", err)
	}
	if out.ID != in.ID || out.Name != in.Name || out.Status != StatusCancelled || out.Reason != ReasonShutdown ||
		out.Message != "drain" || out.Error != in.Error || !out.Started.Equal(in.Started) || !out.Ended.Equal(in.Ended) ||
		out.Duration != in.Duration || out.Attrs["tenant"] != "acme" {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
	p := out.LastProgress
	if p == nil || p.Message != "half" || !p.Time.Equal(in.LastProgress.Time) {
		t.Fatalf("progress %+v", p)
	}
	// Attributes come back sorted, groups as groups, numbers as JSON has them.
	got := slog.GroupValue(p.Attrs...).String()
	if got != "[done=50 g=[k=v]]" {
		t.Fatalf("progress attrs %s", got)
	}
	// And encode again to the same JSON.
	b2, err := json.Marshal(out)
	if err != nil || string(b2) != string(b) {
		t.Fatalf("re-encoded:\n%s\nwant\n%s", b2, b)
	}
}

// A progress report keeps its attributes as they were when reported, even if
// the caller reuses its slice: snapshots (Info, the registry's history) are
// read by other goroutines at any time.
func TestInfoProgressAttrsAreCopied(t *testing.T) {
	_, op := Start(context.Background(), "job")
	defer op.End(nil)
	buf := []slog.Attr{slog.Int("i", 1)}
	op.Progress("p", buf...)
	buf[0] = slog.Int("i", 2)
	if got := op.Info().LastProgress.Attrs; len(got) != 1 || got[0].Value.Int64() != 1 {
		t.Fatalf("last progress attrs %v, want i=1", got)
	}
}

// typedNilError is the classic typed nil: a nil *typedNilError returned as
// an error is a non-nil error whose Error method dereferences nil.
type typedNilError struct{ msg string }

func (e *typedNilError) Error() string { return e.msg }

// TestEndWithTypedNilError: End with an error whose Error method panics (a
// typed nil) must not panic: the registry's snapshot of the operation,
// taken inside End, used to panic with the operation's lock held, so that
// End panicked, observers never heard of the end, and every later List,
// Stats or Status call on the operation hung.
func TestEndWithTypedNilError(t *testing.T) {
	reg := &Registry{}
	var ended atomic.Bool
	_, op := Start(context.Background(), "job", WithRegistry(reg),
		WithObserver(Hooks{OnEnd: func(*Operation) { ended.Store(true) }}))
	var nilErr *typedNilError
	if err := op.End(nilErr); err != error(nilErr) {
		t.Fatalf("End = %#v, want the body's error", err)
	}
	if !ended.Load() || op.Status() != StatusFailed {
		t.Fatalf("ended %v, status %v; want the end observed and failed", ended.Load(), op.Status())
	}
	if n := len(reg.List(Filter{})); n != 0 {
		t.Fatalf("%d live operations after End", n)
	}
	if i, ok := reg.Lookup(op.ID()); !ok || i.Error != "<nil>" {
		t.Fatalf("Lookup = %+v, %v; want the failure, as fmt prints it", i, ok)
	}

	// After a cancellation, End adds it to the body's error: its text
	// must not panic either.
	_, op = Start(context.Background(), "job", WithRegistry(reg))
	op.Cancel(ReasonManual, "stop")
	err := op.End(nilErr)
	if got, want := err.Error(), "<nil> (job: cancelled (manual): stop)"; got != want {
		t.Fatalf("End = %q, want %q", got, want)
	}
}

// TestRegistryHistoryLimitReadOnce: HistoryLimit is read when the first
// operation ends; changing it later neither grows nor shrinks the history.
func TestRegistryHistoryLimitReadOnce(t *testing.T) {
	for _, tc := range []struct{ first, later, want int }{
		{2, 5, 2},
		{3, 1, 3},
		{-1, 4, 0},
	} {
		r := &Registry{HistoryLimit: tc.first}
		run := func(n int) {
			for range n {
				_, op := Start(context.Background(), "job", WithRegistry(r))
				op.End(nil)
			}
		}
		run(1)
		r.HistoryLimit = tc.later
		run(5)
		if n := len(r.History(Filter{})); n != tc.want {
			t.Errorf("HistoryLimit %d then %d: history of %d, want %d", tc.first, tc.later, n, tc.want)
		}
	}
}

// TestInfoFarDeadlines: a deadline far in the future neither fires nor
// breaks the snapshots. One JSON cannot encode (past year 9999) is left out
// of Info, which would otherwise fail to marshal, with every list holding
// it; the context still reports it.
func TestInfoFarDeadlines(t *testing.T) {
	r := &Registry{}
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx1, op1 := Start(context.Background(), "far", WithDeadline(far), WithRegistry(r))
	ctx2, op2 := Start(context.Background(), "longest", WithTimeout(math.MaxInt64), WithRegistry(r))
	if d, ok := ctx1.Deadline(); !ok || !d.Equal(far) {
		t.Fatalf("context deadline %v, %v; want %v", d, ok, far)
	}
	if i := op1.Info(); !i.Deadline.IsZero() {
		t.Fatalf("Info.Deadline = %v, want it left out", i.Deadline)
	}
	if d, ok := ctx2.Deadline(); !ok || d.Before(time.Now().AddDate(290, 0, 0)) {
		t.Fatalf("WithTimeout(MaxInt64) deadline %v, %v; want about 292 years ahead", d, ok)
	}
	var infos []Info
	for _, op := range r.List(Filter{}) {
		infos = append(infos, op.Info())
	}
	if _, err := json.Marshal(infos); err != nil {
		t.Fatalf("marshalling the live operations: %v", err)
	}
	if ctx1.Err() != nil || ctx2.Err() != nil {
		t.Fatal("a far deadline fired")
	}
	op1.End(nil)
	op2.End(nil)
	if _, err := json.Marshal(r.History(Filter{})); err != nil {
		t.Fatalf("marshalling the history: %v", err)
	}
}

// TestRegistryRecordsInvalidOperation: an operation that fails at Start
// with an invalid option is never live, but operators see it: it is in
// the history, as failed with the *OptionError, and in the counts.
func TestRegistryRecordsInvalidOperation(t *testing.T) {
	r := &Registry{}
	_, op := Start(context.Background(), "misconfigured", WithRegistry(r),
		WithCondition("never", nil, time.Second))
	err := op.End(nil)
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Option != "WithCondition" {
		t.Fatalf("End = %v, want the *OptionError", err)
	}
	if n := len(r.List(Filter{})); n != 0 {
		t.Fatalf("%d live operations, want none", n)
	}
	h := r.History(Filter{Status: StatusFailed})
	if len(h) != 1 || h[0].ID != op.ID() || h[0].Error != err.Error() {
		t.Fatalf("history %+v, want the failed operation with its error", h)
	}
	if st := r.Stats(); st.Active != 0 || st.ByStatus[StatusFailed] != 1 || st.Completed != 0 {
		t.Fatalf("Stats %+v", st)
	}
}
