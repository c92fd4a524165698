// Package e2e runs the real bulwark binary against real clients and a real
// FastAPI app under Debian's uvicorn, with real signals. Tests that need
// uvicorn skip when it is missing, unless CI is set, where they fail.
package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// python is Debian's interpreter, where python3-uvicorn and python3-fastapi
// install; the one first on PATH may be another.
const python = "/usr/bin/python3"

var bulwarkBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bulwark-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bulwarkBin = filepath.Join(dir, "bulwark")
	build := exec.Command("go", "build", "-race", "-o", bulwarkBin, "../cmd/bulwark")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building bulwark:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireUvicorn skips the test when Debian's uvicorn or FastAPI is missing,
// except in CI, where their absence is a failure.
func requireUvicorn(t testing.TB) {
	t.Helper()
	if err := exec.Command(python, "-c", "import uvicorn, fastapi").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("uvicorn/fastapi missing under %s in CI: %v (scripts/test.sh installs python3-uvicorn python3-fastapi)", python, err)
		}
		t.Skipf("skipped: %s cannot import uvicorn and fastapi (apt-get install python3-uvicorn python3-fastapi); CI is unset", python)
	}
}

// freePort returns a loopback port that was free a moment ago and that it
// has not returned before.
func freePort(t testing.TB) int {
	t.Helper()
	givenPorts.Lock()
	defer givenPorts.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !givenPorts.m[port] {
			givenPorts.m[port] = true
			return port
		}
	}
	t.Fatal("no port this test binary has not handed out already in 100 tries")
	return 0
}

// givenPorts are the ports freePort has returned. The kernel may hand a
// closed port out again at once, and one test asks for several (https,
// http, admin): a port given twice made bulwark refuse its own config in CI.
var givenPorts = struct {
	sync.Mutex
	m map[int]bool
}{m: map[int]bool{}}

// output is a process's stdout and stderr, captured in a file: a child
// that outlives the process (a binary upgrade's new process) inherits the
// file, and exec.Cmd.Wait does not wait for a pipe it still holds.
type output struct{ path string }

func (o *output) String() string {
	b, _ := os.ReadFile(o.path)
	return string(b)
}

// proc is a process a test started; stop ends it by PID.
type proc struct {
	cmd    *exec.Cmd
	out    *output
	done   chan struct{}
	exit   error
	stopMu sync.Mutex
}

func startProc(t testing.TB, dir string, env []string, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	f, err := os.CreateTemp(t.TempDir(), "output-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child has its own copy
	out := &output{path: f.Name()}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { p.exit = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM, 15*time.Second)
		if t.Failed() {
			t.Logf("output of %s (pid %d):\n%s", name, cmd.Process.Pid, tail(out.String(), 60))
		}
	})
	return p
}

// stop sends sig to the process and, if it has not exited within grace,
// SIGKILLs its whole process group. It returns the exit error.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	select {
	case <-p.done:
		return p.exit
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return p.exit
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// instance is a running bulwark with its addresses and a client that trusts
// its certificate.
type instance struct {
	*proc
	https, http, admin string
	dir                string
	roots              *x509.CertPool
}

// startBulwark writes config (with %HTTPS%, %ADMIN%, %HTTP% and %DIR%
// replaced by fresh loopback addresses and the test's directory) and runs
// `bulwark run --config` with extra args, waiting until it serves.
func startBulwark(t testing.TB, config string, env []string, args ...string) *instance {
	t.Helper()
	return startBulwarkBin(t, bulwarkBin, config, env, args...)
}

// startBulwarkBin is startBulwark with another build of bulwark (one
// without the race detector, to measure memory).
func startBulwarkBin(t testing.TB, bin, config string, env []string, args ...string) *instance {
	t.Helper()
	dir := t.TempDir()
	in := &instance{
		https: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		http:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		admin: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		dir:   dir,
	}
	config = strings.NewReplacer("%HTTPS%", in.https, "%HTTP%", in.http, "%ADMIN%", in.admin, "%DIR%", dir).Replace(config)
	cfgPath := filepath.Join(dir, "bulwark.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// The tests' load comes from 127.0.0.1 at hundreds of requests a
	// second: rate_per_ip is off unless a test's env turns it on (a later
	// value wins).
	env = append([]string{"XDG_STATE_HOME=" + filepath.Join(dir, "state"), "BULWARK_LIMITS_RATE_PER_IP=off"}, env...)
	in.proc = startProc(t, dir, env, bin, append([]string{"run", "--config", cfgPath}, args...)...)
	waitListening(t, in.proc, in.https)
	in.roots = certPool(t, filepath.Join(dir, "state", "bulwark"), dir)
	return in
}

// cli returns a bulwark CLI command for this instance, with the state
// directory the instance uses, so that the CLI finds the admin token
// bulwark generated there.
func (in *instance) cli(args ...string) *exec.Cmd {
	cmd := exec.Command(bulwarkBin, args...)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+filepath.Join(in.dir, "state"))
	return cmd
}

// certPool trusts every *cert*.pem in dirs: the dev certificate bulwark
// generated, or the test's own.
func certPool(t testing.TB, dirs ...string) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, d := range dirs {
		files, _ := filepath.Glob(filepath.Join(d, "*cert*.pem"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				pool.AppendCertsFromPEM(b)
			}
		}
	}
	return pool
}

// waitListening waits up to 20 s for addr to accept a connection.
func waitListening(t testing.TB, p *proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if p.exited() {
			t.Fatalf("bulwark exited before listening on %s:\n%s", addr, tail(p.out.String(), 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listening on %s after 20s:\n%s", addr, tail(p.out.String(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client returns an HTTPS client for the instance: HTTP/2 when h2 is true,
// else HTTP/1.1 only. It verifies the certificate against the instance's
// (self-signed) one.
func (in *instance) client(h2 bool) *http.Client {
	tc := &tls.Config{RootCAs: in.roots, ServerName: "localhost"}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: h2, MaxIdleConnsPerHost: 16}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func (in *instance) url(path string) string { return "https://" + in.https + path }

// startUvicorn runs testdata/app.py under uvicorn on a fresh port and waits
// until it answers.
func startUvicorn(t testing.TB) (addr string, p *proc) {
	t.Helper()
	requireUvicorn(t)
	port := freePort(t)
	wd, _ := os.Getwd()
	p = startProc(t, filepath.Join(wd, "testdata"), nil, python, "-m", "uvicorn", "app:app",
		"--host", "127.0.0.1", "--port", fmt.Sprint(port), "--no-access-log")
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/")
		if err == nil {
			res.Body.Close()
			return addr, p
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("uvicorn did not come up on %s:\n%s", addr, tail(p.out.String(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// appCommand is the uvicorn command line for bulwark to supervise.
func appCommand(port int) string {
	wd, _ := os.Getwd()
	return fmt.Sprintf(`command = [%q, "-m", "uvicorn", "app:app", "--app-dir", %q, "--host", "127.0.0.1", "--port", "%d", "--no-access-log"]`,
		python, filepath.Join(wd, "testdata"), port)
}

func readAll(t testing.TB, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

// waitFor polls cond every 50 ms for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lineReader reads an SSE or chunked stream line by line.
func lineReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
