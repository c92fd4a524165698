package memwatch

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

const fixtures = "testdata/proc"

func TestTreeOf(t *testing.T) {
	tests := []struct {
		name     string
		pid      int
		wantPIDs []int
		wantRSS  int64
		wantPSS  int64
	}{
		// uvicorn master + 2 workers + a grandchild; 104 (child of 102)
		// vanished mid-walk; 102 has no smaps_rollup (PSS 0).
		{"uvicorn tree", 100, []int{100, 101, 102, 103}, (30000 + 60000 + 50000 + 1000) << 10, (20000 + 40000 + 0 + 500) << 10},
		{"worker subtree", 101, []int{101, 103}, (60000 + 1000) << 10, (40000 + 500) << 10},
		{"leaf without smaps_rollup", 102, []int{102}, 50000 << 10, 0},
		{"unrelated process", 200, []int{200}, 9000 << 10, 7000 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := TreeOf(fixtures, tt.pid)
			if err != nil {
				t.Fatalf("TreeOf(%d) error = %v", tt.pid, err)
			}
			var got []int
			for _, p := range ts.Procs {
				got = append(got, p.PID)
			}
			if !equalInts(got, tt.wantPIDs) {
				t.Errorf("TreeOf(%d) pids = %v, want %v", tt.pid, got, tt.wantPIDs)
			}
			if ts.RSS != tt.wantRSS || ts.PSS != tt.wantPSS {
				t.Errorf("TreeOf(%d) RSS, PSS = %d, %d; want %d, %d", tt.pid, ts.RSS, ts.PSS, tt.wantRSS, tt.wantPSS)
			}
			if ts.Root != tt.pid {
				t.Errorf("TreeOf(%d).Root = %d, want %d", tt.pid, ts.Root, tt.pid)
			}
		})
	}
}

func TestTreeOfDetails(t *testing.T) {
	ts, err := TreeOf(fixtures, 100)
	if err != nil {
		t.Fatalf("TreeOf(100) error = %v", err)
	}
	root := ts.Procs[0]
	if got, want := root.Cmdline, "/usr/bin/python3 -m uvicorn app:app --workers 2"; got != want {
		t.Errorf("Cmdline = %q, want %q", got, want)
	}
	// starttime 1000 ticks after btime 1700000000.
	if got, want := root.StartTime, time.Unix(1700000010, 0); !got.Equal(want) {
		t.Errorf("StartTime = %v, want %v", got, want)
	}
}

func TestTreeOfMissingRoot(t *testing.T) {
	tests := []struct {
		name string
		pid  int
	}{
		{"no such pid", 999},
		{"vanished: stat but no status", 104},
	}
	for _, tt := range tests {
		_, err := TreeOf(fixtures, tt.pid)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: TreeOf(%d) error = %v, want fs.ErrNotExist", tt.name, tt.pid, err)
		}
	}
}

func TestTreeOfLive(t *testing.T) {
	ts, err := TreeOf("", os.Getpid())
	if err != nil {
		t.Fatalf("TreeOf(self) error = %v", err)
	}
	if len(ts.Procs) == 0 || ts.Procs[0].PID != os.Getpid() {
		t.Fatalf("TreeOf(self) procs = %+v, want self first", ts.Procs)
	}
	self := ts.Procs[0]
	if self.RSS <= 0 {
		t.Errorf("self RSS = %d, want > 0", self.RSS)
	}
	if !strings.Contains(self.Cmdline, filepath.Base(os.Args[0])) {
		t.Errorf("self Cmdline = %q, want it to contain %q", self.Cmdline, filepath.Base(os.Args[0]))
	}
	if d := time.Since(self.StartTime); d < 0 || d > time.Hour {
		t.Errorf("self StartTime = %v (%v ago), want within the last hour", self.StartTime, d)
	}
}

func TestMachine(t *testing.T) {
	got, err := Machine(fixtures)
	if err != nil {
		t.Fatalf("Machine error = %v", err)
	}
	want := MachineSample{MemTotal: 1000000 << 10, MemAvailable: 400000 << 10}
	if got != want {
		t.Errorf("Machine = %+v, want %+v", got, want)
	}
	if _, err := Machine(t.TempDir()); err == nil {
		t.Errorf("Machine(empty dir) error = nil, want an error")
	}
}

func TestWatcherExceed(t *testing.T) {
	const treeRSS = (30000 + 60000 + 50000 + 1000) << 10
	t0 := time.Unix(1700001000, 0)
	tests := []struct {
		name    string
		limit   int64
		samples int
		grace   time.Duration
		steps   []time.Duration // sample times after Watch
		want    []bool          // OnExceed after each step
	}{
		{"under the limit", treeRSS + 1, 2, time.Second, []time.Duration{2e9, 3e9, 4e9}, []bool{false, false, false}},
		{"no limit", 0, 1, 0, []time.Duration{2e9, 3e9}, []bool{false, false}},
		{"over: fires after samples, then counts again", treeRSS - 1, 2, time.Second,
			[]time.Duration{2e9, 3e9, 4e9, 5e9, 6e9, 7e9}, []bool{false, true, false, true, false, true}},
		// The second fire needs a full grace period after the first.
		{"grace holds", treeRSS - 1, 1, 10 * time.Second,
			[]time.Duration{1e9, 9e9, 10e9, 11e9, 20e9}, []bool{false, false, true, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fired []TreeSample
			w := New(Options{ProcRoot: fixtures, Limit: tt.limit, Samples: tt.samples, Grace: tt.grace,
				OnExceed: func(e Exceed) { fired = append(fired, e.Sample) }})
			w.watch(100, t0)
			for i, d := range tt.steps {
				n := len(fired)
				w.sample(t0.Add(d))
				if got := len(fired) > n; got != tt.want[i] {
					t.Errorf("sample at +%v: fired = %v, want %v", d, got, tt.want[i])
				}
			}
			if last := w.Last(); last.Root != 100 || last.RSS != treeRSS {
				t.Errorf("Last() = root %d RSS %d, want root 100 RSS %d", last.Root, last.RSS, treeRSS)
			}
		})
	}
}

func TestWatcherWatchResets(t *testing.T) {
	t0 := time.Unix(1700001000, 0)
	fired := 0
	w := New(Options{ProcRoot: fixtures, Limit: 1, Samples: 2, Grace: -1, OnExceed: func(e Exceed) {
		if !e.Hard { // the hard rule fires too, once per root: TestWatcherHard
			fired++
		}
	}})
	w.watch(100, t0)
	w.sample(t0.Add(time.Second))
	w.watch(101, t0.Add(2*time.Second)) // a new app: count starts again
	w.sample(t0.Add(3 * time.Second))
	if fired != 0 {
		t.Errorf("fired %d times after Watch reset, want 0", fired)
	}
	w.sample(t0.Add(4 * time.Second))
	if fired != 1 {
		t.Errorf("fired %d times, want 1", fired)
	}
	w.SetLimit(0)
	w.sample(t0.Add(5 * time.Second))
	w.sample(t0.Add(6 * time.Second))
	if fired != 1 {
		t.Errorf("fired %d times after SetLimit(0), want 1", fired)
	}
}

func TestWatcherMetricsAndGoneRoot(t *testing.T) {
	set := vm.NewSet()
	var logs bytes.Buffer
	w := New(Options{ProcRoot: fixtures, Metrics: set, Limit: 1 << 30,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	w.Watch(100)
	w.sample(time.Now())
	var out bytes.Buffer
	set.WritePrometheus(&out)
	for _, want := range []string{
		"bulwark_app_rss_bytes 144384000",
		"bulwark_app_pss_bytes 61952000",
		"bulwark_app_processes 4",
		"bulwark_machine_memory_available_bytes 409600000",
		"bulwark_app_max_memory_bytes 1073741824",
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("metrics = %q, want a line %q", out.String(), want)
		}
	}
	w.Watch(999)
	w.sample(time.Now())
	w.sample(time.Now())
	if got := strings.Count(logs.String(), "cannot sample app memory"); got != 1 {
		t.Errorf("log has %d 'cannot sample' lines, want 1:\n%s", got, logs.String())
	}
	if last := w.Last(); last.Root != 100 {
		t.Errorf("Last().Root = %d after the root vanished, want the previous sample (100)", last.Root)
	}
}

func TestWatcherRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	fired := make(chan TreeSample, 1)
	w := New(Options{ProcRoot: fixtures, Interval: 5 * time.Millisecond, Limit: 1, Samples: 2, Grace: -1,
		OnExceed: func(e Exceed) {
			select {
			case fired <- e.Sample:
			default:
			}
		}})
	w.Watch(100)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case ts := <-fired:
		if ts.Root != 100 {
			t.Errorf("OnExceed root = %d, want 100", ts.Root)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("OnExceed not called within 10s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
}

func TestUnderPressure(t *testing.T) {
	tests := []struct {
		inUse, limit int64
		ratio        float64
		want         bool
	}{
		{90, 100, 0.9, true},
		{89, 100, 0.9, false},
		{100, 100, 0.9, true},
		{1 << 40, 0, 0.9, false},
	}
	for _, tt := range tests {
		if got := underPressure(tt.inUse, tt.limit, tt.ratio); got != tt.want {
			t.Errorf("underPressure(%d, %d, %v) = %v, want %v", tt.inUse, tt.limit, tt.ratio, got, tt.want)
		}
	}
}

func TestSelf(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	const limit = 1 << 40 // far above anything the test uses
	set := vm.NewSet()
	s := NewSelf(SelfOptions{Limit: limit, Metrics: set, MinHeapGoal: -1})
	if got := debug.SetMemoryLimit(-1); got != limit {
		t.Errorf("Go memory limit = %d, want %d", got, limit)
	}
	if s.Pressure() {
		t.Errorf("Pressure() = true with a 1 TiB limit, want false")
	}
	s.Update(SelfOptions{Limit: limit, PressureRatio: 1e-12, MinHeapGoal: -1}) // ~1 byte
	if !s.Pressure() {
		t.Errorf("Pressure() = false at ratio 1e-12, want true")
	}
	var out bytes.Buffer
	set.WritePrometheus(&out)
	for _, want := range []string{"bulwark_memory_limit_bytes 1099511627776\n", "bulwark_memory_pressure 1\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics = %q, want %q", out.String(), want)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	s.Update(SelfOptions{Limit: limit, ReleaseInterval: time.Millisecond, MinHeapGoal: -1})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return within 10s of cancel")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestShouldRelease(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name                        string
		objects, unused, free, live int64
		minGoal                     int64
		busy, want                  bool
	}{
		{"no live heap reading yet", 10 * mib, 0, 10 * mib, 0, 0, false, false},
		{"at rest: little garbage", 18 * mib, 1 * mib, 1 * mib, 16 * mib, 0, false, false},
		{"at rest: garbage at the slack", 18 * mib, 0, 2 * mib, 16 * mib, 0, false, false},
		{"at rest: a burst left garbage", 30 * mib, 0, 0, 16 * mib, 0, false, true},
		{"at rest: a burst left free spans", 16 * mib, 0, 30 * mib, 16 * mib, 0, false, true},
		{"at rest: fragmentation is not garbage", 16 * mib, 20 * mib, 0, 16 * mib, 0, false, false},
		{"at rest: the goal's headroom is garbage", 12 * mib, 0, 6 * mib, 1 * mib, 16 * mib, false, true},
		{"busy: within the minimum heap goal", 12 * mib, 0, 6 * mib, 1 * mib, 16 * mib, true, false},
		{"busy: beyond the goal and the slack", 12 * mib, 1 * mib, 8 * mib, 1 * mib, 16 * mib, true, true},
		{"busy: within twice the live heap", 60 * mib, 2 * mib, 18 * mib, 40 * mib, 16 * mib, true, false},
		{"busy: a burst beyond twice the live heap", 60 * mib, 2 * mib, 40 * mib, 40 * mib, 16 * mib, true, true},
	}
	for _, tt := range tests {
		h := heapState{objects: tt.objects, unused: tt.unused, free: tt.free, live: tt.live}
		if got := shouldRelease(h, tt.minGoal, tt.busy); got != tt.want {
			t.Errorf("%s: shouldRelease(%+v, goal %d MiB, busy %v) = %v, want %v", tt.name, h, tt.minGoal/mib, tt.busy, got, tt.want)
		}
	}
}

func TestProcOfSelf(t *testing.T) {
	p, err := ProcOf("", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.RSS <= 0 || p.PID != os.Getpid() || p.Cmdline == "" {
		t.Errorf("ProcOf(self) = %+v, want this process with an RSS and a command line", p)
	}
	if _, err := ProcOf("testdata/proc", 999999); err == nil {
		t.Error("ProcOf of a missing process: got nil error")
	}
}

func TestHeapFloor(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		o    SelfOptions
		want int64
	}{
		{SelfOptions{MinHeapGoal: 16 * mib}, 16 * mib},                  // no limit
		{SelfOptions{MinHeapGoal: 16 * mib, Limit: 96 * mib}, 16 * mib}, // medium profile
		{SelfOptions{MinHeapGoal: 16 * mib, Limit: 24 * mib}, 6 * mib},  // a small limit caps it
		{SelfOptions{MinHeapGoal: -1, Limit: 24 * mib}, -1},             // off stays off
	}
	for _, tt := range tests {
		if got := heapFloor(tt.o); got != tt.want {
			t.Errorf("heapFloor(%+v) = %d, want %d", tt.o, got, tt.want)
		}
	}
}

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		live, roots, floor int64
		want               int
	}{
		{0, 0, 16 * mib, 100},             // no reading
		{1 * mib, 0, 16 * mib, 400},       // the runtime's minimum, 4 MiB × 4, sets the goal
		{2 * mib, 1 * mib, 16 * mib, 400}, // goal 2 + (2 + 1) × 4 = 14 MiB; the minimum makes it 16
		{3 * mib, 1 * mib, 16 * mib, 325}, // goal 3 + (3 + 1) × 3.25 = 16 MiB
		{4 * mib, 0, 16 * mib, 300},       // goal 4 + 4 × 3
		{8 * mib, 0, 16 * mib, 100},       // twice the live heap reaches the floor
		{6 * mib, 4 * mib, 16 * mib, 100}, // so do the heap and its roots
		{40 * mib, 0, 16 * mib, 100},      // a large heap: the default
		{1, 0, 1 << 30, 25600},            // a large floor allows a large percent
	}
	for _, tt := range tests {
		p := gcPercentFor(tt.live, tt.roots, tt.floor)
		if p != tt.want {
			t.Errorf("gcPercentFor(%d, %d, %d) = %d, want %d", tt.live, tt.roots, tt.floor, p, tt.want)
		}
		// The goal the runtime derives from p never passes the floor.
		goal := max(tt.live+(tt.live+tt.roots)*int64(p)/100, runtimeHeapMinimum*int64(p)/100)
		if p > 100 && goal > tt.floor {
			t.Errorf("gcPercentFor(%d, %d, %d) = %d: goal %d past the floor", tt.live, tt.roots, tt.floor, p, goal)
		}
	}
}

// TestGCTunerRaisesPercentForSmallHeap runs the tuner for real: after a
// collection with a small live heap the GC percent is above 100, with a
// live heap past half the floor it is 100, and stopping restores 100.
func TestGCTunerRaisesPercentForSmallHeap(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set: the tuner leaves the GC alone")
	}
	t.Cleanup(func() { debug.SetGCPercent(100) })
	// Read, not set-and-restore: a restore could undo what the tuner set.
	current := func() int {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		return int(s[0].Value.Uint64())
	}
	waitPercent := func(what string, ok func(int) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok(current()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: GC percent %d", what, current())
			}
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
	}
	var tu gcTuner
	tu.start(64 << 20) // far above this test binary's live heap
	waitPercent("small live heap", func(p int) bool { return p > 100 })
	func() {
		big := make([]byte, 40<<20) // live: more than half the floor
		waitPercent("large live heap", func(p int) bool { return p == 100 })
		runtime.KeepAlive(big)
	}()
	waitPercent("small again", func(p int) bool { return p > 100 })
	tu.start(0)
	if p := current(); p != 100 {
		t.Errorf("after stop: GC percent %d, want 100", p)
	}
}

// TestReleaseUnderPressure: under pressure freed memory is handed back
// even with no release interval, so that garbage does not keep a process
// shedding load.
func TestReleaseUnderPressure(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	set := vm.NewSet()
	s := NewSelf(SelfOptions{Limit: 1 << 40, PressureRatio: 1e-12, MinHeapGoal: -1, Metrics: set})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	releases := set.GetOrCreateCounter("bulwark_memory_releases_total")
	deadline := time.Now().Add(5 * time.Second)
	for releases.Get() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no release within 5 s under pressure with no release interval")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sink keeps the burst's allocations from being optimised away.
var sink [][]byte

// After a burst has been handed back, a process at rest must not release
// again: a release that has nothing to hand back is a forced GC for
// nothing, and counting the runtime's metadata as releasable once made an
// idle Bulwark do one every second.
func TestBurstReleaseDoesNotRepeatAtRest(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	s := NewSelf(SelfOptions{ReleaseInterval: time.Hour, MinHeapGoal: -1})
	s.burst(time.Hour) // the first reading starts the allocation clock
	sink = make([][]byte, 0, 64<<10)
	for range 64 << 10 {
		sink = append(sink, make([]byte, 1024))
	}
	sink = nil
	runtime.GC()
	if !s.burst(time.Hour) {
		t.Fatal("no release due after 64 MiB of garbage")
	}
	s.release()
	for i := range 3 {
		time.Sleep(10 * time.Millisecond)
		if s.burst(time.Hour) {
			t.Fatalf("reading %d after the release: another release due, with nothing left to hand back", i+1)
		}
	}
}

// At rest, garbage is handed back even when it is less than the live heap:
// with 5000 idle connections the handshakes' garbage is smaller than the
// connections' own memory, and keeping it cost about 4 KB per connection.
func TestBurstReleaseAtRestWithLargeLiveHeap(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	s := NewSelf(SelfOptions{ReleaseInterval: time.Hour, MinHeapGoal: -1})
	live := make([][]byte, 0, 48<<10)
	for range 48 << 10 {
		live = append(live, make([]byte, 1024))
	}
	sink = make([][]byte, 0, 24<<10)
	for range 24 << 10 {
		sink = append(sink, make([]byte, 1024))
	}
	sink = nil
	runtime.GC()
	s.burst(time.Hour) // starts the allocation clock
	time.Sleep(20 * time.Millisecond)
	if !s.burst(time.Hour) {
		t.Fatal("at rest with 24 MiB of garbage beside 48 MiB live: no release due")
	}
	runtime.KeepAlive(live)
}
