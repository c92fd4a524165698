package memwatch

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// maxTablePIDs bounds one walk of /proc, so a fork bomb cannot make it
// unbounded in time and memory.
const maxTablePIDs = 16384

// Table is one walk of /proc: the parent and start time of every process.
// Walking it is the costly part of a tree sample (a read of every
// process's stat), so a Source shares one among the watchers of a pool and
// the supervisor's socket checks use it too. A Table is read-only once
// made and safe for concurrent use.
type Table struct {
	// At is when the walk began.
	At time.Time

	procRoot string
	pids     []int          // in the order of the proc directory
	children map[int][]int  // by parent PID
	starts   map[int]uint64 // start time in USER_HZ ticks since boot
	boot     time.Time      // btime of /proc/stat; zero when unknown
}

// ReadTable walks procRoot ("" means /proc) once, reading the stat file
// of every process (at most 16384). Processes that vanish during the walk
// are left out. It never forks or execs.
func ReadTable(procRoot string) (*Table, error) {
	return readTable(procRoot, time.Now())
}

func readTable(procRoot string, now time.Time) (*Table, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	t := &Table{At: now, procRoot: procRoot, children: map[int][]int{}, starts: map[int]uint64{}}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p <= 0 {
			continue
		}
		st, err := ReadStat(procRoot, p)
		if err != nil {
			continue // vanished between ReadDir and here, or unreadable
		}
		t.pids = append(t.pids, p)
		t.children[st.PPID] = append(t.children[st.PPID], p)
		t.starts[p] = st.Start
		if len(t.pids) == maxTablePIDs {
			break
		}
	}
	t.boot = bootTime(procRoot)
	return t, nil
}

// Has reports whether pid was running at the walk.
func (t *Table) Has(pid int) bool {
	_, ok := t.starts[pid]
	return ok
}

// PIDs returns every process of the walk; the caller must not change it.
func (t *Table) PIDs() []int { return t.pids }

// Tree returns root and its descendants, breadth first, at most 4096; nil
// when root was not running at the walk.
func (t *Table) Tree(root int) []int {
	if !t.Has(root) {
		return nil
	}
	queue := []int{root}
	seen := map[int]bool{root: true}
	for i := 0; i < len(queue) && len(queue) < maxTreeProcs; i++ {
		for _, c := range t.children[queue[i]] {
			if !seen[c] && len(queue) < maxTreeProcs {
				seen[c] = true
				queue = append(queue, c)
			}
		}
	}
	return queue
}

// StartTicks returns when pid started, in clock ticks (USER_HZ) since boot,
// field 22 of its stat: comparable between processes of one boot.
func (t *Table) StartTicks(pid int) (uint64, bool) {
	s, ok := t.starts[pid]
	return s, ok
}

// Sample reads the RSS and PSS of the tree rooted at pid, as TreeOf does,
// with the tree's shape taken from t. The error wraps fs.ErrNotExist when
// pid was not running at the walk or is gone now.
func (t *Table) Sample(pid int, now time.Time) (TreeSample, error) {
	ts := TreeSample{Root: pid, At: now}
	tree := t.Tree(pid)
	if tree == nil {
		return ts, fmt.Errorf("process %d: %w", pid, fs.ErrNotExist)
	}
	for _, p := range tree {
		ps, err := readProc(t.procRoot, p)
		if err != nil {
			if p == pid {
				return ts, fmt.Errorf("process %d: %w", pid, err)
			}
			continue // a descendant exited since the walk
		}
		if !t.boot.IsZero() {
			ps.StartTime = t.boot.Add(time.Duration(t.starts[p]) * time.Second / userHZ)
		}
		ts.Procs = append(ts.Procs, ps)
		ts.RSS += ps.RSS
		ts.PSS += ps.PSS
	}
	return ts, nil
}

// Cmdline returns the command line of pid under procRoot ("" means /proc),
// arguments separated by spaces and cut to limit bytes (0: whole); "" when
// it cannot be read.
func Cmdline(procRoot string, pid, limit int) string {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if limit > 0 && len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}
