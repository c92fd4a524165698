package memwatch

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultCgroupRoot is where cgroups are mounted when a cgroup root is "".
const DefaultCgroupRoot = "/sys/fs/cgroup"

// noLimit is the smallest cgroup v1 limit taken as "unlimited": v1 writes
// "no limit" as a huge page-aligned number.
const noLimit = 1 << 60

// Floor bounds: see DefaultFloor.
const (
	minFloor = 48 << 20
	maxFloor = 256 << 20
)

// DefaultFloor is the machine's available memory under which the app is
// restarted at the first sample (when it holds at least half its budget):
// 5 % of the box's memory, at least 48 MiB (what the kernel and a shell
// need on a 512 MB box) and at most 256 MiB.
func DefaultFloor(total int64) int64 {
	return min(max(total/20, minFloor), maxFloor)
}

// Box returns the memory of the box Bulwark runs in: the machine's
// (MemTotal, MemAvailable from meminfo), or less when a cgroup Bulwark is
// in, or any of its ancestors, has a memory limit: its limit, and its limit
// minus its usage less the inactive page cache (which the kernel reclaims
// before it kills). It reads cgroup v2 memory.max/memory.current and v1
// memory.limit_in_bytes/memory.usage_in_bytes. procRoot "" means /proc,
// cgroupRoot "" means DefaultCgroupRoot. A Source finds the cgroups once
// and then only reads their numbers.
func Box(procRoot, cgroupRoot string) (MachineSample, error) {
	return newBoxReader(procRoot, cgroupRoot).read()
}

// cgroupDir is a cgroup directory whose memory limit, if it has one,
// bounds the box.
type cgroupDir struct {
	dir, limitFile, usageFile, inactiveKey string
}

// boxReader reads the box's memory from meminfo and the cgroup
// directories found once, at its making: Bulwark's cgroup does not change
// while it runs, only the limits and usage in it do.
type boxReader struct {
	procRoot string
	dirs     []cgroupDir
}

// newBoxReader finds the cgroup directories of Bulwark and their
// ancestors from procRoot's self/cgroup.
func newBoxReader(procRoot, cgroupRoot string) boxReader {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	if cgroupRoot == "" {
		cgroupRoot = DefaultCgroupRoot
	}
	br := boxReader{procRoot: procRoot}
	b, err := os.ReadFile(filepath.Join(procRoot, "self", "cgroup"))
	if err != nil {
		return br // no cgroups: the machine is the box
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// "0::/path" (v2) or "4:memory:/path" (v1; controllers may be joined).
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			br.add(filepath.Join(cgroupRoot, f[2]), cgroupRoot, "memory.max", "memory.current", "inactive_file ")
			unified := filepath.Join(cgroupRoot, "unified")
			br.add(filepath.Join(unified, f[2]), unified, "memory.max", "memory.current", "inactive_file ")
		case hasController(f[1], "memory"):
			root := filepath.Join(cgroupRoot, "memory")
			br.add(filepath.Join(root, f[2]), root, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file ")
		}
	}
	return br
}

// add records dir and each of its ancestors up to root that has limitFile.
func (br *boxReader) add(dir, root, limitFile, usageFile, inactiveKey string) {
	root = filepath.Clean(root)
	for d := filepath.Clean(dir); strings.HasPrefix(d, root); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, limitFile)); err == nil {
			br.dirs = append(br.dirs, cgroupDir{d, limitFile, usageFile, inactiveKey})
		}
		if d == root {
			break
		}
	}
}

// read returns the box's memory now.
func (br boxReader) read() (MachineSample, error) {
	m, err := Machine(br.procRoot)
	if err != nil {
		return m, err
	}
	for _, c := range br.dirs {
		limit, ok := readInt(filepath.Join(c.dir, c.limitFile))
		if !ok || limit <= 0 || limit >= noLimit {
			continue
		}
		usage, _ := readInt(filepath.Join(c.dir, c.usageFile))
		if st, err := os.ReadFile(filepath.Join(c.dir, "memory.stat")); err == nil {
			usage -= statValue(st, c.inactiveKey)
		}
		m.MemTotal = min(m.MemTotal, limit)
		m.MemAvailable = min(m.MemAvailable, max(limit-usage, 0))
	}
	return m, nil
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readInt reads a file holding one number; "max" (v2's no limit) is not
// one.
func readInt(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// statValue returns the value of the line starting with key in a
// memory.stat file, 0 when absent.
func statValue(b []byte, key string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
