//go:build linux

package config

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCgroupV1LimitOnThisMachine checks the cgroup v1 reading against the
// kernel rather than a fixture: a child process is put into a new memory
// cgroup with a 700 MiB limit, and Load, reading the child's
// /proc/<pid>/cgroup and the real /sys, must pick the limit up. It needs
// root and the v1 memory controller (a legacy or hybrid hierarchy, as on
// this project's CI machine) and is skipped elsewhere, saying why.
func TestCgroupV1LimitOnThisMachine(t *testing.T) {
	const limit = 700 << 20
	v1 := "/sys/fs/cgroup/memory"
	rel, err := ownV1MemoryCgroup()
	if err != nil {
		t.Skipf("no cgroup v1 memory controller here: %v", err)
	}
	dir := filepath.Join(v1, rel, fmt.Sprintf("bulwark-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup v1 memory cgroup (needs root): %v", err)
	}
	t.Cleanup(func() {
		// The cgroup can go once its process has: retry briefly.
		for range 50 {
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("could not remove test cgroup %s", dir)
	})
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.Itoa(limit)), 0); err != nil {
		t.Fatalf("setting the limit: %v", err)
	}

	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatalf("starting the child: %v", err)
	}
	pid := child.Process.Pid
	t.Cleanup(func() {
		_ = child.Process.Kill() // by PID, then reaped
		_ = child.Wait()
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatalf("moving the child into %s: %v", dir, err)
	}

	// A /proc whose "self" is the child, and the machine's /sys.
	proc := t.TempDir()
	if err := os.Symlink(fmt.Sprintf("/proc/%d", pid), filepath.Join(proc, "self")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/meminfo", filepath.Join(proc, "meminfo")); err != nil {
		t.Fatal(err)
	}
	c, err := Load(LoadOptions{ProcRoot: proc, SysRoot: "/sys"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.MachineMemory != limit || !strings.Contains(c.ProfileReason, "cgroup v1 memory.limit_in_bytes 700.0MiB") || c.Resolved != "low" {
		t.Errorf("Load in a 700 MiB v1 cgroup = memory %d, profile %q (%s); want %d, low, from memory.limit_in_bytes",
			c.MachineMemory, c.Resolved, c.ProfileReason, limit)
	}
}

// ownV1MemoryCgroup returns this process's cgroup in the v1 memory
// hierarchy, which must be mounted at /sys/fs/cgroup/memory.
func ownV1MemoryCgroup() (string, error) {
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		return "", err
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(data)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) == 3 && parts[1] == "memory" {
			return parts[2], nil
		}
	}
	return "", fmt.Errorf("no memory line in /proc/self/cgroup")
}
