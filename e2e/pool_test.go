package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// poolConfig runs testdata/pool.py as a pool of workers on ports of their
// own, with extra [app] lines.
func poolConfig(extra string) string {
	wd, _ := os.Getwd()
	return baseConfig + fmt.Sprintf(`
[app]
command = [%q, "-m", "uvicorn", "pool:app", "--app-dir", %q, "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"]
start_timeout = "30s"
`, python, filepath.Join(wd, "testdata")) + extra
}

// poolDoc is the part of /status the pool tests read.
type poolDoc struct {
	App *struct {
		State    string         `json:"state"`
		Restarts map[string]int `json:"restarts"`
		Workers  []struct {
			Index       int    `json:"index"`
			PID         int    `json:"pid"`
			State       string `json:"state"`
			Served      int64  `json:"requests_served"`
			LastRecycle string `json:"last_recycle"`
			RSS         int64  `json:"rss_bytes"`
		} `json:"workers"`
	} `json:"app"`
}

func (in *instance) pool(t testing.TB) poolDoc {
	var s poolDoc
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get("http://" + in.admin + "/status")
	if err != nil {
		return s
	}
	json.Unmarshal([]byte(readAll(t, res)), &s)
	return s
}

// pids returns the workers' PIDs and how many are ready.
func (d poolDoc) pids() (pids []int, ready int) {
	if d.App == nil {
		return nil, 0
	}
	for _, w := range d.App.Workers {
		pids = append(pids, w.PID)
		if w.State == "ready" {
			ready++
		}
	}
	return pids, ready
}

// startPoolOf starts bulwark with a pool of n workers and waits until all
// are ready; it returns their PIDs.
func startPoolOf(t *testing.T, n int, extra string) (*instance, []int) {
	t.Helper()
	requireUvicorn(t)
	in := startBulwark(t, poolConfig(fmt.Sprintf("workers = %d\n", n)+extra), nil)
	var pids []int
	waitFor(t, 60*time.Second, fmt.Sprintf("%d workers ready", n), func() bool {
		var ready int
		pids, ready = in.pool(t).pids()
		return ready == n
	})
	return in, pids
}

// readySampler samples /status every 100 ms and keeps the fewest workers
// ready it saw, until stop.
type readySampler struct {
	mu      sync.Mutex
	min     int
	samples int
	stop    chan struct{}
	done    chan struct{}
}

func sampleReady(t *testing.T, in *instance, n int) *readySampler {
	s := &readySampler{min: n, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for range 3000 { // 5 minutes at most
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			d := in.pool(t)
			if d.App == nil {
				continue // the admin server did not answer this time
			}
			_, ready := d.pids()
			s.mu.Lock()
			s.min = min(s.min, ready)
			s.samples++
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *readySampler) finish() (minReady, samples int) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.min, s.samples
}

// TestPoolLeakingWorker is issue 17's first test: three workers under
// continuous requests, one leaks past max_memory; only that worker is
// recycled (its PID changes, the others' do not), no request fails and at
// least two workers are ready at every sample of /status.
func TestPoolLeakingWorker(t *testing.T) {
	in, first := startPoolOf(t, 3, "max_memory = \"150MiB\"\n")
	l := startLoad(t, in, 4, "/", 120*time.Second)
	s := sampleReady(t, in, 3)

	res, err := in.client(false).Post(in.url("/leak?mbps=50"), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	var leak struct{ PID int }
	if body := readAll(t, res); res.StatusCode != 200 || json.Unmarshal([]byte(body), &leak) != nil || leak.PID == 0 {
		t.Fatalf("POST /leak = %d %s", res.StatusCode, body)
	}
	var now []int
	waitFor(t, 60*time.Second, "the leaking worker replaced", func() bool {
		var ready int
		now, ready = in.pool(t).pids()
		return ready == 3 && !slices.Contains(now, leak.PID)
	})
	before, _, _ := l.sofar()
	waitFor(t, 20*time.Second, "requests after the recycle", func() bool {
		ok, _, _ := l.sofar()
		return ok >= before+20
	})
	minReady, samples := s.finish()
	ok, bad, errs := l.finish()
	t.Logf("leaking pid %d; PIDs %v -> %v; requests %d ok, %d failed; fewest ready %d over %d samples", leak.PID, first, now, ok, bad, minReady, samples)
	changed := 0
	for i := range first {
		if now[i] != first[i] {
			changed++
			if first[i] != leak.PID {
				t.Errorf("worker %d changed PID %d -> %d, but pid %d leaked", i, first[i], now[i], leak.PID)
			}
		}
	}
	if changed != 1 {
		t.Errorf("%d workers changed PID, want only the leaking one", changed)
	}
	if bad != 0 {
		t.Errorf("%d requests failed across the recycle (first: %v)", bad, errs)
	}
	if minReady < 2 {
		t.Errorf("at one sample only %d workers were ready, want at least 2", minReady)
	}
	if d := in.pool(t); d.App == nil || d.App.Restarts["memory"] != 1 {
		t.Errorf("restarts = %v, want one for memory", d.App)
	}
	noRace(t, in)
}

// TestPoolKillWorkerUnderLoad: kill -9 of one worker while clients send
// GETs; none fails (retried on another worker) and the pool is back to 3.
func TestPoolKillWorkerUnderLoad(t *testing.T) {
	in, first := startPoolOf(t, 3, "")
	l := startLoad(t, in, 4, "/", 60*time.Second)
	waitFor(t, 10*time.Second, "some load", func() bool { ok, _, _ := l.sofar(); return ok > 50 })
	if err := syscall.Kill(first[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var now []int
	waitFor(t, 60*time.Second, "the pool back to 3", func() bool {
		var ready int
		now, ready = in.pool(t).pids()
		return ready == 3 && now[1] != first[1]
	})
	before, _, _ := l.sofar()
	waitFor(t, 20*time.Second, "requests after the replacement", func() bool { ok, _, _ := l.sofar(); return ok >= before+20 })
	ok, bad, errs := l.finish()
	t.Logf("killed pid %d; PIDs %v -> %v; requests %d ok, %d failed", first[1], first, now, ok, bad)
	if bad != 0 {
		t.Errorf("%d GETs failed after kill -9 of one worker (first: %v)", bad, errs)
	}
	if now[0] != first[0] || now[2] != first[2] {
		t.Errorf("PIDs %v -> %v: only worker 1 should change", first, now)
	}
	noRace(t, in)
}

// TestPoolRestartAppUnderLoad: restart-app rolls the pool under load: no
// failed request, every PID changes.
func TestPoolRestartAppUnderLoad(t *testing.T) {
	in, first := startPoolOf(t, 3, "")
	l := startLoad(t, in, 4, "/", 120*time.Second)
	s := sampleReady(t, in, 3)
	waitFor(t, 10*time.Second, "some load", func() bool { ok, _, _ := l.sofar(); return ok > 50 })
	if out, err := in.cli("restart-app", "--admin", in.admin).CombinedOutput(); err != nil {
		t.Fatalf("bulwark restart-app: %v\n%s", err, out)
	}
	now, ready := in.pool(t).pids()
	minReady, _ := s.finish()
	ok, bad, errs := l.finish()
	t.Logf("PIDs %v -> %v; requests %d ok, %d failed; fewest ready %d", first, now, ok, bad, minReady)
	if ready != 3 {
		t.Errorf("%d workers ready after restart-app, want 3", ready)
	}
	for i := range first {
		if now[i] == first[i] {
			t.Errorf("worker %d kept PID %d across restart-app", i, first[i])
		}
	}
	if bad != 0 {
		t.Errorf("%d requests failed during restart-app (first: %v)", bad, errs)
	}
	if minReady < 2 {
		t.Errorf("at one sample only %d workers were ready during the roll, want at least 2", minReady)
	}
	noRace(t, in)
}

// TestPoolMaxRequests: max_requests = 50 with jitter; workers recycle at
// staggered counts, never two at once (at least 2 of 3 ready at every
// sample), no request fails.
func TestPoolMaxRequests(t *testing.T) {
	in, _ := startPoolOf(t, 3, "max_requests = 50\nmax_requests_jitter = 25\n")
	s := sampleReady(t, in, 3)
	l := startLoad(t, in, 3, "/", 120*time.Second)
	deadline := time.Now().Add(100 * time.Second)
	for len(recycleLines(in.out.String())) < 6 {
		if time.Now().After(deadline) {
			res, _ := http.Get("http://" + in.admin + "/status")
			if res != nil {
				t.Logf("status: %s", readAll(t, res))
			}
			t.Fatal("timed out after 100s waiting for six max_requests recycles")
		}
		time.Sleep(50 * time.Millisecond)
	}
	minReady, samples := s.finish()
	ok, bad, errs := l.finish()
	lines := recycleLines(in.out.String())
	t.Logf("requests %d ok, %d failed; fewest ready %d over %d samples; recycles at %v", ok, bad, minReady, samples, lines)
	if bad != 0 {
		t.Errorf("%d requests failed across max_requests recycles (first: %v)", bad, errs)
	}
	if minReady < 2 {
		t.Errorf("at one sample only %d workers were ready: two recycled at once", minReady)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(lines)))) < 2 {
		t.Errorf("every recycle came at the same count %v: no jitter", lines)
	}
	checkWorkerSeries(t, in, 3, 6)
	noRace(t, in)
}

// checkWorkerSeries scrapes /metrics: one series of each per-worker
// metric for each of the n workers, labelled by index (so the recycles
// added none), a memory sample for each, once at least recycles are
// counted under max_requests.
func checkWorkerSeries(t *testing.T, in *instance, n, recycles int) {
	t.Helper()
	var m map[string]float64
	const done = `bulwark_app_recycles_total{reason="max_requests"}`
	// The count is taken once a replacement serves; the log line, when
	// the recycle begins.
	waitFor(t, 30*time.Second, fmt.Sprintf("%d recycles counted", recycles), func() bool {
		m = scrape(t, in.admin)
		return m[done] >= float64(recycles)
	})
	for _, base := range []string{"bulwark_app_worker_rss_bytes", "bulwark_app_worker_pss_bytes",
		"bulwark_app_worker_requests_total", "bulwark_app_worker_served", "bulwark_app_worker_in_flight"} {
		count := 0
		for name := range m {
			if strings.HasPrefix(name, base+"{") {
				count++
			}
		}
		if count != n {
			t.Errorf("%d series of %s, want %d: one per worker index, none per process", count, base, n)
		}
	}
	for i := range n {
		w := fmt.Sprintf(`{worker="%d"}`, i)
		if m["bulwark_app_worker_rss_bytes"+w] <= 0 || m["bulwark_app_worker_requests_total"+w] <= 0 {
			t.Errorf("worker %d: rss %v, requests %v; want both above 0", i,
				m["bulwark_app_worker_rss_bytes"+w], m["bulwark_app_worker_requests_total"+w])
		}
	}
}

var recycleRE = regexp.MustCompile(`recycling worker.*reason=max_requests served=(\d+)`)

// recycleLines returns the request counts bulwark logged its max_requests
// recycles at.
func recycleLines(out string) []string {
	var got []string
	for _, m := range recycleRE.FindAllStringSubmatch(out, -1) {
		got = append(got, m[1])
	}
	return got
}

// TestPoolRequestTimeout: request_timeout = 2s and a request that sleeps
// 60 s: it gets 504 within about 3 s, saying why; its worker is replaced;
// requests to the others are unaffected.
func TestPoolRequestTimeout(t *testing.T) {
	in, first := startPoolOf(t, 3, "request_timeout = \"2s\"\n")
	l := startLoad(t, in, 2, "/", 60*time.Second)
	t0 := time.Now()
	res, err := in.client(false).Get(in.url("/sleep?s=60"))
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res)
	took := time.Since(t0)
	if res.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "request_timeout") {
		t.Errorf("GET /sleep?s=60 = %d %q, want 504 naming request_timeout", res.StatusCode, body)
	}
	if took > 10*time.Second {
		t.Errorf("the 504 came after %v, want about 2 s", took)
	}
	var now []int
	waitFor(t, 60*time.Second, "the stuck worker replaced", func() bool {
		var ready int
		now, ready = in.pool(t).pids()
		changed := 0
		for i := range first {
			if now[i] != first[i] {
				changed++
			}
		}
		return ready == 3 && changed == 1
	})
	ok, bad, errs := l.finish()
	t.Logf("504 after %.2fs: %s; PIDs %v -> %v; other requests %d ok, %d failed", took.Seconds(), strings.TrimSpace(body), first, now, ok, bad)
	if bad != 0 {
		t.Errorf("%d other requests failed (first: %v)", bad, errs)
	}
	noRace(t, in)
}

// TestPoolFailedRollKeepsOldWorkers: restart-app of a pool whose app no
// longer imports fails with the app's error, the roll stops at the first
// worker, and every old worker keeps serving (no failed request).
func TestPoolFailedRollKeepsOldWorkers(t *testing.T) {
	requireUvicorn(t)
	appDir := appCopy(t)
	in := startBulwark(t, socketAppConfig(appDir)+"workers = 2\n", nil)
	var first []int
	waitFor(t, 60*time.Second, "2 workers ready", func() bool {
		var ready int
		first, ready = in.pool(t).pids()
		return ready == 2
	})
	l := startLoad(t, in, 4, "/", 120*time.Second)
	setBroken(t, appDir, true)
	out, err := in.cli("restart-app", "--admin", in.admin).CombinedOutput()
	t.Logf("restart-app of the broken pool: %v\n%s", err, out)
	if err == nil || !strings.Contains(string(out), "bulwark_e2e_no_such_module") || !strings.Contains(string(out), "roll stopped") {
		t.Errorf("restart-app of a broken pool: err %v, output %q; want non-zero naming the import error and the stopped roll", err, out)
	}
	now, ready := in.pool(t).pids()
	ok, bad, errs := l.finish()
	t.Logf("PIDs %v -> %v, %d ready; requests %d ok, %d failed", first, now, ready, ok, bad)
	if !slices.Equal(now, first) || ready != 2 {
		t.Errorf("after the failed roll PIDs %v (%d ready), want the old %v all ready", now, ready, first)
	}
	if bad != 0 {
		t.Errorf("%d requests failed during the failed roll (first: %v)", bad, errs)
	}
	noRace(t, in)
}

// TestPoolFailingShowsNoUpstream: a pool whose workers all fail to start
// shows no upstream in status (it showed upstream.address, 127.0.0.1:8002,
// which nothing served), and no uptime for workers without a process.
func TestPoolFailingShowsNoUpstream(t *testing.T) {
	requireUvicorn(t)
	appDir := appCopy(t)
	setBroken(t, appDir, true)
	in := startBulwark(t, socketAppConfig(appDir)+"workers = 2\n", nil)
	var doc struct {
		Upstreams []struct {
			Address string `json:"address"`
			Up      bool   `json:"up"`
		} `json:"upstreams"`
		App *struct {
			Workers []struct {
				State string `json:"state"`
			} `json:"workers"`
		} `json:"app"`
	}
	waitFor(t, 60*time.Second, "both workers failing", func() bool {
		res, err := http.Get("http://" + in.admin + "/status")
		if err != nil {
			return false
		}
		json.Unmarshal([]byte(readAll(t, res)), &doc)
		if doc.App == nil || len(doc.App.Workers) != 2 {
			return false
		}
		for _, w := range doc.App.Workers {
			if !strings.Contains(w.State, "failing") {
				return false
			}
		}
		return true
	})
	if len(doc.Upstreams) != 1 || doc.Upstreams[0].Address != "" || doc.Upstreams[0].Up {
		t.Errorf("upstreams of a pool that never started = %+v, want one entry, no address, not up", doc.Upstreams)
	}
	out, err := in.cli("status", "--admin", in.admin).CombinedOutput()
	if err != nil {
		t.Fatalf("bulwark status: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "none: the app is not ready") || strings.Contains(string(out), "8002") {
		t.Errorf("status of a pool that never started:\n%s", out)
	}
	if strings.Contains(string(out), "pid 0 ") && !strings.Contains(string(out), "up - ") {
		t.Errorf("a worker without a process shows an uptime:\n%s", out)
	}
	noRace(t, in)
}
