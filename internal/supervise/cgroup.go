package supervise

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

// joinCgroup puts pid into a new cgroup v2 below Bulwark's own, with
// memory.high = MaxMemory and memory.max 50 % above: the watchdog restarts
// the app at 25 % above (memwatch.HardFactor), so the kernel's OOM kill
// is the backstop, not the rule. It returns the cgroup
// directory, or "" when there is none; the first failure is logged once and
// cgroups are not tried again.
func (s *Supervisor) joinCgroup(o Options, pid int) string {
	if o.MaxMemory <= 0 || s.cgroupOff {
		return ""
	}
	dir, err := makeCgroup(o, pid)
	if err != nil {
		s.cgroupOff = true
		s.log.Warn("cgroup v2 not writable here: relying on Bulwark's watchdog", "err", err)
		return ""
	}
	return dir
}

func makeCgroup(o Options, pid int) (string, error) {
	if _, err := os.Stat(filepath.Join(o.CgroupRoot, "cgroup.controllers")); err != nil {
		return "", fmt.Errorf("no cgroup v2 at %s: %w", o.CgroupRoot, err)
	}
	self, err := ownCgroup(o.env.procRoot)
	if err != nil {
		return "", err
	}
	parent := filepath.Join(o.CgroupRoot, self)
	dir := filepath.Join(parent, fmt.Sprintf("bulwark-app-%d", pid))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating app cgroup: %w", err)
	}
	if err := writeLimits(dir, o.MaxMemory); err != nil {
		// The memory controller may not be enabled for our children yet.
		_ = os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0)
		if err = writeLimits(dir, o.MaxMemory); err != nil {
			os.Remove(dir)
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("moving the app into its cgroup: %w", err)
	}
	return dir, nil
}

func writeLimits(dir string, high int64) error {
	if err := os.WriteFile(filepath.Join(dir, "memory.high"), []byte(strconv.FormatInt(high, 10)), 0); err != nil {
		return fmt.Errorf("writing memory.high: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte(strconv.FormatInt(high+high/2, 10)), 0); err != nil {
		return fmt.Errorf("writing memory.max: %w", err)
	}
	return nil
}

// ownCgroup returns Bulwark's cgroup v2 path from /proc/self/cgroup.
func ownCgroup(procRoot string) (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, "self", "cgroup"))
	if err != nil {
		return "", fmt.Errorf("reading own cgroup: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("reading own cgroup: no cgroup v2 entry")
}

// cgroupOOMKills returns the oom_kill count of memory.events in dir.
func cgroupOOMKills(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "memory.events"))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// removeCgroup removes an emptied cgroup; processes killed a moment ago may
// still be leaving it, so it tries a few times.
func removeCgroup(dir string) {
	for range 20 {
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}
