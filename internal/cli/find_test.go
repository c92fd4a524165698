package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"bulwark/internal/observe"
)

// isolateAdminEnv keeps a test from finding the developer's own config,
// token or generated token file; it returns the state directory.
func isolateAdminEnv(t *testing.T) string {
	t.Helper()
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	for _, k := range []string{"BULWARK_CONFIG", "BULWARK_ADMIN_TOKEN", "BULWARK_ADMIN_LISTEN", "BULWARK_TLS_CERT_DIR"} {
		t.Setenv(k, "") // restored at the end of the test
		os.Unsetenv(k)  // an empty BULWARK_ADMIN_LISTEN would turn the admin server off
	}
	return filepath.Join(state, "bulwark")
}

func TestFindConfigIn(t *testing.T) {
	withFile := t.TempDir()
	if err := os.WriteFile(filepath.Join(withFile, "bulwark.toml"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	tests := []struct {
		name, flag, env, dir, want string
	}{
		{"flag wins", "/etc/a.toml", "/etc/b.toml", withFile, "/etc/a.toml"},
		{"env next", "", "/etc/b.toml", withFile, "/etc/b.toml"},
		{"then ./bulwark.toml", "", "", withFile, filepath.Join(withFile, "bulwark.toml")},
		{"else none", "", "", empty, ""},
	}
	for _, tt := range tests {
		got := findConfigIn(tt.flag, tt.env, tt.dir)
		if got != tt.want {
			t.Errorf("%s: findConfigIn(%q, %q, dir) = %q, want %q", tt.name, tt.flag, tt.env, got, tt.want)
		}
	}
}

// TestAdminCommandsReadTheConfig checks that status, reload and
// restart-app find the admin server and its token through --config and
// $BULWARK_CONFIG, as nginx -s reload does, and that flags still win.
func TestAdminCommandsReadTheConfig(t *testing.T) {
	state := isolateAdminEnv(t)
	var reloads int
	_, addr := startObserve(t, observe.Options{Token: testToken, Snapshot: adminSnapshot(1, true),
		OnReload: func() error { reloads++; return nil }, OnRestartApp: func() error { return nil }})
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "site.toml")
	writeFile(t, cfgPath, "[admin]\nlisten = \""+addr+"\"\ntoken = \""+testToken+"\"\n")
	noToken := filepath.Join(dir, "notoken.toml")
	writeFile(t, noToken, "[admin]\nlisten = \""+addr+"\"\n")

	run := func(name string, f func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) error, args ...string) (string, error) {
		t.Helper()
		var out, errb bytes.Buffer
		err := f(t.Context(), args, &out, &errb)
		return out.String(), err
	}
	status := func(ctx context.Context, a []string, o, e *bytes.Buffer) error { return runStatus(ctx, a, o, e) }
	reload := func(ctx context.Context, a []string, o, e *bytes.Buffer) error { return runReload(ctx, a, o, e) }
	restart := func(ctx context.Context, a []string, o, e *bytes.Buffer) error { return runRestartApp(ctx, a, o, e) }

	if out, err := run("status --config", status, "--config", cfgPath); err != nil || !strings.Contains(out, "admin "+addr) {
		t.Errorf("status --config %s = %v, printed %q; want the status of %s", cfgPath, err, out, addr)
	}
	if _, err := run("reload --config", reload, "--config", cfgPath); err != nil {
		t.Errorf("reload --config: %v", err)
	}
	t.Setenv("BULWARK_CONFIG", cfgPath)
	if _, err := run("restart-app via $BULWARK_CONFIG", restart); err != nil {
		t.Errorf("restart-app with $BULWARK_CONFIG: %v", err)
	}
	if _, err := run("--token overrides", status, "--token", "wrong"); err == nil || !strings.Contains(err.Error(), "refused the token from --token") {
		t.Errorf("status --token wrong = %v; want the flag to beat the config's token", err)
	}
	t.Setenv("BULWARK_CONFIG", "")

	// No token in the config: the generated token in the state directory
	// is used, as the server made it.
	if _, err := run("no token anywhere", status, "--config", noToken); err == nil || !strings.Contains(err.Error(), "needs a token") {
		t.Errorf("status without any token = %v, want 'needs a token'", err)
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(state, observe.TokenFile), testToken+"\n")
	if _, err := run("generated token", status, "--config", noToken); err != nil {
		t.Errorf("status with the generated token file: %v", err)
	}
	if _, err := run("missing config", status, "--config", filepath.Join(dir, "nope.toml")); err == nil ||
		!strings.Contains(err.Error(), "nope.toml") {
		t.Errorf("status --config nope.toml = %v, want an error naming the file", err)
	}
	if reloads != 1 {
		t.Errorf("server saw %d reloads, want 1", reloads)
	}
}

// TestActionFailurePrintsBody checks that a failed reload or restart-app
// exits non-zero with the server's error and every extra field of the body,
// such as the app's last stderr lines.
func TestActionFailurePrintsBody(t *testing.T) {
	isolateAdminEnv(t)
	srv := newTestHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(`{"error":"the new app did not become ready","status":502,"reason":"app_failed","by":"bulwark",` +
			`"stderr":["Traceback (most recent call last):","ModuleNotFoundError: No module named 'app'"]}`))
	}))
	var out bytes.Buffer
	code := Main(t.Context(), []string{"restart-app", "--admin", srv, "--token", "t"}, &out, &out)
	if code == 0 {
		t.Errorf("restart-app against a failing server exited 0")
	}
	for _, want := range []string{"answered 502: the new app did not become ready", "stderr:", "ModuleNotFoundError: No module named 'app'"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("restart-app printed %q, want it to contain %q", out.String(), want)
		}
	}
}

// TestActionWaitsAndIsCancellable checks that a reload waiting for a slow
// server ends when the context does (Ctrl-C) with a message that says the
// reload may still be going on.
func TestActionWaitsAndIsCancellable(t *testing.T) {
	isolateAdminEnv(t)
	arrived := make(chan struct{})
	release := make(chan struct{})
	srv := newTestHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-arrived; cancel() }()
	var out bytes.Buffer
	err := runReload(ctx, []string{"--admin", srv, "--token", "t"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "interrupted") || !strings.Contains(err.Error(), "may still be in progress") {
		t.Errorf("reload cancelled while waiting = %v; want an 'interrupted … may still be in progress' error", err)
	}
}

// TestHelpListsEveryFlag checks that 'bulwark --help' names every flag of
// every subcommand, as each one's own -h prints them.
func TestHelpListsEveryFlag(t *testing.T) {
	isolateAdminEnv(t)
	var top bytes.Buffer
	if code := Main(t.Context(), []string{"--help"}, &top, &top); code != 0 {
		t.Fatalf("bulwark --help exited %d", code)
	}
	flagRE := regexp.MustCompile(`(?m)^\s+--?([a-z][a-z-]*)`)
	for _, cmd := range []string{"run", "check", "status", "top", "reload", "restart-app", "upgrade", "version"} {
		var out bytes.Buffer
		code := Main(t.Context(), []string{cmd, "-h"}, &out, &out)
		if code != 0 {
			t.Errorf("bulwark %s -h exited %d", cmd, code)
		}
		if !strings.Contains(out.String(), "Usage: bulwark "+cmd) {
			t.Errorf("bulwark %s -h printed no usage line:\n%s", cmd, out.String())
		}
		for _, m := range flagRE.FindAllStringSubmatch(out.String(), -1) {
			name := m[1]
			if !strings.Contains(top.String(), "--"+name+" ") && !strings.Contains(top.String(), " -"+name+" ") {
				t.Errorf("bulwark --help does not list %s's flag %q", cmd, name)
			}
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newTestHTTP serves h on loopback until the test ends and returns its
// address.
func newTestHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestRunNamesConfigFirst checks that run finds ./bulwark.toml on its own
// and names it in its first log line.
func TestRunNamesConfigFirst(t *testing.T) {
	isolateAdminEnv(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bulwark.toml"),
		"[listen]\nhttps = \"127.0.0.1:0\"\nhttp = \"\"\n[admin]\nlisten = \"\"\n[log]\naccess = \"off\"\n[tls]\nhsts = \"1s\"\n")
	t.Chdir(dir)
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // start and stop at once: only the first lines matter
	var out, errb bytes.Buffer
	_ = runRun(ctx, []string{"--pid-file", filepath.Join(dir, "bulwark.pid")}, &out, &errb)
	first, _, _ := strings.Cut(errb.String(), "\n")
	want := filepath.Join(dir, "bulwark.toml")
	if !strings.Contains(first, "configuration loaded") || !strings.Contains(first, want) {
		t.Errorf("first log line of run = %q, want 'configuration loaded' naming %s", first, want)
	}
}

// TestCLIFollowsTokenFileHeader checks that a CLI that does not know where
// Bulwark keeps its state (root, systemd's StateDirectory) finds the
// generated token through the file the 401 names, and that an explicit
// --token is kept.
func TestCLIFollowsTokenFileHeader(t *testing.T) {
	isolateAdminEnv(t)
	elsewhere := filepath.Join(t.TempDir(), "var-lib-bulwark")
	tok, file, err := observe.EnsureToken(elsewhere)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startObserve(t, observe.Options{Token: tok, TokenFile: file, Snapshot: adminSnapshot(1, true),
		OnReload: func() error { return nil }})
	var out bytes.Buffer
	if err := runReload(t.Context(), []string{"--admin", addr}, &out, &out); err != nil {
		t.Errorf("reload with the token only in %s: %v", file, err)
	}
	if err := runReload(t.Context(), []string{"--admin", addr, "--token", "wrong"}, &out, &out); err == nil ||
		!strings.Contains(err.Error(), "refused the token from --token") {
		t.Errorf("reload --token wrong = %v, want the explicit token refused, not replaced", err)
	}
	_, addr2 := startObserve(t, observe.Options{Token: tok, TokenFile: filepath.Join(elsewhere, "gone", observe.TokenFile),
		Snapshot: adminSnapshot(1, true), OnReload: func() error { return nil }})
	if err := runReload(t.Context(), []string{"--admin", addr2}, &out, &out); err == nil ||
		!strings.Contains(err.Error(), "cannot read") {
		t.Errorf("reload with an unreadable token file = %v, want 'cannot read'", err)
	}
}

// TestCLIRefusesTokenFileOfAnotherUser: a server that names a token file
// of a user who does not own its listening socket (an impostor on the
// admin port naming root's token) gets no token from the CLI.
func TestCLIRefusesTokenFileOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the token file to another user")
	}
	isolateAdminEnv(t)
	elsewhere := filepath.Join(t.TempDir(), "var-lib-bulwark")
	tok, file, err := observe.EnsureToken(elsewhere)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(file, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	var reloads atomic.Int32
	_, addr := startObserve(t, observe.Options{Token: tok, TokenFile: file, Snapshot: adminSnapshot(1, true),
		OnReload: func() error { reloads.Add(1); return nil }})
	var out bytes.Buffer
	if err := runReload(t.Context(), []string{"--admin", addr}, &out, &out); err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Errorf("reload with a token file of uid 65534 = %v, want it not trusted", err)
	}
	if reloads.Load() != 0 {
		t.Error("the reload went through with a token read from another user's file")
	}
}

func TestUseGeneratedToken(t *testing.T) {
	state := isolateAdminEnv(t)
	cfg, err := loadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	file, err := useGeneratedToken(cfg, "mem")
	if err != nil || file != filepath.Join(state, observe.TokenFile) || cfg.Admin.Token == "" || cfg.Admin.Token == "mem" {
		t.Fatalf("useGeneratedToken = %q, %v, token %q; want the file in %s", file, err, cfg.Admin.Token, state)
	}
	again, _ := loadConfig("", nil)
	if _, err := useGeneratedToken(again, "mem"); err != nil || again.Admin.Token != cfg.Admin.Token {
		t.Errorf("a reload's config got token %q, %v; want the same %q", again.Admin.Token, err, cfg.Admin.Token)
	}
	// A state directory that cannot be written: the actions are locked
	// with the in-memory token, and run still starts.
	t.Setenv("XDG_STATE_HOME", "/proc/no-such-dir")
	locked, _ := loadConfig("", nil)
	if _, err := useGeneratedToken(locked, "mem"); err == nil || locked.Admin.Token != "mem" {
		t.Errorf("with no writable state: err %v, token %q; want an error and the fallback token", err, locked.Admin.Token)
	}
}
