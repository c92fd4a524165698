//go:build unix

package static

import "syscall"

// defaultMaxOpen is the open-file bound used when Options.MaxOpen is zero:
// an eighth of the process's RLIMIT_NOFILE (Go raises the soft limit to
// the hard one at start), between 16 and DefaultMaxOpen. The spool takes a
// quarter for temp files; the rest is for connections, the app's and the
// logs.
func defaultMaxOpen() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return DefaultMaxOpen
	}
	return int(min(max(rl.Cur/8, 16), DefaultMaxOpen))
}
