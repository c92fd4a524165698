package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"bulwark/internal/upgrade"
)

const upgradeUsage = `Usage: bulwark upgrade [--pid-file FILE]

Asks the running Bulwark (the PID in the pid file) to start its binary again
and hand it the listening sockets, as SIGUSR2 does, and waits until the new
process serves. Install the new binary over the old path first (install(1) or
mv, never cp over a running binary). A failed upgrade leaves the old process
serving; its log says why.
`

// pidFileFlag registers --pid-file on fs.
func pidFileFlag(fs *flag.FlagSet) *string {
	return fs.String("pid-file", defaultPIDFile(), "`file` holding the serving process's PID (written when it is ready)")
}

// defaultPIDFile is $BULWARK_PID_FILE, else bulwark.pid in the state
// directory ($XDG_STATE_HOME/bulwark or ~/.local/state/bulwark), where the
// development certificate lives too.
func defaultPIDFile() string {
	if p := os.Getenv("BULWARK_PID_FILE"); p != "" {
		return p
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "bulwark", "bulwark.pid")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "bulwark", "bulwark.pid")
	}
	return ""
}

// checkBulwarkPID refuses to go on unless pid runs a bulwark binary: a
// stale pid file may name a PID the kernel gave to another program since,
// and SIGUSR2 ends a process that does not handle it. The binary counts
// as bulwark when its name contains "bulwark" or it is this very binary
// (also after an upgrade replaced the file, when the kernel reports the
// old one as "(deleted)").
func checkBulwarkPID(procRoot string, pid int, pidFile string) error {
	exe, err := os.Readlink(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("pid %d from %s is not running: is bulwark running? (a stale pid file; see --pid-file)", pid, pidFile)
	case err != nil:
		return fmt.Errorf("cannot tell which program pid %d from %s runs (%w): run this as the user bulwark runs as, or root", pid, pidFile, err)
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	if strings.Contains(filepath.Base(exe), "bulwark") {
		return nil
	}
	if self, err := os.Executable(); err == nil && self == exe {
		return nil
	}
	return fmt.Errorf("pid %d from %s runs %s, not bulwark: the pid file is stale; not signalling it", pid, pidFile, exe)
}

func runUpgrade(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("upgrade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, upgradeUsage); fs.PrintDefaults() }
	pidFile := pidFileFlag(fs)
	timeout := fs.Duration("timeout", 90*time.Second, "how long to wait for the new process")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pidFile == "" {
		return fmt.Errorf("no pid file: pass --pid-file")
	}
	pid, err := upgrade.ReadPIDFile(*pidFile)
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	if err := checkBulwarkPID("/proc", pid, *pidFile); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	oldPID, newPID, err := upgrade.Trigger(ctx, *pidFile)
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	fmt.Fprintf(stdout, "upgraded: pid %d hands over to pid %d\n", oldPID, newPID)
	return nil
}
