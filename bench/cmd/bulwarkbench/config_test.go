package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPeerConfigsValid renders each peer's configuration and has the peer
// check it. The peers are not in CI's image: a missing one is skipped.
func TestPeerConfigsValid(t *testing.T) {
	dir := t.TempDir()
	certs, err := GenerateCerts(filepath.Join(dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	c := certs["ecdsa"]
	data := tmplData{Run: dir, Spool: filepath.Join(dir, "spool"), Cert: c.Cert, Key: c.Key, Bundle: c.Bundle,
		Port: 18443, UpstreamPort: 18002, MaxConns: 1}
	if err := os.MkdirAll(data.Spool, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tmpl, bin string
		check     func(conf string) []string
		want      []string // lines the rendered file must hold
	}{
		{"nginx.conf.tmpl", "nginx", func(conf string) []string {
			return []string{"nginx", "-t", "-q", "-e", filepath.Join(dir, "nginx-t.log"), "-c", conf}
		}, []string{"listen 127.0.0.1:18443 ssl http2;", "server 127.0.0.1:18002 max_conns=1;", "client_body_buffer_size 128k;"}},
		{"haproxy.cfg.tmpl", "haproxy", func(conf string) []string {
			return []string{"haproxy", "-c", "-q", "-f", conf}
		}, []string{"bind 127.0.0.1:18443 ssl crt " + c.Bundle + " alpn h2,http/1.1", "server app 127.0.0.1:18002 maxconn 1"}},
		{"Caddyfile.tmpl", "caddy", func(conf string) []string {
			return []string{"caddy", "validate", "--config", conf, "--adapter", "caddyfile"}
		}, []string{"reverse_proxy 127.0.0.1:18002 {", "tls " + c.Cert + " " + c.Key + " {"}},
	}
	for _, tt := range tests {
		t.Run(tt.bin, func(t *testing.T) {
			conf, err := render("../..", tt.tmpl, dir, data)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("rendered %s lacks %q:\n%s", tt.tmpl, w, b)
				}
			}
			if _, err := exec.LookPath(tt.bin); err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("%s missing in CI (scripts/test.sh installs it)", tt.bin)
				}
				t.Skipf("%s not installed (bench/run.sh installs it); rendered config not validated; CI is unset", tt.bin)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			argv := tt.check(conf)
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
			}
		})
	}
}
