package observe

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// fakeSnapshot returns a Snapshot func whose request counter grows by 10
// on every call, with an app of two processes.
func fakeSnapshot() func() Snapshot {
	var n atomic.Uint64
	start := time.Now().Add(-time.Hour)
	return func() Snapshot {
		return Snapshot{
			Bulwark:          ProcInfo{PID: 100, RSS: 20 << 20, PSS: 18 << 20, StartTime: start, Cmdline: "bulwark run"},
			GoHeapBytes:      8 << 20,
			MemoryLimitBytes: 256 << 20,
			App: &AppInfo{State: "running", PID: 200, Since: start, Restarts: map[string]int{"crash": 1},
				MaxMemory: 400 << 20, RSS: 90 << 20, PSS: 80 << 20,
				Procs: []ProcInfo{{PID: 200, RSS: 50 << 20, StartTime: start, Cmdline: "python3 -m uvicorn app:app"},
					{PID: 201, RSS: 40 << 20, StartTime: start, Cmdline: "python3 worker"}}},
			Machine:        MachineInfo{MemTotal: 2 << 30, MemAvailable: 1 << 30},
			ConnsH1:        3,
			ConnsH2:        2,
			ConnsActive:    4,
			ConnsIdle:      1,
			RequestsTotal:  n.Add(10),
			InFlight:       2,
			Queued:         1,
			MaxConcurrency: 50,
			QueueCap:       100,
			LatencyP50:     12 * time.Millisecond,
			LatencyP99:     80 * time.Millisecond,
		}
	}
}

func newTestServer(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Snapshot == nil {
		o.Snapshot = fakeSnapshot()
	}
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func do(t *testing.T, h http.Handler, method, target, auth string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	r.Host = "127.0.0.1:9090"
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestTokenOnEveryPath(t *testing.T) {
	s := newTestServer(t, Options{Token: "s3cret",
		OnReload: func() error { return nil }, OnRestartApp: func() error { return nil }})
	paths := []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/metrics"}, {"GET", "/status"}, {"GET", "/status?history=1"},
		{"GET", "/api/history"}, {"POST", "/api/reload"}, {"POST", "/api/restart-app"}, {"GET", "/nope"},
	}
	auths := []struct {
		name, header string
		ok           bool
	}{
		{"none", "", false},
		{"wrong", "Bearer s3cre", false},
		{"longer", "Bearer s3cret2", false},
		{"basic", "Basic czNjcmV0", false},
		{"right", "Bearer s3cret", true},
	}
	for _, p := range paths {
		for _, a := range auths {
			w := do(t, s.Handler(), p.method, p.path, a.header)
			switch {
			case a.ok && w.Code == http.StatusUnauthorized:
				t.Errorf("%s %s with %s token: got 401, want it accepted", p.method, p.path, a.name)
			case !a.ok && w.Code != http.StatusUnauthorized:
				t.Errorf("%s %s with %s token: got %d, want 401", p.method, p.path, a.name, w.Code)
			case !a.ok && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer"):
				t.Errorf("%s %s with %s token: WWW-Authenticate = %q, want Bearer", p.method, p.path, a.name,
					w.Header().Get("WWW-Authenticate"))
			}
		}
	}
}

func TestUnauthorizedLeaksNoData(t *testing.T) {
	s := newTestServer(t, Options{Token: "s3cret"})
	for _, path := range []string{"/status", "/api/history", "/metrics", "/"} {
		for _, accept := range []string{"", "text/html", "application/json"} {
			w := do(t, s.Handler(), "GET", path, "", "Accept", accept)
			body := w.Body.String()
			if w.Code != http.StatusUnauthorized {
				t.Errorf("GET %s (Accept %q) = %d, want 401", path, accept, w.Code)
			}
			for _, leak := range []string{"uvicorn", "python3 worker", "bulwark_admin_requests_total", "go_gc"} {
				if strings.Contains(body, leak) {
					t.Errorf("GET %s (Accept %q) without token: body contains %q", path, accept, leak)
				}
			}
		}
	}
	// A browser asking for the dashboard gets the page shell, so that it
	// can ask for the token; still with the 401.
	w := do(t, s.Handler(), "GET", "/", "", "Accept", "text/html,application/xhtml+xml")
	if got := w.Body.String(); !strings.Contains(got, `id="ask-form"`) {
		t.Errorf("GET / from a browser without token: body lacks the token form")
	}
}

func TestNoTokenAllowsAll(t *testing.T) {
	s := newTestServer(t, Options{})
	for _, path := range []string{"/", "/metrics", "/status", "/api/history"} {
		if w := do(t, s.Handler(), "GET", path, ""); w.Code != http.StatusOK {
			t.Errorf("GET %s without token configured = %d, want 200", path, w.Code)
		}
	}
}

func TestMethods(t *testing.T) {
	s := newTestServer(t, Options{OnReload: func() error { return nil }})
	tests := []struct {
		method, path string
		want         int
		allow        string
	}{
		{"POST", "/status", 405, "GET, HEAD"},
		{"DELETE", "/metrics", 405, "GET, HEAD"},
		{"PUT", "/", 405, "GET, HEAD"},
		{"GET", "/api/reload", 405, "POST"},
		{"GET", "/api/restart-app", 405, "POST"},
		{"HEAD", "/status", 200, ""},
		{"GET", "/missing", 404, ""},
	}
	for _, tt := range tests {
		w := do(t, s.Handler(), tt.method, tt.path, "")
		if w.Code != tt.want || w.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s = %d Allow %q, want %d Allow %q", tt.method, tt.path, w.Code, w.Header().Get("Allow"), tt.want, tt.allow)
		}
	}
}

func TestActions(t *testing.T) {
	var reloads, restarts int
	failing := errors.New("config broken at line 3")
	tests := []struct {
		name       string
		o          Options
		path       string
		wantStatus int
		wantBody   string
	}{
		{"reload ok", Options{OnReload: func() error { reloads++; return nil }}, "/api/reload", 200, "reloaded"},
		{"reload fails", Options{OnReload: func() error { return failing }}, "/api/reload", 500, "line 3"},
		{"reload absent", Options{}, "/api/reload", 501, "not available"},
		{"restart ok", Options{OnRestartApp: func() error { restarts++; return nil }}, "/api/restart-app", 200, "restart"},
		{"restart no app", Options{}, "/api/restart-app", 409, "no app supervised"},
	}
	for _, tt := range tests {
		s := newTestServer(t, tt.o)
		w := do(t, s.Handler(), "POST", tt.path, "", "Accept", "application/json")
		if w.Code != tt.wantStatus || !strings.Contains(w.Body.String(), tt.wantBody) {
			t.Errorf("%s: POST %s = %d %q, want %d containing %q", tt.name, tt.path, w.Code, w.Body.String(), tt.wantStatus, tt.wantBody)
		}
	}
	if reloads != 1 || restarts != 1 {
		t.Errorf("callbacks ran reload %d, restart %d times; want 1 each", reloads, restarts)
	}
}

func TestBrowserGuards(t *testing.T) {
	called := 0
	s := newTestServer(t, Options{OnRestartApp: func() error { called++; return nil }})
	tests := []struct {
		name   string
		method string
		host   string
		hdr    []string
		want   int
	}{
		{"cross-site post", "POST", "127.0.0.1:9090", []string{"Origin", "https://evil.example"}, 403},
		{"fetch metadata", "POST", "127.0.0.1:9090", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"same origin", "POST", "127.0.0.1:9090", []string{"Origin", "http://127.0.0.1:9090"}, 200},
		{"rebound name", "GET", "evil.example:9090", nil, 403},
		{"localhost", "GET", "localhost:9090", nil, 200},
		{"ipv6", "GET", "[::1]:9090", nil, 200},
	}
	for _, tt := range tests {
		path := "/status"
		if tt.method == "POST" {
			path = "/api/restart-app"
		}
		r := httptest.NewRequest(tt.method, path, nil)
		r.Host = tt.host
		for i := 0; i+1 < len(tt.hdr); i += 2 {
			r.Header.Set(tt.hdr[i], tt.hdr[i+1])
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("%s: %s %s Host %s = %d, want %d", tt.name, tt.method, path, tt.host, w.Code, tt.want)
		}
	}
	if called != 1 {
		t.Errorf("restart callback ran %d times, want 1 (only the same-origin post)", called)
	}
}

func TestStatusDocument(t *testing.T) {
	s := newTestServer(t, Options{Version: "v1.2.3"})
	s.AddEvent(Event{Kind: "restart", Reason: "memory", Detail: "rss 410 MiB > 400 MiB"})
	now := time.Now()
	s.sample(now)
	s.sample(now.Add(time.Second)) // +10 requests in one second

	w := do(t, s.Handler(), "GET", "/status", "")
	var raw map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatalf("GET /status: %v in %s", err, w.Body.String())
	}
	for _, k := range []string{"time", "version", "bulwark", "app", "machine", "go_heap_bytes", "memory_limit_bytes",
		"conns_h1", "conns_h2", "conns_active", "conns_idle", "requests_total", "requests_per_second", "in_flight",
		"queued", "max_concurrency", "queue_cap", "latency_p50_seconds", "latency_p99_seconds", "events"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("/status lacks field %q", k)
		}
	}
	if _, ok := raw["history"]; ok {
		t.Errorf("/status without ?history=1 has a history field")
	}
	var st Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatalf("decoding /status: %v", err)
	}
	if st.Version != "v1.2.3" || st.RequestsPerSecond != 10 || st.LatencyP99Seconds != 0.08 ||
		st.App == nil || len(st.App.Procs) != 2 || st.App.Restarts["crash"] != 1 {
		t.Errorf("/status = %+v; want version v1.2.3, 10 req/s, p99 0.08, an app of 2 procs with 1 crash", st)
	}
	if len(st.Events) != 1 || st.Events[0].Reason != "memory" || st.Events[0].At.IsZero() {
		t.Errorf("/status events = %+v, want one memory restart with a time", st.Events)
	}

	for _, path := range []string{"/status?history=1", "/api/history"} {
		w := do(t, s.Handler(), "GET", path, "")
		var st Status
		if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.History == nil {
			t.Fatalf("GET %s: %v, history %v", path, err, st.History)
		}
		h := st.History
		if len(h.T) != 2 || len(h.AppRSS) != 2 || h.RequestsPerSec[1] != 10 || h.P50Ms[0] != 12 || h.InFlight[1] != 2 {
			t.Errorf("GET %s history = %+v; want 2 samples, 10 rps, p50 12 ms, 2 in flight", path, h)
		}
	}
}

func TestStatusWithoutApp(t *testing.T) {
	s := newTestServer(t, Options{Snapshot: func() Snapshot { return Snapshot{} }})
	w := do(t, s.Handler(), "GET", "/status", "")
	if !strings.Contains(w.Body.String(), `"app":null`) {
		t.Errorf("/status with no app = %s, want \"app\":null", w.Body.String())
	}
}

func TestEventsBounded(t *testing.T) {
	s := newTestServer(t, Options{})
	for i := range MaxEvents + 10 {
		s.AddEvent(Event{Kind: "restart", Reason: "crash", Detail: string(rune('a' + i%26))})
	}
	st := s.status(false, 0)
	if len(st.Events) != MaxEvents {
		t.Errorf("after %d events, status has %d, want %d", MaxEvents+10, len(st.Events), MaxEvents)
	}
}

func metricsText(t *testing.T, h http.Handler, auth string) string {
	t.Helper()
	w := do(t, h, "GET", "/metrics", auth)
	if w.Code != 200 {
		t.Fatalf("GET /metrics = %d", w.Code)
	}
	return w.Body.String()
}

func TestMetrics(t *testing.T) {
	set := metrics.NewSet()
	set.GetOrCreateCounter("bulwark_requests_total").Add(7) // another package's metric
	s := newTestServer(t, Options{Metrics: set, Version: "v9", Token: "t"})
	do(t, s.Handler(), "GET", "/status", "Bearer t")
	do(t, s.Handler(), "GET", "/status", "") // 401s count too
	do(t, s.Handler(), "GET", "/x/../../etc", "Bearer t")
	body := metricsText(t, s.Handler(), "Bearer t")
	for _, want := range []string{
		`bulwark_requests_total 7`,
		`bulwark_build_info{version="v9"} 1`,
		`bulwark_admin_requests_total{path="/status"} 2`,
		`bulwark_admin_requests_total{path="/metrics"} 1`,
		`bulwark_admin_requests_total{path="other"} 1`,
		"process_resident_memory_bytes",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Rebuilding the server on reload reuses the same series.
	s2 := newTestServer(t, Options{Metrics: set, Version: "v9"})
	do(t, s2.Handler(), "GET", "/status", "")
	if body := metricsText(t, s2.Handler(), ""); !strings.Contains(body, `bulwark_admin_requests_total{path="/status"} 3`) {
		t.Errorf("after a rebuild, /status count did not continue from 2 to 3")
	}
}

func TestRunListenAndShutdown(t *testing.T) {
	s := newTestServer(t, Options{Listen: "127.0.0.1:0", Token: "tok"})
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	// A second server on the same address fails at Listen, synchronously.
	s2 := newTestServer(t, Options{Listen: s.Addr()})
	if err := s2.Listen(); err == nil {
		t.Errorf("Listen on a used address %s: got nil error", s.Addr())
	}
	ctx, cancel := context.WithCancel(t.Context())
	var runErr error
	done := make(chan struct{})
	go func() { runErr = s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})

	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+s.Addr()+"/api/history", nil)
	req.Header.Set("Authorization", "Bearer tok")
	var st Status
	for i := 0; i < 50; i++ { // the sampler takes its first sample at once
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /api/history: %v", err)
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("decoding /api/history: %v", err)
		}
		if len(st.History.T) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(st.History.T) == 0 {
		t.Errorf("history is empty after Run started")
	}
	cancel()
	select {
	case <-done:
		if runErr != nil {
			t.Errorf("Run after cancel = %v, want nil", runErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return after cancel")
	}
	if _, err := http.Get("http://" + s.Addr() + "/status"); err == nil {
		t.Errorf("admin server still answers after Run returned")
	}
}

func TestAdminOff(t *testing.T) {
	s := newTestServer(t, Options{})
	if err := s.Listen(); err != nil {
		t.Errorf("Listen with no address = %v, want nil", err)
	}
	if err := s.Run(t.Context()); err != nil {
		t.Errorf("Run with no address = %v, want nil", err)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"no snapshot", Options{}},
		{"bad database scheme", Options{Snapshot: fakeSnapshot(), Database: "redis://127.0.0.1:6379"}},
	}
	for _, tt := range tests {
		if _, err := New(tt.o); err == nil {
			t.Errorf("New(%s) = nil error, want one", tt.name)
		}
	}
}

func TestDashboardHeaders(t *testing.T) {
	s := newTestServer(t, Options{Token: "x"})
	w := do(t, s.Handler(), "GET", "/", "Bearer x")
	csp := w.Header().Get("Content-Security-Policy")
	body, _ := io.ReadAll(w.Body)
	if w.Code != 200 || !strings.Contains(string(body), "<canvas") {
		t.Fatalf("GET / = %d, want 200 with canvases", w.Code)
	}
	for _, want := range []string{"default-src 'none'", "script-src 'sha256-", "style-src 'sha256-", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "http:", "https:", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("CSP %q contains %q", csp, bad)
		}
	}
	for _, ext := range []string{"src=\"http", "href=\"http", "@import", "url(http", "//cdn"} {
		if strings.Contains(string(body), ext) {
			t.Errorf("dashboard references something external: %q", ext)
		}
	}
}

func TestRingHistorySince(t *testing.T) {
	r := newRing(4)
	t0 := time.UnixMilli(1_000_000)
	for i := range 6 { // 6 samples into 4 slots: the first two are gone
		r.add(t0.Add(time.Duration(i)*time.Second), Snapshot{RequestsTotal: uint64(10 * i)})
	}
	ms := func(i int) int64 { return t0.Add(time.Duration(i) * time.Second).UnixMilli() }
	tests := []struct {
		name  string
		since int64
		full  bool
		want  []int64
	}{
		{"no since", 0, true, []int64{ms(2), ms(3), ms(4), ms(5)}},
		{"the oldest sample kept", ms(2), false, []int64{ms(3), ms(4), ms(5)}},
		{"a sample in the middle", ms(4), false, []int64{ms(5)}},
		{"the newest sample", ms(5), false, []int64{}},
		{"older than the ring: samples were missed", ms(1), true, []int64{ms(2), ms(3), ms(4), ms(5)}},
		{"newer than the ring: another process", ms(9), true, []int64{ms(2), ms(3), ms(4), ms(5)}},
	}
	for _, tt := range tests {
		h := r.history(tt.since)
		if h.Full != tt.full || h.Oldest != ms(2) || !slices.Equal(h.T, tt.want) || len(h.RequestsPerSec) != len(tt.want) || len(h.Queued) != len(tt.want) {
			t.Errorf("%s: history(%d) = full %v, oldest %d, t %v (%d rps values); want full %v, oldest %d, t %v",
				tt.name, tt.since, h.Full, h.Oldest, h.T, len(h.RequestsPerSec), tt.full, ms(2), tt.want)
		}
	}
	if h := r.history(ms(3)); len(h.RequestsPerSec) != 2 || h.RequestsPerSec[0] != 10 {
		t.Errorf("history after %d: rps %v, want [10 10]", ms(3), h.RequestsPerSec)
	}
	if h := newRing(4).history(0); !h.Full || h.Oldest != 0 || len(h.T) != 0 {
		t.Errorf("empty ring: %+v, want full, oldest 0, no samples", h)
	}
}

func TestHistorySinceParameter(t *testing.T) {
	s := newTestServer(t, Options{})
	now := time.Now()
	s.sample(now)
	s.sample(now.Add(time.Second))
	var full Status
	if err := json.Unmarshal(do(t, s.Handler(), "GET", "/api/history", "").Body.Bytes(), &full); err != nil || full.History == nil || len(full.History.T) != 2 {
		t.Fatalf("GET /api/history: %v, %+v; want 2 samples", err, full.History)
	}
	last := full.History.T[1]
	var inc Status
	w := do(t, s.Handler(), "GET", "/api/history?since="+strconv.FormatInt(last, 10), "")
	if err := json.Unmarshal(w.Body.Bytes(), &inc); err != nil || inc.History == nil || inc.History.Full || len(inc.History.T) != 0 || inc.History.Oldest != full.History.T[0] {
		t.Errorf("GET /api/history?since=%d: %v, %+v; want no samples, not full, oldest %d", last, err, inc.History, full.History.T[0])
	}
	for _, bad := range []string{"x", "-5", "1.5"} {
		if w := do(t, s.Handler(), "GET", "/api/history?since="+bad, ""); w.Code != http.StatusBadRequest {
			t.Errorf("GET /api/history?since=%s: %d, want 400", bad, w.Code)
		}
	}
}
