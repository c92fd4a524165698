package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// findPebble finds pebble and pebble-challtestsrv as e2e does: $PEBBLE and
// $PEBBLE_CHALLTESTSRV, the Go bin directory, PATH; it skips when they are
// missing, except in CI.
func findPebble(t *testing.T) (pebble, challtestsrv string) {
	t.Helper()
	find := func(env, name string) string {
		if p := os.Getenv(env); p != "" {
			return p
		}
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			p := filepath.Join(strings.TrimSpace(string(out)), "bin", name)
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		p, _ := exec.LookPath(name)
		return p
	}
	pebble, challtestsrv = find("PEBBLE", "pebble"), find("PEBBLE_CHALLTESTSRV", "pebble-challtestsrv")
	if pebble == "" || challtestsrv == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("pebble or pebble-challtestsrv not found in CI (scripts/test.sh installs them)")
		}
		t.Skip("skipped: pebble or pebble-challtestsrv not found (go install github.com/letsencrypt/pebble/v2/cmd/...@v2.10.3); CI is unset")
	}
	return pebble, challtestsrv
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProcess runs a command whose output goes to a file, ended by PID at
// cleanup.
func startProcess(t *testing.T, env []string, name string, args ...string) (out func() string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "out-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return func() string { b, _ := os.ReadFile(f.Name()); return string(b) }
}

// selfSigned writes a certificate and key for 127.0.0.1, Pebble's own TLS.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "pebble.pem"), filepath.Join(dir, "pebble-key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestMaintenanceRenewsAgainstPebble runs the Manager's renewal loop
// against a real Pebble issuing 30-second certificates: the certificate is
// obtained over tls-alpn-01 on a listener answering through
// GetCertificate, then renewed by the maintenance loop in the same
// process, and the new certificate is served.
func TestMaintenanceRenewsAgainstPebble(t *testing.T) {
	pebbleBin, challBin := findPebble(t)
	dir := t.TempDir()
	dns := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, nil, challBin, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dnsserver", dns,
		"-management", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")

	// The listener the CA validates against: GetCertificate answers both
	// the challenge and the name, as tlsconf does.
	var m *Manager
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		NextProtos:     []string{"http/1.1", "acme-tls/1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return m.GetCertificate(h) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()

	certFile, keyFile := selfSigned(t, dir)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"certificate": certFile, "privateKey": keyFile,
		"httpPort": freePort(t), "tlsPort": ln.Addr().(*net.TCPAddr).Port,
		"retryAfter": map[string]int{"authz": 1, "order": 1}, "keyAlgorithm": "ecdsa",
		"profiles": map[string]any{"default": map[string]any{"description": "short", "validityPeriod": 30}},
	}})
	cfgFile := filepath.Join(dir, "pebble.json")
	os.WriteFile(cfgFile, cfg, 0o600)
	pebbleOut := startProcess(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_AUTHZREUSE=0", "PEBBLE_WFE_NONCEREJECT=0"},
		pebbleBin, "-config", cfgFile, "-dnsserver", dns)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(pebbleOut(), "ACME directory available") {
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not start:\n%s", pebbleOut())
		}
		time.Sleep(50 * time.Millisecond)
	}

	var logs syncBuffer
	m, err = New(Options{
		Domains: []string{"a.test"}, Storage: filepath.Join(dir, "acme"), CA: "https://" + listen + "/dir",
		CARoot: certFile, Challenges: []string{TLSALPN01}, RenewCheckInterval: time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Start(ctx, ln.Addr().String(), ""); err != nil {
		t.Fatal(err)
	}
	wait := func(what string, d time.Duration, cond func(NameStatus) bool) NameStatus {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			if st := m.Status()[0]; cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %v\nlog:\n%s", what, m.Status()[0], logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	first := wait("the first certificate", 60*time.Second, func(s NameStatus) bool { return !s.NotAfter.IsZero() })
	if !first.RenewAfter.Before(first.NotAfter) {
		t.Errorf("renew_after %v is not before not_after %v", first.RenewAfter, first.NotAfter)
	}
	second := wait("the renewal", 60*time.Second, func(s NameStatus) bool { return s.NotAfter.After(first.NotAfter) })
	if !strings.Contains(logs.String(), `msg="acme: certificate obtained" name=a.test renewal=true`) {
		t.Errorf("no renewal line in the log")
	}
	if second.LastError != "" {
		t.Errorf("last_error after the renewal: %q", second.LastError)
	}
	if n := strings.Count(pebbleOut(), "Added order"); n < 2 {
		t.Errorf("pebble accepted %d orders, want the first and a renewal", n)
	}
}
