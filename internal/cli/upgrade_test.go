package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestUpgradeRefusesAStrangerPID checks that upgrade does not send SIGUSR2
// to a PID from the pid file that runs another program: such a process
// would die of it.
func TestUpgradeRefusesAStrangerPID(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep(1) to stand in for another program: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pidFile := filepath.Join(t.TempDir(), "bulwark.pid")
	writeFile(t, pidFile, strconv.Itoa(cmd.Process.Pid)+"\n")
	var out, errb strings.Builder
	err := runUpgrade(t.Context(), []string{"--pid-file", pidFile, "--timeout", "1s"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "not bulwark") || !strings.Contains(err.Error(), "stale") {
		t.Errorf("upgrade with a pid file naming sleep = %v, want a 'not bulwark … stale' error", err)
	}
	// The process must still run (not a zombie): nothing was sent.
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	if _, rest, _ := strings.Cut(string(stat), ") "); strings.HasPrefix(rest, "Z") {
		t.Errorf("sleep died after upgrade refused to signal it: %s", stat)
	}
}

func TestCheckBulwarkPID(t *testing.T) {
	proc := t.TempDir()
	link := func(pid int, target string) {
		dir := filepath.Join(proc, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dir, "exe")); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link(10, "/usr/local/bin/bulwark")
	link(11, "/usr/local/bin/bulwark (deleted)")
	link(12, self+" (deleted)")
	link(13, "/usr/bin/python3.12")
	tests := []struct {
		pid     int
		wantErr string
	}{
		{10, ""}, {11, ""}, {12, ""}, {13, "runs /usr/bin/python3.12, not bulwark"}, {14, "is not running"},
	}
	for _, tt := range tests {
		err := checkBulwarkPID(proc, tt.pid, "x.pid")
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("checkBulwarkPID(%d) = %v, want error containing %q", tt.pid, err, tt.wantErr)
		}
	}
}
