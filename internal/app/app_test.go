package app

import (
	"os"
	"path/filepath"
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
