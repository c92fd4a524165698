package supervise

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"bulwark/internal/memwatch"
)

// ParentEnv names, in the environment of every app process, the Bulwark
// that started it and the app, as "<pid>.<start ticks>/<scope>" (Scope).
// Pdeathsig ends the app's first process when its Bulwark dies (SIGKILL,
// a crash, the OOM killer), but not the processes it started: uvicorn --workers, gunicorn's workers
// and multiprocessing's helpers live on, holding the app's port and its
// memory. They inherit the environment, so the next Bulwark can tell them
// from everything else on the machine and stop them (StopOrphans).
const ParentEnv = "BULWARK_PARENT"

// Scope names an app by its command (before {port} or {socket} is filled
// in) and directory: the next Bulwark of the same app stops what a killed
// one left (StopOrphans), and leaves other apps' leftovers to their own
// Bulwark.
func Scope(command []string, dir string) string {
	h := sha256.Sum256([]byte(strings.Join(append(slices.Clone(command), dir), "\x00")))
	return hex.EncodeToString(h[:8])
}

// parentValue is the ParentEnv value for an app of scope.
func parentValue(scope string) string { return selfMark() + "/" + scope }

// selfMark identifies this process across PID reuse: "<pid>.<start ticks>".
var selfMark = sync.OnceValue(func() string {
	st, err := memwatch.ReadStat("", os.Getpid())
	if err != nil {
		return strconv.Itoa(os.Getpid()) // still unique among live processes
	}
	return strconv.Itoa(os.Getpid()) + "." + strconv.FormatUint(st.Start, 10)
})

// Orphan is an app process whose Bulwark is gone.
type Orphan struct {
	PID int
	// Cmdline is its command line, cut to a readable length.
	Cmdline string
	// Parent is the PID of the Bulwark that started it.
	Parent int
	pgid   int
	start  uint64
}

// String names the orphan as an address-in-use error names a holder.
func (o Orphan) String() string { return holder{pid: o.PID, cmd: o.Cmdline}.String() }

// orphanPoll is how often StopOrphans looks whether the orphans are gone.
const orphanPoll = 50 * time.Millisecond

// StopOrphans stops the processes of the app of scope (Scope) that a
// Bulwark that no longer runs left behind, as a clean stop would have:
// SIGTERM to their process groups, then SIGKILL to what is left after
// grace. It returns those it found.
//
// A process is an orphan when its environment names, in ParentEnv, the
// same scope and a Bulwark that is not running (no process with that PID
// and start time). Processes of a Bulwark still running, such as the old one during an
// upgrade, are left alone, as are processes that made their own session
// (daemons that detached on purpose, which a clean stop leaves too),
// processes in another PID namespace (a container's, whose marks name PIDs
// of that namespace) and processes whose environment this user cannot
// read.
func StopOrphans(procRoot, scope string, grace time.Duration) ([]Orphan, error) {
	if procRoot == "" {
		procRoot = memwatch.DefaultProcRoot
	}
	found, err := findOrphans(procRoot, scope)
	if err != nil || len(found) == 0 {
		return found, err
	}
	return found, stopOrphans(procRoot, found, grace)
}

// stopOrphans sends SIGTERM to the orphans' process groups, and SIGKILL
// to what is left after grace.
func stopOrphans(procRoot string, found []Orphan, grace time.Duration) error {
	signalOrphans(found, syscall.SIGTERM)
	if waitOrphans(procRoot, found, grace) {
		return nil
	}
	signalOrphans(found, syscall.SIGKILL)
	if !waitOrphans(procRoot, found, time.Second) {
		return fmt.Errorf("processes left by a previous Bulwark outlived SIGKILL: %v", found)
	}
	return nil
}

// findOrphans walks procRoot for orphans of the app of scope.
func findOrphans(procRoot, scope string) ([]Orphan, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	self, ownGroup := os.Getpid(), syscall.Getpgrp()
	ownNS := pidNamespace(procRoot, "self")
	parents := map[string]bool{} // ParentEnv value → that Bulwark runs
	var out []Orphan
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || pid == self {
			continue
		}
		value, ok := parentMark(procRoot, pid)
		mark, theirs, _ := strings.Cut(value, "/")
		if !ok || theirs != scope || mark == selfMark() {
			continue
		}
		if pidNamespace(procRoot, e.Name()) != ownNS {
			// A container's app, marked with PIDs of its own namespace:
			// its Bulwark's PID means something else here.
			continue
		}
		alive, seen := parents[mark]
		if !seen {
			alive = markRunning(procRoot, mark)
			parents[mark] = alive
		}
		if alive {
			continue
		}
		st, err := memwatch.ReadStat(procRoot, pid)
		if err != nil || st.State == 'Z' || st.Session == pid || st.PGID == ownGroup {
			continue
		}
		parent, _, _ := strings.Cut(mark, ".")
		ppid, _ := strconv.Atoi(parent)
		out = append(out, Orphan{
			PID: pid, Cmdline: memwatch.Cmdline(procRoot, pid, maxCmdline),
			Parent: ppid, pgid: st.PGID, start: st.Start,
		})
	}
	return out, nil
}

// pidNamespace names the PID namespace of process name ("self" or a
// PID); "" when it cannot be read (no namespaces, or not allowed).
func pidNamespace(procRoot, name string) string {
	ns, _ := os.Readlink(filepath.Join(procRoot, name, "ns", "pid"))
	return ns
}

// parentMark returns the ParentEnv value in pid's environment.
func parentMark(procRoot string, pid int) (string, bool) {
	env, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "environ"))
	if err != nil {
		return "", false // gone, or another user's
	}
	for kv := range bytes.SplitSeq(env, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte(ParentEnv+"=")); ok {
			return string(v), true
		}
	}
	return "", false
}

// markRunning reports whether the Bulwark a ParentEnv value names runs.
// A value it cannot parse counts as running: nothing is stopped on a guess.
func markRunning(procRoot, mark string) bool {
	p, t, ok := strings.Cut(mark, ".")
	pid, err1 := strconv.Atoi(p)
	start, err2 := strconv.ParseUint(t, 10, 64)
	if !ok || err1 != nil || err2 != nil || pid <= 0 {
		return true
	}
	st, err := memwatch.ReadStat(procRoot, pid)
	return err == nil && st.Start == start && st.State != 'Z'
}

// signalOrphans sends sig to each orphan's process group once.
func signalOrphans(orphans []Orphan, sig syscall.Signal) {
	var done []int
	for _, o := range orphans {
		if slices.Contains(done, o.pgid) {
			continue
		}
		done = append(done, o.pgid)
		syscall.Kill(-o.pgid, sig)
	}
}

// waitOrphans waits up to d for every orphan to be gone (or a zombie),
// and reports whether they all are.
func waitOrphans(procRoot string, orphans []Orphan, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := false
		for _, o := range orphans {
			st, err := memwatch.ReadStat(procRoot, o.PID)
			if err == nil && st.Start == o.start && st.State != 'Z' {
				left = true
				break
			}
		}
		if !left {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(orphanPoll)
	}
}
