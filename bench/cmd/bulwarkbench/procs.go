package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"bulwark/internal/memwatch"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture this benchmark runs on.
const clockTicks = 100

// Usage is the resources of one or more process trees at one moment.
type Usage struct {
	// RSS and PSS are summed over every process of the trees, in bytes:
	// VmRSS from /proc/PID/status and Pss from /proc/PID/smaps_rollup.
	RSS, PSS int64
	// CPU is utime+stime of the live processes, in seconds.
	CPU float64
	// WriteBytes is write_bytes from /proc/PID/io: bytes the processes
	// caused to be written to block devices (their temp files, here).
	WriteBytes int64
	// Procs counts the processes sampled.
	Procs int
}

// Sample measures the process trees rooted at roots. It fails only when a
// root is gone.
func Sample(roots ...int) (Usage, error) {
	var u Usage
	for _, r := range roots {
		ts, err := memwatch.TreeOf("", r)
		if err != nil {
			return u, fmt.Errorf("sampling process tree %d: %w", r, err)
		}
		u.RSS += ts.RSS
		u.PSS += ts.PSS
		for _, p := range ts.Procs {
			u.CPU += cpuSeconds(p.PID)
			u.WriteBytes += ioField(p.PID, "write_bytes:")
			u.Procs++
		}
	}
	return u, nil
}

// cpuSeconds is utime+stime of pid from /proc/PID/stat; 0 when unreadable.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return float64(ut+st) / clockTicks
}

// ioField reads one counter from /proc/PID/io; 0 when unreadable.
func ioField(pid int, key string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "io"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// PeakWatcher samples the RSS of process trees every interval until stopped
// and keeps the highest value.
type PeakWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	peak   int64
}

// WatchPeak starts sampling roots every interval. It stops by itself after
// limit, so a forgotten watcher cannot run for ever.
func WatchPeak(roots []int, interval, limit time.Duration) *PeakWatcher {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	w := &PeakWatcher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			w.sampleOnce(roots)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *PeakWatcher) sampleOnce(roots []int) {
	var rss int64
	for _, r := range roots {
		if ts, err := memwatch.TreeOf("", r); err == nil {
			rss += ts.RSS
		}
	}
	w.mu.Lock()
	w.peak = max(w.peak, rss)
	w.mu.Unlock()
}

// Stop ends the sampling and returns the peak RSS in bytes.
func (w *PeakWatcher) Stop() int64 {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}
