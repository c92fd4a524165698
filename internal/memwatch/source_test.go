package memwatch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSourceSharesOneWalk: watchers sharing a Source within the bound get
// the same walk of /proc; a root the walk lacks, or an older walk, makes a
// new one.
func TestSourceSharesOneWalk(t *testing.T) {
	s := NewSource(fixtures, t.TempDir())
	t0 := time.Unix(1000, 0)
	a, err := s.Table(t0, 500*time.Millisecond, 101)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Table(t0.Add(100*time.Millisecond), 500*time.Millisecond, 102)
	if err != nil || b != a {
		t.Fatalf("second watcher within the bound: got a new walk (%p, %p), err %v", a, b, err)
	}
	c, _ := s.Table(t0.Add(200*time.Millisecond), 500*time.Millisecond, 999)
	if c == a {
		t.Error("a root missing from the shared walk did not make a new one")
	}
	d, _ := s.Table(t0.Add(time.Second), 500*time.Millisecond, 101)
	if d == a || d == c {
		t.Error("a walk older than the bound was handed out again")
	}
	ts, err := d.Sample(101, t0)
	if err != nil || len(ts.Procs) != 2 || ts.RSS != (60000+1000)<<10 {
		t.Errorf("Sample(101) = %+v, %v; want 101 and 103", ts, err)
	}
}

// TestSourceResolvesCgroupOnce: a Source finds Bulwark's cgroup when made
// and then only reads its numbers: a later change of self/cgroup is not
// followed, a change of the limit is.
func TestSourceResolvesCgroupOnce(t *testing.T) {
	dir := t.TempDir()
	const mib = 1 << 20
	writeFiles(t, dir, map[string]string{
		"proc/meminfo":          "MemTotal:        4000000 kB\nMemAvailable:    3000000 kB\n",
		"proc/self/cgroup":      "0::/box\n",
		"cg/box/memory.max":     "536870912\n",
		"cg/box/memory.current": "0\n",
		"cg/other/memory.max":   "1048576\n",
	})
	s := NewSource(filepath.Join(dir, "proc"), filepath.Join(dir, "cg"))
	if err := os.WriteFile(filepath.Join(dir, "proc/self/cgroup"), []byte("0::/other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	if m, err := s.Box(t0, 0); err != nil || m.MemTotal != 512*mib {
		t.Errorf("Box() = %+v, %v; want the cgroup found at NewSource, 512 MiB", m, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cg/box/memory.max"), []byte("268435456\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Box(t0.Add(time.Millisecond), time.Second); m.MemTotal != 512*mib {
		t.Errorf("Box() within maxAge = %d, want the shared read, 512 MiB", m.MemTotal)
	}
	if m, _ := s.Box(t0.Add(2*time.Second), time.Second); m.MemTotal != 256*mib {
		t.Errorf("Box() after maxAge = %d, want the new limit, 256 MiB", m.MemTotal)
	}
}
