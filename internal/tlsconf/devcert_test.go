package tlsconf

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func readPair(t *testing.T, p Pair) (cert, key []byte) {
	t.Helper()
	cert, err := os.ReadFile(p.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err = os.ReadFile(p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestEnsureDevCertCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "bulwark")
	now := time.Now()
	p, err := EnsureDevCert(dir, now)
	if err != nil {
		t.Fatalf("EnsureDevCert: %v", err)
	}
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{dir, 0o700}, {p.KeyFile, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != c.want {
			t.Errorf("mode of %s = %v, want %v", c.path, got, c.want)
		}
	}
	c, err := loadPair(p, now)
	if err != nil {
		t.Fatalf("loading the dev pair: %v", err)
	}
	leaf := c.cert.Leaf
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("dev certificate key = %T, want ECDSA P-256", leaf.PublicKey)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("dev certificate does not verify for %s: %v", name, err)
		}
	}
	if got := leaf.NotAfter.Sub(now); got < DevCertValidity-time.Hour {
		t.Errorf("dev certificate valid for %v, want about %v", got, DevCertValidity)
	}
}

func TestEnsureDevCertKeepsOrRegenerates(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		damage   func(t *testing.T, p Pair)
		at       time.Time
		wantSame bool
	}{
		{"kept when valid", func(*testing.T, Pair) {}, now.Add(24 * time.Hour), true},
		{"kept until 30 days before expiry", func(*testing.T, Pair) {}, now.Add(DevCertValidity - DevCertRenewBefore - 48*time.Hour), true},
		{"regenerated within 30 days of expiry", func(*testing.T, Pair) {}, now.Add(DevCertValidity - DevCertRenewBefore + 48*time.Hour), false},
		{"regenerated when the certificate is missing", func(t *testing.T, p Pair) { os.Remove(p.CertFile) }, now, false},
		{"regenerated when unparsable", func(t *testing.T, p Pair) { writeFile(t, p.CertFile, []byte("garbage")) }, now, false},
		{"regenerated when the key does not match", func(t *testing.T, p Pair) { writeFile(t, p.KeyFile, keyPEM(t, mustECDSA(t))) }, now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := EnsureDevCert(dir, now)
			if err != nil {
				t.Fatalf("EnsureDevCert: %v", err)
			}
			certBefore, _ := readPair(t, p)
			tt.damage(t, p)
			p2, err := EnsureDevCert(dir, tt.at)
			if err != nil {
				t.Fatalf("second EnsureDevCert: %v", err)
			}
			if p2 != p {
				t.Errorf("second EnsureDevCert = %+v, want the same paths %+v", p2, p)
			}
			certAfter, _ := readPair(t, p2)
			if got := bytes.Equal(certBefore, certAfter); got != tt.wantSame {
				t.Errorf("certificate unchanged = %v, want %v", got, tt.wantSame)
			}
			if _, err := loadPair(p2, tt.at); err != nil {
				t.Errorf("pair after EnsureDevCert does not load at %v: %v", tt.at, err)
			}
		})
	}
}

func TestEnsureDevCertNeedsDir(t *testing.T) {
	if _, err := EnsureDevCert("", time.Now()); err == nil {
		t.Error(`EnsureDevCert("") = nil error, want one`)
	}
}

func TestNewServesDevCertWithoutPairs(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{DevCertDir: dir})
	if err != nil {
		t.Fatalf("New without pairs: %v", err)
	}
	leafDER, err := os.ReadFile(filepath.Join(dir, DevCertFile))
	if err != nil {
		t.Fatalf("dev certificate not written: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(leafDER) {
		t.Fatal("dev certificate is not PEM")
	}
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
			if err != nil {
				t.Skipf("no %s on this machine: %v", host, err)
			}
			ln.Close()
			addr := serveOn(t, net.JoinHostPort(host, "0"), s.TLSConfig())
			for _, name := range []string{"localhost", ""} {
				if _, err := handshake(addr, &tls.Config{ServerName: name, RootCAs: roots}); err != nil {
					t.Errorf("handshake with server name %q on %s: %v", name, host, err)
				}
			}
		})
	}
}

func TestDefaultDevCertDir(t *testing.T) {
	home := t.TempDir()
	state := t.TempDir()
	tests := []struct {
		name, xdg, home, want string
	}{
		{"XDG_STATE_HOME", state, home, filepath.Join(state, "bulwark")},
		{"HOME", "", home, filepath.Join(home, ".local", "state", "bulwark")},
		{"relative XDG_STATE_HOME is ignored", "rel", home, filepath.Join(home, ".local", "state", "bulwark")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_STATE_HOME", tt.xdg)
			t.Setenv("HOME", tt.home)
			if got := (Options{}).withDefaults().DevCertDir; got != tt.want {
				t.Errorf("default DevCertDir = %q, want %q", got, tt.want)
			}
		})
	}
}
