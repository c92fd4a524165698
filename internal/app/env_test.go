package app

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"bulwark/internal/config"
)

// TestAppEnvRemovesBulwarkVariables checks that the supervisor is told to
// remove Bulwark's own BULWARK_* variables (the admin token among them)
// from the app's environment, except those [app].env names.
func TestAppEnvRemovesBulwarkVariables(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bulwark.toml")
	toml := "[app]\ncommand = [\"app\"]\nenv = { BULWARK_LOG_LEVEL = \"debug\", SECRET = \"s\" }\n"
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.LoadOptions{Path: path,
		Environ: []string{"BULWARK_ADMIN_TOKEN=t0k", "BULWARK_LOG_LEVEL=info", "PATH=/usr/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	o := (&App{cfg: cfg}).superviseOptions(cfg)
	want := map[string]string{"BULWARK_LOG_LEVEL": "debug", "SECRET": "s"}
	if !reflect.DeepEqual(o.Env, want) {
		t.Errorf("superviseOptions().Env = %v, want %v", o.Env, want)
	}
	if want := []string{"BULWARK_ADMIN_TOKEN"}; !reflect.DeepEqual(o.Unset, want) {
		t.Errorf("superviseOptions().Unset = %v, want %v", o.Unset, want)
	}
}

// TestReloadAppliesObserveDatabase is the case: a reload that
// changed [observe] database used to answer 500 ("needs an upgrade").
func TestReloadAppliesObserveDatabase(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.Admin.Listen = "127.0.0.1:0"
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeBuilt()
	next := *cfg
	next.Observe.Database = "postgres://app@127.0.0.1:1/app?sslmode=disable"
	if err := a.Reload(&next); err != nil {
		t.Errorf("Reload with a new observe.database = %v, want nil", err)
	}
	if got := needsUpgrade(cfg, &next); len(got) != 0 {
		t.Errorf("needsUpgrade for observe.database = %v, want none", got)
	}
	r := httptest.NewRequest("GET", "/status", nil)
	r.Host = "127.0.0.1"
	w := httptest.NewRecorder()
	a.admin.srv.Handler().ServeHTTP(w, r)
	if !strings.Contains(w.Body.String(), `"db":{"kind":"postgres"`) {
		t.Errorf("/status after the reload = %d %s, want the postgres probe in it", w.Code, w.Body.String())
	}
}
