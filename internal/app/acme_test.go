package app

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckValidatesAcme: check reads ca_root (offline) and names it when
// it is unusable; a good [acme] section checks clean, with its storage
// under the state directory by default and a change reported as needing
// an upgrade on reload.
func TestCheckValidatesAcme(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "pebble.pem")
	cfg := testConfig(t, "[acme]\ndomains = [\"a.test\"]\nca = \"https://127.0.0.1:14000/dir\"\nca_root = \""+missing+"\"\n")
	if _, err := Check(cfg); err == nil || !strings.Contains(err.Error(), "ca_root") || !strings.Contains(err.Error(), missing) {
		t.Errorf("Check with a missing ca_root: %v, want an error naming it", err)
	}

	cfg = testConfig(t, "[listen]\nhttp = \"127.0.0.1:8080\"\n[acme]\ndomains = [\"a.test\"]\n")
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatalf("New with [acme]: %v", err)
	}
	defer a.closeBuilt()
	if got, want := a.acmeOptions(cfg).Storage, filepath.Join(cfg.TLS.CertDir, "acme"); got != want {
		t.Errorf("default storage %q, want %q", got, want)
	}
	next := *cfg
	next.Acme.Domains = []string{"a.test", "b.test"}
	if err := a.Reload(&next); err == nil || !strings.Contains(err.Error(), "acme") {
		t.Errorf("Reload of [acme] = %v, want it to say acme needs an upgrade", err)
	}
}

// TestCheckFilesNamesACMERoot: a config that does not validate still has
// its ACME CA root looked at, named by its key.
func TestCheckFilesNamesACMERoot(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.Acme.CARoot = filepath.Join(t.TempDir(), "missing.pem")
	_, err := CheckFiles(cfg)
	if err == nil || !strings.Contains(err.Error(), "acme.ca_root: open "+cfg.Acme.CARoot) {
		t.Errorf("CheckFiles with a missing ca_root: %v", err)
	}
}

func TestCoversName(t *testing.T) {
	for _, tt := range []struct {
		names []string
		name  string
		want  bool
	}{
		{[]string{"a.test"}, "a.test", true},
		{[]string{"*.w.test"}, "x.w.test", true},
		{[]string{"*.w.test"}, "w.test", false},
		{[]string{"*.w.test"}, "y.x.w.test", false},
		{[]string{"localhost", "127.0.0.1"}, "a.test", false},
	} {
		if got := coversName(tt.names, tt.name); got != tt.want {
			t.Errorf("coversName(%q, %q) = %v, want %v", tt.names, tt.name, got, tt.want)
		}
	}
}
