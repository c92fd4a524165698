package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"bulwark/internal/config"
	"bulwark/internal/spool"
	"bulwark/internal/static"
)

// TestRouteBodyLimits: a [[route]]'s max_body lets an upload through that
// limits.max_body refuses elsewhere, with and without Content-Length, and
// a reload that drops the route applies at once.
func TestRouteBodyLimits(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d", n)
	}))
	defer up.Close()
	base := "[upstream]\naddress = \"" + strings.TrimPrefix(up.URL, "http://") + "\"\n[log]\naccess = \"off\"\n"
	load := func(extra string) *config.Config {
		cfg := testConfig(t, base+extra)
		cfg.Limits.MaxBody = 64 * config.KiB
		return cfg
	}
	first := load("[[route]]\npath = \"/api/upload/\"\nmax_body = \"1MiB\"\n")
	a, err := New(first, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeBuilt()
	h := a.handler()
	post := func(path string, size int, chunked bool) (int, string) {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(strings.Repeat("x", size)))
		if chunked {
			r.ContentLength = -1
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code, rec.Body.String()
	}
	const upload = 200 << 10
	for _, chunked := range []bool{false, true} {
		if code, body := post("/api/upload/file", upload, chunked); code != 200 || body != fmt.Sprintf("got %d", upload) {
			t.Errorf("chunked %v: upload under the route = %d %q; want 200, the whole body at the app", chunked, code, body)
		}
		if code, _ := post("/api/other", upload, chunked); code != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked %v: the same upload elsewhere = %d; want 413", chunked, code)
		}
		if code, _ := post("/api/upload/file", 2<<20, chunked); code != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked %v: an upload past the route's max_body = %d; want 413", chunked, code)
		}
	}
	next := load("")
	next.Limits.SpoolDir, next.TLS.CertDir = first.Limits.SpoolDir, first.TLS.CertDir
	if err := a.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if code, _ := post("/api/upload/file", upload, false); code != http.StatusRequestEntityTooLarge {
		t.Errorf("after a reload without the route: %d; want 413", code)
	}
}

// TestEdgeReload: a reload applies new CORS origins and static
// directories to the running chain.
func TestEdgeReload(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(dirA, "v.txt"), []byte("A"), 0o644)
	os.WriteFile(filepath.Join(dirB, "v.txt"), []byte("B"), 0o644)
	edgeTOML := func(origin, dir string) string {
		return "[log]\naccess = \"off\"\n[cors]\norigins = [\"" + origin + "\"]\n[[static]]\npath = \"/s/\"\ndir = \"" + dir + "\"\n"
	}
	first := testConfig(t, edgeTOML("https://a.example", dirA))
	a, err := New(first, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeBuilt()
	h := a.handler()
	get := func(origin string) (allow, body string) {
		r := httptest.NewRequest(http.MethodGet, "/s/v.txt", nil)
		r.Header.Set("Origin", origin)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Header().Get("Access-Control-Allow-Origin"), rec.Body.String()
	}
	if allow, body := get("https://a.example"); allow != "https://a.example" || body != "A" {
		t.Errorf("before the reload: allow %q, body %q; want https://a.example, A", allow, body)
	}
	next := testConfig(t, edgeTOML("https://b.example", dirB))
	next.Limits.SpoolDir, next.TLS.CertDir = first.Limits.SpoolDir, first.TLS.CertDir
	if err := a.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if allow, body := get("https://a.example"); allow != "" || body != "B" {
		t.Errorf("after the reload, old origin: allow %q, body %q; want none, B", allow, body)
	}
	if allow, _ := get("https://b.example"); allow != "https://b.example" {
		t.Errorf("after the reload, new origin: allow %q; want https://b.example", allow)
	}
}

// TestFDReserveHoldsTheFileBudgets: client connections leave free the
// spool's temp files and, with [[static]], the static file slots, so a
// crowd of connections cannot turn their opens into EMFILE.
func TestFDReserveHoldsTheFileBudgets(t *testing.T) {
	cfg := testConfig(t, "")
	pool := 64 + 2*max(cfg.Upstream.MaxConcurrency, cfg.Upstream.Keepalive)
	if got, want := fdReserve(cfg), pool+spool.DefaultMaxFiles(); got != want {
		t.Errorf("reserve without static = %d, want %d (pool and admin %d + spool files %d)", got, want, pool, spool.DefaultMaxFiles())
	}
	cfg = testConfig(t, "[[static]]\npath = \"/static/\"\ndir = \""+t.TempDir()+"\"\n")
	want := pool + spool.DefaultMaxFiles() + static.DefaultMaxOpenFiles()
	if got := fdReserve(cfg); got != want {
		t.Errorf("reserve with static = %d, want %d (adding %d static slots)", got, want, static.DefaultMaxOpenFiles())
	}
}
