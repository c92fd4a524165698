package memwatch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// treeRSS is the RSS of the fixture tree rooted at 100.
const treeRSS = (30000 + 60000 + 50000 + 1000) << 10

func TestWatcherHardCeiling(t *testing.T) {
	t0 := time.Unix(1700001000, 0)
	var got []Exceed
	// The tree is 1.3 × this limit: over the hard ceiling of 1.25 ×.
	w := New(Options{ProcRoot: fixtures, Limit: treeRSS * 10 / 13, Samples: 3, Grace: time.Hour,
		OnExceed: func(e Exceed) { got = append(got, e) }})
	w.watch(100, t0)
	w.sample(t0.Add(time.Second)) // in the grace period, at the first sample
	if len(got) != 1 || !got[0].Hard || !strings.Contains(got[0].Reason, "hard ceiling") {
		t.Fatalf("after one sample over the hard ceiling OnExceed got %+v, want one hard report", got)
	}
	w.sample(t0.Add(2 * time.Second))
	if len(got) != 1 {
		t.Errorf("hard rule reported %d times for one root, want once", len(got))
	}
	w.watch(101, t0.Add(3*time.Second)) // a new app: armed again
	w.SetLimit(1)
	w.sample(t0.Add(4 * time.Second))
	if len(got) != 2 || !got[1].Hard {
		t.Errorf("after Watch of a new root OnExceed got %+v, want a second hard report", got)
	}
}

func TestWatcherGracefulNeedsTime(t *testing.T) {
	t0 := time.Unix(1700001000, 0)
	fired := 0
	// Over the limit, under the hard ceiling: the graceful rule needs three
	// samples spanning two Intervals, however fast they come.
	w := New(Options{ProcRoot: fixtures, Limit: treeRSS - 1, Interval: time.Second, Grace: -1,
		OnExceed: func(e Exceed) {
			if e.Hard {
				t.Errorf("hard report %+v just over the limit", e)
			}
			fired++
		}})
	w.watch(100, t0)
	for i := 1; i <= 20; i++ { // every 100 ms: 1.9 s over at the last one
		w.sample(t0.Add(time.Duration(i) * 100 * time.Millisecond))
	}
	if fired != 0 {
		t.Errorf("graceful rule fired %d times within 1.9 s over the limit, want 0", fired)
	}
	w.sample(t0.Add(2100 * time.Millisecond))
	if fired != 1 {
		t.Errorf("graceful rule fired %d times after 2 s over the limit, want 1", fired)
	}
}

func TestWatcherFloor(t *testing.T) {
	t0 := time.Unix(1700001000, 0)
	var got []Exceed
	// The fixture box has 400000 kB available; a floor above that fires
	// for a tree above half its limit, and not for a smaller tree.
	w := New(Options{ProcRoot: fixtures, Limit: treeRSS * 3 / 2, Floor: 500000 << 10, Grace: -1,
		OnExceed: func(e Exceed) { got = append(got, e) }})
	w.watch(100, t0)
	w.sample(t0.Add(time.Second))
	if len(got) != 1 || !got[0].Hard || got[0].Available != 400000<<10 || !strings.Contains(got[0].Reason, "floor") {
		t.Fatalf("under the floor OnExceed got %+v, want one hard report naming the floor", got)
	}
	w.watch(100, t0.Add(2*time.Second))
	w.SetLimit(treeRSS * 3)
	w.sample(t0.Add(3 * time.Second))
	if len(got) != 1 {
		t.Errorf("floor rule fired for a tree under half its limit: %+v", got[1:])
	}
}

func TestWatcherSamplesFasterWhenHot(t *testing.T) {
	t0 := time.Unix(1700001000, 0)
	w := New(Options{ProcRoot: fixtures, Interval: time.Second, FastInterval: 200 * time.Millisecond, Grace: -1})
	w.watch(100, t0)
	w.SetLimit(treeRSS * 2) // at half the limit, steady
	if d := w.sample(t0.Add(time.Second)); d != time.Second {
		t.Errorf("next sample of a tree at half its limit in %v, want 1s", d)
	}
	if d := w.sample(t0.Add(2 * time.Second)); d != time.Second {
		t.Errorf("next sample of a steady tree in %v, want 1s", d)
	}
	w.SetLimit(treeRSS * 10 / 9) // at 90 % of the limit
	if d := w.sample(t0.Add(3 * time.Second)); d != 200*time.Millisecond {
		t.Errorf("next sample of a tree at 90%% of its limit in %v, want 200ms", d)
	}
	// Growing fast: half the limit gained in a second.
	w.SetLimit(treeRSS * 2)
	w.mu.Lock()
	w.last.RSS -= treeRSS
	w.mu.Unlock()
	if d := w.sample(t0.Add(4 * time.Second)); d != 200*time.Millisecond {
		t.Errorf("next sample of a fast-growing tree in %v, want 200ms", d)
	}
}

func TestRefresh(t *testing.T) {
	full, err := TreeOf(fixtures, 100)
	if err != nil {
		t.Fatal(err)
	}
	full.Procs[0].RSS, full.RSS = 1, 1 // stale values refresh replaces
	ts, err := refresh(fixtures, full, time.Now())
	if err != nil || ts.RSS != treeRSS || len(ts.Procs) != len(full.Procs) || ts.PSS != full.PSS {
		t.Errorf("refresh() = RSS %d, %d procs, PSS %d, %v; want %d, %d, %d", ts.RSS, len(ts.Procs), ts.PSS, err,
			treeRSS, len(full.Procs), full.PSS)
	}
	full.Procs[0].PID = 999
	if _, err := refresh(fixtures, full, time.Now()); err == nil {
		t.Errorf("refresh() of a vanished root: nil error")
	}
}

// writeFiles creates files (path → content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBox(t *testing.T) {
	meminfo := "MemTotal:        4000000 kB\nMemAvailable:    3000000 kB\n"
	const mib = 1 << 20
	tests := []struct {
		name                string
		files               map[string]string
		wantTotal, wantAvai int64
	}{
		{"no cgroup", map[string]string{"proc/meminfo": meminfo}, 4000000 << 10, 3000000 << 10},
		{"v2 limit on a parent", map[string]string{
			"proc/meminfo":                  meminfo,
			"proc/self/cgroup":              "0::/box/bulwark\n",
			"cg/box/memory.max":             "536870912\n",
			"cg/box/memory.current":         "419430400\n",
			"cg/box/memory.stat":            "anon 1\ninactive_file 104857600\n",
			"cg/box/bulwark/memory.max":     "max\n",
			"cg/box/bulwark/memory.current": "1\n",
			"cg/box/bulwark/memory.stat":    "inactive_file 0\n",
		}, 512 * mib, 512*mib - (400*mib - 100*mib)},
		{"v1 limit", map[string]string{
			"proc/meminfo":                        meminfo,
			"proc/self/cgroup":                    "4:memory:/box\n0::/\n",
			"cg/memory/box/memory.limit_in_bytes": "268435456\n",
			"cg/memory/box/memory.usage_in_bytes": "209715200\n",
			"cg/memory/box/memory.stat":           "total_inactive_file 0\n",
			"cg/memory/memory.limit_in_bytes":     "9223372036854771712\n",
		}, 256 * mib, 56 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			m, err := Box(filepath.Join(dir, "proc"), filepath.Join(dir, "cg"))
			if err != nil || m.MemTotal != tt.wantTotal || m.MemAvailable != tt.wantAvai {
				t.Errorf("Box() = %+v, %v; want total %d available %d", m, err, tt.wantTotal, tt.wantAvai)
			}
		})
	}
}

func TestDefaultFloor(t *testing.T) {
	for _, tc := range []struct{ total, want int64 }{
		{512 << 20, 48 << 20},
		{2 << 30, (2 << 30) / 20},
		{64 << 30, 256 << 20},
	} {
		if got := DefaultFloor(tc.total); got != tc.want {
			t.Errorf("DefaultFloor(%d) = %d, want %d", tc.total, got, tc.want)
		}
	}
}
