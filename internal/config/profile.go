package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// profileValues are the values a profile gives the keys it governs.
type profileValues struct {
	maxBody         ByteSize
	maxConcurrency  int
	releaseInterval time.Duration
	spoolMemory     ByteSize
	dbPool          int   // DB_POOL_SIZE and DB_MAX_OVERFLOW
	appMemoryPct    int64 // app.max_memory as a percentage of machine memory

	// Per-client limits (issue 14). max_conns keeps the memory of idle
	// connections below the point where Bulwark sheds load (90 % of
	// memory.limit "auto": 43.2, 86.4 and 172.8 MiB). Measured on the low
	// profile: 6.0 MiB of Go memory at rest, 35.5 MiB with 2000 idle
	// HTTP/1.1 TLS connections, so 15 KB each (bench/RESULTS.md: 11–13 KB
	// RSS for h1, 12.6–14.2 for h2). With spool_memory full as well:
	//   low    43.2 − 6 − 8  = 29.2 MiB / 15 KB = 1990 → 1900
	//   medium 86.4 − 6 − 16 = 64.4 MiB / 15 KB = 4390 → 4300
	//   high  172.8 − 6 − 32 = 134.8 MiB / 15 KB = 9200 → 9000
	// max_conns_per_ip is about an eighth of it (a power of two): eight
	// addresses are needed to fill the box, and an office behind one NAT
	// address (40 browsers × 6 HTTP/1.1 connections) still fits.
	// rate_per_ip lets one address keep up max_concurrency requests a
	// second, about a tenth of what the app's slots serve at 50–100 ms a
	// request, with a burst of four seconds' worth for a cold page load
	// (~70–100 requests).
	maxConns      int
	maxConnsPerIP int
	ratePerIP     string
}

// profileFor returns the table row of DESIGN.md for a profile; unknown
// names get medium.
func profileFor(name string) profileValues {
	switch name {
	case ProfileLow:
		return profileValues{20 * MiB, 30, 60 * time.Second, 8 * MiB, 3, 40, 1900, 256, "30/s burst 120"}
	case ProfileHigh:
		return profileValues{100 * MiB, 100, 0, 32 * MiB, 10, 50, 9000, 1024, "100/s burst 400"}
	default:
		return profileValues{50 * MiB, 50, 90 * time.Second, 16 * MiB, 5, 40, 4300, 512, "50/s burst 200"}
	}
}

// Thresholds of the auto profile: low below 1GiB, medium from 1GiB to 2GiB
// inclusive, high above.
const (
	lowBelow   = int64(GiB)
	highAbove  = 2 * int64(GiB)
	mibRounder = int64(MiB)
)

// PickProfile returns the profile auto chooses for mem bytes of memory.
func PickProfile(mem int64) string {
	switch {
	case mem < lowBelow:
		return ProfileLow
	case mem > highAbove:
		return ProfileHigh
	default:
		return ProfileMedium
	}
}

// ApplyProfile makes name (low, medium or high; anything else is treated as
// medium) the profile in force: it sets Resolved and gives every profile key
// that the file and the environment left alone (source "default" or
// "profile") the profile's value, marking it "profile". app.max_memory is a
// percentage of c.MachineMemory, rounded down to a MiB, and is left alone
// when MachineMemory is 0.
func ApplyProfile(c *Config, name string) {
	if name != ProfileLow && name != ProfileHigh {
		name = ProfileMedium
	}
	p := profileFor(name)
	c.Resolved = name
	c.Memory.profile = name
	if c.Sources == nil {
		c.Sources = map[string]Source{}
	}
	set := func(key string, apply func()) {
		if s := c.Sources[key]; s == "" || s == SourceDefault || s == SourceProfile {
			apply()
			c.Sources[key] = SourceProfile
		}
	}
	set("limits.max_body", func() { c.Limits.MaxBody = p.maxBody })
	set("limits.spool_memory", func() { c.Limits.SpoolMemory = p.spoolMemory })
	set("upstream.max_concurrency", func() { c.Upstream.MaxConcurrency = p.maxConcurrency })
	set("memory.release_interval", func() { c.Memory.ReleaseInterval = Duration(p.releaseInterval) })
	// After c.Memory.profile is set: "auto" depends on it.
	set("upstream.queue", func() { c.Upstream.Queue = QueueFor(c.Memory.LimitBytes()) })
	// For these keys the file's 0 (or "") names the profile's value too.
	setUnless := func(key string, isProfile bool, apply func()) {
		if isProfile {
			apply()
			c.Sources[key] = SourceProfile
			return
		}
		set(key, apply)
	}
	setUnless("listen.max_conns", c.Listen.MaxConns == 0, func() { c.Listen.MaxConns = p.maxConns })
	setUnless("listen.max_conns_per_ip", c.Listen.MaxConnsPerIP == 0, func() { c.Listen.MaxConnsPerIP = p.maxConnsPerIP })
	setUnless("limits.rate_per_ip", c.Limits.RatePerIP == "", func() { c.Limits.RatePerIP = p.ratePerIP })
	if c.MachineMemory > 0 {
		set("app.max_memory", func() {
			c.App.MaxMemory = ByteSize(c.MachineMemory * p.appMemoryPct / 100 / mibRounder * mibRounder)
		})
	}
}

// ProfileAppEnv returns the environment the profile in force gives the app:
// DB_POOL_SIZE, DB_MAX_OVERFLOW, DB_POOL_TIMEOUT=30, DB_POOL_RECYCLE=280,
// PYTHONUNBUFFERED=1 and PYTHONDONTWRITEBYTECODE=1. It never sets PYTHONHASHSEED. The supervisor adds a
// key only when it is absent from both [app].env and its own environment.
func (c *Config) ProfileAppEnv() map[string]string {
	pool := strconv.Itoa(profileFor(c.Resolved).dbPool)
	return map[string]string{
		"DB_POOL_SIZE":     pool,
		"DB_MAX_OVERFLOW":  pool,
		"DB_POOL_TIMEOUT":  "30",
		"DB_POOL_RECYCLE":  "280",
		"PYTHONUNBUFFERED": "1",
		// A service user writing __pycache__ next to the code races with
		// deploys and needs write access it should not have; imports still
		// read .pyc files that a deploy compiled.
		"PYTHONDONTWRITEBYTECODE": "1",
	}
}

// AppEnv returns [app].env plus, for keys [app].env does not set, the
// profile's ProfileAppEnv. It does not look at the process environment:
// a variable already set there must beat the profile's value, so the
// supervisor should apply ProfileAppEnv itself, adding a key only when it
// is absent from os.Environ too, and then apply [app].env over the result.
func (c *Config) AppEnv() map[string]string {
	out := c.ProfileAppEnv()
	for k, v := range c.App.Env {
		out[k] = v
	}
	return out
}

// AppEnvOverrides returns the variables the supervisor sets over Bulwark's
// own environment (the one Load read) for the app: [app].env.
func (c *Config) AppEnvOverrides() map[string]string {
	return maps.Clone(c.App.Env)
}

// AppEnvRemoved returns, sorted, the variables of Bulwark's own environment
// the app does not get: every BULWARK_* variable that [app].env does not
// name. Those are Bulwark's settings, BULWARK_ADMIN_TOKEN among them; an
// app that prints its environment must not hand out admin control.
func (c *Config) AppEnvRemoved() []string {
	var out []string
	for _, kv := range c.environ {
		k, _, _ := strings.Cut(kv, "=")
		if _, named := c.App.Env[k]; strings.HasPrefix(k, EnvPrefix) && !named {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// AppEnvVar is one variable of the app's environment that Bulwark decides,
// with where its value came from.
type AppEnvVar struct {
	Name, Value string
	// From is "app.env", "profile", "environment" (Bulwark's own, which
	// beat the profile) or "removed" (a BULWARK_* variable the app does
	// not get; Value is "").
	From string
}

// AppEnviron returns, sorted by name, the variables of the app's
// environment that differ from a plain copy of Bulwark's: the profile's
// (or Bulwark's own value where it beats the profile), [app].env, and the
// BULWARK_* variables removed. Every other variable of Bulwark's
// environment passes through unchanged.
func (c *Config) AppEnviron() []AppEnvVar {
	inherited := map[string]string{}
	for _, kv := range c.environ {
		k, v, _ := strings.Cut(kv, "=")
		inherited[k] = v
	}
	var out []AppEnvVar
	over := c.AppEnvOverrides()
	for k, v := range c.ProfileAppEnv() {
		if _, set := over[k]; set {
			continue
		}
		if iv, ok := inherited[k]; ok {
			out = append(out, AppEnvVar{k, iv, "environment"})
			continue
		}
		out = append(out, AppEnvVar{k, v, "profile"})
	}
	for k, v := range over {
		out = append(out, AppEnvVar{k, v, "app.env"})
	}
	for _, k := range c.AppEnvRemoved() {
		out = append(out, AppEnvVar{k, "", "removed"})
	}
	slices.SortFunc(out, func(a, b AppEnvVar) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// machineMemory returns the memory available to this process: the smaller
// of MemTotal and the memory limit of its cgroup and the cgroup's ancestors
// (cgroup v2 memory.max, or cgroup v1 memory.limit_in_bytes); with a
// description of where it came from.
func machineMemory(procRoot, sysRoot string) (int64, string, error) {
	total, errTotal := memTotal(filepath.Join(procRoot, "meminfo"))
	limit, from := cgroupLimit(procRoot, sysRoot)
	switch {
	case limit > 0 && (errTotal != nil || limit < total):
		return limit, fmt.Sprintf("%s %s", from, humanBytes(limit)), nil
	case errTotal == nil:
		return total, fmt.Sprintf("MemTotal %s", humanBytes(total)), nil
	default:
		return 0, "", errTotal
	}
}

// memTotal reads MemTotal from a meminfo file.
func memTotal(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading machine memory: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("reading machine memory: bad MemTotal %q in %s", rest, path)
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n, nil
	}
	return 0, fmt.Errorf("reading machine memory: no MemTotal in %s", path)
}

// cgroupLimit returns the smallest memory limit of this process's cgroup
// and its ancestors, with the name of the file it came from; 0 when there
// is none. It reads cgroup v2 (memory.max) and the cgroup v1 memory
// controller (memory.limit_in_bytes), which older hosts and Docker on them
// still use; a hybrid machine may have both.
func cgroupLimit(procRoot, sysRoot string) (int64, string) {
	data, err := os.ReadFile(filepath.Join(procRoot, "self", "cgroup"))
	if err != nil {
		return 0, ""
	}
	root := filepath.Join(sysRoot, "fs", "cgroup")
	var best int64
	var from string
	for line := range strings.Lines(string(data)) {
		// hierarchy-ID:controllers:path; v2 is "0::path".
		id, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		controllers, rel, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 {
			continue
		}
		var n int64
		var name string
		switch {
		case id == "0" && controllers == "":
			n, name = smallestLimit(root, rel, "memory.max", readMemoryMax), "cgroup v2 memory.max"
		case slices.Contains(strings.Split(controllers, ","), "memory"):
			n, name = smallestLimit(filepath.Join(root, "memory"), rel, "memory.limit_in_bytes", readLimitInBytes), "cgroup v1 memory.limit_in_bytes"
		default:
			continue
		}
		if n > 0 && (best == 0 || n < best) {
			best, from = n, name
		}
	}
	return best, from
}

// smallestLimit returns the smallest limit read from file in the cgroup
// rel below root and in its ancestors up to root; 0 when none has one. A
// container sees its own cgroup at root while rel names the host's path,
// which is then missing: the walk up reaches root anyway.
func smallestLimit(root, rel, file string, read func(path string) (int64, error)) int64 {
	dir := filepath.Join(root, filepath.Clean("/"+rel))
	var best int64
	for range 64 { // bounded walk up to the root
		if n, err := read(filepath.Join(dir, file)); err == nil && n > 0 && (best == 0 || n < best) {
			best = n
		}
		if dir == root || len(dir) <= len(root) {
			break
		}
		dir = filepath.Dir(dir)
	}
	return best
}

var errNoLimit = errors.New("no limit")

// readMemoryMax reads a cgroup v2 memory.max file; "max" means no limit.
func readMemoryMax(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, errNoLimit
	}
	return strconv.ParseInt(s, 10, 64)
}

// readLimitInBytes reads a cgroup v1 memory.limit_in_bytes file. Without a
// limit it holds the kernel's page counter maximum, just under 2^63.
func readLimitInBytes(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, err
	}
	if n >= 1<<62 {
		return 0, errNoLimit
	}
	return n, nil
}

// resolveProfile picks the profile in force and applies it.
func (c *Config) resolveProfile(procRoot, sysRoot string) {
	mem, from, err := machineMemory(procRoot, sysRoot)
	if err != nil {
		c.Warnings = append(c.Warnings, fmt.Sprintf("machine memory unknown (%v): app.max_memory has no profile value", err))
	}
	c.MachineMemory = mem
	name := c.Profile
	switch name {
	case ProfileLow, ProfileMedium, ProfileHigh:
		switch c.Sources["profile"] {
		case SourceEnv:
			c.ProfileReason = "set in environment BULWARK_PROFILE"
		case SourceFile:
			c.ProfileReason = "set in file"
		default:
			c.ProfileReason = "set"
		}
	default: // auto, or invalid (Validate reports it)
		switch {
		case mem == 0:
			name = ProfileMedium
			c.ProfileReason = "auto: machine memory unknown, medium assumed"
		default:
			name = PickProfile(mem)
			switch name {
			case ProfileLow:
				c.ProfileReason = fmt.Sprintf("auto: %s < 1GiB", from)
			case ProfileHigh:
				c.ProfileReason = fmt.Sprintf("auto: %s > 2GiB", from)
			default:
				c.ProfileReason = fmt.Sprintf("auto: %s, between 1GiB and 2GiB", from)
			}
		}
	}
	ApplyProfile(c, name)
}
