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

// testPebble is a running Pebble validating tls-alpn-01 on a listener
// that answers through the handshake function given to it.
type testPebble struct {
	dir, root string
	out       func() string
}

// orders counts the orders Pebble has accepted.
func (p testPebble) orders() int { return strings.Count(p.out(), "Added order") }

// serveTLS runs a TLS listener on 127.0.0.1 offering acme-tls/1, whose
// certificates come from get, as tlsconf's do.
func serveTLS(t *testing.T, get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) net.Listener {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{NextProtos: []string{"http/1.1", "acme-tls/1"}, GetCertificate: get})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
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
	return ln
}

// startTestPebble runs pebble-challtestsrv (every name is 127.0.0.1) and
// Pebble validating tls-alpn-01 on tlsPort; validity, if not zero, is the
// certificates' lifetime in seconds.
func startTestPebble(t *testing.T, tlsPort, validity int) testPebble {
	t.Helper()
	pebbleBin, challBin := findPebble(t)
	dir := t.TempDir()
	dns := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, nil, challBin, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dnsserver", dns,
		"-management", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	certFile, keyFile := selfSigned(t, dir)
	// Pebble logs "ACME directory available" before it binds: wait for the
	// address itself to take connections. A bind that fails ends Pebble
	// ("Calling ListenAndServeTLS()" in its output): a port freePort chose
	// was taken meanwhile by a test running beside this one. Then try
	// again on other ports, three times at most.
	for attempt := 1; ; attempt++ {
		listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		conf := map[string]any{
			"listenAddress": listen, "managementListenAddress": fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			"certificate": certFile, "privateKey": keyFile,
			"httpPort": freePort(t), "tlsPort": tlsPort,
			"retryAfter": map[string]int{"authz": 1, "order": 1}, "keyAlgorithm": "ecdsa",
		}
		if validity > 0 {
			conf["profiles"] = map[string]any{"default": map[string]any{"description": "short", "validityPeriod": validity}}
		}
		cfg, _ := json.Marshal(map[string]any{"pebble": conf})
		cfgFile := filepath.Join(dir, "pebble.json")
		os.WriteFile(cfgFile, cfg, 0o600)
		out := startProcess(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_AUTHZREUSE=0", "PEBBLE_WFE_NONCEREJECT=0"},
			pebbleBin, "-config", cfgFile, "-dnsserver", dns)
		deadline := time.Now().Add(20 * time.Second)
		for {
			if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
				c.Close()
				return testPebble{dir: "https://" + listen + "/dir", root: certFile, out: out}
			}
			if strings.Contains(out(), "ListenAndServeTLS") && attempt < 3 {
				t.Logf("pebble could not bind its ports (attempt %d), trying others:\n%s", attempt, out())
				break
			}
			if time.Now().After(deadline) || strings.Contains(out(), "ListenAndServeTLS") {
				t.Fatalf("pebble is not listening on %s:\n%s", listen, out())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// waitStatus polls m's status of its first name until cond holds.
func waitStatus(t *testing.T, m *Manager, logs *syncBuffer, what string, d time.Duration, cond func(NameStatus) bool) NameStatus {
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

// TestMaintenanceRenewsAgainstPebble runs the Manager's renewal loop
// against a real Pebble issuing 30-second certificates: the certificate is
// obtained over tls-alpn-01 on a listener answering through
// GetCertificate, then renewed by the maintenance loop in the same
// process.
func TestMaintenanceRenewsAgainstPebble(t *testing.T) {
	var m *Manager
	ln := serveTLS(t, func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return m.GetCertificate(h) })
	ca := startTestPebble(t, ln.Addr().(*net.TCPAddr).Port, 30)
	var logs syncBuffer
	var err error
	m, err = New(Options{
		Domains: []string{"a.test"}, Storage: filepath.Join(t.TempDir(), "acme"), CA: ca.dir,
		CARoot: ca.root, Challenges: []string{TLSALPN01}, RenewCheckInterval: time.Second,
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
	first := waitStatus(t, m, &logs, "the first certificate", 60*time.Second, func(s NameStatus) bool { return !s.NotAfter.IsZero() })
	if !first.RenewAfter.Before(first.NotAfter) {
		t.Errorf("renew_after %v is not before not_after %v", first.RenewAfter, first.NotAfter)
	}
	second := waitStatus(t, m, &logs, "the renewal", 60*time.Second, func(s NameStatus) bool { return s.NotAfter.After(first.NotAfter) })
	if !strings.Contains(logs.String(), `msg="acme: certificate obtained" name=a.test renewal=true`) {
		t.Errorf("no renewal line in the log")
	}
	if second.LastError != "" {
		t.Errorf("last_error after the renewal: %q", second.LastError)
	}
	if n := ca.orders(); n < 2 {
		t.Errorf("pebble accepted %d orders, want the first and a renewal", n)
	}
}

// TestSharedStorageOrdersOnce: two instances sharing storage start at
// once. The engine's lock lets one order; the other loads the result. The
// CA validates only the first instance's listener, so when the second wins
// the lock, the first answers its challenge from the shared storage.
func TestSharedStorageOrdersOnce(t *testing.T) {
	var a, b *Manager
	lnA := serveTLS(t, func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return a.GetCertificate(h) })
	lnB := serveTLS(t, func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return b.GetCertificate(h) })
	ca := startTestPebble(t, lnA.Addr().(*net.TCPAddr).Port, 0)
	storage := filepath.Join(t.TempDir(), "acme")
	var logsA, logsB syncBuffer
	newManager := func(logs *syncBuffer) *Manager {
		m, err := New(Options{
			Domains: []string{"a.test"}, Storage: storage, CA: ca.dir, CARoot: ca.root,
			Challenges: []string{TLSALPN01}, RenewCheckInterval: time.Second,
			Logger: slog.New(slog.NewTextHandler(logs, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b = newManager(&logsA), newManager(&logsB)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- a.Start(ctx, lnA.Addr().String(), "") }()
	go func() { errs <- b.Start(ctx, lnB.Addr().String(), "") }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	sa := waitStatus(t, a, &logsA, "instance A's certificate", 60*time.Second, func(s NameStatus) bool { return !s.NotAfter.IsZero() })
	sb := waitStatus(t, b, &logsB, "instance B's certificate", 60*time.Second, func(s NameStatus) bool { return !s.NotAfter.IsZero() })
	if !sa.NotAfter.Equal(sb.NotAfter) {
		t.Errorf("the instances serve different certificates: %v and %v", sa.NotAfter, sb.NotAfter)
	}
	if n := ca.orders(); n != 1 {
		t.Errorf("pebble accepted %d orders for one name shared by two instances, want 1\nA:\n%s\nB:\n%s", n, logsA.String(), logsB.String())
	}
}
