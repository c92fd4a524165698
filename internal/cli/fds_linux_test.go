package cli

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"bulwark/internal/supervise"
)

// TestInheritedDescriptorsNotPassedOn opens a descriptor the way an
// inherited one looks (no close-on-exec), then starts a child that lists
// /proc/self/fd: after markInheritedCloseOnExec the child must not have it.
func TestInheritedDescriptorsNotPassedOn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inherited")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY, 0) // no O_CLOEXEC, as after an exec
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	childFDs := func() []string {
		t.Helper()
		out, err := exec.Command("/bin/sh", "-c", "ls /proc/self/fd").Output()
		if err != nil {
			t.Fatalf("listing the child's descriptors: %v", err)
		}
		return strings.Fields(string(out))
	}
	has := func(list []string) bool {
		for _, s := range list {
			if s == strconv.Itoa(fd) {
				return true
			}
		}
		return false
	}
	if !has(childFDs()) {
		t.Skipf("fd %d without close-on-exec did not reach the child even before the fix: cannot test here", fd)
	}
	if err := markInheritedCloseOnExec("/proc"); err != nil {
		t.Fatal(err)
	}
	if got := childFDs(); has(got) {
		t.Errorf("child still has fd %d after markInheritedCloseOnExec: %v", fd, got)
	}
	// The descriptor stays usable here.
	var b [1]byte
	if n, err := syscall.Pread(fd, b[:], 0); n != 1 || err != nil {
		t.Errorf("reading fd %d after marking it = %d, %v; want it still open", fd, n, err)
	}
}

// TestRunAppInheritsNoDescriptorsNorSettings runs 'bulwark run' with an app
// that records its descriptors and environment: a descriptor this process
// inherited (no close-on-exec) and Bulwark's BULWARK_* settings must not
// reach it.
func TestRunAppInheritsNoDescriptorsNorSettings(t *testing.T) {
	isolateAdminEnv(t)
	t.Setenv("BULWARK_LOG_LEVEL", "info")
	dir := t.TempDir()
	leak := filepath.Join(dir, "leak")
	writeFile(t, leak, "x")
	fd, err := syscall.Open(leak, syscall.O_RDONLY, 0) // as inherited: no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	fdsOut, envOut := filepath.Join(dir, "fds"), filepath.Join(dir, "env")
	script := "ls /proc/self/fd > " + fdsOut + ".tmp; env > " + envOut + "; mv " + fdsOut + ".tmp " + fdsOut + "; exec sleep 30"
	cfg := filepath.Join(dir, "bulwark.toml")
	writeFile(t, cfg, "[listen]\nhttps = \"127.0.0.1:0\"\nhttp = \"\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n"+
		"[upstream]\naddress = \"127.0.0.1:1\"\n[app]\ncommand = [\"/bin/sh\", \"-c\", \""+script+"\"]\nstop_timeout = \"1s\"\n")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var errb lockedBuffer
	go func() {
		done <- runRun(ctx, []string{"--config", cfg, "--pid-file", filepath.Join(dir, "b.pid")}, io.Discard, &errb)
	}()
	var fds []byte
	var runErr error
	ran := false
	for i := 0; i < 200 && !ran; i++ { // up to 20 s for the app to start
		if fds, err = os.ReadFile(fdsOut); err == nil {
			break
		}
		select {
		case runErr = <-done: // it failed (with -count 2: tableflip allows one Upgrader a process)
			ran = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	cancel()
	if !ran {
		select {
		case runErr = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("run did not stop")
		}
	}
	if err != nil {
		t.Fatalf("the app never wrote its descriptors: %v (run returned %v)\n%s", err, runErr, errb.String())
	}
	for _, f := range strings.Fields(string(fds)) {
		if f == strconv.Itoa(fd) {
			t.Errorf("the app got inherited fd %d: it lists %q", fd, strings.Fields(string(fds)))
		}
	}
	env, err := os.ReadFile(envOut)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(env), "\n") {
		// BULWARK_PARENT names the Bulwark that started the app, for the
		// next one to stop what a killed one left: not a setting.
		if k, _, _ := strings.Cut(line, "="); strings.HasPrefix(k, "BULWARK_") && k != supervise.ParentEnv {
			t.Errorf("the app got Bulwark's setting %s", line)
		}
	}
	if !strings.Contains(string(env), "PYTHONUNBUFFERED=") || !strings.Contains(string(env), "DB_POOL_SIZE=") {
		t.Errorf("the app's environment lacks the profile's variables:\n%s", env)
	}
}
