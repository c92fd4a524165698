package tlsconf

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := makePair(t, dir, "good", certSpec{names: []string{"good.test"}})
	other := makePair(t, dir, "other", certSpec{names: []string{"other.test"}})
	expiredAt := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	expired := makePair(t, dir, "expired", certSpec{
		names: []string{"expired.test"}, notBefore: expiredAt.Add(-90 * 24 * time.Hour), notAfter: expiredAt,
	})
	future := makePair(t, dir, "future", certSpec{
		names: []string{"future.test"}, notBefore: time.Now().Add(48 * time.Hour), notAfter: time.Now().Add(96 * time.Hour),
	})
	notPEM := filepath.Join(dir, "notpem.txt")
	writeFile(t, notPEM, []byte("hello, this is not a certificate\n"))
	keyOnly := filepath.Join(dir, "keyonly.pem")
	writeFile(t, keyOnly, keyPEM(t, mustECDSA(t)))
	certOnly := filepath.Join(dir, "certonly.pem")
	writeFile(t, certOnly, certPEM(good.leaf))
	missing := filepath.Join(dir, "missing.pem")
	aDir := filepath.Join(dir, "adir")
	if err := os.Mkdir(aDir, 0o700); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		pair     Pair
		wantIs   error
		wantFile string
		wantText string
	}{
		{"missing cert", Pair{missing, good.KeyFile}, fs.ErrNotExist, missing, "cannot open"},
		{"missing key", Pair{good.CertFile, missing}, fs.ErrNotExist, missing, "cannot open"},
		{"unreadable cert", Pair{aDir, good.KeyFile}, nil, aDir, "cannot read"},
		{"cert not PEM", Pair{notPEM, good.KeyFile}, ErrNotPEM, notPEM, "not a PEM file"},
		{"key not PEM", Pair{good.CertFile, notPEM}, ErrNotPEM, notPEM, "not a PEM file"},
		{"no certificates", Pair{keyOnly, good.KeyFile}, ErrNoCertificates, keyOnly, "no certificates in file"},
		{"no key", Pair{good.CertFile, certOnly}, ErrNoKey, certOnly, "no private key"},
		{"key mismatch", Pair{good.CertFile, other.KeyFile}, ErrKeyMismatch, other.KeyFile, "does not match"},
		{"expired", expired.Pair, ErrExpired, expired.CertFile, "expired on 2026-01-02"},
		{"not yet valid", future.Pair, ErrNotYetValid, future.CertFile, "not yet valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Pairs: []Pair{tt.pair}})
			if err == nil {
				t.Fatalf("New(%+v) = nil error, want one", tt.pair)
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("New(%+v) error %q is not a *FileError", tt.pair, err)
			}
			if fe.Path != tt.wantFile {
				t.Errorf("New(%+v) error names %q, want %q", tt.pair, fe.Path, tt.wantFile)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("New(%+v) error %q is not %v", tt.pair, err, tt.wantIs)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantFile) || !strings.Contains(msg, tt.wantText) {
				t.Errorf("New(%+v) error = %q, want it to name %q and say %q", tt.pair, msg, tt.wantFile, tt.wantText)
			}
		})
	}
}

func TestNewReportsEveryBadPair(t *testing.T) {
	dir := t.TempDir()
	a := makePair(t, dir, "a", certSpec{names: []string{"a.test"}})
	b := makePair(t, dir, "b", certSpec{names: []string{"b.test"}})
	missing := filepath.Join(dir, "missing.crt")
	_, err := New(Options{Pairs: []Pair{{a.CertFile, b.KeyFile}, a.Pair, {missing, a.KeyFile}}})
	if err == nil {
		t.Fatal("New with two bad pairs = nil error, want both reported")
	}
	for _, want := range []string{b.KeyFile, missing} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New error = %q, want it to name %q", err, want)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	dir := t.TempDir()
	p := makePair(t, dir, "a", certSpec{names: []string{"a.test"}})
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"TLS 1.1", Options{Pairs: []Pair{p.Pair}, MinVersion: tls.VersionTLS11}, "minimum TLS version"},
		{"negative rotation", Options{Pairs: []Pair{p.Pair}, TicketRotation: -time.Second}, "negative"},
		{"half a pair", Options{Pairs: []Pair{{CertFile: p.CertFile}}}, "key file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%s) error = %v, want one saying %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestLoadPairKeepsLeafAndChain(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		key     string
		wantKey string
	}{
		{"ecdsa", "ECDSA"},
		{"rsa", "RSA"},
		{"ed25519", "Ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			p := makePair(t, dir, tt.key, certSpec{names: []string{"Www.Example.Test", "127.0.0.1"}, key: tt.key})
			c, err := loadPair(p.Pair, time.Now())
			if err != nil {
				t.Fatalf("loadPair: %v", err)
			}
			if got := c.keyType; got != tt.wantKey {
				t.Errorf("key type = %q, want %q", got, tt.wantKey)
			}
			if c.cert.Leaf == nil || !c.cert.Leaf.Equal(p.leaf) {
				t.Errorf("Leaf = %v, want the parsed leaf", c.cert.Leaf)
			}
			if got := len(c.cert.Certificate); got != 2 {
				t.Errorf("chain length = %d, want 2 (leaf + intermediate)", got)
			}
			if got, want := strings.Join(c.names, ","), "www.example.test,127.0.0.1"; got != want {
				t.Errorf("names = %q, want %q", got, want)
			}
		})
	}
}

func TestParseMinVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    uint16
		wantErr bool
	}{
		{"1.2", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS13, false},
		{" 1.3 ", tls.VersionTLS13, false},
		{"1.1", 0, true},
		{"", 0, true},
		{"TLS1.2", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseMinVersion(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseMinVersion(%q) = %#x, %v; want %#x, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestNewReportsEveryProblemOfAPair checks that a missing certificate does
// not hide a missing key, and that swapped files are named as such.
func TestNewReportsEveryProblemOfAPair(t *testing.T) {
	dir := t.TempDir()
	good := makePair(t, dir, "good", certSpec{names: []string{"good.test"}})
	missCert, missKey := filepath.Join(dir, "nocert.pem"), filepath.Join(dir, "nokey.pem")
	notPEM := filepath.Join(dir, "notpem.txt")
	writeFile(t, notPEM, []byte("hello\n"))
	tests := []struct {
		name string
		pair Pair
		want []string
	}{
		{"both missing", Pair{missCert, missKey}, []string{
			`certificate file "` + missCert + `": cannot open`, `key file "` + missKey + `": cannot open`}},
		{"both bad", Pair{notPEM, notPEM}, []string{`certificate file "` + notPEM + `": not a PEM file`,
			`key file "` + notPEM + `": not a PEM file`}},
		{"swapped", Pair{good.KeyFile, good.CertFile}, []string{"swapped", "exchange cert and key"}},
		{"key given twice", Pair{good.KeyFile, good.KeyFile}, []string{"no certificates in file: it holds a private key"}},
		{"cert given twice", Pair{good.CertFile, good.CertFile}, []string{"no private key in file: it holds a certificate"}},
	}
	for _, tt := range tests {
		_, err := New(Options{Pairs: []Pair{tt.pair}})
		if err == nil {
			t.Errorf("%s: New = nil error", tt.name)
			continue
		}
		if tt.name == "swapped" && !errors.Is(err, ErrSwapped) {
			t.Errorf("%s: error %q is not ErrSwapped", tt.name, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: New error = %q, want it to contain %q", tt.name, err, w)
			}
		}
	}
}

func TestKeyModeWarning(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k.pem")
	writeFile(t, p, keyPEM(t, mustECDSA(t)))
	cert := makePair(t, dir, "c", certSpec{names: []string{"c.test"}}).CertFile
	if err := os.Chmod(cert, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := KeyModeWarning(cert); got != "" {
		t.Errorf("KeyModeWarning(a certificate, mode 0644) = %q, want none", got)
	}
	for _, tt := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o604, true}, {0o644, true}} {
		if err := os.Chmod(p, tt.mode); err != nil {
			t.Fatal(err)
		}
		got := KeyModeWarning(p)
		if (got != "") != tt.warn || (tt.warn && !strings.Contains(got, p)) {
			t.Errorf("KeyModeWarning(mode %04o) = %q, want a warning: %v", tt.mode, got, tt.warn)
		}
	}
	if got := KeyModeWarning(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("KeyModeWarning(missing) = %q, want none (loading reports it)", got)
	}
}
