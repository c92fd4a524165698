package supervise

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// recorder is a slog.Handler that keeps every record for assertions.
type recorder struct {
	mu   sync.Mutex
	recs []rec
}

type rec struct {
	at    time.Time
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rc slog.Record) error {
	m := map[string]string{}
	rc.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec{rc.Time, rc.Level, rc.Message, m})
	return nil
}

// find returns the records whose message contains substr.
func (r *recorder) find(substr string) []rec {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []rec
	for _, x := range r.recs {
		if strings.Contains(x.msg, substr) {
			out = append(out, x)
		}
	}
	return out
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, x := range r.recs {
		fmt.Fprintf(&b, "%s %s %q %v\n", x.at.Format("15:04:05.000"), x.level, x.msg, x.attrs)
	}
	return b.String()
}

// harness is a running Supervisor of the fake app behind its gate and a
// reverse proxy, as the composition root wires it.
type harness struct {
	s       *Supervisor
	logs    *recorder
	set     *metrics.Set
	front   *httptest.Server
	addr    atomic.Value // string: the app's current address
	pids    chan int     // every PID passed to OnStart
	cancel  context.CancelFunc
	runErr  chan error
	started sync.Map // pid → time of OnStart
	opts    Options  // as given to New, for Update
}

// fakeCommand returns the command that runs the test binary as the fake app.
func fakeCommand(t *testing.T, addr string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable() error = %v", err)
	}
	return []string{exe, "--addr", addr}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}

// start runs a Supervisor with o (fake-app defaults filled in) and ends it,
// and every process it started, in t.Cleanup.
func start(t *testing.T, o Options, env map[string]string) *harness {
	t.Helper()
	h := &harness{logs: &recorder{}, set: metrics.NewSet(), pids: make(chan int, 100), runErr: make(chan error, 1)}
	if o.Command == nil {
		o.Upstream = freeAddr(t)
		o.Command = fakeCommand(t, o.Upstream)
	}
	// GORACE: a -race binary otherwise sleeps 1s at exit.
	o.Env = map[string]string{"FAKEAPP": "1", "GORACE": "atexit_sleep_ms=0"}
	for k, v := range env {
		o.Env[k] = v
	}
	if o.Health == "" {
		o.Health = "/health"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 20 * time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 5 * time.Second
	}
	if o.RestartHold == 0 {
		o.RestartHold = 20 * time.Second
	}
	o.Logger, o.Metrics = slog.New(h.logs), h.set
	onStart := o.OnStart
	o.OnStart = func(pid int) {
		h.started.Store(pid, time.Now())
		h.pids <- pid
		if onStart != nil {
			onStart(pid)
		}
	}
	onAddr := o.OnAddress
	o.OnAddress = func(a string) {
		h.addr.Store(a)
		if onAddr != nil {
			onAddr(a)
		}
	}
	s, err := New(o)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	h.s, h.opts = s, o
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			host := h.addr.Load().(string)
			if strings.HasPrefix(host, "unix:") {
				host = "app"
			}
			pr.SetURL(&url.URL{Scheme: "http", Host: host})
		},
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				if p, ok := strings.CutPrefix(h.addr.Load().(string), "unix:"); ok {
					return d.DialContext(ctx, "unix", p)
				}
				return d.DialContext(ctx, network, addr)
			},
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	h.front = httptest.NewServer(s.Gate(proxy))
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.runErr <- s.Run(ctx) }()
	t.Cleanup(func() {
		h.stop(t)
		h.front.Close()
		close(h.pids)
		for pid := range h.pids {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		if t.Failed() || os.Getenv("DUMPLOG") != "" {
			t.Logf("supervisor log:\n%s", h.logs.dump())
		}
	})
	return h
}

// stop ends Run and returns its error; later calls return nil.
func (h *harness) stop(t *testing.T) error {
	t.Helper()
	h.cancel()
	select {
	case err, ok := <-h.runErr:
		if ok {
			close(h.runErr)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Errorf("Run did not return within 30s of cancel")
		return nil
	}
}

func (h *harness) get(path string) (int, string, http.Header, error) {
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(h.front.URL + path)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

func (h *harness) metric(name string) string {
	var b bytes.Buffer
	h.set.WritePrometheus(&b)
	sc := bufio.NewScanner(&b)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}

// waitFor polls cond every 20ms for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitReady(t *testing.T, h *harness) Status {
	t.Helper()
	waitFor(t, 20*time.Second, "the app to be ready", func() bool { return h.s.Status().State == StateReady })
	return h.s.Status()
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// load sends GET path from n clients until stop is closed and returns the
// number of requests and the failures (non-200 answers and errors).
func load(h *harness, n int, path string, stop <-chan struct{}) (total int64, failures chan string) {
	return loadCounting(h, n, path, stop, new(atomic.Int64))
}

// loadCounting is load that adds each answered request to count as it
// comes, so that a test can wait for the load to be under way.
func loadCounting(h *harness, n int, path string, stop <-chan struct{}, count *atomic.Int64) (total int64, failures chan string) {
	failures = make(chan string, 1000)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for i := 0; i < 10000; i++ { // bounded; stop ends it first
				select {
				case <-stop:
					return
				default:
				}
				code, body, _, err := h.get(path)
				count.Add(1)
				if err != nil || code != http.StatusOK {
					select {
					case failures <- fmt.Sprintf("%d %q %v", code, body, err):
					default:
					}
				}
			}
		})
	}
	wg.Wait()
	close(failures)
	return count.Load(), failures
}

func TestStartReady(t *testing.T) {
	h := start(t, Options{}, nil)
	st := waitReady(t, h)
	code, body, _, err := h.get("/")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET / = %d %q %v, want 200", code, body, err)
	}
	if got, want := body, strconv.Itoa(st.PID); got != want {
		t.Errorf("GET / answered by pid %s, want the supervised pid %s", got, want)
	}
	if st.Address != h.addr.Load().(string) {
		t.Errorf("Status().Address = %q, OnAddress got %q", st.Address, h.addr.Load())
	}
	if got, want := oomScoreAdj(t, st.PID), min(1000, oomScoreAdj(t, os.Getpid())+500); got != want {
		t.Errorf("app oom_score_adj = %d, want %d (ours + 500)", got, want)
	}
	if got := h.metric("bulwark_app_up"); got != "1" {
		t.Errorf("bulwark_app_up = %q, want 1", got)
	}
	// The app's output is logged line by line, marked as the app's.
	waitFor(t, 5*time.Second, "the app's stdout and stderr lines", func() bool {
		return len(h.logs.find("fakeapp listening on")) > 0 && len(h.logs.find("fakeapp: stderr works")) > 0
	})
	for _, tt := range []struct{ msg, stream string }{{"fakeapp listening on", "stdout"}, {"fakeapp: stderr works", "stderr"}} {
		r := h.logs.find(tt.msg)[0]
		if r.attrs["app"] != "true" || r.attrs["stream"] != tt.stream || r.attrs["pid"] != strconv.Itoa(st.PID) {
			t.Errorf("log of %q has attrs %v, want app=true stream=%s pid=%d", tt.msg, r.attrs, tt.stream, st.PID)
		}
	}
	if err := h.stop(t); err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	if alive(st.PID) {
		t.Errorf("app pid %d still alive after Run returned", st.PID)
	}
	if got := h.s.Status(); got.State != StateStopped || got.LastExit != "exit code 0" {
		t.Errorf("Status() after stop = %s %q, want stopped and exit code 0 (graceful SIGTERM)", got.State, got.LastExit)
	}
	code, _, hdr, _ := h.get("/")
	if code != http.StatusServiceUnavailable || hdr.Get("X-Bulwark-Error") != "app_unavailable" {
		t.Errorf("GET / after stop = %d (%s), want 503 app_unavailable", code, hdr.Get("X-Bulwark-Error"))
	}
}

func oomScoreAdj(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "oom_score_adj"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMakeCgroup(t *testing.T) {
	root, proc := t.TempDir(), t.TempDir()
	mustWrite(t, filepath.Join(root, "cgroup.controllers"), "cpu memory pids\n")
	mustWrite(t, filepath.Join(proc, "self", "cgroup"), "0::/system.slice/bulwark.service\n")
	mustWrite(t, filepath.Join(root, "system.slice/bulwark.service/cgroup.procs"), "1\n")
	o := Options{CgroupRoot: root, MaxMemory: 400 << 20}
	o.env.procRoot = proc
	dir, err := makeCgroup(o, 4242)
	if err != nil {
		t.Fatalf("makeCgroup() error = %v", err)
	}
	if want := filepath.Join(root, "system.slice/bulwark.service/bulwark-app-4242"); dir != want {
		t.Errorf("makeCgroup() = %q, want %q", dir, want)
	}
	for file, want := range map[string]string{
		"memory.high": strconv.Itoa(400 << 20), "memory.max": strconv.Itoa(600 << 20), "cgroup.procs": "4242",
	} {
		if b, _ := os.ReadFile(filepath.Join(dir, file)); string(b) != want {
			t.Errorf("%s = %q, want %q", file, b, want)
		}
	}
	mustWrite(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\n")
	if got := cgroupOOMKills(dir); got != 1 {
		t.Errorf("cgroupOOMKills() = %d, want 1", got)
	}
}

// TestOOMKillsReportedAfterCleanup: the exit report names the kernel's OOM
// kills in the app's cgroup although cleanup removed the cgroup before the
// report. A real cgroupfs lets rmdir take memory.events with the directory
// (emulated here with RemoveAll), so a report that read the file itself
// never saw one.
func TestOOMKillsReportedAfterCleanup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bulwark-app-1")
	mustWrite(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
	app := exec.Command("sleep", "30")
	app.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // cleanup kills its process group
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Process.Kill(); _ = app.Wait() })
	logs := &recorder{}
	s, err := New(Options{Command: []string{"true"}, Upstream: "127.0.0.1:1", Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	inst := &instance{pid: app.Process.Pid, cgroup: dir, stderr: &lines{max: stderrKeep}, started: time.Now()}
	s.cleanup(inst)
	os.RemoveAll(dir)
	s.report(inst, slog.LevelError, "app exited")
	if exits := logs.find("app exited"); len(exits) != 1 || exits[0].attrs["cgroup_oom_kills"] != "1" {
		t.Errorf("exit reports = %v, want one with cgroup_oom_kills=1", exits)
	}
}

func mustWrite(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCrashRestart(t *testing.T) {
	h := start(t, Options{BackoffMin: 50 * time.Millisecond}, map[string]string{"FAKEAPP_CRASH_AFTER": "1"})
	first := waitReady(t, h)
	if code, body, _, err := h.get("/"); err != nil || code != http.StatusOK {
		t.Fatalf("GET / = %d %q %v, want 200", code, body, err)
	}
	waitFor(t, 20*time.Second, "a new app after the crash", func() bool {
		st := h.s.Status()
		return st.State == StateReady && st.PID != first.PID
	})
	st := h.s.Status()
	if st.Restarts[ReasonCrash] != 1 || st.LastExit != "exit code 3" {
		t.Errorf("Status() = restarts %v, last exit %q; want 1 crash, exit code 3", st.Restarts, st.LastExit)
	}
	exits := h.logs.find("app exited")
	if len(exits) != 1 {
		t.Fatalf("%d 'app exited' records, want 1", len(exits))
	}
	if got := exits[0].attrs; got["exit"] != "exit code 3" || !strings.Contains(got["stderr"], "dying after 1 requests") {
		t.Errorf("crash report = %v, want exit code 3 and the last stderr lines", got)
	}
	if got := h.metric(`bulwark_app_restarts_total{reason="crash"}`); got != "1" {
		t.Errorf("restarts_total{crash} = %q, want 1", got)
	}
	if code, body, _, err := h.get("/"); err != nil || code != http.StatusOK || body != strconv.Itoa(st.PID) {
		t.Errorf("GET / after restart = %d %q %v, want 200 from pid %d", code, body, err, st.PID)
	}
}

func TestCrashLoopBackoff(t *testing.T) {
	h := start(t, Options{BackoffMin: 20 * time.Millisecond, BackoffMax: 160 * time.Millisecond},
		map[string]string{"FAKEAPP_EXIT": "2"})
	const n = 7
	var got []string
	waitFor(t, 20*time.Second, fmt.Sprintf("%d back-offs", n), func() bool {
		got = got[:0]
		for _, r := range h.logs.find("the app is failing to start") {
			got = append(got, r.attrs["backoff"])
		}
		return len(got) >= n
	})
	h.stop(t)
	// Records come in order within each message; merge by failure count.
	var backoffs []string
	for i := 1; i <= n; i++ {
		for _, r := range h.logs.find("the app is failing to start") {
			if r.attrs["failures"] == strconv.Itoa(i) {
				backoffs = append(backoffs, r.attrs["backoff"])
			}
		}
	}
	want := []string{"20ms", "40ms", "80ms", "160ms", "160ms", "160ms", "160ms"}
	if !slices.Equal(backoffs, want) {
		t.Errorf("back-offs = %v, want %v", backoffs, want)
	}
	loop := h.logs.find("the app is failing to start")
	if len(loop) == 0 || !strings.Contains(loop[0].attrs["reason"], "exit code 2") {
		t.Errorf("failing-start records = %v, want one naming exit code 2", loop)
	}
	if r := h.logs.find("app exited before it was ready"); len(r) == 0 || !strings.Contains(r[0].attrs["stderr"], "failing at start on purpose") {
		t.Errorf("failed-start records = %v, want the app's stderr quoted", r)
	}
}

func TestSlowStartHeldAtGate(t *testing.T) {
	h := start(t, Options{}, map[string]string{"FAKEAPP_DELAY": "800ms"})
	const n = 5
	codes := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			code, body, _, err := h.get("/")
			codes <- fmt.Sprintf("%d %v", code, err)
			_ = body
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != "200 <nil>" {
			t.Errorf("GET / during slow start = %s, want 200 <nil>", c)
		}
	}
	if got := h.metric("bulwark_gate_held_total"); got != strconv.Itoa(n) {
		t.Errorf("bulwark_gate_held_total = %q, want %d", got, n)
	}
}

func TestGateHoldExpires(t *testing.T) {
	h := start(t, Options{RestartHold: 100 * time.Millisecond, StopTimeout: 100 * time.Millisecond},
		map[string]string{"FAKEAPP_DELAY": "1h"})
	code, _, hdr, err := h.get("/")
	if err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("GET / to an app that never gets ready = %d %v, want 503", code, err)
	}
	if got := hdr.Get("X-Bulwark-Error"); got != "app_unavailable" {
		t.Errorf("X-Bulwark-Error = %q, want app_unavailable", got)
	}
	if got := hdr.Get("Retry-After"); got == "" {
		t.Errorf("Retry-After missing on the 503")
	}
}

func TestIgnoreSIGTERM(t *testing.T) {
	h := start(t, Options{StopTimeout: 300 * time.Millisecond}, map[string]string{"FAKEAPP_IGNORE_TERM": "1"})
	st := waitReady(t, h)
	if err := h.stop(t); err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	if alive(st.PID) {
		t.Errorf("app pid %d alive after Run returned", st.PID)
	}
	if got := h.s.Status().LastExit; got != "killed by signal SIGKILL" {
		t.Errorf("LastExit = %q, want killed by signal SIGKILL", got)
	}
	if len(h.logs.find("sending SIGKILL")) != 1 {
		t.Errorf("no log saying SIGKILL was sent")
	}
}

func TestNoOrphanAfterSIGKILL(t *testing.T) {
	cmd, appPID := startSupervisingChild(t)
	if !alive(appPID) {
		t.Fatalf("app pid %d not alive before the kill", appPID)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitFor(t, 10*time.Second, fmt.Sprintf("app pid %d to die with its supervisor", appPID), func() bool { return !alive(appPID) })
}

// startSupervisingChild starts the test binary as a Bulwark supervising
// the fake app (superviseChild), with env added to its environment (and so
// to the app's), waits until the app is ready and returns the child and
// the app's PID. Cleanup kills both.
func startSupervisingChild(t *testing.T, env ...string) (*exec.Cmd, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), "SUPERVISE_CHILD=1", "GORACE=atexit_sleep_ms=0"), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	appPID := 0
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if appPID > 0 {
			_ = syscall.Kill(-appPID, syscall.SIGKILL)
		}
	})
	lines := make(chan string, 10)
	go func() { // ends at EOF, when the child is gone
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(20 * time.Second)
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("supervising child exited before its app was ready")
			}
			if p, ok := strings.CutPrefix(l, "APP_PID="); ok {
				appPID, _ = strconv.Atoi(p)
			}
			ready = l == "READY"
		case <-timeout:
			t.Fatalf("supervising child's app not ready within 20s")
		}
	}
	go func() { // keep draining so the child never blocks on stdout
		for range lines {
		}
	}()
	return cmd, appPID
}

func TestEnvPrecedence(t *testing.T) {
	o := Options{
		DefaultEnv: map[string]string{
			"T_ENV": "default", "T_OS": "default", "T_DEF": "default", "T_BOTH": "default",
		},
	}
	o.env.environ = func() []string { return append(os.Environ(), "T_OS=os", "T_BOTH=os") }
	h := start(t, o, map[string]string{"T_ENV": "env", "T_BOTH": "env"})
	waitReady(t, h)
	code, body, _, err := h.get("/env")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /env = %d %v", code, err)
	}
	var env []string
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("decoding /env: %v", err)
	}
	got := map[string][]string{}
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "T_") {
			got[k] = append(got[k], v)
		}
	}
	want := map[string][]string{"T_ENV": {"env"}, "T_OS": {"os"}, "T_DEF": {"default"}, "T_BOTH": {"env"}}
	for k, w := range want {
		if !slices.Equal(got[k], w) {
			t.Errorf("app env %s = %v, want %v", k, got[k], w)
		}
	}
}

func TestBuildEnv(t *testing.T) {
	tests := []struct {
		base     []string
		env, def map[string]string
		unset    []string
		want     []string
	}{
		{[]string{"A=1"}, nil, nil, nil, []string{"A=1"}},
		{[]string{"A=1", "B=2"}, map[string]string{"B": "x"}, nil, nil, []string{"A=1", "B=x"}},
		{[]string{"A=1"}, map[string]string{"B": "x"}, map[string]string{"A": "d", "B": "d", "C": "d"}, nil, []string{"A=1", "B=x", "C=d"}},
		// Removed, not emptied; Env still wins over unset.
		{[]string{"A=1", "T=secret", "U=2"}, map[string]string{"U": "x"}, nil, []string{"T", "U"}, []string{"A=1", "U=x"}},
	}
	for _, tt := range tests {
		if got := buildEnv(tt.base, tt.env, tt.def, tt.unset); !slices.Equal(got, tt.want) {
			t.Errorf("buildEnv(%v, %v, %v, %v) = %v, want %v", tt.base, tt.env, tt.def, tt.unset, got, tt.want)
		}
	}
}

func TestZeroDowntimePort(t *testing.T) {
	var oldPID atomic.Int64
	var overlapped atomic.Bool
	o := Options{
		Command:      fakeCommand(t, "127.0.0.1:{port}"),
		ZeroDowntime: func() bool { return true },
		OnStart: func(pid int) {
			if old := int(oldPID.Load()); old != 0 && alive(old) {
				overlapped.Store(true) // the new one is ready while the old one still runs
			}
		},
	}
	h := start(t, o, nil)
	first := waitReady(t, h)
	oldPID.Store(int64(first.PID))
	stop := make(chan struct{})
	type result struct {
		total    int64
		failures chan string
	}
	res := make(chan result, 1)
	var sent atomic.Int64
	go func() { n, f := loadCounting(h, 4, "/slow?ms=20", stop, &sent); res <- result{n, f} }()
	// Requests in flight on the old app when the restart begins, and
	// answered by the new one after it.
	waitFor(t, 10*time.Second, "requests before the restart", func() bool { return sent.Load() >= 8 })
	if err := h.s.Restart(ReasonManual); err != nil {
		t.Errorf("Restart() = %v", err)
	}
	after := sent.Load()
	waitFor(t, 10*time.Second, "requests after the restart", func() bool { return sent.Load() >= after+8 })
	close(stop)
	r := <-res
	for f := range r.failures {
		t.Errorf("request failed during zero-downtime restart: %s", f)
	}
	st := h.s.Status()
	if st.PID == first.PID || st.Address == first.Address {
		t.Errorf("after restart pid, address = %d %s; want both different from %d %s", st.PID, st.Address, first.PID, first.Address)
	}
	if !overlapped.Load() {
		t.Errorf("old app was not running when the new one was ready: no overlap")
	}
	if alive(first.PID) {
		t.Errorf("old app pid %d alive after the restart", first.PID)
	}
	if got := h.metric("bulwark_gate_held_total"); got != "0" {
		t.Errorf("bulwark_gate_held_total = %q, want 0 (no hold in zero-downtime mode)", got)
	}
	if r.total == 0 {
		t.Errorf("no request sent during the restart")
	}
	if len(h.logs.find("app started next to the running one")) != 1 {
		t.Errorf("log does not say the zero-downtime variant was used")
	}
}

func TestZeroDowntimeSocket(t *testing.T) {
	h := start(t, Options{Command: fakeCommand(t, "unix:{socket}"), ZeroDowntime: func() bool { return true }}, nil)
	first := waitReady(t, h)
	sock, ok := strings.CutPrefix(first.Address, "unix:")
	if !ok {
		t.Fatalf("Status().Address = %q, want unix:/path", first.Address)
	}
	if fi, err := os.Stat(filepath.Dir(sock)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory %s: %v %v, want mode 0700", filepath.Dir(sock), fi.Mode(), err)
	}
	if code, body, _, err := h.get("/"); err != nil || code != http.StatusOK || body != strconv.Itoa(first.PID) {
		t.Fatalf("GET / over the socket = %d %q %v, want 200 from pid %d", code, body, err, first.PID)
	}
	before := time.Now()
	if err := h.s.Restart(ReasonManual); err != nil {
		t.Fatalf("Restart() = %v", err)
	}
	st := h.s.Status()
	if st.Address == first.Address || st.PID == first.PID {
		t.Errorf("after restart %s pid %d, want a new socket and pid", st.Address, st.PID)
	}
	// The swap goes from ready to ready; the uptime status shows is the
	// new process's.
	if st.State != StateReady || st.Since.Before(before) {
		t.Errorf("after restart: %s since %v, want ready since the restart (%v or later)", st.State, st.Since, before)
	}
	if _, err := os.Stat(filepath.Dir(sock)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old socket directory still there after the old app stopped: %v", err)
	}
	if code, body, _, err := h.get("/"); err != nil || code != http.StatusOK || body != strconv.Itoa(st.PID) {
		t.Errorf("GET / after restart = %d %q %v, want 200 from pid %d", code, body, err, st.PID)
	}
}

func TestHoldRestartUnderLoad(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantLog string
	}{
		{"fixed upstream", Options{}, "restarting app"},
		{"{port} without room for two", Options{Command: fakeCommand(t, "127.0.0.1:{port}"), ZeroDowntime: func() bool { return false }},
			"does not fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, tt.o, nil)
			first := waitReady(t, h)
			// The app leaks; the restart is what gives the memory back.
			if code, _, _, err := h.get("/leak?mb=64"); err != nil || code != http.StatusOK {
				t.Fatalf("GET /leak = %d %v", code, err)
			}
			leaked := rssOf(t, first.PID)
			stop := make(chan struct{})
			var total int64
			var failures chan string
			done := make(chan struct{})
			var sent atomic.Int64
			go func() { total, failures = loadCounting(h, 4, "/slow?ms=30", stop, &sent); close(done) }()
			waitFor(t, 10*time.Second, "requests before the restart", func() bool { return sent.Load() >= 8 })
			if err := h.s.Restart(ReasonMemory); err != nil {
				t.Errorf("Restart() = %v", err)
			}
			after := sent.Load()
			waitFor(t, 10*time.Second, "requests after the restart", func() bool { return sent.Load() >= after+8 })
			close(stop)
			<-done
			for f := range failures {
				t.Errorf("request failed during graceful restart: %s", f)
			}
			st := h.s.Status()
			if st.PID == first.PID || st.State != StateReady || st.Restarts[ReasonMemory] != 1 {
				t.Errorf("Status() = %+v, want ready, a new pid and 1 memory restart", st)
			}
			if got := rssOf(t, st.PID); got >= leaked {
				t.Errorf("new app RSS = %d, want below the leaking app's %d", got, leaked)
			}
			if first.LastExit != "" || st.LastExit != "exit code 0" {
				t.Errorf("LastExit = %q, want exit code 0 (old app stopped by SIGTERM)", st.LastExit)
			}
			if got, _ := strconv.ParseFloat(h.metric("bulwark_app_last_restart_duration_seconds"), 64); got <= 0 {
				t.Errorf("bulwark_app_last_restart_duration_seconds = %v, want > 0", got)
			}
			if len(h.logs.find(tt.wantLog)) == 0 && !hasAttr(h.logs.find("restarting app"), "mode", tt.wantLog) {
				t.Errorf("no log %q saying which restart was used", tt.wantLog)
			}
			if total == 0 {
				t.Errorf("no request sent during the restart")
			}
		})
	}
}

// rssOf returns VmRSS of pid in bytes.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

func hasAttr(recs []rec, key, substr string) bool {
	for _, r := range recs {
		if strings.Contains(r.attrs[key], substr) {
			return true
		}
	}
	return false
}

func TestCgroupUnavailable(t *testing.T) {
	h := start(t, Options{CgroupRoot: t.TempDir(), MaxMemory: 100 << 20}, nil)
	waitReady(t, h)
	if err := h.s.Restart(ReasonManual); err != nil {
		t.Fatalf("Restart() = %v", err)
	}
	if code, _, _, err := h.get("/"); err != nil || code != http.StatusOK {
		t.Errorf("GET / = %d %v, want 200", code, err)
	}
	if got := len(h.logs.find("cgroup v2 not writable here: relying on Bulwark's watchdog")); got != 1 {
		t.Errorf("%d cgroup warnings over two starts, want exactly 1", got)
	}
}

func TestUpdateRestartsOnNewEnv(t *testing.T) {
	o := Options{}
	h := start(t, o, map[string]string{"T_RELOAD": "one"})
	first := waitReady(t, h)
	o.Command, o.Upstream, o.Health = fakeCommand(t, first.Address), first.Address, "/health"
	o.Env = map[string]string{"FAKEAPP": "1", "T_RELOAD": "two"}
	h.s.Update(o)
	waitFor(t, 20*time.Second, "the reload restart", func() bool {
		st := h.s.Status()
		return st.Restarts[ReasonReload] == 1 && st.State == StateReady
	})
	_, body, _, err := h.get("/env")
	if err != nil || !strings.Contains(body, "T_RELOAD=two") {
		t.Errorf("GET /env after Update = %q %v, want T_RELOAD=two", body, err)
	}
	// Same app: no restart. UpdateWait returns once Run has applied it.
	if err := h.s.UpdateWait(o); err != nil {
		t.Errorf("UpdateWait() with unchanged options = %v", err)
	}
	if got := h.s.Status().Restarts[ReasonReload]; got != 1 {
		t.Errorf("reload restarts after an unchanged Update = %d, want 1", got)
	}
}

func TestGate(t *testing.T) {
	s, err := New(Options{Command: []string{"x"}, Upstream: "127.0.0.1:1", RestartHold: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{}, 10)
	s.gate.notify = func() { waiting <- struct{}{} }
	h := s.Gate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "through") }))
	const n = 3
	results := make(chan int, n)
	for range n {
		go func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			results <- rec.Code
		}()
	}
	for range n {
		<-waiting
	}
	s.gate.set(gateOpen) // opens for all waiters at once
	for range n {
		if got := <-results; got != http.StatusOK {
			t.Errorf("held request answered %d after open, want 200", got)
		}
	}
	if err := s.Wait(context.Background()); err != nil {
		t.Errorf("Wait() on an open gate = %v", err)
	}
	s.gate.set(gateStopped)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("request to a stopped gate = %d Retry-After %q, want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.gate.set(gateClosed)
	if err := s.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait(cancelled) on a closed gate = %v, want context.Canceled", err)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"no command", Options{Upstream: "127.0.0.1:1"}},
		{"no upstream", Options{Command: []string{"app"}}},
	}
	for _, tt := range tests {
		if _, err := New(tt.o); err == nil {
			t.Errorf("New(%s) error = nil, want an error", tt.name)
		}
	}
	if _, err := New(Options{Command: []string{"app", "--port", "{port}"}}); err != nil {
		t.Errorf("New({port} without upstream) = %v, want nil", err)
	}
}

func TestRunFailsWhenCommandMissing(t *testing.T) {
	s, err := New(Options{Command: []string{filepath.Join(t.TempDir(), "no-such-app")}, Upstream: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Run(ctx); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Run() with a missing command = %v, want an error wrapping os.ErrNotExist", err)
	}
}

func TestDescribeExit(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-c", "exit 0"}, "exit code 0"},
		{[]string{"-c", "exit 7"}, "exit code 7"},
		{[]string{"-c", "kill -KILL $$"}, "killed by signal SIGKILL"},
	}
	for _, tt := range tests {
		err := exec.Command("/bin/sh", tt.args...).Run()
		if got := describeExit(err); got != tt.want {
			t.Errorf("describeExit(sh %v) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

// TestCleanExitNotBackedOff: an app that was ready and exits 0 by itself
// (uvicorn --limit-max-requests) is started again after the shortest
// back-off every time; the back-off grows only for failures. It used to
// double each time, as for a crash.
func TestCleanExitNotBackedOff(t *testing.T) {
	h := start(t, Options{BackoffMin: 20 * time.Millisecond, BackoffMax: time.Hour},
		map[string]string{"FAKEAPP_CRASH_AFTER": "1", "FAKEAPP_CRASH_CODE": "0"})
	pid := waitReady(t, h).PID
	for i := range 4 {
		if code, body, _, err := h.get("/"); err != nil || code != http.StatusOK {
			t.Fatalf("GET %d = %d %q %v", i, code, body, err)
		}
		waitFor(t, 20*time.Second, "the app started again", func() bool {
			st := h.s.Status()
			return st.State == StateReady && st.PID != pid
		})
		pid = h.s.Status().PID
	}
	recs := h.logs.find("it exited by itself with code 0")
	if len(recs) != 4 {
		t.Fatalf("%d restarts logged, want 4", len(recs))
	}
	for i, r := range recs {
		if r.attrs["backoff"] != "20ms" {
			t.Errorf("restart %d after a clean exit: backoff %s, want 20ms", i+1, r.attrs["backoff"])
		}
	}
	if st := h.s.Status(); st.Restarts[ReasonExit] != 4 || st.Restarts[ReasonCrash] != 0 {
		t.Errorf("restarts = %v, want exit 4 and no crash", st.Restarts)
	}
	if got := h.metric(`bulwark_app_restarts_total{reason="exit"}`); got != "4" {
		t.Errorf(`restarts_total{reason="exit"} = %s, want 4`, got)
	}
	if got := h.metric(`bulwark_app_restarts_total{reason="crash"}`); got != "0" {
		t.Errorf(`restarts_total{reason="crash"} = %s, want 0`, got)
	}
	for _, r := range h.logs.find("app exited") {
		if r.level != slog.LevelInfo {
			t.Errorf("a clean exit logged %q at %v, want INFO", r.msg, r.level)
		}
	}
}
