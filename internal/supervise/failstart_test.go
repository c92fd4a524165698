package supervise

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRefusesAddressHeldByAnotherProcess: a listener that is not the app
// (here the test process itself) holds the app's fixed address; Run
// refuses to start and names its PID and command.
func TestRefusesAddressHeldByAnotherProcess(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		testRefuses(t, ln, ln.Addr().String())
	})
	t.Run("unix", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "app.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		testRefuses(t, ln, "unix:"+path)
	})
}

func testRefuses(t *testing.T, ln net.Listener, addr string) {
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "stray") }))
	h := start(t, Options{Upstream: addr, Command: fakeCommand(t, addr)}, nil)
	var runErr error
	select {
	case runErr = <-h.runErr:
		close(h.runErr)
	case <-time.After(20 * time.Second):
		t.Fatalf("Run did not refuse within 20s; state %+v", h.s.Status())
	}
	var inUse *AddrInUseError
	if !errors.As(runErr, &inUse) {
		t.Fatalf("Run() = %v, want an *AddrInUseError", runErr)
	}
	msg := runErr.Error()
	if !strings.Contains(msg, "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(msg, addr) {
		t.Errorf("Run() = %q, want it to name %s and pid %d", msg, addr, os.Getpid())
	}
	exe, _ := os.Executable()
	if !strings.Contains(msg, exe) {
		t.Errorf("Run() = %q, want it to name the holder's command %s", msg, exe)
	}
	if n := len(h.logs.find("app started")); n != 0 {
		t.Errorf("the app was started %d times next to a stray listener", n)
	}
}

// TestReadinessIgnoresForeignListener: another process takes the app's
// address after Bulwark checked it and answers the health probe; the app
// itself cannot bind. The app is not declared ready, and the failure names
// the holder.
func TestReadinessIgnoresForeignListener(t *testing.T) {
	addr := freeAddr(t)
	foreign := make(chan net.Listener, 1)
	o := Options{
		Upstream: addr,
		Command:  fakeCommand(t, addr),
		// Runs after the address check and before the probes; the fake
		// app waits 500 ms before it binds, so the stray one is first.
		OnStart: func(int) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				foreign <- nil
				return
			}
			go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "stray") }))
			foreign <- ln
		},
	}
	h := start(t, o, map[string]string{"FAKEAPP_DELAY": "500ms"})
	ln := <-foreign
	if ln == nil {
		t.Fatal("the stray listener could not bind before the app")
	}
	defer ln.Close()
	waitFor(t, 20*time.Second, "the failed start", func() bool { return h.s.Status().State == StateFailing })
	st := h.s.Status()
	if !strings.Contains(st.Failure, "held by pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("Status().Failure = %q, want it to name the stray listener's pid %d", st.Failure, os.Getpid())
	}
	if len(h.logs.find("app ready")) != 0 {
		t.Errorf("the app was declared ready while another process answered on its address")
	}
	if len(h.logs.find("another process answers on the app's address")) == 0 {
		t.Errorf("no warning about the process answering on the app's address")
	}
}

// TestFailingStart: an app that cannot start is reported as failing with
// its reason and stderr, and clients get an immediate 503 that says so
// without the stderr.
func TestFailingStart(t *testing.T) {
	h := start(t, Options{BackoffMin: time.Hour, BackoffMax: time.Hour}, map[string]string{"FAKEAPP_EXIT": "2"})
	waitFor(t, 20*time.Second, "the failed start", func() bool { return h.s.Status().State == StateFailing })
	st := h.s.Status()
	if st.PID != 0 || !strings.Contains(st.Failure, "exit code 2") ||
		!strings.Contains(strings.Join(st.Stderr, "\n"), "failing at start on purpose") {
		t.Errorf("Status() = pid %d failure %q stderr %q; want pid 0, exit code 2 and the app's stderr", st.PID, st.Failure, st.Stderr)
	}
	code, body, hdr, err := h.get("/")
	if err != nil || code != http.StatusServiceUnavailable || hdr.Get("X-Bulwark-Error") != "app_failing" {
		t.Fatalf("GET / = %d %q %v, want an immediate 503 app_failing", code, body, err)
	}
	if !strings.Contains(body, "failing to start") || strings.Contains(body, "on purpose") {
		t.Errorf("503 body = %q, want it to say the app is failing to start, without its stderr", body)
	}
	if r := h.logs.find("failing at start on purpose"); len(r) == 0 || r[0].level != slog.LevelWarn {
		t.Errorf("the app's error line was not logged at WARN: %v", r)
	}
}

// TestFailedDeployKeepsOldApp: with {port}, a reload to a broken app
// fails with the app's stderr, the old app keeps serving, and no restart is
// counted. The old app keeps its options too: a restart afterwards (a
// crash, memory, restart-app) starts what ran before, not what failed.
func TestFailedDeployKeepsOldApp(t *testing.T) {
	o := Options{Command: fakeCommand(t, "127.0.0.1:{port}"), ZeroDowntime: func() bool { return true }}
	h := start(t, o, nil)
	first := waitReady(t, h)

	broken := h.opts
	broken.Env = maps.Clone(broken.Env)
	broken.Env["FAKEAPP_EXIT"] = "2"
	err := h.s.UpdateWait(broken)
	var se *StartError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "failing at start on purpose") {
		t.Fatalf("UpdateWait(broken app) = %v, want a *StartError with the app's stderr", err)
	}
	st := h.s.Status()
	if st.State != StateReady || st.PID != first.PID {
		t.Errorf("after a failed deploy Status() = %s pid %d, want ready pid %d", st.State, st.PID, first.PID)
	}
	if code, body, _, err := h.get("/"); err != nil || code != http.StatusOK || body != strconv.Itoa(first.PID) {
		t.Errorf("GET / after a failed deploy = %d %q %v, want 200 from the old app %d", code, body, err, first.PID)
	}
	if st.Restarts[ReasonManual] != 0 || st.Restarts[ReasonReload] != 0 {
		t.Errorf("Restarts = %v, want no manual or reload restart counted", st.Restarts)
	}

	if err := h.s.Restart(ReasonManual); err != nil {
		t.Fatalf("Restart() after a failed deploy = %v, want the old options started again", err)
	}
	st = h.s.Status()
	if st.State != StateReady || st.PID == first.PID || st.Restarts[ReasonManual] != 1 {
		t.Errorf("after the restart Status() = %s pid %d restarts %v, want ready, a new pid, manual 1", st.State, st.PID, st.Restarts)
	}

	// The fixed app deploys at once.
	fixed := h.opts
	fixed.Env = maps.Clone(fixed.Env)
	fixed.Env["FAKEAPP_FIXED"] = "1"
	if err := h.s.UpdateWait(fixed); err != nil {
		t.Fatalf("UpdateWait(fixed app) = %v", err)
	}
	if now := h.s.Status(); now.PID == st.PID || now.Restarts[ReasonReload] != 1 {
		t.Errorf("after the fixed deploy Status() = pid %d restarts %v, want a new pid and reload 1", now.PID, now.Restarts)
	}
}

// TestRestartResetsBackoff: a restart asked for while the app waits out a
// long crash back-off starts it at once.
func TestRestartResetsBackoff(t *testing.T) {
	h := start(t, Options{BackoffMin: time.Hour, BackoffMax: time.Hour, StartTimeout: 5 * time.Second},
		map[string]string{"FAKEAPP_EXIT": "2"})
	waitFor(t, 20*time.Second, "the failed start", func() bool { return h.s.Status().State == StateFailing })
	fixed := h.opts
	fixed.Env = maps.Clone(fixed.Env)
	delete(fixed.Env, "FAKEAPP_EXIT")
	if err := h.s.UpdateWait(fixed); err != nil {
		t.Fatalf("UpdateWait(fixed app) = %v", err)
	}
	if st := h.s.Status(); st.State != StateReady {
		t.Errorf("after the fix Status().State = %s, want ready at once, not after the hour of back-off", st.State)
	}
}

func TestStderrLevel(t *testing.T) {
	for _, tc := range []struct {
		line string
		want slog.Level
	}{
		{"INFO:     Started server process [123]", slog.LevelInfo},
		{"ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000): address already in use", slog.LevelWarn},
		{"Traceback (most recent call last):", slog.LevelWarn},
		{"ModuleNotFoundError: No module named 'nope'", slog.LevelWarn},
		{"[2026-01-01 10:00:00 +0000] [7] [ERROR] Worker failed", slog.LevelWarn},
		{"CRITICAL: out of cheese", slog.LevelWarn},
		{"a line about errors: none", slog.LevelInfo},
	} {
		if got := stderrLevel(tc.line); got != tc.want {
			t.Errorf("stderrLevel(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

// TestRestartHardStopsOldFirst: over its hard memory ceiling the app is
// stopped before the new copy starts, even when a second one would fit,
// and requests wait at the gate instead of failing.
func TestRestartHardStopsOldFirst(t *testing.T) {
	var oldPID atomic.Int64
	var overlapped atomic.Bool
	o := Options{
		Command:      fakeCommand(t, "127.0.0.1:{port}"),
		ZeroDowntime: func() bool { return true },
		OnStart: func(pid int) {
			if old := int(oldPID.Load()); old != 0 && alive(old) {
				overlapped.Store(true)
			}
		},
	}
	h := start(t, o, nil)
	first := waitReady(t, h)
	oldPID.Store(int64(first.PID))
	if err := h.s.RestartHard(ReasonMemory); err != nil {
		t.Fatalf("RestartHard() = %v", err)
	}
	if overlapped.Load() {
		t.Errorf("the new copy started while the old one (over its hard ceiling) still ran")
	}
	if st := h.s.Status(); st.PID == first.PID || st.State != StateReady || st.Restarts[ReasonMemory] != 1 {
		t.Errorf("after RestartHard Status() = %+v, want a new ready pid and memory 1", st)
	}
	if code, _, _, err := h.get("/"); err != nil || code != http.StatusOK {
		t.Errorf("GET / after RestartHard = %d %v, want 200", code, err)
	}
}

// TestUrgentDuringSwap: the old copy crosses its hard ceiling while its
// replacement starts next to it; it is stopped at once, requests wait for
// the new copy, and none fails.
func TestUrgentDuringSwap(t *testing.T) {
	o := Options{Command: fakeCommand(t, "127.0.0.1:{port}"), ZeroDowntime: func() bool { return true }}
	h := start(t, o, nil)
	first := waitReady(t, h)
	slow := h.opts
	slow.Env = maps.Clone(slow.Env)
	slow.Env["FAKEAPP_DELAY"] = "1500ms" // the replacement takes its time
	done := make(chan error, 1)
	go func() { done <- h.s.UpdateWait(slow) }()
	waitFor(t, 20*time.Second, "the replacement to start", func() bool {
		return len(h.logs.find("app started next to the running one")) > 0
	})
	stop := make(chan struct{})
	type result struct {
		total    int64
		failures chan string
	}
	res := make(chan result, 1)
	go func() { n, f := load(h, 2, "/", stop); res <- result{n, f} }()
	h.s.Urgent()
	waitFor(t, 20*time.Second, "the old copy to be stopped", func() bool { return !alive(first.PID) })
	if st := h.s.Status(); st.State == StateReady {
		t.Errorf("state %s with the old copy stopped and the new one not ready, want restarting", st.State)
	}
	if err := <-done; err != nil {
		t.Fatalf("UpdateWait() = %v", err)
	}
	close(stop)
	r := <-res
	for f := range r.failures {
		t.Errorf("request failed while the old copy was stopped early: %s", f)
	}
	if st := h.s.Status(); st.PID == first.PID || st.State != StateReady {
		t.Errorf("after the swap Status() = %+v, want a new ready pid", st)
	}
	if len(h.logs.find("stopping the old copy now")) != 1 {
		t.Errorf("the log does not say the old copy was stopped early")
	}
}

// TestUrgentDuringSwapThenNewFails: the old copy is stopped for memory
// while its replacement starts, and the replacement never becomes ready.
// Nothing serves then: the error and the log must not say the old app
// keeps serving, and a retry is scheduled.
func TestUrgentDuringSwapThenNewFails(t *testing.T) {
	o := Options{Command: fakeCommand(t, "127.0.0.1:{port}"), ZeroDowntime: func() bool { return true },
		BackoffMin: time.Hour, BackoffMax: time.Hour}
	h := start(t, o, nil)
	first := waitReady(t, h)
	slow := h.opts
	slow.StartTimeout = 2 * time.Second
	slow.Env = maps.Clone(slow.Env)
	slow.Env["FAKEAPP_DELAY"] = "30s" // never ready within StartTimeout
	done := make(chan error, 1)
	go func() { done <- h.s.UpdateWait(slow) }()
	waitFor(t, 20*time.Second, "the replacement to start", func() bool {
		return len(h.logs.find("app started next to the running one")) > 0
	})
	h.s.Urgent()
	waitFor(t, 20*time.Second, "the old copy to be stopped", func() bool { return !alive(first.PID) })
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("UpdateWait did not return after the replacement's start timeout")
	}
	if err == nil || strings.Contains(err.Error(), "keeps serving") || !strings.Contains(err.Error(), "old app was stopped") {
		t.Errorf("UpdateWait() = %v, want an error saying the old app was stopped", err)
	}
	if len(h.logs.find("the old one keeps serving")) != 0 || len(h.logs.find("after the old one was stopped for memory")) != 1 {
		t.Errorf("the log says the old app keeps serving, or not that it was stopped")
	}
	if st := h.s.Status(); st.State == StateReady || st.PID == first.PID {
		t.Errorf("Status() = %+v, want not ready, with no pid of the stopped copy", st)
	}
}

// TestForeignListenerAge: a listener outside the app's tree counts as
// foreign when its process is older than the app (a leftover), and as the
// app's when it started after it (docker-proxy for `docker run -p`).
func TestForeignListenerAge(t *testing.T) {
	root := exec.Command("sleep", "30")
	if err := root.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { root.Process.Kill(); root.Wait() }()

	older, err := net.Listen("tcp", "127.0.0.1:0") // the test process predates root
	if err != nil {
		t.Fatal(err)
	}
	defer older.Close()
	if foreign, holders := foreignListener("/proc", "", older.Addr().String(), root.Process.Pid); !foreign ||
		len(holders) != 1 || holders[0].pid != os.Getpid() {
		t.Errorf("listener of an older process: foreign %v, holders %v; want foreign, held by pid %d", foreign, holders, os.Getpid())
	}

	addr := freeAddr(t)
	younger := exec.Command(fakeCommand(t, addr)[0], fakeCommand(t, addr)[1:]...)
	younger.Env = append(os.Environ(), "FAKEAPP=1", "GORACE=atexit_sleep_ms=0")
	if err := younger.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { younger.Process.Kill(); younger.Wait() }()
	waitFor(t, 20*time.Second, "the younger listener", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if foreign, holders := foreignListener("/proc", "", addr, root.Process.Pid); foreign {
		t.Errorf("listener of a process started after the app: foreign, holders %v; want it taken as the app's", holders)
	}
}
