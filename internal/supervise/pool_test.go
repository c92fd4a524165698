package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// poolAddrKey carries the worker's address from Route to the test proxy.
type poolAddrKey struct{}

// poolHarness is a Pool of fake apps behind a reverse proxy that sends
// each request where Route bound it.
type poolHarness struct {
	p     *Pool
	logs  *recorder
	set   *metrics.Set
	front *httptest.Server
	stop  func()
	mu    sync.Mutex
	pids  []int // every worker process started
	addrs []string
}

func startPool(t *testing.T, o PoolOptions, env map[string]string) *poolHarness {
	t.Helper()
	h := &poolHarness{logs: &recorder{}, set: metrics.NewSet()}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if o.App.Command == nil {
		o.App.Command = []string{exe, "--addr", "127.0.0.1:{port}"}
	}
	o.App.Env = map[string]string{"FAKEAPP": "1", "GORACE": "atexit_sleep_ms=0"}
	for k, v := range env {
		o.App.Env[k] = v
	}
	o.App.Health = "/health"
	o.App.StartTimeout, o.App.StopTimeout, o.App.RestartHold = 20*time.Second, 5*time.Second, 20*time.Second
	o.App.Logger, o.App.Metrics = slog.New(h.logs), h.set
	o.OnWorkerStart = func(_, pid int) {
		h.mu.Lock()
		h.pids = append(h.pids, pid)
		h.mu.Unlock()
	}
	o.OnAddresses = func(a []string) {
		h.mu.Lock()
		h.addrs = a
		h.mu.Unlock()
	}
	o.Route = func(r *http.Request, addr string) *http.Request {
		return r.WithContext(context.WithValue(r.Context(), poolAddrKey{}, addr))
	}
	p, err := NewPool(o)
	if err != nil {
		t.Fatalf("NewPool() = %v", err)
	}
	h.p = p
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: pr.In.Context().Value(poolAddrKey{}).(string)})
		},
		Transport: &http.Transport{DisableKeepAlives: true},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	h.front = httptest.NewServer(p.Gate(proxy))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	h.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("Pool.Run did not return within 30s of cancel")
		}
	}
	t.Cleanup(func() {
		h.stop()
		h.front.Close()
		h.mu.Lock()
		for _, pid := range h.pids {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		h.mu.Unlock()
		if t.Failed() || os.Getenv("DUMPLOG") != "" {
			t.Logf("pool log:\n%s", h.logs.dump())
		}
	})
	return h
}

func (h *poolHarness) get(path string) (int, string, error) {
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(h.front.URL + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// workerPIDs returns the PIDs of the workers' current processes.
func (h *poolHarness) workerPIDs() []int {
	_, rows := h.p.Status()
	out := make([]int, len(rows))
	for i, r := range rows {
		out[i] = r.PID
	}
	return out
}

func waitPoolReady(t *testing.T, h *poolHarness, n int) {
	t.Helper()
	waitFor(t, 30*time.Second, strconv.Itoa(n)+" workers ready", func() bool { return h.p.Ready() == n })
}

// TestPoolWorkers checks three workers: separate processes on separate
// addresses, each told its index, requests spread over all of them, and
// the proxy told every address.
func TestPoolWorkers(t *testing.T) {
	h := startPool(t, PoolOptions{Workers: 3}, nil)
	waitPoolReady(t, h, 3)
	pids := h.workerPIDs()
	if slices.Contains(pids, 0) || len(slices.Compact(slices.Sorted(slices.Values(pids)))) != 3 {
		t.Fatalf("worker PIDs = %v, want 3 different", pids)
	}
	seen := map[string]bool{}
	for range 30 {
		code, body, err := h.get("/")
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET / = %d %q %v", code, body, err)
		}
		seen[body] = true
	}
	if len(seen) != 3 {
		t.Errorf("30 sequential requests reached %d workers, want all 3 (round robin among equals)", len(seen))
	}
	indexes := map[string]bool{}
	for range 30 {
		_, body, _ := h.get("/env")
		var env []string
		_ = json.Unmarshal([]byte(body), &env)
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, WorkerEnv+"="); ok {
				indexes[v] = true
			}
		}
	}
	if len(indexes) != 3 || !indexes["0"] || !indexes["1"] || !indexes["2"] {
		t.Errorf("BULWARK_WORKER values seen = %v, want 0, 1 and 2", indexes)
	}
	h.mu.Lock()
	addrs := slices.Clone(h.addrs)
	h.mu.Unlock()
	if len(addrs) != 3 {
		t.Errorf("OnAddresses last got %v, want 3 addresses", addrs)
	}
}

// TestPoolCrashOthersServe kills one worker: the others answer at once,
// nothing is held, and the pool is back to three.
func TestPoolCrashOthersServe(t *testing.T) {
	h := startPool(t, PoolOptions{Workers: 3}, nil)
	waitPoolReady(t, h, 3)
	pids := h.workerPIDs()
	_ = syscall.Kill(pids[1], syscall.SIGKILL)
	waitFor(t, 10*time.Second, "the pool to see the crash", func() bool { return h.p.Ready() < 3 })
	for range 10 {
		code, body, err := h.get("/")
		if err != nil || code != http.StatusOK || body == strconv.Itoa(pids[1]) {
			t.Fatalf("GET / with a worker down = %d %q %v", code, body, err)
		}
	}
	if held := h.p.held.Get(); held != 0 {
		t.Errorf("bulwark_gate_held_total = %d with two workers ready, want 0", held)
	}
	waitPoolReady(t, h, 3)
	now := h.workerPIDs()
	if now[0] != pids[0] || now[2] != pids[2] || now[1] == pids[1] {
		t.Errorf("PIDs after the crash = %v, were %v: only worker 1 should change", now, pids)
	}
}

// TestPoolMaxRequests recycles each worker after its requests, one at a
// time, with no failed request.
func TestPoolMaxRequests(t *testing.T) {
	h := startPool(t, PoolOptions{Workers: 2, MaxRequests: 20, MaxRequestsJitter: 10}, nil)
	waitPoolReady(t, h, 2)
	first := h.workerPIDs()
	minReady := 2
	for i := range 200 {
		code, body, err := h.get("/")
		if err != nil || code != http.StatusOK {
			t.Fatalf("request %d = %d %q %v", i, code, body, err)
		}
		minReady = min(minReady, h.p.Ready())
	}
	waitFor(t, 30*time.Second, "recycles to finish", func() bool {
		return h.p.recycles[ReasonMaxRequests].Get() >= 2 && h.p.Ready() == 2
	})
	now := h.workerPIDs()
	if now[0] == first[0] || now[1] == first[1] {
		t.Errorf("PIDs %v after 200 requests, were %v: every worker should have been recycled", now, first)
	}
	if h.p.held.Get() != 0 {
		t.Errorf("%d requests were held during max_requests recycles, want 0", h.p.held.Get())
	}
	if minReady < 1 {
		t.Errorf("at some point %d workers were ready, want at least 1 (one recycle at a time)", minReady)
	}
}

// TestPoolRequestTimeout answers 504 for a request its worker holds past
// request_timeout, replaces that worker, and serves the next requests.
func TestPoolRequestTimeout(t *testing.T) {
	h := startPool(t, PoolOptions{Workers: 2, RequestTimeout: 500 * time.Millisecond}, nil)
	waitPoolReady(t, h, 2)
	first := h.workerPIDs()
	start := time.Now()
	code, body, err := h.get("/slow?ms=20000")
	if err != nil || code != http.StatusGatewayTimeout || !strings.Contains(body, "request_timeout") {
		t.Fatalf("GET /slow = %d %q %v, want 504 naming request_timeout", code, body, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("504 after %v, want about 0.5s", d)
	}
	for range 10 {
		if code, body, err := h.get("/"); err != nil || code != http.StatusOK {
			t.Fatalf("GET / after the timeout = %d %q %v", code, body, err)
		}
	}
	waitFor(t, 30*time.Second, "the stuck worker to be replaced", func() bool {
		return h.p.recycles[ReasonRequestTimeout].Get() == 1 && h.p.Ready() == 2
	})
	now := h.workerPIDs()
	changed := 0
	for i := range now {
		if now[i] != first[i] {
			changed++
		}
	}
	if changed != 1 {
		t.Errorf("PIDs %v, were %v: want exactly the stuck worker replaced", now, first)
	}
}

// TestPoolRollStopsOnFailure rolls the pool onto a command that cannot
// start: the first worker's replacement fails, the roll stops, and every
// old worker keeps serving.
func TestPoolRollStopsOnFailure(t *testing.T) {
	h := startPool(t, PoolOptions{Workers: 2, WorkerFits: func(int) bool { return true }}, nil)
	waitPoolReady(t, h, 2)
	first := h.workerPIDs()
	o := *h.p.opts.Load()
	o.App.Env = map[string]string{"FAKEAPP": "1", "FAKEAPP_EXIT": "2", "GORACE": "atexit_sleep_ms=0"}
	err := h.p.UpdateWait(o)
	var se *StartError
	if err == nil || !strings.Contains(err.Error(), "roll stopped") || !errors.As(err, &se) {
		t.Fatalf("UpdateWait(broken) = %v, want the roll stopped with a *StartError", err)
	}
	if now := h.workerPIDs(); !slices.Equal(now, first) {
		t.Errorf("PIDs %v after the failed roll, want the old %v", now, first)
	}
	if code, _, err := h.get("/"); err != nil || code != http.StatusOK {
		t.Errorf("GET / after the failed roll = %d %v", code, err)
	}
	// The worker whose replacement failed keeps its old options: its next
	// recycle (max_requests, memory, a crash) starts the old command.
	if err := h.p.Recycle(0, ReasonMaxRequests); err != nil {
		t.Fatalf("Recycle(0) after the failed roll = %v, want the old command started again", err)
	}
	if now := h.workerPIDs(); now[0] == first[0] {
		t.Errorf("worker 0 still pid %d after its recycle", now[0])
	}
}

// TestPoolRestartRolls restarts every worker, each PID changes, no
// request is held.
func TestPoolRestartRolls(t *testing.T) {
	h := startPool(t, PoolOptions{Workers: 2, WorkerFits: func(int) bool { return true }}, nil)
	waitPoolReady(t, h, 2)
	first := h.workerPIDs()
	if err := h.p.Restart(ReasonManual); err != nil {
		t.Fatalf("Restart = %v", err)
	}
	now := h.workerPIDs()
	if now[0] == first[0] || now[1] == first[1] {
		t.Errorf("PIDs %v after a roll, were %v: want all changed", now, first)
	}
	if got := h.p.recycles[ReasonManual].Get(); got != 2 {
		t.Errorf("manual recycles = %d, want 2", got)
	}
}

// TestPoolMaxLifetime recycles workers past max_lifetime, one at a time,
// and counts the reason.
func TestPoolMaxLifetime(t *testing.T) {
	h := startPool(t, PoolOptions{Workers: 2, MaxLifetime: time.Second}, nil)
	waitPoolReady(t, h, 2)
	first := h.workerPIDs()
	waitFor(t, 30*time.Second, "both workers recycled for max_lifetime", func() bool {
		now := h.workerPIDs()
		return h.p.Ready() == 2 && now[0] != first[0] && now[1] != first[1]
	})
	// A recycle is counted once Restart returns, just after the new
	// process shows as ready.
	waitFor(t, 5*time.Second, "both recycles counted under max_lifetime", func() bool {
		_, rows := h.p.Status()
		for _, r := range rows {
			if r.LastRecycle != ReasonMaxLifetime {
				return false
			}
		}
		return h.p.recycles[ReasonMaxLifetime].Get() >= 2
	})
}

// TestPoolWorkerMetrics reads the per-worker series: requests served and
// in flight under each worker's index, and no series per PID, so a
// recycle adds none.
func TestPoolWorkerMetrics(t *testing.T) {
	h := startPool(t, PoolOptions{Workers: 2}, nil)
	waitPoolReady(t, h, 2)
	for range 6 {
		if code, body, err := h.get("/"); err != nil || code != http.StatusOK {
			t.Fatalf("GET / = %d %q %v", code, body, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow := make(chan struct{})
	go func() {
		defer close(slow)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.front.URL+"/slow?ms=20000", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, 10*time.Second, "the slow request in flight", func() bool { return h.p.InFlight() == 1 })
	series := map[string]float64{}
	var buf strings.Builder
	h.set.WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(name, "bulwark_app_worker") {
			continue
		}
		v, _ := strconv.ParseFloat(val, 64)
		series[name] = v
		for _, pid := range h.workerPIDs() {
			if strings.Contains(name, strconv.Itoa(pid)) {
				t.Errorf("series %s carries a PID; want the worker index only", name)
			}
		}
	}
	sum := func(base string) float64 {
		return series[base+`{worker="0"}`] + series[base+`{worker="1"}`]
	}
	if got := sum("bulwark_app_worker_served"); got != 7 {
		t.Errorf("bulwark_app_worker_served summed over the workers = %v, want 7 (%v)", got, series)
	}
	if got := sum("bulwark_app_worker_requests_total"); got != 7 {
		t.Errorf("bulwark_app_worker_requests_total summed = %v, want 7", got)
	}
	if got := sum("bulwark_app_worker_in_flight"); got != 1 {
		t.Errorf("bulwark_app_worker_in_flight summed = %v, want 1 (the slow request)", got)
	}
	cancel()
	<-slow
}

// TestPoolRequestTimeoutPausedWhileWaiting: the proxy waits (Pool.Wait)
// before it sends again a request whose worker died; request_timeout
// measures time on a worker, so that wait stops the clock, and the new try
// gets the whole timeout. A new try that runs out of time gets 504 but
// replaces no worker: the pool does not know which one it went to. It used
// to get 504 and have its first worker's new process replaced.
func TestPoolRequestTimeoutPausedWhileWaiting(t *testing.T) {
	h := startPool(t, PoolOptions{Workers: 2, RequestTimeout: 500 * time.Millisecond}, nil)
	waitPoolReady(t, h, 2)
	first := h.workerPIDs()
	// A stand-in for the proxy: 300 ms on the first try, the wait before
	// the retry, then the retry's time.
	front := httptest.NewServer(h.p.Gate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		second, _ := time.ParseDuration(r.URL.Query().Get("second"))
		time.Sleep(300 * time.Millisecond)
		if err := h.p.Wait(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		select {
		case <-time.After(second):
			io.WriteString(w, "answered")
		case <-r.Context().Done():
		}
	})))
	defer front.Close()
	get := func(second string) (int, string) {
		res, err := http.Get(front.URL + "/?second=" + second)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("300ms"); code != http.StatusOK {
		t.Errorf("300 ms + wait + 300 ms = %d %q, want 200: the wait must not count", code, body)
	}
	code, body := get("2s")
	if code != http.StatusGatewayTimeout || !strings.Contains(body, "after the worker that held this request ended") {
		t.Errorf("a retry past request_timeout = %d %q, want 504 saying its worker ended", code, body)
	}
	if got := h.p.recycles[ReasonRequestTimeout].Get(); got != 0 {
		t.Errorf("request_timeout recycles = %d, want 0: no worker held the retry for sure", got)
	}
	if now := h.workerPIDs(); !slices.Equal(now, first) {
		t.Errorf("PIDs %v, were %v: want no worker replaced", now, first)
	}
}

// TestPoolRecyclesHandedOver: a pool's recycle counts go to the next
// Bulwark process in an upgrade, as its restart counts do; they used to
// start from zero there.
func TestPoolRecyclesHandedOver(t *testing.T) {
	old := startPool(t, PoolOptions{Workers: 1}, nil)
	waitPoolReady(t, old, 1)
	if err := old.p.Recycle(0, ReasonManual); err != nil {
		t.Fatalf("Recycle = %v", err)
	}
	counts := old.p.Recycles()
	if counts[ReasonManual] != 1 {
		t.Fatalf("Recycles() = %v, want manual 1", counts)
	}
	next := startPool(t, PoolOptions{Workers: 1}, nil)
	next.p.AddRecycles(counts)
	next.p.AddRecycles(map[string]int{"from_a_later_version": 3, ReasonMemory: -2})
	if got := next.p.Recycles(); !maps.Equal(got, map[string]int{ReasonManual: 1}) {
		t.Errorf("after the handover Recycles() = %v, want manual 1", got)
	}
}

// TestPoolReadySinceSurvivesRecycles: the pool is ready since it last had
// no worker ready; recycling every worker one at a time is no break, so
// its Since stays. It used to be worker 0's, reset by its recycle.
func TestPoolReadySinceSurvivesRecycles(t *testing.T) {
	h := startPool(t, PoolOptions{Workers: 2, WorkerFits: func(int) bool { return true }}, nil)
	waitPoolReady(t, h, 2)
	st, _ := h.p.Status()
	since := st.Since
	if since.IsZero() {
		t.Fatalf("a ready pool has no Since")
	}
	for i := range 2 {
		if err := h.p.Recycle(i, ReasonManual); err != nil {
			t.Fatalf("Recycle(%d) = %v", i, err)
		}
	}
	st, rows := h.p.Status()
	if !st.Since.Equal(since) {
		t.Errorf("pool ready since %v after rolling recycles, want %v (no break in service)", st.Since, since)
	}
	if !rows[0].Since.After(since) {
		t.Errorf("worker 0 ready since %v, want after %v: it was recycled", rows[0].Since, since)
	}
}
