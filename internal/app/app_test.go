package app

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"bulwark/internal/config"
)

// testConfig loads a config from toml (defaults, no environment) with the
// development certificate and the spool in temp directories.
func testConfig(t *testing.T, toml string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	toml = "[tls]\ncert_dir = \"" + filepath.Join(dir, "certs") + "\"\n[limits]\nspool_dir = \"" +
		filepath.Join(dir, "spool") + "\"\n[admin]\nlisten = \"\"\n" + toml
	path := filepath.Join(dir, "bulwark.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.LoadOptions{Path: path})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func TestCheckBuildsEverything(t *testing.T) {
	if _, err := Check(testConfig(t, "")); err != nil {
		t.Fatalf("Check on defaults: %v", err)
	}
	bad := testConfig(t, "")
	bad.TLS.Cert, bad.TLS.Key = "/nonexistent/cert.pem", "/nonexistent/key.pem"
	_, err := Check(bad)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/cert.pem") {
		t.Errorf("Check with a missing certificate: %v, want an error naming the file", err)
	}
}

func TestReloadAppliesLimitsAndReportsWhatNeedsAnUpgrade(t *testing.T) {
	cfg := testConfig(t, "[upstream]\nmax_concurrency = 7\nqueue = 3\n")
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeBuilt()
	if st := a.admit.Stats(); st.MaxConcurrency != 7 || st.Queue != 3 {
		t.Fatalf("admit stats %+v, want 7 and 3 from the config", st)
	}
	next := *cfg
	next.Upstream.MaxConcurrency, next.Upstream.Queue = 9, 4
	next.Upstream.ReadTimeout = config.Duration(5e9)
	next.Listen.KeepaliveTimeout = config.Duration(7e9)
	if err := a.Reload(&next); err != nil {
		t.Errorf("Reload of limits and timeouts: %v, want nil", err)
	}
	if st := a.admit.Stats(); st.MaxConcurrency != 9 || st.Queue != 4 {
		t.Errorf("after reload: admit stats %+v, want 9 and 4", st)
	}
	again := next
	again.Listen.HTTPS = "127.0.0.1:1"
	if err := a.Reload(&again); err == nil || !strings.Contains(err.Error(), "listen.https") {
		t.Errorf("Reload of a listen address = %v, want it to say listen.https needs an upgrade", err)
	}
}

func TestNeedsUpgradeEmptyForReloadableChanges(t *testing.T) {
	a := testConfig(t, "")
	b := *a
	b.Upstream.MaxConcurrency++
	b.Upstream.Keepalive = 7
	b.Limits.MaxBody *= 2
	b.Memory.ReleaseInterval = config.Duration(1e9)
	if got := needsUpgrade(a, &b); len(got) != 0 {
		t.Errorf("needsUpgrade = %v, want none", got)
	}
	b.Upstream.ReadTimeout = config.Duration(1e9)
	b.Listen.ReadHeaderTimeout = config.Duration(1e9)
	if got := needsUpgrade(a, &b); len(got) != 0 {
		t.Errorf("needsUpgrade after timeout changes = %v, want none", got)
	}
	b.Listen.HTTPS = "127.0.0.1:1"
	if got := needsUpgrade(a, &b); len(got) != 1 || got[0] != "listen.https" {
		t.Errorf("needsUpgrade = %v, want [listen.https]", got)
	}
}

// TestReloadReopensAccessLog is logrotate's "create" mode: the file is
// renamed, and lines go to the renamed file until a reload opens a new one.
// A reload whose log.access cannot be opened keeps the current file.
func TestReloadReopensAccessLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	cfg := testConfig(t, "[log]\naccess = \""+path+"\"\n")
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeBuilt()
	h := a.access.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	serve := func() { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil)) }
	lines := func(p string) int {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return strings.Count(string(b), "\n")
	}

	serve()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	serve() // still to the open, renamed file
	next := *cfg
	if err := a.Reload(&next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	serve()
	if got := lines(path + ".1"); got != 2 {
		t.Errorf("rotated file has %d lines, want the 2 before the reload", got)
	}
	if got := lines(path); got != 1 {
		t.Errorf("new file has %d lines, want the 1 after the reload", got)
	}

	bad := *cfg
	bad.Log.Access = filepath.Join(dir, "missing", "access.log")
	if err := a.Reload(&bad); err == nil || !strings.Contains(err.Error(), "log.access") {
		t.Errorf("Reload to an unopenable access log = %v, want an error naming log.access", err)
	}
	serve()
	if got := lines(path); got != 2 {
		t.Errorf("after the failed reopen the file has %d lines, want 2: lines must keep going to it", got)
	}
}

func TestReloadSetsLogLevel(t *testing.T) {
	cfg := testConfig(t, "")
	level := new(slog.LevelVar)
	a, err := New(cfg, Options{LogLevel: level})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeBuilt()
	next := *cfg
	next.Log.Level = "debug"
	if err := a.Reload(&next); err != nil {
		t.Errorf("Reload of log.level: %v, want nil", err)
	}
	if got := level.Level(); got != slog.LevelDebug {
		t.Errorf("level after reload = %v, want DEBUG", got)
	}
	again := next
	again.Log.Format = "json"
	if err := a.Reload(&again); err == nil || !strings.Contains(err.Error(), "log.format") {
		t.Errorf("Reload of log.format = %v, want it to say log.format needs a restart", err)
	}

	fixed, err := New(cfg, Options{}) // no LevelVar to set
	if err != nil {
		t.Fatal(err)
	}
	defer fixed.closeBuilt()
	if err := fixed.Reload(&next); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Errorf("Reload of log.level without a LevelVar = %v, want it to say log.level needs a restart", err)
	}
}

// countingReader records whether its body was read.
type countingReader struct{ n int }

func (r *countingReader) Read(p []byte) (int, error) {
	r.n++
	return 0, io.EOF
}

// TestRatePerIPAnswers429BeforeTheBody: the request chain answers a client
// over limits.rate_per_ip with 429 and Retry-After, without reading its
// body, and counts it in the access log's series and bulwark_rejected_total.
func TestRatePerIPAnswers429BeforeTheBody(t *testing.T) {
	cfg := testConfig(t, "[upstream]\naddress = \"127.0.0.1:1\"\nconnect_timeout = \"1s\"\n")
	cfg.Limits.RatePerIP = "1/m burst 2"
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeBuilt()
	h := a.handler()
	for i := range 3 {
		body := &countingReader{}
		req := httptest.NewRequest("POST", "/up", body)
		req.RemoteAddr = "192.0.2.7:40000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if i < 2 {
			if rec.Code == http.StatusTooManyRequests {
				t.Fatalf("request %d: 429 within the burst of 2", i+1)
			}
			continue
		}
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "60" {
			t.Errorf("third request: %d, Retry-After %q; want 429, 60", rec.Code, rec.Header().Get("Retry-After"))
		}
		if body.n != 0 {
			t.Errorf("the refused request's body was read %d times, want 0", body.n)
		}
	}
	var b strings.Builder
	a.set.WritePrometheus(&b)
	for _, want := range []string{`bulwark_rejected_total{reason="rate_per_ip"} 1`, `bulwark_refused_total{status="429",reason="rate_per_ip"} 1`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestReloadAppliesConnectionCaps: the caps and the rate change on reload.
func TestReloadAppliesConnectionCaps(t *testing.T) {
	cfg := testConfig(t, "[listen]\nmax_conns = 5\nmax_conns_per_ip = 2\n")
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeBuilt()
	if o := a.connsOptions(cfg); o.Max != 5 || o.PerIP != 2 {
		t.Fatalf("conns options %+v, want 5 and 2", o)
	}
	next := *cfg
	next.Listen.MaxConns, next.Listen.MaxConnsPerIP = -1, 1
	next.Limits.RatePerIP = "1/s burst 1"
	if err := a.Reload(&next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	ok1, _ := a.rates.Allow(netip.MustParseAddr("192.0.2.1"))
	ok2, _ := a.rates.Allow(netip.MustParseAddr("192.0.2.1"))
	if !ok1 || ok2 {
		t.Errorf("after a reload to 1/s burst 1: %v, %v; want the second request refused", ok1, ok2)
	}
}

// TestRatePerIP429CarriesCORS: the 429 of rate_per_ip, made in front of
// the cors layer, carries the CORS headers of an allowed origin, so a
// browser page reads the 429 instead of a CORS error.
func TestRatePerIP429CarriesCORS(t *testing.T) {
	cfg := testConfig(t, "[upstream]\naddress = \"127.0.0.1:1\"\nconnect_timeout = \"1s\"\n[cors]\norigins = [\"https://app.example.com\"]\ncredentials = true\n")
	cfg.Limits.RatePerIP = "1/m burst 1"
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeBuilt()
	h := a.handler()
	var rec *httptest.ResponseRecorder
	for range 2 {
		req := httptest.NewRequest("GET", "/x", nil)
		req.RemoteAddr = "192.0.2.8:40000"
		req.Header.Set("Origin", "https://app.example.com")
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("second request: %d, want 429", rec.Code)
	}
	if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
		t.Errorf("429 Access-Control-Allow-Origin = %q, want the origin", got)
	}
	if got := rec.Header().Values("Vary"); !slices.Contains(got, "Origin") {
		t.Errorf("429 Vary = %q, want Origin", got)
	}
	// An answer that passes both Decorate and the cors layer gets the
	// headers once.
	req := httptest.NewRequest("GET", "/x", nil)
	req.RemoteAddr = "192.0.2.9:40000"
	req.Header.Set("Origin", "https://app.example.com")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadGateway || len(rec.Header().Values("Access-Control-Allow-Origin")) != 1 {
		t.Errorf("502 through both: %d, headers %v; want one Access-Control-Allow-Origin", rec.Code, rec.Header())
	}
	n := 0
	for _, v := range rec.Header().Values("Vary") {
		n += strings.Count(v, "Origin")
	}
	if n != 1 {
		t.Errorf("Vary = %q: Origin %d times, want once", rec.Header().Values("Vary"), n)
	}
}
