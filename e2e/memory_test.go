package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rssOf reads a process's VmRSS in bytes; ok is false once it is gone.
func rssOf(pid int) (int64, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "VmRSS:"); found {
			f := strings.Fields(v)
			if len(f) == 0 {
				return 0, false // a zombie
			}
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, true
		}
	}
	return 0, false
}

// TestFastLeakStaysUnderCeiling is issue 16 §2's acceptance: with
// max_memory = 150MiB, an app that leaks 50 MB/s peaks at no more than
// 225 MiB (1.5 × its budget; sampled every 100 ms from outside, that
// process alone), and a client sending requests throughout sees no failed
// request.
func TestFastLeakStaysUnderCeiling(t *testing.T) {
	requireUvicorn(t)
	wd, _ := os.Getwd()
	cfg := baseConfig + fmt.Sprintf(`
[app]
command = [%q, "-m", "uvicorn", "leak:app", "--app-dir", %q, "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"]
max_memory = "150MiB"
start_timeout = "30s"
`, python, filepath.Join(wd, "testdata"))
	in := startBulwark(t, cfg, nil)
	waitFor(t, 30*time.Second, "the app to be ready", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.State == "ready"
	})
	l := startLoad(t, in, 4, "/", 60*time.Second)

	res, err := in.client(false).Post(in.url("/leak?mbps=50"), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	var leak struct{ PID int }
	if body := readAll(t, res); res.StatusCode != 200 || json.Unmarshal([]byte(body), &leak) != nil || leak.PID == 0 {
		t.Fatalf("POST /leak = %d %s", res.StatusCode, body)
	}
	start := time.Now()
	var peak int64
	var samples int
	tick := time.NewTicker(100 * time.Millisecond)
	for range 600 { // 60 s at most; the leaking process is gone long before
		rss, alive := rssOf(leak.PID)
		if !alive {
			break
		}
		peak = max(peak, rss)
		samples++
		<-tick.C
	}
	tick.Stop()
	gone := time.Since(start)
	waitFor(t, 30*time.Second, "the new app to be ready", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.State == "ready" && s.App.PID != leak.PID && s.App.Restarts["memory"] >= 1
	})
	// Some requests on the new app too.
	before, _, _ := l.sofar()
	waitFor(t, 20*time.Second, "requests served by the new app", func() bool {
		ok, _, _ := l.sofar()
		return ok >= before+20
	})
	ok, bad, errs := l.finish()
	const mib = 1 << 20
	t.Logf("leaking pid %d: peak RSS %.1f MiB over %d samples; gone %.1fs after the leak began; requests %d ok, %d failed",
		leak.PID, float64(peak)/mib, samples, gone.Seconds(), ok, bad)
	if peak > 225*mib {
		t.Errorf("the leaking app peaked at %.1f MiB, want at most 225 MiB (1.5 × max_memory)", float64(peak)/mib)
	}
	if peak < 150*mib {
		t.Errorf("the leaking app peaked at %.1f MiB: it never reached max_memory, the test did not test", float64(peak)/mib)
	}
	if bad != 0 {
		t.Errorf("%d requests failed across the memory restart (first: %v)", bad, errs)
	}
	noRace(t, in)
}

// sofar returns the answers so far without stopping the load.
func (l *load) sofar() (ok, bad int, errs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for code, n := range l.counts {
		if code == 200 {
			ok += n
		} else {
			bad += n
		}
	}
	return ok, bad, append([]string(nil), l.errs...)
}
