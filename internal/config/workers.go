package config

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
)

// Workers is app.workers: a number of workers, or WorkersAuto.
type Workers int

// WorkersAuto is app.workers = "auto": as many workers as the memory
// budget fits, at most twice the CPU count. No number a config can hold
// reads as it: workers = -1 is refused as any other number below 1 is.
const WorkersAuto Workers = math.MinInt32

// maxWorkers bounds app.workers: each worker is a whole Python process.
const maxWorkers = 256

// String renders w as in the file.
func (w Workers) String() string {
	if w == WorkersAuto {
		return "auto"
	}
	return strconv.Itoa(int(w))
}

// parseWorkers reads app.workers from a string (the environment, or a
// quoted TOML value): a number or "auto".
func parseWorkers(s string) (Workers, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "auto") {
		return WorkersAuto, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf(`expected a number of workers or "auto", got %q`, s)
	}
	if n < 1 || n > maxWorkers {
		return 0, errWorkersRange(n) // and so no number reads as WorkersAuto
	}
	return Workers(n), nil
}

// errWorkersRange is the error for a number of workers out of range.
func errWorkersRange(n int) error {
	return fmt.Errorf(`must be from 1 to %d, or "auto", got %d`, maxWorkers, n)
}

// HasPlaceholder reports whether an app command carries {port} or
// {socket}, so that Bulwark gives every instance an address of its own.
func HasPlaceholder(command []string) bool {
	for _, a := range command {
		if strings.Contains(a, "{port}") || strings.Contains(a, "{socket}") {
			return true
		}
	}
	return false
}

// PoolSize is the number of workers app.workers asks for, and why, in a
// sentence for `check`. For "auto" it is the memory budget (the machine's
// or cgroup's memory, less Bulwark's own limit and a reserve of an eighth)
// divided by app.max_memory, at least 1 and at most twice the CPU count.
func (c *Config) PoolSize(machineMemory, bulwarkLimit int64) (int, string) {
	w := c.App.Workers
	if w != WorkersAuto {
		if w < 1 {
			return 1, "app.workers is 1"
		}
		return int(w), "app.workers = " + w.String()
	}
	cpus := runtime.NumCPU()
	limit := int64(c.App.MaxMemory)
	if limit <= 0 || machineMemory <= 0 {
		return 1, `app.workers = "auto" without a memory budget: 1`
	}
	budget := machineMemory - bulwarkLimit - machineMemory/8
	n := int(max(budget, 0) / limit)
	mib := func(b int64) string { return strconv.FormatInt(b>>20, 10) + "MiB" }
	why := fmt.Sprintf(`app.workers = "auto": memory %s less Bulwark's %s and a reserve of %s leaves %s, room for %d workers of app.max_memory %s`,
		mib(machineMemory), mib(bulwarkLimit), mib(machineMemory/8), mib(max(budget, 0)), n, c.App.MaxMemory)
	if n > 2*cpus {
		n = 2 * cpus
		why += fmt.Sprintf("; capped at twice the %d CPUs: %d", cpus, n)
	}
	if n < 1 {
		n = 1
		why += "; at least 1"
	}
	return n, why
}
