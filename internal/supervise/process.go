package supervise

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// instance is one running app process and what belongs to it.
type instance struct {
	cmd     *exec.Cmd
	pid     int
	addr    string // where it listens: "host:port" or "unix:/path"
	sockDir string // temp dir of a {socket} instance; removed after exit
	cgroup  string // its cgroup directory, "" when none
	ooms    int    // the kernel's OOM kills in its cgroup, read before removing it
	started time.Time
	stderr  *lines
	done    chan struct{} // closed after the process exited and was reaped
	exit    error         // cmd.Wait's result; read only after done
}

// forkReq asks the forker thread to start a command.
type forkReq struct {
	cmd   *exec.Cmd
	reply chan error // cap 1
}

// forker starts every app process from one goroutine locked to its OS
// thread: Pdeathsig fires when the thread that forked the child exits, so
// the thread must live as long as the children. The goroutine exits (and
// its thread with it, killing any child left) when stop is closed.
func forker(reqs <-chan forkReq, stop <-chan struct{}) {
	runtime.LockOSThread()
	// No UnlockOSThread: the runtime ends the thread with the goroutine.
	for {
		select {
		case r := <-reqs:
			r.reply <- r.cmd.Start()
		case <-stop:
			return
		}
	}
}

// fork starts cmd on the forker thread.
func (s *Supervisor) fork(cmd *exec.Cmd) error {
	r := forkReq{cmd: cmd, reply: make(chan error, 1)}
	s.forkc <- r
	return <-r.reply
}

// lines keeps the last few lines of a stream.
type lines struct {
	mu  sync.Mutex
	buf []string
	max int
}

func (l *lines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) == l.max {
		l.buf = append(l.buf[:0], l.buf[1:]...)
	}
	l.buf = append(l.buf, s)
}

// lines returns a copy of the lines kept, oldest first.
func (l *lines) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.buf)
}

// expand returns argv with placeholders replaced and the instance's
// address; sockDir is the temp directory to remove afterwards, if any.
func expand(o Options) (argv []string, addr, sockDir string, err error) {
	repl := ""
	switch o.placeholder() {
	case PortPlaceholder:
		port, err := freePort()
		if err != nil {
			return nil, "", "", err
		}
		repl, addr = strconv.Itoa(port), net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	case SocketPlaceholder:
		sockDir, err = os.MkdirTemp("", "bulwark-app-") // 0700
		if err != nil {
			return nil, "", "", fmt.Errorf("creating socket directory: %w", err)
		}
		repl = filepath.Join(sockDir, "app.sock")
		addr = "unix:" + repl
	default:
		addr = o.Upstream
	}
	argv = make([]string, len(o.Command))
	for i, a := range o.Command {
		a = strings.ReplaceAll(a, PortPlaceholder, repl)
		argv[i] = strings.ReplaceAll(a, SocketPlaceholder, repl)
	}
	return argv, addr, sockDir, nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("picking a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start starts one app instance; it does not wait for readiness.
func (s *Supervisor) start(o Options) (*instance, error) {
	argv, addr, sockDir, err := expand(o)
	if err != nil {
		return nil, err
	}
	if o.placeholder() == "" {
		// A leftover app on the address would answer the health probe and
		// be taken for this one.
		if err := checkFree(o.env.procRoot, o.Dir, addr); err != nil {
			return nil, err
		}
	}
	inst := &instance{addr: addr, sockDir: sockDir, stderr: &lines{max: stderrKeep}, done: make(chan struct{})}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = o.Dir
	// ParentEnv last: exec keeps the last of duplicate names, and a
	// Bulwark started from another's app must mark its app as its own.
	cmd.Env = append(buildEnv(o.env.environ(), o.Env, o.DefaultEnv, o.Unset), ParentEnv+"="+parentValue(Scope(o.Command, o.Dir)))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("creating stderr pipe: %w", err)
	}
	// *os.File writers go to the child as they are: no copying goroutine
	// in exec, and Wait does not wait for grandchildren holding the pipe.
	cmd.Stdout, cmd.Stderr = outW, errW
	err = s.fork(cmd)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if sockDir != "" {
			os.RemoveAll(sockDir)
		}
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	inst.cmd, inst.pid, inst.started = cmd, cmd.Process.Pid, time.Now()
	s.setOOMScore(o, inst.pid)
	inst.cgroup = s.joinCgroup(o, inst.pid)

	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); s.pump(outR, "stdout", inst.pid, nil) }()
	go func() { defer pumps.Done(); s.pump(errR, "stderr", inst.pid, inst.stderr) }()
	// The reaper goroutine exits once the process is reaped; it gives the
	// pumps a moment to log the last lines before announcing the exit.
	go func() {
		err := cmd.Wait()
		pumped := make(chan struct{})
		go func() { pumps.Wait(); close(pumped) }()
		t := time.NewTimer(time.Second)
		select {
		case <-pumped:
		case <-t.C:
		}
		t.Stop()
		inst.exit = err
		close(inst.done)
	}()
	return inst, nil
}

// pump logs r line by line until EOF (all writers, including
// grandchildren, gone), keeping stderr lines in keep.
func (s *Supervisor) pump(r *os.File, stream string, pid int, keep *lines) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			text := strings.TrimRight(string(line), "\r\n")
			lvl := slog.LevelInfo
			if keep != nil {
				keep.add(text)
				lvl = stderrLevel(text)
			}
			s.log.Log(context.Background(), lvl, text, "app", true, "stream", stream, "pid", pid)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return // io.EOF, or the read end closed
		}
	}
}

// stderrLevel is the level an app's stderr line is logged at: Python
// writes its INFO lines to stderr too, so only lines that say they are an
// error (uvicorn's "ERROR:", gunicorn's "[ERROR]", logging's "CRITICAL",
// a traceback, an exception "SomeError: …") are raised to WARN. A failed
// start is logged at ERROR with its last stderr lines in any case.
func stderrLevel(line string) slog.Level {
	t := strings.TrimLeft(line, " \t[")
	for _, p := range []string{"ERROR", "CRITICAL", "FATAL", "Traceback", "error:", "Error:", "fatal:"} {
		if strings.HasPrefix(t, p) {
			return slog.LevelWarn
		}
	}
	if strings.Contains(t, "[ERROR]") || strings.Contains(t, "[CRITICAL]") { // gunicorn
		return slog.LevelWarn
	}
	if name, _, ok := strings.Cut(t, ": "); ok && !strings.ContainsAny(name, " \t") &&
		(strings.HasSuffix(name, "Error") || strings.HasSuffix(name, "Exception")) {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// setOOMScore makes the kernel's OOM killer prefer the app to Bulwark:
// oom_score_adj = min(1000, ours+500). Best effort.
func (s *Supervisor) setOOMScore(o Options, pid int) {
	b, err := os.ReadFile(filepath.Join(o.env.procRoot, "self", "oom_score_adj"))
	if err != nil {
		return
	}
	ours, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return
	}
	adj := min(1000, ours+500)
	p := filepath.Join(o.env.procRoot, strconv.Itoa(pid), "oom_score_adj")
	if err := os.WriteFile(p, []byte(strconv.Itoa(adj)), 0); err != nil {
		s.log.Debug("cannot set the app's oom_score_adj", "pid", pid, "err", err)
	}
}

// describeExit says how a process ended: "exit code N" or "killed by
// signal NAME".
func describeExit(err error) string {
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return err.Error()
	}
	if ee == nil {
		return "exit code 0"
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal " + unixSignalName(ws.Signal())
	}
	return "exit code " + strconv.Itoa(ee.ExitCode())
}

func unixSignalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGABRT:
		return "SIGABRT"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGBUS:
		return "SIGBUS"
	}
	return sig.String()
}

// stop ends inst: SIGTERM to its process group, SIGKILL after timeout,
// then SIGKILL to whatever is left of the group. It returns once the
// process is reaped (bounded: a SIGKILLed process cannot linger).
func (s *Supervisor) stop(inst *instance, timeout time.Duration) {
	select {
	case <-inst.done:
	default:
		_ = syscall.Kill(-inst.pid, syscall.SIGTERM)
		t := time.NewTimer(timeout)
		select {
		case <-inst.done:
		case <-t.C:
			s.log.Warn("app did not stop within stop_timeout after SIGTERM: sending SIGKILL",
				"pid", inst.pid, "stop_timeout", timeout)
			_ = syscall.Kill(-inst.pid, syscall.SIGKILL)
			<-inst.done
		}
		t.Stop()
	}
	s.cleanup(inst)
}

// cleanup kills what is left of the process group of an exited instance
// and removes its socket directory and cgroup.
func (s *Supervisor) cleanup(inst *instance) {
	_ = syscall.Kill(-inst.pid, syscall.SIGKILL) // workers orphaned by a dead master
	if inst.sockDir != "" {
		os.RemoveAll(inst.sockDir)
	}
	if inst.cgroup != "" {
		inst.ooms = cgroupOOMKills(inst.cgroup)
		removeCgroup(inst.cgroup)
	}
}

// probeClient returns an HTTP client for readiness probes of addr.
func probeClient(addr string) (*http.Client, string) {
	tr := &http.Transport{DisableKeepAlives: true}
	host := addr
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		host = "app"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Second}, "http://" + host
}

// awaitReady probes the health URL of inst until it answers below 500, the
// process exits, timeout passes or ctx ends. When urgent is not nil it is
// called (once) on Urgent meanwhile.
func (s *Supervisor) awaitReady(ctx context.Context, o Options, inst *instance, urgent func()) error {
	var urgentc <-chan struct{}
	if urgent != nil {
		urgentc = s.urgentc
	}
	client, base := probeClient(inst.addr)
	defer client.CloseIdleConnections()
	deadline := time.NewTimer(o.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	foreign := "" // who answers instead of the app, once seen
	for {
		if ready(ctx, client, base+o.Health) {
			// The answer counts only when the app's own tree listens there.
			// An address Bulwark picked ({port}, {socket}) was free when
			// picked: only a fixed one can be a leftover's. A socket in
			// Bulwark's 0700 directory is the app's; a port picked could be
			// taken by another user between the pick and the app's bind.
			var other bool
			var holders []holder
			switch o.placeholder() {
			case SocketPlaceholder:
				return nil
			case PortPlaceholder:
				other, holders = strangerOnPort(o.env.procRoot, inst.addr)
			default:
				other, holders = foreignListener(o.env.procRoot, o.Dir, inst.addr, inst.pid)
			}
			if !other {
				return nil
			}
			if foreign == "" {
				foreign = describeHolders(holders)
				s.log.Warn("another process answers on the app's address: waiting for the app's own listener",
					"address", inst.addr, "held_by", foreign, "pid", inst.pid)
			}
		}
		select {
		case <-inst.done:
			if foreign != "" {
				return fmt.Errorf("app exited before it was ready: %s; its address %s is held by %s",
					describeExit(inst.exit), inst.addr, foreign)
			}
			return fmt.Errorf("app exited before it was ready: %s", describeExit(inst.exit))
		case <-deadline.C:
			if foreign != "" {
				return fmt.Errorf("app not ready within start_timeout (%v): its address %s is held by %s", o.StartTimeout, inst.addr, foreign)
			}
			return fmt.Errorf("app not ready within start_timeout (%v): GET %s never answered below 500", o.StartTimeout, o.Health)
		case <-ctx.Done():
			return ctx.Err()
		case <-urgentc:
			urgentc = nil
			urgent()
		case <-tick.C:
		}
	}
}

// ready reports whether one GET of url answers below 500.
func ready(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "bulwark-health")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode < 500
}
