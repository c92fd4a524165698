package memwatch

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// DefaultMinHeapGoal is SelfOptions.MinHeapGoal's zero value: the heap a
// collection may let grow to while the live heap is small.
const DefaultMinHeapGoal = 16 << 20

// gcPercentFor returns the GC percent that puts the heap goal at floor for
// a live heap of live bytes and roots (goroutine stacks and globals) of
// roots bytes, and never below 100 (the default). Since Go 1.18 the
// runtime sets the goal at live + (live + roots) × percent/100: leaving the
// roots out overshot the goal. The runtime also never sets the goal below
// 4 MiB × percent/100, so the percent stays at most floor/4 MiB × 100:
// beyond it that minimum, not the live heap, sets the goal.
func gcPercentFor(live, roots, floor int64) int {
	scanned := live + max(roots, 0)
	if live <= 0 || floor <= live+scanned {
		return 100
	}
	return int(max(min((floor-live)*100/scanned, floor*100/runtimeHeapMinimum), 100))
}

// runtimeHeapMinimum is the Go runtime's minimum heap goal at GOGC=100
// (defaultHeapMinimum in runtime/mgcpacer.go); it scales with the percent.
const runtimeHeapMinimum = 4 << 20

// gcTuner keeps the GC's heap goal at least floor. A proxy under load has a
// live heap of a megabyte or two; at GOGC=100 the runtime's 4 MiB minimum
// goal means a collection every few hundred requests, 60 a second under
// the issue-7 load, and each one's stop-the-world phases and mark assists
// land in the latency tail. After every collection (a finalizer re-armed
// each cycle, as uber-go's gc tuner does) it sets the percent for the live
// heap just measured, so a heap that grows gets GOGC=100 back within a
// cycle. The memory limit still bounds everything.
type gcTuner struct {
	mu      sync.Mutex
	floor   int64 // 0: stopped
	percent int   // the GC percent last set
	armed   bool  // a sentinel awaits the next collection
	sample  []metrics.Sample
}

// sentinel is an object whose finalizer runs once per GC cycle.
type sentinel struct{ t *gcTuner }

// start begins tuning with floor; a non-positive floor stops it and puts
// the percent back to 100. It leaves the GC alone when GOGC is set in the
// environment: the operator chose.
func (t *gcTuner) start(floor int64) {
	if os.Getenv("GOGC") != "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.floor = max(floor, 0)
	if t.floor == 0 {
		if t.percent > 100 {
			debug.SetGCPercent(100)
		}
		t.percent = 100
		return
	}
	if t.sample == nil {
		t.sample = []metrics.Sample{
			{Name: "/gc/heap/live:bytes"},
			{Name: "/gc/scan/stack:bytes"},
			{Name: "/gc/scan/globals:bytes"},
		}
		t.percent = 100
	}
	if !t.armed {
		t.armed = true
		runtime.SetFinalizer(&sentinel{t}, (*sentinel).afterGC)
	}
}

// afterGC runs on the finalizer goroutine after a collection: it sets the
// percent for the live heap just marked and re-arms for the next one.
func (s *sentinel) afterGC() {
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.floor == 0 {
		t.armed = false
		return
	}
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() == metrics.KindUint64 && t.sample[1].Value.Kind() == metrics.KindUint64 &&
		t.sample[2].Value.Kind() == metrics.KindUint64 {
		roots := int64(t.sample[1].Value.Uint64() + t.sample[2].Value.Uint64())
		p := gcPercentFor(int64(t.sample[0].Value.Uint64()), roots, t.floor)
		// Small changes are not worth the call; a return to 100 always is.
		if p != t.percent && (p == 100 || p*10 < t.percent*9 || p*10 > t.percent*11) {
			debug.SetGCPercent(p)
			t.percent = p
		}
	}
	runtime.SetFinalizer(&sentinel{t}, (*sentinel).afterGC)
}
