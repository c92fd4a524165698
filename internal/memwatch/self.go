package memwatch

import (
	"context"
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// DefaultPressureRatio is used when SelfOptions.PressureRatio is zero: at 90 %
// of the limit the GC already works hard, and shedding a little load is
// cheaper than thrashing.
const DefaultPressureRatio = 0.9

// BurstReleaseGap is the shortest time between two burst releases while
// the process is busy; at rest a release costs little and runs as soon as
// it is due, so that one just before a burst does not hold back the one
// after it.
const BurstReleaseGap = 5 * time.Second

// burstSlack is what the heap may hold beyond what it needs before a burst
// release.
const burstSlack = 4 << 20

// heapState is what a burst release is decided on, from runtime/metrics.
// Only the heap's own spans count: FreeOSMemory cannot hand back the
// runtime's metadata or the goroutine stacks in use.
type heapState struct {
	objects, unused, free int64 // the heap's spans held from the OS
	live                  int64 // marked live by the last GC
}

// shouldRelease reports whether handing memory back now is worth a forced
// GC. While the process is busy, only when the heap holds far more than
// the GC's headroom needs (twice the live heap, or the minimum heap goal):
// under load that headroom is the point. At rest, whenever garbage and free
// spans exceed the slack: the last burst left them, and nothing will reuse
// them soon. A release leaves neither, so it does not repeat at rest.
func shouldRelease(h heapState, minGoal int64, busy bool) bool {
	if h.live <= 0 {
		return false
	}
	if busy {
		return h.objects+h.unused+h.free > max(2*h.live, minGoal)+burstSlack
	}
	return h.objects-h.live+h.free > burstSlack
}

// heapFloor is the minimum heap goal in force: MinHeapGoal, but at most a
// quarter of the memory limit. The runtime keeps about the heap goal
// mapped, and it counts toward Pressure: a 16 MiB floor under a 24 MiB
// limit would keep a process that had shed load under pressure for good.
func heapFloor(o SelfOptions) int64 {
	if o.MinHeapGoal > 0 && o.Limit > 0 {
		return min(o.MinHeapGoal, o.Limit/4)
	}
	return o.MinHeapGoal
}

// busyAllocRate is the allocation rate, in bytes a second, above which the
// process counts as busy: a few hundred proxied requests a second.
const busyAllocRate = 1 << 20

// pressureCache is how long Pressure reuses one reading: it is called on
// every admitted request.
const pressureCache = 100 * time.Millisecond

// SelfOptions configures Bulwark's own memory management.
type SelfOptions struct {
	// Limit is the Go memory limit in bytes (debug.SetMemoryLimit). Zero or
	// negative leaves the limit as it is (GOMEMLIMIT or none).
	Limit int64
	// ReleaseInterval is how often freed memory is handed back to the OS
	// with debug.FreeOSMemory. While it is positive, memory is also handed
	// back at once (at most every BurstReleaseGap) when a burst, such as
	// many TLS handshakes, left the process holding far more than its live
	// heap. Zero or negative means never.
	ReleaseInterval time.Duration
	// MinHeapGoal keeps the GC's heap goal at least this large while the
	// live heap is small, by raising the GC percent above 100 after each
	// collection (never below 100, and not at all when GOGC is set in the
	// environment): it trades a few MiB of memory under load for far fewer
	// collections. It is capped at a quarter of Limit. Zero means
	// DefaultMinHeapGoal; negative means off.
	MinHeapGoal int64
	// PressureRatio is the share of Limit at which Pressure reports true.
	// If zero, DefaultPressureRatio.
	PressureRatio float64
	// Metrics receives bulwark_memory_limit_bytes and
	// bulwark_memory_pressure. If nil, a private set is used.
	Metrics *vm.Set
	// Logger receives limit changes. If nil, nothing is logged.
	Logger *slog.Logger
}

func (o SelfOptions) withDefaults() SelfOptions {
	if o.PressureRatio <= 0 {
		o.PressureRatio = DefaultPressureRatio
	}
	if o.MinHeapGoal == 0 {
		o.MinHeapGoal = DefaultMinHeapGoal
	}
	if o.Metrics == nil {
		o.Metrics = vm.NewSet()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Self keeps Bulwark's own memory within its budget and reports pressure.
// Its methods are safe for concurrent use.
type Self struct {
	limitG, pressureG *vm.Gauge
	releases          *vm.Counter
	updatec           chan struct{} // cap 1: wakes Run after Update

	mu       sync.Mutex
	opts     SelfOptions // guarded by mu
	readAt   time.Time   // guarded by mu
	pressure bool        // guarded by mu
	samples  []metrics.Sample
	allocs   int64     // /gc/heap/allocs at allocAt, for burst's rate; guarded by mu
	allocAt  time.Time // guarded by mu
	tuner    gcTuner
}

// NewSelf applies o.Limit at once and returns the manager; Run releases
// memory periodically.
func NewSelf(o SelfOptions) *Self {
	o = o.withDefaults()
	s := &Self{
		limitG:    o.Metrics.GetOrCreateGauge("bulwark_memory_limit_bytes", nil),
		pressureG: o.Metrics.GetOrCreateGauge("bulwark_memory_pressure", nil),
		updatec:   make(chan struct{}, 1),
		samples: []metrics.Sample{
			{Name: "/memory/classes/total:bytes"},
			{Name: "/memory/classes/heap/released:bytes"},
			{Name: "/gc/heap/live:bytes"},
			{Name: "/gc/heap/allocs:bytes"},
			{Name: "/memory/classes/heap/objects:bytes"},
			{Name: "/memory/classes/heap/unused:bytes"},
			{Name: "/memory/classes/heap/free:bytes"},
		},
		releases: o.Metrics.GetOrCreateCounter("bulwark_memory_releases_total"),
	}
	s.Update(o)
	return s
}

// Update applies new options (on reload): the limit at once, the release
// interval at Run's next wake-up.
func (s *Self) Update(o SelfOptions) {
	s.mu.Lock()
	if o.Metrics == nil {
		o.Metrics = s.opts.Metrics
	}
	if o.Logger == nil {
		o.Logger = s.opts.Logger
	}
	o = o.withDefaults()
	s.opts = o
	s.readAt = time.Time{}
	s.mu.Unlock()
	if o.Limit > 0 {
		prev := debug.SetMemoryLimit(o.Limit)
		if prev != o.Limit {
			o.Logger.Info("go memory limit set", "limit", o.Limit)
		}
	}
	s.tuner.start(heapFloor(o))
	s.limitG.Set(float64(effectiveLimit(o.Limit)))
	select {
	case s.updatec <- struct{}{}:
	default:
	}
}

// effectiveLimit returns the configured limit, or the runtime's current one
// when none is configured (math.MaxInt64 means none).
func effectiveLimit(configured int64) int64 {
	if configured > 0 {
		return configured
	}
	l := debug.SetMemoryLimit(-1)
	if l == math.MaxInt64 {
		return 0
	}
	return l
}

// Pressure reports whether the Go runtime's memory that counts against the
// limit (all mapped memory minus what was released to the OS) is at least
// PressureRatio × the limit. It is false when there is no limit. A reading
// is reused for up to 100 ms.
func (s *Self) Pressure() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Sub(s.readAt) < pressureCache {
		return s.pressure
	}
	metrics.Read(s.samples[:2]) // total and released: all Pressure needs
	var inUse int64
	if s.samples[0].Value.Kind() == metrics.KindUint64 && s.samples[1].Value.Kind() == metrics.KindUint64 {
		inUse = int64(s.samples[0].Value.Uint64() - s.samples[1].Value.Uint64())
	}
	s.pressure = underPressure(inUse, effectiveLimit(s.opts.Limit), s.opts.PressureRatio)
	s.readAt = now
	if s.pressure {
		s.pressureG.Set(1)
	} else {
		s.pressureG.Set(0)
	}
	return s.pressure
}

// underPressure reports whether inUse ≥ ratio × limit; never with no limit.
func underPressure(inUse, limit int64, ratio float64) bool {
	return limit > 0 && float64(inUse) >= ratio*float64(limit)
}

// burst reports whether the process holds far more than its live heap and
// a release is due, sinceLast after the last one. It is called every
// second: it also keeps the allocation rate.
func (s *Self) burst(sinceLast time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	metrics.Read(s.samples)
	for _, x := range s.samples {
		if x.Value.Kind() != metrics.KindUint64 {
			return false
		}
	}
	allocs, now := int64(s.samples[3].Value.Uint64()), time.Now()
	busy := true
	if !s.allocAt.IsZero() {
		rate := float64(allocs-s.allocs) / now.Sub(s.allocAt).Seconds()
		busy = rate >= busyAllocRate
	}
	s.allocs, s.allocAt = allocs, now
	if busy && sinceLast < BurstReleaseGap {
		return false
	}
	h := heapState{
		live:    int64(s.samples[2].Value.Uint64()),
		objects: int64(s.samples[4].Value.Uint64()),
		unused:  int64(s.samples[5].Value.Uint64()),
		free:    int64(s.samples[6].Value.Uint64()),
	}
	return shouldRelease(h, max(heapFloor(s.opts), 0), busy)
}

func (s *Self) release() {
	debug.FreeOSMemory()
	s.releases.Inc()
}

// Run releases freed memory to the OS every ReleaseInterval (if set) and
// refreshes the pressure gauge every second, until ctx is done; then it
// returns nil.
func (s *Self) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var release *time.Ticker
	var releaseC <-chan time.Time
	var every time.Duration
	var lastRelease time.Time
	defer func() {
		if release != nil {
			release.Stop()
		}
	}()
	for {
		s.mu.Lock()
		want := s.opts.ReleaseInterval
		s.mu.Unlock()
		if want != every {
			if release != nil {
				release.Stop()
				release, releaseC = nil, nil
			}
			if want > 0 {
				release = time.NewTicker(want)
				releaseC = release.C
			}
			every = want
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.updatec:
		case <-tick.C:
			// Under pressure, freed memory is handed back (at most every
			// BurstReleaseGap) whatever the release interval: what counts
			// toward the limit must be live memory, not garbage the GC has
			// not returned yet, or a process that shed load would keep
			// shedding.
			pressed := s.Pressure() && time.Since(lastRelease) >= BurstReleaseGap
			if pressed || every > 0 && s.burst(time.Since(lastRelease)) {
				s.release()
				lastRelease = time.Now()
				s.mu.Lock()
				s.readAt = time.Time{} // the next Pressure reads afresh
				s.mu.Unlock()
			}
		case <-releaseC:
			s.release()
			lastRelease = time.Now()
		}
	}
}
