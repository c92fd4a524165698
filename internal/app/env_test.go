package app

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"bulwark/internal/config"
)

// TestAppEnvClearsBulwarkVariables checks that the supervisor is told to
// clear Bulwark's own BULWARK_* variables (the admin token among them) in
// the app's environment, except those [app].env names.
func TestAppEnvClearsBulwarkVariables(t *testing.T) {
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
	got := (&App{cfg: cfg}).superviseOptions(cfg).Env
	want := map[string]string{"BULWARK_ADMIN_TOKEN": "", "BULWARK_LOG_LEVEL": "debug", "SECRET": "s"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("superviseOptions().Env = %v, want %v", got, want)
	}
}
