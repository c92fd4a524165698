package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// markInheritedCloseOnExec marks every descriptor above 2 that this
// process holds close-on-exec, so that descriptors Bulwark inherited (a
// shell's or a panel's open files, a parent's sockets) are not passed on
// to the app it starts. Descriptors Go opens are close-on-exec already.
// Those a binary upgrade hands over are unaffected where it matters: the
// upgrade passes them to the next binary explicitly, which duplicates them
// whatever their flag, and close-on-exec does not close them here.
func markInheritedCloseOnExec(procRoot string) error {
	ents, err := os.ReadDir(filepath.Join(procRoot, "self", "fd"))
	if err != nil {
		return fmt.Errorf("listing inherited descriptors: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		syscall.CloseOnExec(fd)
	}
	return nil
}
