package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// memCgroup is a memory cgroup the test created, v1 or v2.
type memCgroup struct {
	dir string
	v2  bool
}

// newMemCgroup creates a memory cgroup limited to limit bytes below this
// process's own one, or says why it cannot.
func newMemCgroup(t *testing.T, limit int64) (*memCgroup, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("bulwark-e2e-box-%d", os.Getpid())
	var tried []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		var cg *memCgroup
		var limitFile string
		switch {
		case f[0] == "0" && f[1] == "":
			cg, limitFile = &memCgroup{dir: filepath.Join("/sys/fs/cgroup", f[2], name), v2: true}, "memory.max"
		case hasMemory(f[1]):
			cg, limitFile = &memCgroup{dir: filepath.Join("/sys/fs/cgroup/memory", f[2], name)}, "memory.limit_in_bytes"
		default:
			continue
		}
		if err := os.Mkdir(cg.dir, 0o755); err != nil {
			tried = append(tried, err.Error())
			continue
		}
		if err := os.WriteFile(filepath.Join(cg.dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
			os.Remove(cg.dir)
			tried = append(tried, err.Error())
			continue
		}
		t.Cleanup(cg.remove)
		return cg, nil
	}
	return nil, fmt.Errorf("no writable memory cgroup below this process's own (root on cgroup v1, or a delegated v2 subtree, is needed): %v", tried)
}

func hasMemory(controllers string) bool {
	for _, c := range strings.Split(controllers, ",") {
		if c == "memory" {
			return true
		}
	}
	return false
}

// remove removes the cgroup once its processes are gone (bounded).
func (c *memCgroup) remove() {
	for range 100 {
		if err := os.Remove(c.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// usage is the cgroup's memory in use now, in bytes.
func (c *memCgroup) usage() int64 {
	file := "memory.usage_in_bytes"
	if c.v2 {
		file = "memory.current"
	}
	b, _ := os.ReadFile(filepath.Join(c.dir, file))
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// oomKills is the number of processes the kernel's OOM killer ended in the
// cgroup (v1: oom_kill in memory.oom_control, on kernels that have it).
func (c *memCgroup) oomKills() int {
	file, key := "memory.oom_control", "oom_kill "
	if c.v2 {
		file = "memory.events"
	}
	f, err := os.Open(filepath.Join(c.dir, file))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}

// TestBox512MiB is the guide situation: a box of 512 MiB (a memory
// cgroup) holds Bulwark and the app (profile low, max_memory 300MiB,
// {port}); outside it 1000 idle TLS clients and 4 clients in a loop; after
// 5 s the app leaks 25 MB/s. Nothing is OOM-killed and no request fails;
// the box's peak is reported. It skips, saying why, where the test cannot
// create a memory cgroup.
func TestBox512MiB(t *testing.T) {
	requireUvicorn(t)
	if testing.Short() {
		t.Skip("skipped in -short: 30 s of load")
	}
	const mib = 1 << 20
	cg, err := newMemCgroup(t, 512*mib)
	if err != nil {
		t.Skipf("skipped: %v", err)
	}
	if cg.oomKills() < 0 {
		t.Skipf("skipped: this kernel does not count OOM kills in %s", cg.dir)
	}
	// The box holds the binary users run, not the -race one (which needs
	// several times the memory).
	bin := filepath.Join(t.TempDir(), "bulwark")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/bulwark").CombinedOutput(); err != nil {
		t.Fatalf("building bulwark: %v\n%s", err, out)
	}
	wd, _ := os.Getwd()
	cfg := "profile = \"low\"\n" + strings.Replace(baseConfig, "[admin]", "keepalive_timeout = \"300s\"\n[admin]", 1) + fmt.Sprintf(`
[app]
command = [%q, "-m", "uvicorn", "leak:app", "--app-dir", %q, "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"]
max_memory = "300MiB"
start_timeout = "30s"
`, python, filepath.Join(wd, "testdata"))
	in := startBulwarkIn(t, cfg, bin, cg)
	waitFor(t, 30*time.Second, "the app to be ready", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.State == "ready"
	})

	idle := openIdleTLS(t, in, 1000)
	t.Logf("%d idle TLS clients connected; box at %.0f MiB", idle, float64(cg.usage())/mib)
	l := startLoad(t, in, 4, "/", 90*time.Second)
	var peak int64
	sampleUntil := func(d time.Duration, done func() bool) {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for end := time.Now().Add(d); time.Now().Before(end); {
			peak = max(peak, cg.usage())
			if done != nil && done() {
				return
			}
			<-tick.C
		}
	}
	sampleUntil(5*time.Second, nil)
	res, err := in.client(false).Post(in.url("/leak?mbps=25"), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	var leak struct{ PID int }
	if body := readAll(t, res); json.Unmarshal([]byte(body), &leak) != nil || leak.PID == 0 {
		t.Fatalf("POST /leak = %d %s", res.StatusCode, body)
	}
	replaced := func() bool { // for whatever reason: the OOM killer's too
		if _, alive := rssOf(leak.PID); alive {
			return false
		}
		s := in.status(t)
		return s.App != nil && s.App.State == "ready"
	}
	sampleUntil(60*time.Second, replaced)
	if !replaced() {
		t.Errorf("the leaking app was not replaced within 60 s")
	}
	sampleUntil(3*time.Second, nil) // on the new app too
	ok, bad, errs := l.finish()
	kills := cg.oomKills()
	s := in.status(t)
	t.Logf("box peak %.0f of 512 MiB; OOM kills %d; requests %d ok, %d failed; app %+v", float64(peak)/mib, kills, ok, bad, s.App)
	if kills != 0 {
		t.Errorf("the kernel OOM-killed %d processes in the box", kills)
	}
	if s.App == nil || s.App.Restarts["memory"] < 1 {
		t.Errorf("the leaking app was not restarted for memory")
	}
	if bad != 0 {
		t.Errorf("%d requests failed (first: %v)", bad, errs)
	}
	if in.exited() {
		t.Errorf("bulwark exited: %v", in.exit)
	}
}

// startBulwarkIn is startBulwark for a binary run inside cg: a shell moves
// itself into the cgroup, then execs bulwark, so that the app it starts is
// in the box too.
func startBulwarkIn(t *testing.T, config, bin string, cg *memCgroup) *instance {
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
	// The 1000 idle clients stand for a thousand visitors but all come
	// from 127.0.0.1: the per-client limits would refuse them as one.
	env := []string{"XDG_STATE_HOME=" + filepath.Join(dir, "state"),
		"BULWARK_LISTEN_MAX_CONNS_PER_IP=-1", "BULWARK_LIMITS_RATE_PER_IP=off"}
	script := fmt.Sprintf("echo $$ > %q && exec %q run --config %q", filepath.Join(cg.dir, "cgroup.procs"), bin, cfgPath)
	in.proc = startProc(t, dir, env, "/bin/sh", "-c", script)
	waitListening(t, in.proc, in.https)
	in.roots = certPool(t, filepath.Join(dir, "state", "bulwark"), dir)
	return in
}

// openIdleTLS opens n TLS connections to the instance, sends one request on
// each and leaves them open and idle until the test ends; it returns how
// many it opened.
func openIdleTLS(t *testing.T, in *instance, n int) int {
	t.Helper()
	tc := &tls.Config{RootCAs: in.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}}
	opened := 0
	for i := 0; i < n; i++ {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", in.https, tc)
		if err != nil {
			t.Fatalf("idle client %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
			t.Fatalf("idle client %d: %v", i, err)
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("idle client %d: %v", i, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		c.SetDeadline(time.Time{})
		opened++
	}
	return opened
}
