//go:build unix

package static

import (
	"os"
	"syscall"
)

// DefaultMaxOpenFiles is the open-file bound used when Options.MaxOpen is zero:
// an eighth of the process's RLIMIT_NOFILE (Go raises the soft limit to
// the hard one at start), between 16 and DefaultMaxOpen. The spool takes a
// quarter for temp files; the rest is for connections, the app's and the
// logs.
func DefaultMaxOpenFiles() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return DefaultMaxOpen
	}
	return int(min(max(rl.Cur/8, 16), DefaultMaxOpen))
}

// openFlags opens files with O_NONBLOCK, which regular files ignore: the
// os package then skips the two fcntl(2) pairs it spends making a new
// file non-blocking and back, and a FIFO put in the directory opens at
// once (to be refused as not regular) instead of blocking until a writer
// comes.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK
