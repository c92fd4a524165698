package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// brokenImport makes app.py fail at import, as a bad deploy does.
const brokenImport = "import bulwark_e2e_no_such_module  # a bad deploy\n"

// appCopy copies testdata/app.py into a fresh directory the test can break
// and returns that directory.
func appCopy(t testing.TB) string {
	t.Helper()
	wd, _ := os.Getwd()
	src, err := os.ReadFile(filepath.Join(wd, "testdata", "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// setBroken breaks or repairs the app in dir.
func setBroken(t testing.TB, dir string, broken bool) {
	t.Helper()
	p := filepath.Join(dir, "app.py")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimPrefix(string(b), brokenImport)
	if broken {
		s = brokenImport + s
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// socketAppConfig is a config whose app runs from appDir on a {socket}
// Bulwark picks; extra args go on the uvicorn command line.
func socketAppConfig(appDir string, extra ...string) string {
	args := ""
	for _, a := range extra {
		args += fmt.Sprintf(", %q", a)
	}
	return baseConfig + fmt.Sprintf(`
[app]
command = [%q, "-m", "uvicorn", "app:app", "--app-dir", %q, "--uds", "{socket}", "--no-access-log"%s]
start_timeout = "30s"
`, python, appDir, args)
}

// adminPost POSTs to an admin API path and returns the status and body.
func adminPost(t testing.TB, in *instance, path string) (int, string) {
	t.Helper()
	// The admin token bulwark generated on its first run, in the state
	// directory the instance uses: admin actions need it.
	token, err := os.ReadFile(filepath.Join(in.dir, "state", "bulwark", "admin-token"))
	if err != nil {
		t.Fatalf("reading the generated admin token: %v", err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+in.admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	c := &http.Client{Timeout: 90 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestFailedDeployKeepsOldApp is issue 16 §3's acceptance: with {socket},
// a restart-app and a reload with a changed command of an app that no
// longer imports fail with the app's error, and the old app answers every
// request throughout.
func TestFailedDeployKeepsOldApp(t *testing.T) {
	requireUvicorn(t)
	appDir := appCopy(t)
	in := startBulwark(t, socketAppConfig(appDir), nil)
	waitFor(t, 30*time.Second, "the app to be ready", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.State == "ready"
	})
	firstPID := in.status(t).App.PID
	l := startLoad(t, in, 4, "/", 120*time.Second)

	setBroken(t, appDir, true)
	code, body := adminPost(t, in, "/api/restart-app")
	t.Logf("restart-app of the broken app: %d %s", code, body)
	if code < 300 || !strings.Contains(body, "bulwark_e2e_no_such_module") {
		t.Errorf("POST /api/restart-app of a broken app = %d %q, want non-2xx naming the import error", code, body)
	}
	cli := exec.Command(bulwarkBin, "restart-app", "--admin", in.admin)
	out, err := cli.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bulwark_e2e_no_such_module") {
		t.Errorf("bulwark restart-app of a broken app: err %v, output %q; want a non-zero exit naming the import error", err, out)
	}

	cfg := socketAppConfig(appDir, "--timeout-keep-alive", "7")
	cfg = strings.NewReplacer("%HTTPS%", in.https, "%ADMIN%", in.admin).Replace(cfg)
	if err := os.WriteFile(filepath.Join(in.dir, "bulwark.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body = adminPost(t, in, "/api/reload")
	t.Logf("reload to a changed command of the broken app: %d %s", code, body)
	if code < 300 || !strings.Contains(body, "bulwark_e2e_no_such_module") {
		t.Errorf("POST /api/reload with a changed command of a broken app = %d %q, want non-2xx naming the import error", code, body)
	}
	s := in.status(t)
	if s.App == nil || s.App.State != "ready" || s.App.PID != firstPID {
		t.Errorf("after the failed deploys /status app = %+v, want ready with the old pid %d", s.App, firstPID)
	}
	if s.App != nil && (s.App.Restarts["manual"] != 0 || s.App.Restarts["reload"] != 0) {
		t.Errorf("restarts = %v, want no manual or reload restart counted for failed ones", s.App.Restarts)
	}

	setBroken(t, appDir, false)
	code, body = adminPost(t, in, "/api/restart-app")
	if code != http.StatusOK {
		t.Errorf("POST /api/restart-app of the fixed app = %d %q, want 200", code, body)
	}
	ok, bad, errs := l.finish()
	t.Logf("requests during the failed deploys: %d ok, %d failed", ok, bad)
	if bad != 0 {
		t.Errorf("%d requests failed while the old app should have kept serving (first: %v)", bad, errs)
	}
	if ok == 0 {
		t.Errorf("no request was sent during the failed deploys")
	}
	if s := in.status(t); s.App == nil || s.App.PID == firstPID || s.App.Restarts["manual"] != 1 {
		t.Errorf("after the fixed restart /status app = %+v, want a new pid and manual 1", s.App)
	}
	noRace(t, in)
}

// noRace fails the test when the -race binary reported a data race.
func noRace(t *testing.T, in *instance) {
	t.Helper()
	if out := in.out.String(); strings.Contains(out, "WARNING: DATA RACE") {
		i := strings.Index(out, "WARNING: DATA RACE")
		t.Errorf("bulwark reported a data race:\n%s", out[i:min(len(out), i+6000)])
	}
}

// TestAppFailingToStart: an app that cannot start is reported as failing
// in the log and /status with its reason, and clients get a 503 that says
// so without the app's stderr.
func TestAppFailingToStart(t *testing.T) {
	requireUvicorn(t)
	appDir := appCopy(t)
	setBroken(t, appDir, true)
	in := startBulwark(t, socketAppConfig(appDir), nil)
	var st statusDocFailing
	waitFor(t, 30*time.Second, "the app to be reported failing", func() bool {
		st = in.failingStatus(t)
		return strings.HasPrefix(st.App.State, "failing: ")
	})
	if st.App.PID != 0 || !strings.Contains(strings.Join(st.App.Stderr, "\n"), "bulwark_e2e_no_such_module") {
		t.Errorf("/status app = %+v, want pid 0 and the import error in stderr", st.App)
	}
	res, err := in.client(false).Get(in.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "failing to start") ||
		strings.Contains(body, "bulwark_e2e_no_such_module") {
		t.Errorf("GET / = %d %q, want 503 saying the app is failing to start, without its stderr", res.StatusCode, body)
	}
	log := in.out.String()
	if !strings.Contains(log, "the app is failing to start") || !strings.Contains(log, "level=ERROR") {
		t.Errorf("the log does not say at ERROR that the app is failing to start:\n%s", tail(log, 30))
	}
	noRace(t, in)
}

// statusDocFailing is the part of /status that describes a failing app.
type statusDocFailing struct {
	App struct {
		PID    int      `json:"pid"`
		State  string   `json:"state"`
		Stderr []string `json:"stderr"`
	} `json:"app"`
}

func (in *instance) failingStatus(t testing.TB) statusDocFailing {
	var s statusDocFailing
	res, err := http.Get("http://" + in.admin + "/status")
	if err != nil {
		return s
	}
	json.Unmarshal([]byte(readAll(t, res)), &s)
	return s
}

// TestRefusesLeftoverOnAppPort is issue 16 §1: a leftover server holds the
// app's port; bulwark run refuses to start and names its PID and command,
// instead of taking it for the app.
func TestRefusesLeftoverOnAppPort(t *testing.T) {
	port := freePort(t)
	stray := startProc(t, t.TempDir(), nil, python, "-m", "http.server", "--bind", "127.0.0.1", strconv.Itoa(port))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, 20*time.Second, "the stray server", func() bool {
		res, err := http.Get("http://" + addr + "/")
		if err == nil {
			res.Body.Close()
		}
		return err == nil
	})
	wd, _ := os.Getwd()
	cfg := baseConfig + fmt.Sprintf("\n[upstream]\naddress = %q\n\n[app]\ncommand = [%q, \"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"%d\"]\ndir = %q\n",
		addr, python, port, filepath.Join(wd, "testdata"))
	in := startBulwark(t, cfg, nil)
	select {
	case <-in.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("bulwark still runs 30s after it found the app's port taken:\n%s", tail(in.out.String(), 30))
	}
	out := in.out.String()
	pid := strconv.Itoa(stray.cmd.Process.Pid)
	if in.exit == nil || !strings.Contains(out, "pid "+pid) || !strings.Contains(out, "http.server") {
		t.Errorf("bulwark run exited with %v; want non-zero naming pid %s and its command:\n%s", in.exit, pid, tail(out, 30))
	}
	if strings.Contains(out, "app ready") {
		t.Errorf("the leftover server was taken for the app:\n%s", tail(out, 30))
	}
	noRace(t, in)
}

// TestKilledBulwarksWorkersStoppedByTheNext: Bulwark is SIGKILLed while it
// supervises uvicorn --workers 2 on a fixed port. Pdeathsig ends uvicorn's
// main process, not its workers, which keep the port (and their memory).
// The next bulwark run stops them, says so, and serves its own app,
// instead of refusing to start because the port is taken.
func TestKilledBulwarksWorkersStoppedByTheNext(t *testing.T) {
	requireUvicorn(t)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	wd, _ := os.Getwd()
	cfg := baseConfig + fmt.Sprintf("\n[upstream]\naddress = %q\n\n[app]\ncommand = [%q, \"-m\", \"uvicorn\", \"app:app\", \"--app-dir\", %q, \"--host\", \"127.0.0.1\", \"--port\", \"%d\", \"--workers\", \"2\", \"--no-access-log\"]\n",
		addr, python, filepath.Join(wd, "testdata"), port)

	first := startBulwark(t, cfg, nil)
	waitFor(t, 60*time.Second, "the first bulwark's app", func() bool {
		res, err := first.client(false).Get(first.url("/"))
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == http.StatusOK
	})
	workers := appProcessesOf(first.cmd.Process.Pid)
	if len(workers) < 2 {
		t.Fatalf("found %d processes of the first bulwark's app, want uvicorn and its workers", len(workers))
	}
	t.Cleanup(func() {
		for _, pid := range workers {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	first.stop(syscall.SIGKILL, time.Second)

	// The failure this test is about: the workers outlive their Bulwark
	// and still answer on the app's port.
	waitFor(t, 10*time.Second, "uvicorn's main process to die with its bulwark (Pdeathsig)", func() bool {
		return len(livePIDs(workers)) < len(workers)
	})
	left := livePIDs(workers)
	if len(left) == 0 {
		t.Fatalf("every app process died with bulwark: the test proves nothing")
	}
	if res, err := http.Get("http://" + addr + "/"); err != nil {
		t.Fatalf("the leftover workers do not answer on %s: %v", addr, err)
	} else {
		res.Body.Close()
	}

	second := startBulwark(t, cfg, nil)
	waitFor(t, 60*time.Second, "the second bulwark's app", func() bool {
		res, err := second.client(false).Get(second.url("/"))
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == http.StatusOK
	})
	if still := livePIDs(left); len(still) > 0 {
		t.Errorf("processes %v of the killed bulwark's app still run", still)
	}
	out := second.out.String()
	if !strings.Contains(out, "left by a Bulwark that is no longer running") || !strings.Contains(out, strconv.Itoa(left[0])) {
		t.Errorf("the second bulwark did not say it stopped %v:\n%s", left, tail(out, 30))
	}
	if strings.Contains(out, "already in use") {
		t.Errorf("the second bulwark refused the port its predecessor's workers held:\n%s", tail(out, 30))
	}
	noRace(t, second)
}

// appProcessesOf returns the processes whose environment names bulwark
// pid as the Bulwark that started them (BULWARK_PARENT).
func appProcessesOf(pid int) []int {
	prefix := []byte("\x00BULWARK_PARENT=" + strconv.Itoa(pid) + ".")
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(append([]byte{0}, env...), prefix) {
			out = append(out, p)
		}
	}
	return out
}

// livePIDs returns those of pids that run and are not zombies.
func livePIDs(pids []int) []int {
	var out []int
	for _, p := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "stat"))
		if i := bytes.LastIndexByte(b, ')'); err == nil && i > 0 && i+2 < len(b) && b[i+2] != 'Z' {
			out = append(out, p)
		}
	}
	return out
}

// TestUpgradeWithBadConfigFailsAtOnce is issue 16 §3's last point: `bulwark
// upgrade` after the config was broken fails at once with the new
// process's error, and the old process keeps serving.
func TestUpgradeWithBadConfigFailsAtOnce(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "bulwark.pid")
	upstream, _ := startStub(t)
	in := startBulwark(t, baseConfig+fmt.Sprintf("\n[upstream]\naddress = %q\n", upstream), nil, "--pid-file", pidFile)
	waitFor(t, 20*time.Second, "the pid file", func() bool { _, err := os.Stat(pidFile); return err == nil })
	oldPID, _ := os.ReadFile(pidFile)

	bad := baseConfig + "\n[upstream]\naddress = \"no port here\"\nmax_concurrency = -3\n"
	bad = strings.NewReplacer("%HTTPS%", in.https, "%ADMIN%", in.admin).Replace(bad)
	if err := os.WriteFile(filepath.Join(in.dir, "bulwark.toml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	out, err := exec.Command(bulwarkBin, "upgrade", "--pid-file", pidFile, "--timeout", "60s").CombinedOutput()
	took := time.Since(t0)
	t.Logf("bulwark upgrade with a bad config: %v after %.1fs:\n%s", err, took.Seconds(), out)
	if err == nil || !strings.Contains(string(out), "max_concurrency") {
		t.Errorf("bulwark upgrade with a bad config: err %v, output %q; want a non-zero exit naming the config error", err, out)
	}
	if took > 30*time.Second {
		t.Errorf("bulwark upgrade took %v to fail, want it at once, not at its timeout", took)
	}
	if now, _ := os.ReadFile(pidFile); string(now) != string(oldPID) || in.exited() {
		t.Errorf("after the failed upgrade the pid file says %q (was %q), exited %v; want the old process serving", now, oldPID, in.exited())
	}
	res, err := in.client(false).Get(in.url("/"))
	if err != nil {
		t.Fatalf("GET / after the failed upgrade: %v", err)
	}
	readAll(t, res)
	noRace(t, in)
}

// startStub returns the address of a plain Go upstream: the
// upgrade test needs no app.
func startStub(t *testing.T) (string, func()) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), srv.Close
}
