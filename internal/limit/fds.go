package limit

import (
	"errors"
	"syscall"
)

// OutOfDescriptors reports whether err is the process (EMFILE) or the
// system (ENFILE) having no file descriptor left: a condition of the
// moment, answered 503 with Retry-After (or, at accept, backed off), never
// as a missing file or a full disk.
func OutOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}
