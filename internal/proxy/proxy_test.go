package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// quietLogger keeps expected warnings out of the test output.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newTestProxy returns a Proxy to upstream with a private metrics set,
// adjusted by mod.
func newTestProxy(t testing.TB, upstream string, mod func(*Options)) (*Proxy, *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	o := Options{Upstreams: []string{upstream}, Metrics: set, Logger: quietLogger()}
	if mod != nil {
		mod(&o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	t.Cleanup(p.Close)
	return p, set
}

// hostOf returns the host:port of an httptest server.
func hostOf(s *httptest.Server) string {
	return strings.TrimPrefix(s.URL, "http://")
}

// echoed is what echoApp reports about the request it got.
type echoed struct {
	Method, Host, URI string
	Header            http.Header
	Body              string
}

// echoApp answers every request with a JSON description of it.
func echoApp(t testing.TB) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echoed{Method: r.Method, Host: r.Host, URI: r.RequestURI, Header: r.Header, Body: string(b)})
	}))
	t.Cleanup(s.Close)
	return s
}

func decodeEcho(t *testing.T, rec *httptest.ResponseRecorder) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("decoding echo (status %d, body %q): %v", rec.Code, rec.Body.String(), err)
	}
	return e
}

func metricsText(set *metrics.Set) string {
	var b bytes.Buffer
	set.WritePrometheus(&b)
	return b.String()
}

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		in          string
		wantNetwork string
		wantAddr    string
		wantErr     bool
	}{
		{"127.0.0.1:8002", "tcp", "127.0.0.1:8002", false},
		{"[::1]:8002", "tcp", "[::1]:8002", false},
		{"localhost:80", "tcp", "localhost:80", false},
		{"unix:/run/app.sock", "unix", "/run/app.sock", false},
		{"unix:run/app.sock", "", "", true},
		{":8002", "", "", true},
		{"127.0.0.1", "", "", true},
		{"127.0.0.1:0", "", "", true},
		{"127.0.0.1:70000", "", "", true},
		{"127.0.0.1:http", "", "", true},
		{"", "", "", true},
	}
	for _, tt := range tests {
		got, err := parseUpstream(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("parseUpstream(%q) = %+v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseUpstream(%q) error: %v", tt.in, err)
			continue
		}
		if got.network != tt.wantNetwork || got.addr != tt.wantAddr {
			t.Errorf("parseUpstream(%q) = %s %s, want %s %s", tt.in, got.network, got.addr, tt.wantNetwork, tt.wantAddr)
		}
		// The pool key must map back to the same place.
		network, addr, err := targetForDial(got.urlHost + ":80")
		if got.network == "tcp" {
			network, addr, err = targetForDial(got.urlHost)
		}
		if err != nil || network != tt.wantNetwork || addr != tt.wantAddr {
			t.Errorf("targetForDial(key of %q) = %s %s %v, want %s %s", tt.in, network, addr, err, tt.wantNetwork, tt.wantAddr)
		}
	}
	if _, err := New(Options{Upstreams: []string{"nonsense"}}); err == nil {
		t.Errorf("New with upstream %q: got no error, want one", "nonsense")
	}
}

func TestUpstreamSettings(t *testing.T) {
	tests := []struct {
		keepAlive   int
		idleTimeout time.Duration
		wantIdle    int
		wantTimeout time.Duration
	}{
		{0, 0, DefaultKeepAlive, DefaultIdleConnTimeout},
		{5, time.Second, 5, time.Second},
		{-1, 0, 0, DefaultIdleConnTimeout},
	}
	for _, tt := range tests {
		p, _ := newTestProxy(t, "127.0.0.1:1", func(o *Options) { o.KeepAlive, o.IdleConnTimeout = tt.keepAlive, tt.idleTimeout })
		u := p.upstream
		if int(u.maxIdle.Load()) != tt.wantIdle || u.idleTimeout != tt.wantTimeout {
			t.Errorf("KeepAlive %d, IdleConnTimeout %v: pool of %d idle, closed after %v; want %d, %v",
				tt.keepAlive, tt.idleTimeout, u.maxIdle.Load(), u.idleTimeout, tt.wantIdle, tt.wantTimeout)
		}
		if rt, ok := p.rp.Transport.(roundTripper); !ok || rt.p != p {
			t.Errorf("ReverseProxy.Transport = %T, want the Proxy's own roundTripper", p.rp.Transport)
		}
		if p.rp.Rewrite == nil || p.rp.Director != nil {
			t.Errorf("ReverseProxy must use Rewrite, not Director")
		}
	}
}

func TestIdleConnTimeoutBelowReadTimeout(t *testing.T) {
	tests := []struct {
		idle, read, want time.Duration
	}{
		{0, 0, DefaultIdleConnTimeout},
		{0, time.Second, time.Second},
		{2 * time.Second, 10 * time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		got := Options{IdleConnTimeout: tt.idle, ReadTimeout: tt.read}.withDefaults().IdleConnTimeout
		if got != tt.want {
			t.Errorf("IdleConnTimeout with idle %v, read %v = %v, want %v", tt.idle, tt.read, got, tt.want)
		}
	}
}

func mustPrefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestSetForwarded(t *testing.T) {
	trusted := mustPrefixes(t, "10.0.0.0/8", "::1/128")
	tests := []struct {
		name       string
		remote     string
		xff        []string
		tls        bool
		trusted    []netip.Prefix
		wantXFF    string
		wantRealIP string
		wantProto  string
	}{
		{"direct client", "203.0.113.7:5555", nil, true, trusted, "203.0.113.7", "203.0.113.7", "https"},
		{"forged xff from untrusted", "203.0.113.7:5555", []string{"1.2.3.4"}, false, trusted, "203.0.113.7", "203.0.113.7", "http"},
		{"forged xff, no trusted list", "10.1.1.1:5555", []string{"1.2.3.4"}, false, nil, "10.1.1.1", "10.1.1.1", "http"},
		{"trusted proxy", "10.1.1.1:5555", []string{"198.51.100.9"}, true, trusted, "198.51.100.9, 10.1.1.1", "198.51.100.9", "https"},
		{"trusted chain walked from the right", "10.1.1.1:5555", []string{"6.6.6.6, 198.51.100.9", "10.2.2.2"}, false, trusted,
			"6.6.6.6, 198.51.100.9, 10.2.2.2, 10.1.1.1", "198.51.100.9", "http"},
		{"all trusted: left-most", "10.1.1.1:5555", []string{"10.3.3.3, 10.2.2.2"}, false, trusted, "10.3.3.3, 10.2.2.2, 10.1.1.1", "10.3.3.3", "http"},
		{"garbage stops the walk", "10.1.1.1:5555", []string{"evil, 10.2.2.2"}, false, trusted, "evil, 10.2.2.2, 10.1.1.1", "10.2.2.2", "http"},
		{"entry with port", "10.1.1.1:5555", []string{"198.51.100.9:1234"}, false, trusted, "198.51.100.9:1234, 10.1.1.1", "198.51.100.9", "http"},
		{"ipv6 trusted peer", "[::1]:5555", []string{"2001:db8::1"}, false, trusted, "2001:db8::1, ::1", "2001:db8::1", "http"},
		{"ipv4-mapped peer", "[::ffff:10.1.1.1]:5555", []string{"198.51.100.9"}, false, trusted, "198.51.100.9, 10.1.1.1", "198.51.100.9", "http"},
		{"trusted peer without xff", "10.1.1.1:5555", nil, false, trusted, "10.1.1.1", "10.1.1.1", "http"},
		{"ipv6 peer spelled long", "[0:0::1]:5555", nil, false, nil, "::1", "::1", "http"},
		{"ipv6 peer in capitals", "[2001:DB8::7]:5555", nil, false, nil, "2001:db8::7", "2001:db8::7", "http"},
	}
	for _, tt := range tests {
		in := httptest.NewRequest("GET", "http://app.example/x", nil)
		in.RemoteAddr = tt.remote
		in.Host = "app.example"
		for _, v := range tt.xff {
			in.Header.Add("X-Forwarded-For", v)
		}
		if tt.tls {
			in.TLS = &tls.ConnectionState{}
		}
		h := http.Header{"X-Real-Ip": {"forged"}}
		setForwarded(h, in, tt.trusted)
		if got := h.Get("X-Forwarded-For"); got != tt.wantXFF {
			t.Errorf("%s: X-Forwarded-For = %q, want %q", tt.name, got, tt.wantXFF)
		}
		if got := h.Get("X-Real-IP"); got != tt.wantRealIP {
			t.Errorf("%s: X-Real-IP = %q, want %q", tt.name, got, tt.wantRealIP)
		}
		if got := h.Get("X-Forwarded-Proto"); got != tt.wantProto {
			t.Errorf("%s: X-Forwarded-Proto = %q, want %q", tt.name, got, tt.wantProto)
		}
		if got := h.Get("X-Forwarded-Host"); got != "app.example" {
			t.Errorf("%s: X-Forwarded-Host = %q, want %q", tt.name, got, "app.example")
		}
	}
}

// TestHeadersReachTheApp drives the whole rewrite against a real upstream.
func TestHeadersReachTheApp(t *testing.T) {
	app := echoApp(t)
	p, _ := newTestProxy(t, hostOf(app), nil)

	req := httptest.NewRequest("GET", "https://shop.example/a/b?x=1;y=2&z=%41", nil)
	req.RemoteAddr = "203.0.113.7:4444"
	req.TLS = &tls.ConnectionState{}
	req.Header.Set("X-Forwarded-For", "1.1.1.1")
	req.Header.Set("X-Real-IP", "1.1.1.1")
	req.Header.Set("Forwarded", "for=1.1.1.1")
	req.Header.Set("Connection", "Upgrade, HTTP2-Settings, X-Secret")
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")
	req.Header.Set("X-Secret", "hop")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("X-App-Header", "kept")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %q", rec.Code, rec.Body.String())
	}
	e := decodeEcho(t, rec)
	if e.Host != "shop.example" {
		t.Errorf("Host at the app = %q, want the client's %q", e.Host, "shop.example")
	}
	if want := "/a/b?x=1;y=2&z=%41"; e.URI != want {
		t.Errorf("request URI at the app = %q, want %q verbatim", e.URI, want)
	}
	want := map[string]string{
		"X-Forwarded-For":   "203.0.113.7",
		"X-Real-Ip":         "203.0.113.7",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "shop.example",
		"Accept-Encoding":   "gzip",
		"X-App-Header":      "kept",
	}
	for k, v := range want {
		if got := strings.Join(e.Header[k], ","); got != v {
			t.Errorf("%s at the app = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Forwarded", "Upgrade", "Http2-Settings", "X-Secret", "Keep-Alive", "Proxy-Connection", "Connection"} {
		if got, ok := e.Header[k]; ok {
			t.Errorf("%s reached the app as %q, want it removed", k, got)
		}
	}
}

func TestWebSocketUpgradeHeadersKept(t *testing.T) {
	h := http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Http2-Settings": {"x"}}
	stripH2C(h)
	if h.Get("Upgrade") != "websocket" || h.Get("Connection") != "Upgrade" || h.Get("Http2-Settings") != "" {
		t.Errorf("stripH2C(websocket upgrade) = %v, want Upgrade and Connection kept, HTTP2-Settings gone", h)
	}
}

func TestBodyAndMethodForwarded(t *testing.T) {
	app := echoApp(t)
	p, set := newTestProxy(t, hostOf(app), nil)
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	res, err := http.Post(front.URL+"/upload", "text/plain", strings.NewReader("hello app"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e echoed
	if err := json.NewDecoder(res.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	if e.Method != "POST" || e.Body != "hello app" {
		t.Errorf("app got %s %q, want POST %q", e.Method, e.Body, "hello app")
	}
	text := metricsText(set)
	for _, want := range []string{`bulwark_upstream_requests_total{code_class="2xx"} 1`, "bulwark_upstream_duration_seconds_count 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
}

func TestStatusClassesCounted(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := map[string]int{"/301": 301, "/404": 404, "/500": 500}[r.URL.Path]
		if code == 0 {
			code = 200
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(app.Close)
	p, set := newTestProxy(t, hostOf(app), nil)
	for _, path := range []string{"/", "/301", "/404", "/404", "/500"} {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Header().Get("X-Bulwark-Error") != "" {
			t.Errorf("GET %s: the app's own status was answered by Bulwark (%q)", path, rec.Header().Get("X-Bulwark-Error"))
		}
	}
	text := metricsText(set)
	for _, want := range []string{
		`bulwark_upstream_requests_total{code_class="2xx"} 1`,
		`bulwark_upstream_requests_total{code_class="3xx"} 1`,
		`bulwark_upstream_requests_total{code_class="4xx"} 2`,
		`bulwark_upstream_requests_total{code_class="5xx"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
}

func TestTiming(t *testing.T) {
	app := echoApp(t)
	p, _ := newTestProxy(t, hostOf(app), nil)
	ctx, tm := WithTiming(context.Background())
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	if rec.Code != 200 {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if tm.Wait() <= 0 || tm.Upstream() < tm.Wait() || tm.Reason() != "" {
		t.Errorf("Timing = wait %v, upstream %v, reason %q; want 0 < wait <= upstream, no reason", tm.Wait(), tm.Upstream(), tm.Reason())
	}
	var nilTiming *Timing
	if nilTiming.Upstream() != 0 || nilTiming.Wait() != 0 || nilTiming.Reason() != "" {
		t.Errorf("nil *Timing methods returned non-zero values")
	}
}

func TestSetUpstream(t *testing.T) {
	appA := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "A") }))
	t.Cleanup(appA.Close)
	sock := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	appB := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "B "+r.Host)
	})}}
	appB.Start()
	t.Cleanup(appB.Close)

	p, _ := newTestProxy(t, hostOf(appA), nil)
	get := func() string {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", "http://site.example/", nil))
		return rec.Body.String()
	}
	if got := get(); got != "A" {
		t.Fatalf("before switch: body %q, want %q", got, "A")
	}
	if err := p.SetUpstream("unix:" + sock); err != nil {
		t.Fatal(err)
	}
	if got, want := get(), "B site.example"; got != want {
		t.Errorf("after switch to unix socket: body %q, want %q", got, want)
	}
	if err := p.SetUpstream("bad"); err == nil {
		t.Errorf("SetUpstream(%q) = nil, want an error", "bad")
	}
	if got, want := get(), "B site.example"; got != want {
		t.Errorf("after a rejected switch: body %q, want %q (unchanged)", got, want)
	}
	if err := p.SetUpstream(hostOf(appA)); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != "A" {
		t.Errorf("after switching back: body %q, want %q", got, "A")
	}
}

func BenchmarkRewriteHeaders(b *testing.B) {
	trusted := mustPrefixes(b, "10.0.0.0/8")
	in := httptest.NewRequest("GET", "https://shop.example/a?b=c", nil)
	in.RemoteAddr = "10.1.1.1:5555"
	in.Header.Set("X-Forwarded-For", "198.51.100.9, 10.2.2.2")
	b.ReportAllocs()
	for b.Loop() {
		h := make(http.Header, 8)
		setForwarded(h, in, trusted)
		stripH2C(h)
	}
}

func BenchmarkProxyLoopback(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	b.Cleanup(app.Close)
	p, _ := newTestProxy(b, hostOf(app), nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
