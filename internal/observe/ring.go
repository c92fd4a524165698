package observe

import "time"

// sample is one second of history, kept small: the ring holds
// Options.History of them.
type sample struct {
	t                int64 // Unix ms
	requests         uint64
	rps              float64
	bulwarkRSS       int64
	goHeap           int64
	appRSS, appPSS   int64
	machineAvail     int64
	p50, p99         float64 // ms
	h1, h2           int64
	active, idle     int64
	inFlight, queued int
}

// ring is a fixed-size ring buffer of samples. It is not safe for
// concurrent use; Server.mu guards it.
type ring struct {
	buf  []sample
	next int // index of the next write
	n    int // number of valid samples
}

func newRing(size int) *ring { return &ring{buf: make([]sample, size)} }

// add stores snap taken at now and returns the request rate since the
// previous sample (0 for the first one, or when the counter went back).
func (r *ring) add(now time.Time, snap Snapshot) float64 {
	sm := sample{
		t:            now.UnixMilli(),
		requests:     snap.RequestsTotal,
		bulwarkRSS:   snap.Bulwark.RSS,
		goHeap:       snap.GoHeapBytes,
		machineAvail: snap.Machine.MemAvailable,
		p50:          float64(snap.LatencyP50) / float64(time.Millisecond),
		p99:          float64(snap.LatencyP99) / float64(time.Millisecond),
		h1:           snap.ConnsH1,
		h2:           snap.ConnsH2,
		active:       snap.ConnsActive,
		idle:         snap.ConnsIdle,
		inFlight:     snap.InFlight,
		queued:       snap.Queued,
	}
	if snap.App != nil {
		sm.appRSS, sm.appPSS = snap.App.RSS, snap.App.PSS
	}
	if r.n > 0 {
		prev := r.buf[(r.next-1+len(r.buf))%len(r.buf)]
		if dt := float64(sm.t-prev.t) / 1000; dt > 0 && sm.requests >= prev.requests {
			sm.rps = float64(sm.requests-prev.requests) / dt
		}
	}
	r.buf[r.next] = sm
	r.next = (r.next + 1) % len(r.buf)
	if r.n < len(r.buf) {
		r.n++
	}
	return sm.rps
}

// history copies the ring into columns, oldest first: the whole ring, or,
// when since is the time of a sample it still holds, only the samples
// after it. A since older than the ring (the caller missed samples) or newer
// than its last sample (another process, or the clock went back) gets the
// whole ring, marked Full.
func (r *ring) history(since int64) *History {
	start := (r.next - r.n + len(r.buf)) % len(r.buf)
	at := func(i int) sample { return r.buf[(start+i)%len(r.buf)] }
	first, full := 0, true
	if since > 0 && r.n > 0 && since >= at(0).t && since <= at(r.n-1).t {
		full = false
		for first < r.n && at(first).t <= since {
			first++
		}
	}
	m := r.n - first
	h := &History{
		IntervalSeconds:  sampleInterval.Seconds(),
		Full:             full,
		T:                make([]int64, 0, m),
		BulwarkRSS:       make([]int64, 0, m),
		GoHeap:           make([]int64, 0, m),
		AppRSS:           make([]int64, 0, m),
		AppPSS:           make([]int64, 0, m),
		MachineAvailable: make([]int64, 0, m),
		RequestsPerSec:   make([]float64, 0, m),
		P50Ms:            make([]float64, 0, m),
		P99Ms:            make([]float64, 0, m),
		ConnsH1:          make([]int64, 0, m),
		ConnsH2:          make([]int64, 0, m),
		ConnsActive:      make([]int64, 0, m),
		ConnsIdle:        make([]int64, 0, m),
		InFlight:         make([]int, 0, m),
		Queued:           make([]int, 0, m),
	}
	if r.n > 0 {
		h.Oldest = at(0).t
	}
	for i := first; i < r.n; i++ {
		sm := at(i)
		h.T = append(h.T, sm.t)
		h.BulwarkRSS = append(h.BulwarkRSS, sm.bulwarkRSS)
		h.GoHeap = append(h.GoHeap, sm.goHeap)
		h.AppRSS = append(h.AppRSS, sm.appRSS)
		h.AppPSS = append(h.AppPSS, sm.appPSS)
		h.MachineAvailable = append(h.MachineAvailable, sm.machineAvail)
		h.RequestsPerSec = append(h.RequestsPerSec, sm.rps)
		h.P50Ms = append(h.P50Ms, sm.p50)
		h.P99Ms = append(h.P99Ms, sm.p99)
		h.ConnsH1 = append(h.ConnsH1, sm.h1)
		h.ConnsH2 = append(h.ConnsH2, sm.h2)
		h.ConnsActive = append(h.ConnsActive, sm.active)
		h.ConnsIdle = append(h.ConnsIdle, sm.idle)
		h.InFlight = append(h.InFlight, sm.inFlight)
		h.Queued = append(h.Queued, sm.queued)
	}
	return h
}
