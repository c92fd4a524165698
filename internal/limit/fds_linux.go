package limit

import (
	"fmt"
	"os"
	"syscall"
)

// countOpenFDs counts this process's open descriptors in /proc/self/fd
// (less the descriptor that reads the directory).
func countOpenFDs() (int, error) {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("counting open descriptors: %w", err)
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(1024)
		n += len(names)
		if err != nil || len(names) == 0 {
			return n - 1, nil
		}
	}
}

// fdLimit returns RLIMIT_NOFILE's soft limit; 0 when it cannot be read.
func fdLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}
