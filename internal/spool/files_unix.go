//go:build unix

package spool

import "syscall"

// DefaultMaxFiles is the temp file budget used when Options.MaxFiles is
// zero: a quarter of the process's RLIMIT_NOFILE (Go raises the soft limit
// to the hard one at start), at least 16. Every spooled body also holds a
// client connection, and the app's upstream connections, the admin socket
// and the logs need descriptors too; a quarter leaves three for them. With
// systemd's usual LimitNOFILE of 20 000 that is 5 000 uploads spilling to
// disk at once, far past what a small site sees.
func DefaultMaxFiles() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 1024
	}
	if rl.Cur/4 > 1<<20 {
		return 1 << 20 // RLIM_INFINITY and the like
	}
	return max(minMaxFiles, int(rl.Cur/4))
}
