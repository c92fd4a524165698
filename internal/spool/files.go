package spool

import (
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// minMaxFiles is the least DefaultMaxFiles returns, for hosts with a tiny
// RLIMIT_NOFILE.
const minMaxFiles = 16

// fileBudget counts the Spool's open temp files against Options.MaxFiles
// and hands freed ones to waiting bodies first come, first served. Its
// zero value is ready; a limit of zero or less means no cap.
type fileBudget struct {
	gauge *metrics.Gauge // bulwark_spool_files; nil in a bare fileBudget

	mu      sync.Mutex
	open    int
	waiters []*fileWaiter // in arrival order
}

// fileWaiter is one body waiting for a temp file.
type fileWaiter struct {
	ready   chan struct{} // cap 1; receives when granted
	granted bool          // guarded by fileBudget.mu
}

// acquire takes one file of the budget. When none is free it waits up to
// wait for one, or until done closes, and reports whether it got one.
// Bodies already waiting go first, so a steady stream of new ones cannot
// starve them.
func (fb *fileBudget) acquire(limit int, wait time.Duration, done <-chan struct{}) bool {
	fb.mu.Lock()
	if limit <= 0 || (fb.open < limit && len(fb.waiters) == 0) {
		fb.takeLocked()
		fb.mu.Unlock()
		return true
	}
	if wait <= 0 {
		fb.mu.Unlock()
		return false
	}
	// Only a body that finds the budget used up gets here: the channel
	// and timer are not worth pooling.
	w := &fileWaiter{ready: make(chan struct{}, 1)}
	fb.waiters = append(fb.waiters, w)
	fb.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-w.ready:
		return true
	case <-timer.C:
	case <-done:
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if w.granted {
		return true // granted as the wait ended: the file is this body's
	}
	for i, x := range fb.waiters {
		if x == w {
			fb.waiters = append(fb.waiters[:i], fb.waiters[i+1:]...)
			break
		}
	}
	return false
}

// release gives back one file and hands it on to the first waiter while
// the budget allows.
func (fb *fileBudget) release(limit int) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.open--
	if fb.gauge != nil {
		fb.gauge.Dec()
	}
	fb.grantLocked(limit)
}

// grant hands free files to waiters, after the limit was raised.
func (fb *fileBudget) grant(limit int) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.grantLocked(limit)
}

func (fb *fileBudget) grantLocked(limit int) {
	for len(fb.waiters) > 0 && (limit <= 0 || fb.open < limit) {
		w := fb.waiters[0]
		fb.waiters[0] = nil
		fb.waiters = fb.waiters[1:]
		w.granted = true
		fb.takeLocked()
		w.ready <- struct{}{}
	}
}

func (fb *fileBudget) takeLocked() {
	fb.open++
	if fb.gauge != nil {
		fb.gauge.Inc()
	}
}

// count reports the files open.
func (fb *fileBudget) count() int {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.open
}
