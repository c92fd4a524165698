package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// load runs clients that GET path in a loop until stop is closed (and at
// most for limit), counting answers by status; transport errors count as 0.
type load struct {
	mu     sync.Mutex
	counts map[int]int
	errs   []string
	wg     sync.WaitGroup
	stop   chan struct{}
}

func startLoad(t *testing.T, in *instance, clients int, path string, limit time.Duration) *load {
	l := &load{counts: map[int]int{}, stop: make(chan struct{})}
	deadline := time.Now().Add(limit)
	for i := 0; i < clients; i++ {
		c := in.client(i%2 == 1) // half HTTP/1.1, half HTTP/2
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; n < 100000 && time.Now().Before(deadline); n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				code := 0
				res, err := c.Get(in.url(path))
				if err == nil {
					readAll(t, res)
					code = res.StatusCode
				}
				l.mu.Lock()
				l.counts[code]++
				if code != 200 && len(l.errs) < 5 {
					l.errs = append(l.errs, fmt.Sprintf("%d %v", code, err))
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) finish() (ok, bad int, errs []string) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for code, n := range l.counts {
		if code == 200 {
			ok += n
		} else {
			bad += n
		}
	}
	return ok, bad, l.errs
}

// statusDoc is the part of the admin server's /status the tests read.
type statusDoc struct {
	InFlight       int `json:"in_flight"`
	MaxConcurrency int `json:"max_concurrency"`
	App            *struct {
		PID      int            `json:"pid"`
		State    string         `json:"state"`
		Restarts map[string]int `json:"restarts"`
		RSS      int64          `json:"rss_bytes"`
	} `json:"app"`
}

// status reads /status; a zero statusDoc (InFlight and MaxConcurrency -1)
// when the admin server does not answer.
func (in *instance) status(t testing.TB) statusDoc {
	s := statusDoc{InFlight: -1, MaxConcurrency: -1}
	res, err := http.Get("http://" + in.admin + "/status")
	if err != nil {
		return s
	}
	json.Unmarshal([]byte(readAll(t, res)), &s)
	return s
}

func supervisedConfig(appPort int, extra string) string {
	return baseConfig + fmt.Sprintf("\n[upstream]\naddress = \"127.0.0.1:%d\"\n", appPort) +
		"\n[app]\n" + appCommand(appPort) + "\n" + extra
}

// TestMemoryRestartUnderLoad is the supervisor issue's demonstration: with
// max_memory = 150MiB and check_interval = 1s, four clients keep sending
// requests while the app is told to hold 200 MB; the app is restarted and
// every client request gets a 200.
func TestMemoryRestartUnderLoad(t *testing.T) {
	requireUvicorn(t)
	if testing.Short() {
		t.Skip("skipped in -short: 15 s of load")
	}
	appPort := freePort(t)
	in := startBulwark(t, supervisedConfig(appPort, "max_memory = \"150MiB\"\ncheck_interval = \"1s\"\n"), nil)
	waitFor(t, 30*time.Second, "the app to be ready", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.State == "ready"
	})
	firstPID := in.status(t).App.PID

	loadStart := time.Now()
	l := startLoad(t, in, 4, "/", 15*time.Second)
	// The app starts holding memory once the load is flowing: a few
	// answers per client, not a guessed time.
	waitFor(t, 10*time.Second, "the load to be answered", func() bool { ok, _, _ := l.sofar(); return ok >= 20 })
	res, err := in.client(false).Post(in.url("/hold?mb=200"), "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, res); res.StatusCode != 200 {
		t.Fatalf("hold: %d %s", res.StatusCode, body)
	}
	held := time.Now()
	waitFor(t, 20*time.Second, "a memory restart", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.Restarts["memory"] >= 1 && s.App.State == "ready" && s.App.PID != firstPID
	})
	t.Logf("memory restart done %.1fs after the app began holding 200 MB", time.Since(held).Seconds())
	time.Sleep(time.Until(loadStart.Add(15 * time.Second))) // the full 15 s of load, on the new app too
	ok, bad, errs := l.finish()
	m := scrape(t, in.admin)
	gateHeld := m["bulwark_gate_held_total"]
	holdAvg := 0.0
	if n := m["bulwark_gate_hold_seconds_count"]; n > 0 {
		holdAvg = m["bulwark_gate_hold_seconds_sum"] / n
	}
	t.Logf("restart (stop to ready): %.2fs; requests held at the gate: %.0f, mean hold %.3fs",
		m["bulwark_app_last_restart_duration_seconds"], gateHeld, holdAvg)
	t.Logf("requests: %d ok, %d failed", ok, bad)
	if bad != 0 {
		t.Errorf("%d requests failed during the memory restart (first: %v)", bad, errs)
	}
	if ok < 40 {
		t.Errorf("only %d requests ran: the load did not really run", ok)
	}
	if !strings.Contains(in.out.String(), "memory") {
		t.Errorf("no log line about the memory restart")
	}
}

// TestCrashUnderLoad: the app dies (os._exit) while clients send GETs; it is
// restarted, and idempotent requests in flight are retried on the new app,
// so none fails.
func TestCrashUnderLoad(t *testing.T) {
	requireUvicorn(t)
	appPort := freePort(t)
	in := startBulwark(t, supervisedConfig(appPort, ""), nil)
	waitFor(t, 30*time.Second, "the app to be ready", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.State == "ready"
	})
	l := startLoad(t, in, 4, "/slow?s=0.2", 20*time.Second)
	// Crash once requests are flowing, so some are in flight at the crash.
	waitFor(t, 10*time.Second, "the load to be answered", func() bool { ok, _, _ := l.sofar(); return ok >= 4 })
	var crashCode atomic.Int64
	res, err := in.client(false).Post(in.url("/crash"), "text/plain", nil)
	if err == nil {
		readAll(t, res)
		crashCode.Store(int64(res.StatusCode))
	}
	waitFor(t, 30*time.Second, "a crash restart", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.Restarts["crash"] >= 1 && s.App.State == "ready"
	})
	// The new app answers some of the load before it stops: that, not a
	// pause, shows the clients came through the crash.
	okAtRestart, _, _ := l.sofar()
	waitFor(t, 10*time.Second, "the new app to answer the load", func() bool { ok, _, _ := l.sofar(); return ok >= okAtRestart+4 })
	ok, bad, errs := l.finish()
	t.Logf("requests: %d ok, %d failed; the POST /crash itself got %d", ok, bad, crashCode.Load())
	if bad != 0 {
		t.Errorf("%d idempotent requests failed across the crash (first: %v)", bad, errs)
	}
	if c := crashCode.Load(); c != 502 && c != 0 {
		t.Errorf("POST /crash got %d, want 502 (not retried: not idempotent)", c)
	}
}
