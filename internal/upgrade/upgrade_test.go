package upgrade

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the server being upgraded (STYLE R14): with
// envServer set, TestMain runs serveForTest instead of the tests.
const (
	envServer     = "UPGRADE_TEST_SERVER"
	envPort       = "UPGRADE_TEST_PORT"
	envPIDFile    = "UPGRADE_TEST_PIDFILE"
	envChildFails = "UPGRADE_TEST_CHILD_FAILS" // a process started by an upgrade exits 1 before Ready

	requestTime = 100 * time.Millisecond // how long the server takes per request
)

func TestMain(m *testing.M) {
	if os.Getenv(envServer) == "" {
		os.Exit(m.Run())
	}
	os.Exit(serveForTest())
}

// serveForTest is a small HTTP server that listens through an Upgrader,
// answers every request after requestTime with its PID, upgrades on
// SIGUSR2, stops on SIGTERM, and drains the way Bulwark must: stop
// accepting, answer each keep-alive connection's next request with
// "Connection: close" (closing an idle keep-alive connection races with the
// client's next request and can reset it), then shut down.
func serveForTest() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	u, err := New(Options{PIDFile: os.Getenv(envPIDFile), UpgradeTimeout: 10 * time.Second, Logger: log})
	if err != nil {
		log.Error("test server: new upgrader", "err", err)
		return 2
	}
	if v := os.Getenv(tableflipEnv); v != "" {
		log.Error("test server: tableflip's marker left in the environment, where the app would inherit it", "value", v)
		return 4
	}
	if u.HasParent() && os.Getenv(envChildFails) != "" {
		log.Error("test server: failing on purpose before Ready")
		return 1
	}
	ln, err := u.Listen(context.Background(), "tcp", "127.0.0.1:"+os.Getenv(envPort), 64)
	if err != nil {
		log.Error("test server: listen", "err", err)
		return 2
	}
	var draining atomic.Bool
	var open atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(requestTime):
			case <-r.Context().Done():
				return
			}
			if draining.Load() {
				w.Header().Set("Connection", "close")
			}
			fmt.Fprint(w, os.Getpid())
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	served := make(chan struct{})
	go func() { srv.Serve(ln); close(served) }()
	if err := u.Ready(); err != nil {
		log.Error("test server: ready", "err", err)
		return 2
	}
	// The generation counts upgrades through the state handover, as
	// Bulwark's restart counters do.
	gen := 1
	if b := u.Handover(); b != nil {
		if n, err := strconv.Atoi(string(b)); err == nil {
			gen = n + 1
		}
	}
	u.SetHandover(func() []byte { return []byte(strconv.Itoa(gen)) })
	log.Info("test server: serving", "pid", os.Getpid(), "addr", ln.Addr().String(), "generation", gen)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR2, syscall.SIGTERM)
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGTERM {
				u.Stop() // closes Exit's channel
				continue
			}
			go u.Upgrade() // logs its own failure; this process serves on
		case <-u.Exit():
			draining.Store(true)
			ln.Close() // the socket stays open in the new process
			<-served
			for deadline := time.Now().Add(3 * time.Second); open.Load() > 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				log.Error("test server: drain", "err", err)
				return 3
			}
			log.Info("test server: drained; exiting", "pid", os.Getpid())
			return 0
		}
	}
}

// server is a test server process started by the test.
type server struct {
	pid     int
	addr    string
	logPath string
	exited  chan struct{} // closed when the process has exited
	exitErr error         // valid after exited is closed
}

func (s *server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// startServer starts the test server on a free loopback port and waits
// until it answers.
func startServer(t *testing.T, pidFile string, extraEnv ...string) *server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	dir := t.TempDir()
	s := &server{addr: "127.0.0.1:" + port, logPath: filepath.Join(dir, "server.log"), exited: make(chan struct{})}
	// A file, not a pipe: processes started by upgrades inherit it, and a
	// pipe would keep cmd.Wait waiting for them.
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envServer+"=1", envPort+"="+port, envPIDFile+"="+pidFile)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.pid = cmd.Process.Pid
	go func() { s.exitErr = cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("server log:\n%s", s.log())
		}
	})

	c := &http.Client{Timeout: 2 * time.Second}
	for i := 0; ; i++ {
		res, err := c.Get("http://" + s.addr + "/")
		if err == nil {
			res.Body.Close()
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("server exited before serving: %v\n%s", s.exitErr, s.log())
		case <-time.After(50 * time.Millisecond):
		}
		if i == 100 {
			t.Fatalf("server did not answer within 100 attempts: %v", err)
		}
	}
}

// killInCleanup kills pid, a server started by an upgrade (so not a child
// of the test), when the test ends.
func killInCleanup(t *testing.T, pid int) {
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')') // the state follows the command name
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// waitFor polls cond every 20ms until it holds, failing the test after
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load keeps a steady stream of requests going: some workers reuse one
// keep-alive connection each, others open a connection per request. It
// counts answers per PID, failed requests, and connections reset (seen on
// the socket, even when the HTTP client would have retried).
type load struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	resets atomic.Int64

	mu       sync.Mutex
	byPID    map[int]int
	failures []string
}

const (
	loadMaxPerWorker = 400 // × requestTime bounds a worker to about 40 s
	loadMaxDuration  = 30 * time.Second
)

func startLoad(t *testing.T, addr string, keepAlive, fresh int) *load {
	t.Helper()
	l := &load{stop: make(chan struct{}), byPID: map[int]int{}}
	deadline := time.Now().Add(loadMaxDuration)
	for i := 0; i < keepAlive+fresh; i++ {
		l.wg.Add(1)
		go l.worker(addr, i < keepAlive, deadline)
	}
	t.Cleanup(l.finish)
	return l
}

// finish stops the workers and waits for them; it may be called twice.
func (l *load) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *load) worker(addr string, keepAlive bool, deadline time.Time) {
	defer l.wg.Done()
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, a)
			if err != nil {
				return nil, err
			}
			return &resetCountingConn{Conn: c, resets: &l.resets}, nil
		},
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 1,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := 0; i < loadMaxPerWorker && time.Now().Before(deadline); i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		pid, err := get(c, "http://"+addr+"/")
		l.mu.Lock()
		if err != nil {
			l.failures = append(l.failures, fmt.Sprintf("keepalive=%v: %v", keepAlive, err))
		} else {
			l.byPID[pid]++
		}
		l.mu.Unlock()
	}
}

func get(c *http.Client, url string) (int, error) {
	res, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, err
	}
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d: %q", res.StatusCode, b)
	}
	pid, err := strconv.Atoi(string(b))
	if err != nil {
		return 0, fmt.Errorf("answer %q is not a pid", b)
	}
	return pid, nil
}

func (l *load) answers(pid int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byPID[pid]
}

// check stops the load and reports failed requests and resets.
func (l *load) check(t *testing.T) map[int]int {
	t.Helper()
	l.finish()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) > 0 {
		t.Errorf("got %d failed requests, want 0; first: %s", len(l.failures), l.failures[0])
	}
	if n := l.resets.Load(); n != 0 {
		t.Errorf("got %d connections reset, want 0", n)
	}
	return l.byPID
}

type resetCountingConn struct {
	net.Conn
	resets *atomic.Int64
}

func (c *resetCountingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.count(err)
	return n, err
}

func (c *resetCountingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.count(err)
	return n, err
}

func (c *resetCountingConn) count(err error) {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		c.resets.Add(1)
	}
}

func mustReadPID(t *testing.T, path string) int {
	t.Helper()
	pid, err := ReadPIDFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestUpgradeUnderLoad upgrades twice in a row while requests flow and
// checks that every request is answered, by the old process before and the
// new one after, that no connection is reset, that each old process exits
// by itself, and that the PID file follows.
func TestUpgradeUnderLoad(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "bulwark.pid")
	first := startServer(t, pidFile)
	if got := mustReadPID(t, pidFile); got != first.pid {
		t.Fatalf("pid file after start = %d, want %d", got, first.pid)
	}
	l := startLoad(t, first.addr, 3, 3)
	waitFor(t, 10*time.Second, "answers from the first process", func() bool { return l.answers(first.pid) >= 6 })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	oldPID, second, err := Trigger(ctx, pidFile)
	if second > 0 {
		killInCleanup(t, second)
	}
	if err != nil {
		t.Fatalf("first upgrade: %v", err)
	}
	if oldPID != first.pid || second == first.pid {
		t.Fatalf("Trigger = %d, %d; want old pid %d and another new one", oldPID, second, first.pid)
	}
	select {
	case <-first.exited:
		if first.exitErr != nil {
			t.Errorf("first process exit: got %v, want a clean exit after draining", first.exitErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the first process did not exit by itself after the upgrade")
	}
	n := l.answers(second)
	waitFor(t, 10*time.Second, "answers from the second process", func() bool { return l.answers(second) >= n+6 })

	// The second process may upgrade only now that its parent has exited.
	_, third, err := Trigger(ctx, pidFile)
	if third > 0 {
		killInCleanup(t, third)
	}
	if err != nil {
		t.Fatalf("second upgrade: %v", err)
	}
	waitFor(t, 15*time.Second, "the second process to exit", func() bool { return !running(second) })
	// The second process wrote to the real stderr once the first was gone:
	// its stderr was put back from the first one's pipe (handoff.go).
	if want := fmt.Sprintf("upgrade: starting the new binary\" binary=%s pid=%d", os.Args[0], second); !strings.Contains(first.log(), want) {
		t.Errorf("the second process's log after the first exited lacks %q:\n%s", want, first.log())
	}
	n = l.answers(third)
	waitFor(t, 10*time.Second, "answers from the third process", func() bool { return l.answers(third) >= n+6 })
	// State handed over twice (state.go): the third process knows it is
	// the third generation.
	if want := fmt.Sprintf("pid=%d addr=%s generation=3", third, first.addr); !strings.Contains(first.log(), want) {
		t.Errorf("the third process's log lacks %q: the state was not handed over:\n%s", want, first.log())
	}

	byPID := l.check(t)
	for _, pid := range []int{first.pid, second, third} {
		if byPID[pid] == 0 {
			t.Errorf("answers by pid: got %v, want some from %d", byPID, pid)
		}
	}
	if len(byPID) != 3 {
		t.Errorf("answers by pid: got %v, want only pids %d, %d, %d", byPID, first.pid, second, third)
	}
	if got := mustReadPID(t, pidFile); got != third {
		t.Errorf("pid file after two upgrades = %d, want %d", got, third)
	}

	// A plain stop (no upgrade) drains, exits and removes the PID file.
	if err := syscall.Kill(third, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the third process to exit on SIGTERM", func() bool { return !running(third) })
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after SIGTERM: stat err = %v, want it removed", err)
	}
}

// TestFailedUpgradeKeepsServing starts an upgrade whose new process exits
// before it is ready: the old process must keep serving every request, keep
// its PID in the PID file, and still stop cleanly afterwards.
func TestFailedUpgradeKeepsServing(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "bulwark.pid")
	s := startServer(t, pidFile, envChildFails+"=1")
	l := startLoad(t, s.addr, 2, 2)
	waitFor(t, 10*time.Second, "answers from the server", func() bool { return l.answers(s.pid) >= 4 })

	// Trigger learns of the failure from the old process, with the new
	// one's last stderr lines, long before its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	oldPID, newPID, err := Trigger(ctx, pidFile)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || oldPID != s.pid || newPID != 0 ||
		!strings.Contains(err.Error(), "failing on purpose before Ready") {
		t.Fatalf("Trigger = %d, %d, %v; want %d, 0 and the new process's error", oldPID, newPID, err, s.pid)
	}
	waitFor(t, 10*time.Second, "the failure in the server log", func() bool {
		return strings.Contains(s.log(), "upgrade failed")
	})
	n := l.answers(s.pid)
	waitFor(t, 10*time.Second, "answers after the failed upgrade", func() bool { return l.answers(s.pid) >= n+6 })

	select {
	case <-s.exited:
		t.Fatalf("the old process exited after a failed upgrade: %v", s.exitErr)
	default:
	}
	byPID := l.check(t)
	if len(byPID) != 1 {
		t.Errorf("answers by pid: got %v, want all from %d", byPID, s.pid)
	}
	if got := mustReadPID(t, pidFile); got != s.pid {
		t.Errorf("pid file after a failed upgrade = %d, want %d", got, s.pid)
	}

	if err := syscall.Kill(s.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
		if s.exitErr != nil {
			t.Errorf("exit after SIGTERM: got %v, want a clean exit", s.exitErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not exit on SIGTERM")
	}
}

func TestReadPIDFile(t *testing.T) {
	tests := []struct {
		name, content string
		want          int
		wantErr       bool
	}{
		{"plain", "1234", 1234, false},
		{"newline", "1234\n", 1234, false},
		{"spaces", "  42 \n", 42, false},
		{"empty", "", 0, true},
		{"zero", "0", 0, true},
		{"negative", "-5", 0, true},
		{"garbage", "12ab", 0, true},
		{"two numbers", "12\n13\n", 0, true},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		path := filepath.Join(dir, tt.name)
		if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := ReadPIDFile(path)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ReadPIDFile(%q) = %d, %v; want %d, err=%v", tt.content, got, err, tt.want, tt.wantErr)
		}
	}
	if _, err := ReadPIDFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadPIDFile(missing) err = %v, want os.ErrNotExist", err)
	}
}

func TestWritePIDFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bulwark.pid")
	for _, pid := range []int{100, 2000000} {
		if err := writePIDFile(path, pid); err != nil {
			t.Fatal(err)
		}
		if got := mustReadPID(t, path); got != pid {
			t.Errorf("after writePIDFile(%d): read %d", pid, got)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o644 {
		t.Errorf("pid file mode = %v, want 0644", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the pid file (no temporary files left)", len(entries))
	}
	if err := writePIDFile(filepath.Join(dir, "no", "such", "dir", "x.pid"), 1); err == nil {
		t.Error("writePIDFile into a missing directory: got nil error, want one")
	}
}

func TestTriggerWithoutPIDFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, _, err := Trigger(ctx, filepath.Join(t.TempDir(), "none.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Trigger with no pid file: err = %v, want os.ErrNotExist", err)
	}
}

// TestStartScript drives contrib/bulwark-start.sh with the test server
// posing as the bulwark binary: start, start again (no second copy),
// status, restart (an upgrade), reload, stop.
func TestStartScript(t *testing.T) {
	t.Parallel()
	script, err := filepath.Abs("../../contrib/bulwark-start.sh")
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	bin := filepath.Join(home, "bin", "bulwark")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(home, "bulwark.toml")
	if err := os.WriteFile(config, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	state := filepath.Join(home, "state")
	pidFile := filepath.Join(state, "bulwark.pid")
	env := append(os.Environ(), "HOME="+home, "BULWARK_HOME="+state, "BULWARK_BIN="+bin,
		"BULWARK_CONFIG="+config, "BULWARK_APP_DIR="+home, "BULWARK_START_WAIT=20", "BULWARK_STOP_WAIT=20",
		envServer+"=1", envPort+"="+port, envPIDFile+"="+pidFile)

	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command("/bin/sh", append([]string{script}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("bulwark-start.sh %v: %v", args, err)
		}
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(state, "bulwark.log"))
			t.Logf("bulwark-start.sh %v: %s\nlog:\n%s", args, out, logs)
		}
		return string(out), code
	}
	// No keep-alive: an idle connection would hold each drain for its full wait.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	if out, code := run("status"); code != 3 {
		t.Errorf("status before start: got exit %d (%q), want 3", code, out)
	}
	if out, code := run("start"); code != 0 || !strings.Contains(out, "started") {
		t.Fatalf("start: got exit %d, %q; want 0 and started", code, out)
	}
	first := mustReadPID(t, pidFile)
	killInCleanup(t, first)
	if got, err := get(c, "http://127.0.0.1:"+port+"/"); err != nil || got != first {
		t.Errorf("GET after start = %d, %v; want an answer from pid %d", got, err, first)
	}
	if out, code := run("start"); code != 0 || !strings.Contains(out, "already running") {
		t.Errorf("second start: got exit %d, %q; want 0 and already running", code, out)
	}
	if out, code := run("status"); code != 0 || !strings.Contains(out, strconv.Itoa(first)) {
		t.Errorf("status: got exit %d, %q; want 0 and pid %d", code, out, first)
	}
	if out, code := run("reload"); code != 0 {
		t.Errorf("reload: got exit %d, %q; want 0", code, out)
	}
	if out, code := run("restart"); code != 0 || !strings.Contains(out, "upgraded") {
		t.Fatalf("restart: got exit %d, %q; want 0 and upgraded", code, out)
	}
	second := mustReadPID(t, pidFile)
	killInCleanup(t, second)
	if second == first {
		t.Fatalf("pid file after restart = %d, want a new pid", second)
	}
	waitFor(t, 10*time.Second, "the first process to exit after restart", func() bool { return !running(first) })
	if got, err := get(c, "http://127.0.0.1:"+port+"/"); err != nil || got != second {
		t.Errorf("GET after restart = %d, %v; want an answer from pid %d", got, err, second)
	}
	if out, code := run("stop"); code != 0 || !strings.Contains(out, "stopped") {
		t.Errorf("stop: got exit %d, %q; want 0 and stopped", code, out)
	}
	if running(second) {
		t.Errorf("pid %d still running after stop", second)
	}
	if out, code := run("status"); code != 3 {
		t.Errorf("status after stop: got exit %d (%q), want 3", code, out)
	}
}
