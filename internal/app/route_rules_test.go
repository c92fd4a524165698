package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"bulwark/internal/config"
)

// routeApp builds an App in front of up with the given config text and
// returns its handler.
func routeApp(t *testing.T, up *httptest.Server, toml string, global func(*config.Config)) (*App, http.Handler) {
	t.Helper()
	cfg := testConfig(t, "[upstream]\naddress = \""+strings.TrimPrefix(up.URL, "http://")+"\"\n"+toml)
	global(cfg)
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.closeBuilt)
	return a, a.handler()
}

func (a *App) counterForTest(name string) uint64 { return a.set.GetOrCreateCounter(name).Get() }

// TestRouteSpoolRules: a route's body_buffer, buffer_requests and
// buffer_responses apply to the requests under it (longest prefix), and
// the global values elsewhere.
func TestRouteSpoolRules(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Length", fmt.Sprint(r.ContentLength))
		fmt.Fprintf(w, "got %d %s", n, strings.Repeat("y", 64<<10))
	}))
	defer up.Close()
	a, h := routeApp(t, up, `[log]
access = "off"
[[route]]
path = "/small/"
body_buffer = "1KiB"
[[route]]
path = "/stream/"
buffer_requests = false
[[route]]
path = "/buf/"
buffer_responses = true
[[route]]
path = "/buf/no/"
buffer_responses = false
`, func(c *config.Config) {
		c.Limits.BodyBuffer, c.Limits.BufferRequests, c.Limits.BufferResponses = 256*config.KiB, true, false
	})
	post := func(path string) (declared string) {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(strings.Repeat("x", 64<<10)))
		r.ContentLength = -1 // chunked: the spool gives it a length, streaming does not
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), fmt.Sprintf("got %d ", 64<<10)) {
			t.Fatalf("POST %s = %d %.40q; want 200 with the whole body at the app", path, rec.Code, rec.Body.String())
		}
		return rec.Header().Get("X-Length")
	}
	const (
		reqDisk  = `bulwark_spool_bodies_total{kind="request",where="disk"}`
		respMem  = `bulwark_spool_bodies_total{kind="response",where="memory"}`
		respDisk = `bulwark_spool_bodies_total{kind="response",where="disk"}`
	)
	responses := func() uint64 { return a.counterForTest(respMem) + a.counterForTest(respDisk) }

	before := a.counterForTest(reqDisk)
	post("/other")
	if got := a.counterForTest(reqDisk) - before; got != 0 {
		t.Errorf("64 KiB body with the global body_buffer 256KiB: %d spilled to disk; want 0", got)
	}
	post("/small/x")
	if got := a.counterForTest(reqDisk) - before; got != 1 {
		t.Errorf("64 KiB body under a route with body_buffer 1KiB: %d spilled to disk; want 1", got)
	}

	if got := post("/other"); got != fmt.Sprint(64<<10) {
		t.Errorf("app saw Content-Length %s under the global buffer_requests = true; want %d (spooled)", got, 64<<10)
	}
	if got := post("/stream/x"); got != "-1" {
		t.Errorf("app saw Content-Length %s under a route with buffer_requests = false; want -1 (streamed)", got)
	}

	for _, tt := range []struct {
		path string
		want uint64
	}{{"/other", 0}, {"/buf/x", 1}, {"/buf/no/x", 0}} {
		before := responses()
		post(tt.path)
		if got := responses() - before; got != tt.want {
			t.Errorf("answers spooled for %s = %d; want %d", tt.path, got, tt.want)
		}
	}
}

// TestRouteReadTimeout: a route's read_timeout lets the app take longer
// to answer under it than upstream.read_timeout allows elsewhere (504).
func TestRouteReadTimeout(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // the app is slow to answer, unless the proxy gave up
		case <-time.After(600 * time.Millisecond):
		case <-r.Context().Done():
		}
		io.WriteString(w, "done")
	}))
	defer up.Close()
	_, h := routeApp(t, up, "[log]\naccess = \"off\"\n[[route]]\npath = \"/slow/\"\nread_timeout = \"10s\"\n",
		func(c *config.Config) { c.Upstream.ReadTimeout = config.Duration(200 * time.Millisecond) })
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/slow/report"); code != 200 || body != "done" {
		t.Errorf("under the route: %d %q; want 200 done", code, body)
	}
	if code, _ := get("/report"); code != http.StatusGatewayTimeout {
		t.Errorf("elsewhere: %d; want 504 (upstream.read_timeout)", code)
	}
}

// TestRouteRatePerIP: a route with rate_per_ip has a table of its own:
// its clients are limited there and not elsewhere, a route with "off" is
// not limited under a global rate, and a reload keeps the buckets.
func TestRouteRatePerIP(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	routes := `[log]
access = "off"
[[route]]
path = "/login/"
rate_per_ip = "1/m burst 1"
[[route]]
path = "/free/"
rate_per_ip = "off"
`
	global := func(c *config.Config) { c.Limits.RatePerIP = "2/m burst 2" }
	a, h := routeApp(t, up, routes, global)
	get := func(path string) int {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = "192.0.2.7:1234"
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	if got := get("/login/"); got != 200 {
		t.Fatalf("first /login/ = %d; want 200", got)
	}
	if got := get("/login/"); got != http.StatusTooManyRequests {
		t.Errorf("second /login/ = %d; want 429 (the route's burst is 1)", got)
	}
	for i := range 2 {
		if got := get("/page"); got != 200 {
			t.Errorf("/page #%d = %d; want 200 (the global table, untouched by /login/)", i+1, got)
		}
	}
	if got := get("/page"); got != http.StatusTooManyRequests {
		t.Errorf("third /page = %d; want 429 (the global burst is 2)", got)
	}
	for i := range 5 {
		if got := get("/free/x"); got != 200 {
			t.Fatalf("/free/x #%d = %d; want 200 (rate_per_ip = off)", i+1, got)
		}
	}
	next := testConfig(t, "[upstream]\naddress = \""+strings.TrimPrefix(up.URL, "http://")+"\"\n"+routes)
	global(next)
	next.Limits.SpoolDir, next.TLS.CertDir = a.cfg.Limits.SpoolDir, a.cfg.TLS.CertDir
	if err := a.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := get("/login/"); got != http.StatusTooManyRequests {
		t.Errorf("/login/ after a reload = %d; want 429 (its bucket kept)", got)
	}
}

// TestRouteRulesCarried: the spool and the proxy read the route's
// send_timeout (and the rest) from the rule Select attached.
func TestRouteRulesCarried(t *testing.T) {
	cfg := testConfig(t, "[upstream]\nsend_timeout = \"7s\"\nread_timeout = \"8s\"\n[log]\naccess = \"off\"\n[[route]]\npath = \"/r/\"\nsend_timeout = \"3s\"\nbody_buffer = \"2KiB\"\n")
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeBuilt()
	check := func(path string, wantSend, wantRead time.Duration, wantBuf int64) {
		t.Helper()
		var ran bool
		a.edge.routes.Select(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ran = true
			send, read := proxyTimeouts(r)
			ru, ok := spoolRules(r)
			if send != wantSend || read != wantRead || !ok || ru.SendTimeout != wantSend || ru.MemoryPerBody != wantBuf {
				t.Errorf("%s: proxy send, read %v, %v; spool %+v, %v; want %v, %v and body_buffer %d", path, send, read, ru, ok, wantSend, wantRead, wantBuf)
			}
		})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
		if !ran {
			t.Fatalf("%s: Select did not call next", path)
		}
	}
	check("/r/x", 3*time.Second, 8*time.Second, 2<<10)
	check("/x", 7*time.Second, 8*time.Second, int64(128*config.KiB))
}
