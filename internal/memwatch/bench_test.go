package memwatch

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// BenchmarkSample measures one sample of a small tree (this process and
// three children, as uvicorn with a few workers would be) on the real
// /proc. "full" is the sample taken every Interval: the box's memory, the
// walk of every /proc/PID/stat to find the children, then status,
// smaps_rollup and cmdline of each member. "fast" is the one taken every
// FastInterval in between: the box's memory and each member's status.
func BenchmarkSample(b *testing.B) {
	for range 3 {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			b.Skipf("cannot start sleep: %v", err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	w := New(Options{Limit: 1 << 40, Grace: -1})
	w.Watch(os.Getpid())
	ts, err := TreeOf("", os.Getpid())
	if err != nil || len(ts.Procs) < 4 {
		b.Fatalf("TreeOf(self) = %d processes, %v; want 4", len(ts.Procs), err)
	}
	entries, _ := os.ReadDir("/proc")
	b.ReportMetric(float64(len(entries)), "proc_entries")
	b.Run("full", func(b *testing.B) {
		for range b.N {
			w.fullAt = time.Time{}
			w.sample(time.Now())
		}
	})
	b.Run("fast", func(b *testing.B) {
		w.sample(time.Now())
		for range b.N {
			w.fullAt = time.Now() // within Interval of a full walk
			w.sample(time.Now())
		}
	})
}
