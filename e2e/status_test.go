package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// appStatus is the part of /status these tests read.
type appStatus struct {
	App *struct {
		PID      int            `json:"pid"`
		State    string         `json:"state"`
		Since    time.Time      `json:"since"`
		Restarts map[string]int `json:"restarts"`
	} `json:"app"`
	Upstreams []struct {
		Address string `json:"address"`
		Up      bool   `json:"up"`
	} `json:"upstreams"`
}

func (in *instance) appStatus(t testing.TB) appStatus {
	var s appStatus
	res, err := http.Get("http://" + in.admin + "/status")
	if err != nil {
		return s
	}
	json.Unmarshal([]byte(readAll(t, res)), &s)
	return s
}

// TestStatusAcrossRestartsAndUpgrade is issue 16 §9's `status` points,
// from outside, with real uvicorn on a {socket}: after a zero-downtime
// restart the app's uptime is the new process's; during a crash loop
// UPSTREAM does not name the gone socket as if it served; after `bulwark
// upgrade` the restart counts carry on.
func TestStatusAcrossRestartsAndUpgrade(t *testing.T) {
	requireUvicorn(t)
	appDir := appCopy(t)
	pidFile := filepath.Join(t.TempDir(), "bulwark.pid")
	in := startBulwark(t, socketAppConfig(appDir), nil, "--pid-file", pidFile)
	var st appStatus
	ready := func(what string, notPID int) {
		t.Helper()
		waitFor(t, 60*time.Second, what, func() bool {
			st = in.appStatus(t)
			return st.App != nil && st.App.State == "ready" && st.App.PID != notPID
		})
	}
	ready("the app to be ready", 0)

	// A zero-downtime restart: ready to ready.
	since := st.App.Since
	if out, err := in.cli("restart-app", "--admin", in.admin).CombinedOutput(); err != nil {
		t.Fatalf("bulwark restart-app: %v\n%s", err, out)
	}
	first := st.App.PID
	ready("the restarted app", first)
	if !st.App.Since.After(since) {
		t.Errorf("after restart-app the app is ready since %v, as the old process was (%v): status shows the old process's uptime", st.App.Since, since)
	}

	// A crash loop: the app is broken, then killed.
	served := st.Upstreams[0].Address
	setBroken(t, appDir, true)
	if err := syscall.Kill(st.App.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the app to be reported failing", func() bool {
		st = in.appStatus(t)
		return st.App != nil && strings.HasPrefix(st.App.State, "failing")
	})
	if len(st.Upstreams) != 1 || st.Upstreams[0].Up || st.Upstreams[0].Address == served {
		t.Errorf("/status upstreams during the crash loop = %+v; want not up, and not the gone socket %s", st.Upstreams, served)
	}
	out, err := in.cli("status", "--admin", in.admin).CombinedOutput()
	if err != nil {
		t.Fatalf("bulwark status: %v\n%s", err, out)
	}
	t.Logf("bulwark status during the crash loop:\n%s", out)
	if strings.Contains(string(out), served) {
		t.Errorf("bulwark status names the gone socket %s during the crash loop:\n%s", served, out)
	}

	// Repaired; restart-app skips the back-off.
	setBroken(t, appDir, false)
	if out, err := in.cli("restart-app", "--admin", in.admin).CombinedOutput(); err != nil {
		t.Fatalf("bulwark restart-app after the repair: %v\n%s", err, out)
	}
	ready("the repaired app", 0)
	counts := maps.Clone(st.App.Restarts)
	if counts["crash"] < 1 || counts["manual"] < 1 {
		t.Fatalf("restart counts before the upgrade = %v, want crash and manual restarts", counts)
	}

	oldPID, _ := os.ReadFile(pidFile)
	if out, err := exec.Command(bulwarkBin, "upgrade", "--pid-file", pidFile).CombinedOutput(); err != nil {
		t.Fatalf("bulwark upgrade: %v\n%s", err, out)
	}
	newPID, _ := os.ReadFile(pidFile)
	var pid int
	fmt.Sscan(string(newPID), &pid)
	if pid == 0 || string(newPID) == string(oldPID) {
		t.Fatalf("the pid file says %q after the upgrade (was %q)", newPID, oldPID)
	}
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		syscall.Kill(pid, syscall.SIGKILL)
	})
	select {
	case <-in.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the old process did not exit after the upgrade")
	}
	ready("the new process's app", 0)
	if !maps.Equal(st.App.Restarts, counts) {
		t.Errorf("restart counts after the upgrade = %v, want the old process's %v", st.App.Restarts, counts)
	}
	out, _ = in.cli("status", "--admin", in.admin).CombinedOutput()
	t.Logf("bulwark status after the upgrade:\n%s", out)
	noRace(t, in)
}
