package accesslog

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// fixedUpstream is an UpstreamTimer that always reports the same time.
type fixedUpstream time.Duration

func (d fixedUpstream) Upstream() time.Duration { return time.Duration(d) }

func fixedClock() func() time.Time {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	n := 0
	return func() time.Time { n++; return t0.Add(time.Duration(n-1) * 250 * time.Millisecond) }
}

func TestMiddlewareText(t *testing.T) {
	var out bytes.Buffer
	set := metrics.NewSet()
	l := New(Options{Writer: &out, Metrics: set, Now: fixedClock(),
		Begin: func(r *http.Request) (*http.Request, UpstreamTimer) {
			return r, fixedUpstream(100 * time.Millisecond)
		}})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Header().Set("X-Bulwark-Error", "queue_full")
		w.WriteHeader(503)
		io.WriteString(w, "busy")
	}))
	r := httptest.NewRequest("POST", "/a?b=\"c\"", strings.NewReader("12345"))
	r.RemoteAddr = "192.0.2.1:5555"
	h.ServeHTTP(httptest.NewRecorder(), r)
	want := `2026-11-27T12:00:00.25Z 192.0.2.1 "POST /a?b=\x22c\x22 HTTP/1.1" 503 4 0.2500 0.1000 bulwark=queue_full` + "\n"
	if got := out.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := set.GetOrCreateCounter(`bulwark_requests_total{proto="h1",code="5xx"}`).Get(); got != 1 {
		t.Errorf("requests_total 5xx = %d, want 1", got)
	}
	if got := set.GetOrCreateCounter(`bulwark_refused_total{status="503",reason="queue_full"}`).Get(); got != 1 {
		t.Errorf("refused_total = %d, want 1", got)
	}
	if got := set.GetOrCreateCounter(`bulwark_request_bytes_total`).Get(); got != 5 {
		t.Errorf("request bytes = %d, want 5", got)
	}
}

func TestMiddlewareJSON(t *testing.T) {
	var out bytes.Buffer
	l := New(Options{Writer: &out, Format: JSON, Now: fixedClock()})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	var line jsonLine
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("not JSON: %q: %v", out.String(), err)
	}
	if line.Status != 200 || line.Path != "/x" || line.BytesOut != 2 || line.Method != "GET" {
		t.Errorf("got %+v", line)
	}
}

func TestMiddlewarePanicStillLogged(t *testing.T) {
	var out bytes.Buffer
	l := New(Options{Writer: &out, Now: fixedClock()})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }))
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("panic not passed on: %v", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
	if !strings.Contains(out.String(), `"GET / HTTP/1.1" 499 `) {
		t.Errorf("got %q, want a 499 line", out.String())
	}
}

func TestLatencies(t *testing.T) {
	l := New(Options{})
	if p50, p99 := l.Latencies(); p50 != 0 || p99 != 0 {
		t.Errorf("no requests: got %v %v, want 0 0", p50, p99)
	}
	for i := 1; i <= 100; i++ {
		l.lat.add(time.Duration(i) * time.Millisecond)
	}
	if p50, p99 := l.Latencies(); p50 != 51*time.Millisecond || p99 != 100*time.Millisecond {
		t.Errorf("1..100 ms: got p50 %v p99 %v, want 51ms 100ms", p50, p99)
	}
	if p50, _ := l.Latencies(); p50 != 0 {
		t.Errorf("a new period starts empty: got %v", p50)
	}
	for i := 0; i < 10*latencySample; i++ {
		l.lat.add(time.Second)
	}
	if n := len(l.lat.sample); n != latencySample {
		t.Errorf("sample holds %d durations, want at most %d", n, latencySample)
	}
}

func TestSetOutputRedirectsLines(t *testing.T) {
	var a, b bytes.Buffer
	l := New(Options{Writer: &a, Now: fixedClock()})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	serve := func() { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil)) }
	serve()
	l.SetOutput(&b, JSON)
	serve()
	l.SetOutput(nil, Text)
	serve()
	if n := strings.Count(a.String(), "\n"); n != 1 || strings.HasPrefix(a.String(), "{") {
		t.Errorf("first writer got %q, want one text line", a.String())
	}
	if n := strings.Count(b.String(), "\n"); n != 1 || !strings.HasPrefix(b.String(), "{") {
		t.Errorf("second writer got %q, want one JSON line", b.String())
	}
	if got := l.Requests(); got != 3 {
		t.Errorf("Requests() = %d, want 3: a request without an access log is still counted", got)
	}
}

// closableWriter counts the lines it gets, checks their format, and
// records a write after close.
type closableWriter struct {
	json        bool
	mu          sync.Mutex
	lines       int
	closed      bool
	afterClose  int
	wrongFormat int
}

func (w *closableWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.afterClose++
	}
	if (len(p) > 0 && p[0] == '{') != w.json {
		w.wrongFormat++
	}
	w.lines++
	return len(p), nil
}

func (w *closableWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines
}

func (w *closableWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// TestSetOutputUnderLoad swaps writers, alternating the format, while
// requests finish on other goroutines: no line is lost, none reaches a
// writer after the swap away from it returned (the caller closes it then),
// and every writer gets only lines in its own format.
func TestSetOutputUnderLoad(t *testing.T) {
	const workers, perWorker, swaps = 4, 500, 50
	first := &closableWriter{}
	writers := []*closableWriter{first}
	l := New(Options{Writer: first})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	// Workers serve at least perWorker requests each and keep going until
	// the last swap, so every swap happens under load.
	var wg sync.WaitGroup
	var served atomic.Int64
	var swapped atomic.Bool
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker || !swapped.Load(); i++ {
				h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
				served.Add(1)
			}
		}()
	}
	for i := range swaps {
		next := &closableWriter{json: i%2 == 0}
		f := Text
		if next.json {
			f = JSON
		}
		prev := writers[len(writers)-1]
		l.SetOutput(next, f)
		prev.close()
		writers = append(writers, next)
		// Each writer gets requests before the next swap: wait for its
		// first line rather than for a guessed time.
		deadline := time.Now().Add(5 * time.Second)
		for next.count() == 0 {
			if time.Now().After(deadline) {
				swapped.Store(true)
				wg.Wait()
				t.Fatalf("writer %d got no line within 5 s of the swap", len(writers)-1)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	swapped.Store(true)
	wg.Wait()
	total := 0
	for i, w := range writers {
		total += w.lines
		if w.afterClose > 0 || w.wrongFormat > 0 {
			t.Errorf("writer %d: %d lines after close, %d in the other format", i, w.afterClose, w.wrongFormat)
		}
	}
	if want := int(served.Load()); total != want {
		t.Errorf("%d lines written, want %d (one per request)", total, want)
	}
}

func TestRequestsTotalByProtoAndCode(t *testing.T) {
	set := metrics.NewSet()
	l := New(Options{Metrics: set})
	status := 200
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	send := func(h2 bool, code int) {
		status = code
		r := httptest.NewRequest("GET", "/", nil)
		if h2 {
			r.ProtoMajor, r.ProtoMinor, r.Proto = 2, 0, "HTTP/2.0"
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	send(false, 200)
	send(false, 204)
	send(true, 200)
	send(true, 499)
	send(false, 302)
	for name, want := range map[string]uint64{
		`bulwark_requests_total{proto="h1",code="2xx"}`: 2,
		`bulwark_requests_total{proto="h2",code="2xx"}`: 1,
		`bulwark_requests_total{proto="h2",code="499"}`: 1,
		`bulwark_requests_total{proto="h1",code="3xx"}`: 1,
		`bulwark_requests_total{proto="h1",code="499"}`: 0,
	} {
		if got := set.GetOrCreateCounter(name).Get(); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// TestDurationHistogramHasLeBuckets checks that request durations are
// exported with Prometheus le buckets, which histogram_quantile needs, and
// not VictoriaMetrics' vmrange ones.
func TestDurationHistogramHasLeBuckets(t *testing.T) {
	set := metrics.NewSet()
	l := New(Options{Metrics: set, Now: fixedClock()}) // 250 ms per request
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	var b bytes.Buffer
	set.WritePrometheus(&b)
	out := b.String()
	for _, want := range []string{
		`bulwark_request_duration_seconds_bucket{le="0.1"} 0`,
		`bulwark_request_duration_seconds_bucket{le="0.25"} 1`,
		`bulwark_request_duration_seconds_bucket{le="60"} 1`,
		`bulwark_request_duration_seconds_bucket{le="+Inf"} 1`,
		`bulwark_request_duration_seconds_count 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "vmrange") {
		t.Errorf("metrics still have vmrange buckets:\n%s", out)
	}
}
