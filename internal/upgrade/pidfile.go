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
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	tmp := f.Name()
	_, err = f.WriteString(strconv.Itoa(pid) + "\n")
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
		return fmt.Errorf("writing pid file %s: %w", path, err)
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
// when the new binary is ready. It returns both PIDs. When ctx ends first,
// the upgrade failed or is still starting; the old process keeps serving
// either way and its log says which.
func Trigger(ctx context.Context, pidFile string) (oldPID, newPID int, err error) {
	oldPID, err = ReadPIDFile(pidFile)
	if err != nil {
		return 0, 0, err
	}
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
