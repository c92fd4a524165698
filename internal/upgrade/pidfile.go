package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// triggerPoll is how often Trigger reads the PID file.
const triggerPoll = 50 * time.Millisecond

// writePIDFile writes pid to path atomically: readers see the old content or
// the new one, never a partial file. The file is world-readable, as PID
// files are, so that systemd and scripts run by other users can read it.
func writePIDFile(path string, pid int) error {
	if err := writeFileAtomic(path, strconv.Itoa(pid)+"\n"); err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	return nil
}

// writeFileAtomic writes content to path through a temporary file renamed
// over it, world-readable.
func writeFileAtomic(path, content string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// ReadPIDFile returns the PID stored in path: one positive decimal number,
// surrounding white space allowed.
func ReadPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading pid file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: %q is not a process id", path, s)
	}
	return pid, nil
}

// Trigger asks the Bulwark whose PID is in pidFile to upgrade (SIGUSR2) and
// waits until the PID file names another running process, which happens
// when the new binary is ready. It returns both PIDs. When the new process
// fails, the old one records why next to the PID file and Trigger returns
// that at once, with the new process's last stderr lines; when ctx ends
// first, the upgrade is still starting. The old process keeps serving
// either way.
func Trigger(ctx context.Context, pidFile string) (oldPID, newPID int, err error) {
	oldPID, err = ReadPIDFile(pidFile)
	if err != nil {
		return 0, 0, err
	}
	since := time.Now()
	if err := syscall.Kill(oldPID, syscall.SIGUSR2); err != nil {
		return oldPID, 0, fmt.Errorf("signalling bulwark (pid %d from %s): %w", oldPID, pidFile, err)
	}
	tick := time.NewTicker(triggerPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return oldPID, 0, fmt.Errorf("waiting for a new process to take over from pid %d (the old one keeps serving; see its log): %w", oldPID, ctx.Err())
		case <-tick.C:
		}
		if err := readStatus(pidFile, oldPID, since); err != nil {
			return oldPID, 0, fmt.Errorf("the new process failed (pid %d keeps serving): %w", oldPID, err)
		}
		pid, err := ReadPIDFile(pidFile)
		if err != nil || pid == oldPID {
			continue // not yet, or between writes of a non-atomic writer
		}
		if !alive(pid) {
			continue
		}
		return oldPID, pid, nil
	}
}

// alive reports whether a process with this PID exists (it may belong to
// another user).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
