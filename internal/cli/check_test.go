package cli

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckEveryProblemAtOnce is the case: a missing certificate
// hid a missing key, command and directory, and a config error hid them
// all. Every problem is printed, named by its key.
func TestCheckEveryProblemAtOnce(t *testing.T) {
	isolateAdminEnv(t)
	dir := t.TempDir()
	for _, tt := range []struct {
		name, extra string
		want        []string
	}{
		{"valid config", "", []string{"the configuration is valid but cannot be served: 5 problems"}},
		{"invalid config too", "[upstream]\nmax_concurrency = -5\n", []string{
			"upstream.max_concurrency: must be between", "the configuration has 1 problem",
			"the configuration names files with 5 problems"}},
	} {
		cfg := filepath.Join(dir, "b.toml")
		writeFile(t, cfg, tt.extra+"[tls]\ncert = \""+dir+"/cert.pem\"\nkey = \""+dir+"/key.pem\"\n"+
			"[app]\ncommand = [\"no-such-server-x\", \"app:app\", \"--port\", \"8000\"]\ndir = \""+dir+"/nodir\"\n"+
			"env = { SECRET_KEY = \"hunter2\" }\n")
		var out, errb bytes.Buffer
		if code := Main(t.Context(), []string{"check", "--config", cfg}, &out, &errb); code != 1 {
			t.Errorf("%s: check exited %d, want 1", tt.name, code)
		}
		for _, w := range append(tt.want, "tls.cert: certificate file", "tls.key: key file", `app.command: "no-such-server-x" is not found`,
			"app.dir:", `app.command: the app listens on port 8000 (--port 8000) but upstream.address is "127.0.0.1:8002"`) {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("%s: check printed\n%s\nwant it to contain %q", tt.name, errb.String(), w)
			}
		}
		if strings.Contains(out.String()+errb.String(), "hunter2") {
			t.Errorf("%s: check shows an app.env value", tt.name)
		}
	}
}
