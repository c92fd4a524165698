package observe

import (
	"errors"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestEnsureToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "bulwark")
	if _, _, err := ReadToken(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadToken before any token = %v, want fs.ErrNotExist", err)
	}
	// Several processes starting at once must agree on one token.
	toks := make([]string, 8)
	var wg sync.WaitGroup
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, _, err := EnsureToken(dir)
			if err != nil {
				t.Errorf("EnsureToken: %v", err)
			}
			toks[i] = tok
		}()
	}
	wg.Wait()
	for _, tok := range toks {
		if tok != toks[0] || len(tok) < 40 {
			t.Fatalf("EnsureToken gave %q, want one token of 43 characters for all: %q", tok, toks)
		}
	}
	path := filepath.Join(dir, TokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode = %v, want 0700", di.Mode().Perm())
	}
	if tok, p, err := ReadToken(dir); err != nil || tok != toks[0] || p != path {
		t.Errorf("ReadToken = %q, %q, %v; want %q, %q", tok, p, err, toks[0], path)
	}
	// A file opened up by someone is narrowed again, and keeps its token.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if tok, _, err := EnsureToken(dir); err != nil || tok != toks[0] {
		t.Errorf("EnsureToken again = %q, %v; want the same token", tok, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode after EnsureToken = %v, want 0600", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, TokenFile+".*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// TestLoopbackReads checks the rule for a generated token: reads from a
// loopback peer are open, actions need the token, and nothing is open to
// another machine or to a DNS name (rebinding).
func TestLoopbackReads(t *testing.T) {
	ok := func() error { return nil }
	open := newTestServer(t, Options{Token: "gen", LoopbackReads: true, OnReload: ok, OnRestartApp: ok})
	closed := newTestServer(t, Options{Token: "gen", OnReload: ok, OnRestartApp: ok})
	tests := []struct {
		name         string
		s            *Server
		method, path string
		remote, host string
		auth         string
		want         int
	}{
		{"dashboard", open, "GET", "/", "127.0.0.1:5000", "127.0.0.1:9090", "", 200},
		{"status", open, "GET", "/status", "127.0.0.1:5000", "127.0.0.1:9090", "", 200},
		{"metrics", open, "GET", "/metrics", "[::1]:5000", "localhost:9090", "", 200},
		{"history", open, "HEAD", "/api/history", "127.0.0.1:5000", "127.0.0.1:9090", "", 200},
		{"reload needs the token", open, "POST", "/api/reload", "127.0.0.1:5000", "127.0.0.1:9090", "", 401},
		{"restart needs the token", open, "POST", "/api/restart-app", "127.0.0.1:5000", "127.0.0.1:9090", "", 401},
		{"restart with the token", open, "POST", "/api/restart-app", "127.0.0.1:5000", "127.0.0.1:9090", "Bearer gen", 200},
		{"another machine", open, "GET", "/status", "192.0.2.7:5000", "192.0.2.1:9090", "", 401},
		{"DNS rebinding", open, "GET", "/status", "127.0.0.1:5000", "evil.example:9090", "", 401},
		{"configured token", closed, "GET", "/status", "127.0.0.1:5000", "127.0.0.1:9090", "", 401},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.path, nil)
		r.RemoteAddr, r.Host = tt.remote, tt.host
		if tt.auth != "" {
			r.Header.Set("Authorization", tt.auth)
		}
		w := httptest.NewRecorder()
		tt.s.Handler().ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("%s: %s %s from %s = %d, want %d", tt.name, tt.method, tt.path, tt.remote, w.Code, tt.want)
		}
	}
}
