package memwatch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultProcRoot is used when a proc root is "".
const DefaultProcRoot = "/proc"

// userHZ is the unit of /proc/<pid>/stat starttime. The kernel reports it in
// USER_HZ, which is 100 on every Linux architecture Bulwark targets.
const userHZ = 100

// maxTreeProcs bounds a tree walk, so a fork bomb cannot make one sample
// unbounded in time and memory.
const maxTreeProcs = 4096

// ProcSample is the memory of one process.
type ProcSample struct {
	PID int
	// RSS is VmRSS from /proc/<pid>/status, in bytes.
	RSS int64
	// PSS is Pss from /proc/<pid>/smaps_rollup, in bytes; 0 when that file
	// cannot be read (older kernels, or another user's process).
	PSS int64
	// Cmdline is the command line with arguments separated by spaces.
	Cmdline string
	// StartTime is when the process started; zero when unknown.
	StartTime time.Time
}

// TreeSample is the memory of a process and all its descendants.
type TreeSample struct {
	// Root is the PID the tree was taken from; 0 for an empty sample.
	Root int
	// Procs lists the root first, then descendants in breadth-first order.
	Procs []ProcSample
	// RSS and PSS are the sums over Procs, in bytes.
	RSS, PSS int64
	// At is when the sample was taken.
	At time.Time
}

// MachineSample is the machine's memory from /proc/meminfo, in bytes.
type MachineSample struct {
	MemTotal, MemAvailable int64
}

// TreeOf samples the process pid and all its descendants under procRoot
// ("" means /proc). Parents are found from the ppid field of every
// /proc/<pid>/stat; RSS comes from status (VmRSS) and PSS from smaps_rollup.
// A descendant that vanishes during the walk is left out; the error is
// non-nil (and wraps fs.ErrNotExist) only when pid itself is gone. It never
// forks or execs.
func TreeOf(procRoot string, pid int) (TreeSample, error) {
	return treeOf(procRoot, pid, time.Now())
}

func treeOf(procRoot string, pid int, now time.Time) (TreeSample, error) {
	t, err := readTable(procRoot, now)
	if err != nil {
		return TreeSample{Root: pid, At: now}, err
	}
	return t.Sample(pid, now)
}

// refresh re-reads the RSS of the processes of prev, without walking /proc
// for new descendants or reading PSS (kept from prev): the cheap sample
// taken between full ones while the tree is near its limit. The error wraps
// fs.ErrNotExist when the root is gone.
func refresh(procRoot string, prev TreeSample, now time.Time) (TreeSample, error) {
	ts := TreeSample{Root: prev.Root, At: now, Procs: make([]ProcSample, 0, len(prev.Procs))}
	for i, p := range prev.Procs {
		status, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(p.PID), "status"))
		if err != nil {
			if i == 0 {
				return ts, fmt.Errorf("process %d: %w", p.PID, err)
			}
			continue // a descendant exited
		}
		p.RSS = fieldKiB(status, "VmRSS:")
		ts.Procs = append(ts.Procs, p)
		ts.RSS += p.RSS
		ts.PSS += p.PSS
	}
	return ts, nil
}

// ProcStat is what Bulwark reads from /proc/<pid>/stat.
type ProcStat struct {
	// State is the one-letter state: R, S, D, Z (a zombie) and so on.
	State byte
	// PPID, PGID and Session are the parent, the process group and the
	// session.
	PPID, PGID, Session int
	// Start is the start time in USER_HZ ticks since boot. With the PID
	// it names one process: a PID can be reused, not at the same tick.
	Start uint64
}

// ReadStat reads /proc/<pid>/stat under procRoot ("" means /proc).
func ReadStat(procRoot string, pid int) (ProcStat, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return ProcStat{}, err
	}
	// The command name may contain spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ProcStat{}, fmt.Errorf("parsing stat of %d: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is the state (field 3), f[1] the ppid (field 4), f[2] the
	// process group, f[3] the session, f[19] the starttime (field 22).
	if len(f) < 20 || len(f[0]) != 1 {
		return ProcStat{}, fmt.Errorf("parsing stat of %d: %d fields", pid, len(f))
	}
	st := ProcStat{State: f[0][0]}
	for _, v := range []struct {
		dst  *int
		text string
	}{{&st.PPID, f[1]}, {&st.PGID, f[2]}, {&st.Session, f[3]}} {
		if *v.dst, err = strconv.Atoi(v.text); err != nil {
			return ProcStat{}, fmt.Errorf("parsing stat of %d: %w", pid, err)
		}
	}
	st.Start, _ = strconv.ParseUint(f[19], 10, 64)
	return st, nil
}

// ProcOf reads the RSS, PSS and command line of one process, without
// walking its descendants (TreeOf does that).
func ProcOf(procRoot string, pid int) (ProcSample, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	return readProc(procRoot, pid)
}

// readProc reads the RSS, PSS and command line of one process. Only a
// missing status file is an error: it means the process is gone.
func readProc(procRoot string, pid int) (ProcSample, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	ps := ProcSample{PID: pid}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return ps, fmt.Errorf("reading status: %w", err)
	}
	ps.RSS = fieldKiB(status, "VmRSS:")
	if rollup, err := os.ReadFile(filepath.Join(dir, "smaps_rollup")); err == nil {
		ps.PSS = fieldKiB(rollup, "Pss:")
	}
	ps.Cmdline = Cmdline(procRoot, pid, 0)
	return ps, nil
}

// fieldKiB returns the value of the first line starting with key, given in
// kB as in /proc status, meminfo and smaps_rollup, converted to bytes; 0 when
// absent (kernel threads have no VmRSS).
func fieldKiB(b []byte, key string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, key) {
			continue
		}
		f := strings.Fields(line[len(key):])
		if len(f) == 0 {
			return 0
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n
	}
	return 0
}

// bootTime reads btime from /proc/stat; zero when unreadable.
func bootTime(procRoot string) time.Time {
	b, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return time.Time{}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "btime" {
			if s, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return time.Unix(s, 0)
			}
		}
	}
	return time.Time{}
}

// Machine reads MemTotal and MemAvailable from meminfo under procRoot (""
// means /proc).
func Machine(procRoot string) (MachineSample, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	b, err := os.ReadFile(filepath.Join(procRoot, "meminfo"))
	if err != nil {
		return MachineSample{}, fmt.Errorf("reading machine memory: %w", err)
	}
	m := MachineSample{MemTotal: fieldKiB(b, "MemTotal:"), MemAvailable: fieldKiB(b, "MemAvailable:")}
	if m.MemTotal == 0 {
		return m, errors.New("reading machine memory: no MemTotal in meminfo")
	}
	return m, nil
}
