package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// writeCert writes a self-signed ECDSA certificate for localhost with the
// given serial to dir/name.pem and dir/name-key.pem.
func writeCert(t testing.TB, dir, name string, serial int64) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ = x509.ParseCertificate(der)
	return certFile, keyFile, cert
}

// servedSerial dials addr and returns the serial of the certificate served.
func servedSerial(t testing.TB, addr string) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		return -1
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// opsLoad keeps HTTP/1.1 and HTTP/2 clients sending GETs and POSTs (which
// no client retries on its own) and records every failure.
type opsLoad struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	ok     int
	failed []string
}

func startOpsLoad(t *testing.T, url string, roots *x509.CertPool, clients int) *opsLoad {
	l := &opsLoad{stop: make(chan struct{})}
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; i < clients; i++ {
		h2 := i%2 == 1
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Transport: tr, Timeout: 40 * time.Second}
		post := i%4 >= 2
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer tr.CloseIdleConnections()
			for n := 0; n < 200000 && time.Now().Before(deadline); n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				var res *http.Response
				var err error
				if post {
					res, err = c.Post(url+"/headers", "text/plain", strings.NewReader("order 42"))
				} else {
					res, err = c.Get(url + "/")
				}
				msg := ""
				if err != nil {
					msg = err.Error()
				} else {
					readAll(t, res)
					if res.StatusCode != 200 {
						msg = fmt.Sprintf("status %d (%s)", res.StatusCode, res.Header.Get("X-Bulwark-Error"))
					}
				}
				l.mu.Lock()
				if msg == "" {
					l.ok++
				} else {
					l.failed = append(l.failed, fmt.Sprintf("h2=%v post=%v: %s", h2, post, msg))
				}
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *opsLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok
}

// TestZeroDowntimeOperations is the operations issue's demonstration: under a
// steady load of HTTP/1.1 and HTTP/2 clients, a config reload, a certificate
// rotation, a binary upgrade and an app restart, one after another, fail no
// request and reset no connection.
func TestZeroDowntimeOperations(t *testing.T) {
	requireUvicorn(t)
	if testing.Short() {
		t.Skip("skipped in -short: a minute of load")
	}
	dir := t.TempDir()
	certFile, keyFile, first := writeCert(t, dir, "cert", 1)
	_, _, next := writeCert(t, dir, "next", 2)
	appPort := freePort(t)
	pidFile := filepath.Join(dir, "bulwark.pid")
	cfg := fmt.Sprintf(`
[listen]
https = "%%HTTPS%%"
[tls]
cert = %q
key = %q
[admin]
listen = "%%ADMIN%%"
[upstream]
address = "127.0.0.1:%d"
max_concurrency = 20
[log]
access = "off"
[app]
%s
`, certFile, keyFile, appPort, appCommand(appPort))
	in := startBulwark(t, cfg, nil, "--pid-file", pidFile)
	roots := x509.NewCertPool()
	roots.AddCert(first)
	roots.AddCert(next)
	waitFor(t, 30*time.Second, "the app to be ready", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.State == "ready"
	})
	l := startOpsLoad(t, in.url(""), roots, 8)
	settle := func(what string) {
		before := l.count()
		waitFor(t, 20*time.Second, "requests to flow after "+what, func() bool { return l.count() > before+50 })
	}
	settle("start")

	// 1. Config reload: a new limit, applied by SIGHUP.
	cfgPath := filepath.Join(in.dir, "bulwark.toml")
	b, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(b), "max_concurrency = 20", "max_concurrency = 30", 1)), 0o600)
	in.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the reload", func() bool { return strings.Contains(in.out.String(), "config reloaded") })
	settle("the reload")

	// 2. Certificate rotation: the new pair renamed over the old files.
	os.Rename(filepath.Join(dir, "next-key.pem"), keyFile+".tmp")
	os.Rename(filepath.Join(dir, "next.pem"), certFile+".tmp")
	os.Rename(keyFile+".tmp", keyFile)
	os.Rename(certFile+".tmp", certFile)
	waitFor(t, 15*time.Second, "the new certificate to be served", func() bool { return servedSerial(t, in.https) == 2 })
	settle("the certificate rotation")

	// 3. Binary upgrade.
	oldPID, _ := os.ReadFile(pidFile)
	out, err := exec.Command(bulwarkBin, "upgrade", "--pid-file", pidFile).CombinedOutput()
	if err != nil {
		t.Fatalf("bulwark upgrade: %v\n%s", err, out)
	}
	newPID, _ := os.ReadFile(pidFile)
	if strings.TrimSpace(string(newPID)) == strings.TrimSpace(string(oldPID)) {
		t.Fatalf("the pid file still names %s after the upgrade", oldPID)
	}
	select {
	case <-in.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the old process did not exit after the upgrade")
	}
	if in.exit != nil {
		t.Errorf("the old process exited with %v, want 0", in.exit)
	}
	var pid int
	fmt.Sscan(string(newPID), &pid)
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		syscall.Kill(pid, syscall.SIGKILL)
	})
	waitFor(t, 30*time.Second, "the new process's app", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.State == "ready"
	})
	settle("the upgrade")

	// 4. App restart through the admin API.
	before := in.status(t).App.PID
	out, err = in.cli("restart-app", "--admin", in.admin).CombinedOutput()
	if err != nil {
		t.Fatalf("bulwark restart-app: %v\n%s", err, out)
	}
	waitFor(t, 30*time.Second, "the restarted app", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.State == "ready" && s.App.PID != before
	})
	settle("the app restart")

	close(l.stop)
	l.wg.Wait()
	t.Logf("%d requests answered 200 across reload, rotation, upgrade and app restart", l.ok)
	if len(l.failed) > 0 {
		n := min(len(l.failed), 10)
		t.Errorf("%d requests failed; first %d:\n%s", len(l.failed), n, strings.Join(l.failed[:n], "\n"))
	}
}

// TestInvalidReloadKeepsOldConfig: SIGHUP with a broken file logs every
// problem and keeps serving with the old configuration; a fixed file is
// then applied.
func TestInvalidReloadKeepsOldConfig(t *testing.T) {
	up, _ := startUvicorn(t)
	in := startBulwark(t, withUpstream(up, "max_concurrency = 5\n"), nil)
	cfgPath := filepath.Join(in.dir, "bulwark.toml")
	good, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(string(good)+"\n[limits]\nmax_body = 12\nbogus_key = true\n"), 0o600)
	in.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the refused reload in the log", func() bool {
		return strings.Contains(in.out.String(), "reload refused")
	})
	log := in.out.String()
	for _, want := range []string{"limits.max_body", "limits.bogus_key"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not name %s:\n%s", want, tail(log, 10))
		}
	}
	res, err := in.client(false).Get(in.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	if res.StatusCode != 200 {
		t.Errorf("after a refused reload: got %d, want 200 on the old config", res.StatusCode)
	}
	if got := in.status(t).MaxConcurrency; got != 5 {
		t.Errorf("max_concurrency after a refused reload = %d, want the old 5", got)
	}
	os.WriteFile(cfgPath, []byte(strings.Replace(string(good), "max_concurrency = 5", "max_concurrency = 7", 1)), 0o600)
	in.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the fixed config to apply", func() bool { return in.status(t).MaxConcurrency == 7 })
}

// TestLogrotateThenSIGHUPOrSIGUSR1 is logrotate's default ("create") with
// a postrotate `kill -HUP` or `kill -USR1`: after the rename, lines go to
// the renamed file until the reload or the reopen opens a fresh one at the
// configured path. SIGUSR1 reopens even while the config file is broken.
func TestLogrotateThenSIGHUPOrSIGUSR1(t *testing.T) {
	up, _ := startUvicorn(t)
	in := startBulwark(t, "[listen]\nhttps = \"%HTTPS%\"\n[admin]\nlisten = \"%ADMIN%\"\n[log]\naccess = \"%DIR%/access.log\"\n"+
		"[upstream]\naddress = \""+up+"\"\n", nil)
	path := filepath.Join(in.dir, "access.log")
	c := in.client(false)
	get := func() {
		t.Helper()
		res, err := c.Get(in.url("/"))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, res)
	}
	lines := func(p string) func() int {
		return func() int {
			b, _ := os.ReadFile(p)
			return strings.Count(string(b), "\n")
		}
	}
	waitLines := func(p string, n int) {
		t.Helper()
		waitFor(t, 10*time.Second, fmt.Sprintf("%d lines in %s", n, filepath.Base(p)), func() bool { return lines(p)() == n })
	}

	// rotate renames the log to path+suffix, sends sig, waits for logged,
	// and checks that the lines after it go to a fresh file at path while
	// the renamed one keeps the rotated lines plus the one sent between.
	rotate := func(suffix string, sig syscall.Signal, logged string) {
		t.Helper()
		before := lines(path)()
		if err := os.Rename(path, path+suffix); err != nil {
			t.Fatal(err)
		}
		get() // still to the open, renamed file
		waitLines(path+suffix, before+1)
		in.cmd.Process.Signal(sig)
		waitFor(t, 10*time.Second, logged+" in the log", func() bool { return strings.Contains(in.out.String(), logged) })
		get()
		waitLines(path, 1)
		if got := lines(path + suffix)(); got != before+1 {
			t.Errorf("%s: the rotated file has %d lines, want %d: none after the signal", sig, got, before+1)
		}
	}

	get()
	waitLines(path, 1)
	rotate(".1", syscall.SIGHUP, "config reloaded")

	cfgPath := filepath.Join(in.dir, "bulwark.toml")
	good, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, append(good, "\n[limits]\nbogus_key = 1\n"...), 0o600)
	rotate(".2", syscall.SIGUSR1, "access log reopened")
}
