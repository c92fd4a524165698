package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requirePebble finds pebble and pebble-challtestsrv (Let's Encrypt's test
// CA and its DNS server): $PEBBLE and $PEBBLE_CHALLTESTSRV, else the Go bin
// directory, else PATH. It skips when they are missing, except in CI.
func requirePebble(t testing.TB) (pebble, challtestsrv string) {
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
			t.Fatal("pebble or pebble-challtestsrv not found in CI (scripts/test.sh installs them; or set PEBBLE and PEBBLE_CHALLTESTSRV)")
		}
		t.Skip("skipped: pebble or pebble-challtestsrv not found (go install github.com/letsencrypt/pebble/v2/cmd/...@v2.10.3); CI is unset")
	}
	return pebble, challtestsrv
}

// pebbleCA is a running Pebble whose validation authority resolves every
// name through pebble-challtestsrv (to 127.0.0.1 unless told otherwise) and
// validates http-01 and tls-alpn-01 on the given ports, for real
// (PEBBLE_VA_ALWAYS_VALID unset).
type pebbleCA struct {
	*proc
	dir       string // its ACME directory URL
	caRoot    string // PEM file trusted for its own TLS
	mgmt      string
	challMgmt string         // pebble-challtestsrv's management address
	roots     *x509.CertPool // the root it issues under, from its management API
	workDir   string
}

// pebbleOpts are the knobs a test turns on Pebble.
type pebbleOpts struct {
	httpPort, tlsPort int // where it validates http-01 and tls-alpn-01
	// validity, when not zero, is the lifetime of the certificates issued.
	validity time.Duration
	// ocspURL, when set, is written into issued certificates as their OCSP
	// responder (Pebble runs none itself).
	ocspURL string
	// dnsIP is where every name resolves; "" = 127.0.0.1.
	dnsIP string
	// rsa makes Pebble's own keys RSA, which its management API hands out
	// (/intermediate-keys/ serves only RSA keys); default ECDSA.
	rsa bool
}

// startPebble runs Pebble validating on httpPort and tlsPort; validity,
// when not zero, is the lifetime of the certificates it issues.
func startPebble(t *testing.T, httpPort, tlsPort int, validity time.Duration) *pebbleCA {
	t.Helper()
	return startPebbleWith(t, pebbleOpts{httpPort: httpPort, tlsPort: tlsPort, validity: validity})
}

// startPebbleWith runs pebble-challtestsrv and Pebble as o says.
func startPebbleWith(t *testing.T, o pebbleOpts) *pebbleCA {
	t.Helper()
	pebbleBin, challBin := requirePebble(t)
	dir := t.TempDir()
	if o.dnsIP == "" {
		o.dnsIP = "127.0.0.1"
	}
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	challMgmt := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	chall := startProc(t, dir, nil, challBin, "-defaultIPv4", o.dnsIP, "-defaultIPv6", "",
		"-dnsserver", dnsAddr, "-management", challMgmt,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	waitListening(t, chall, challMgmt)

	certFile, keyFile, _ := writeCert(t, dir, "pebble", 7)
	p := &pebbleCA{caRoot: certFile, workDir: dir, challMgmt: challMgmt}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p.mgmt = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p.dir = "https://" + listen + "/dir"
	keyAlg := "ecdsa"
	if o.rsa {
		keyAlg = "rsa"
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        p.mgmt,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       o.httpPort,
		"tlsPort":                        o.tlsPort,
		"ocspResponderURL":               o.ocspURL,
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   keyAlg,
	}}
	if o.validity > 0 {
		cfg["pebble"].(map[string]any)["profiles"] = map[string]any{
			"default": map[string]any{"description": "short-lived, for renewal tests", "validityPeriod": int(o.validity.Seconds())},
		}
	}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// No random sleeps before validating; every order validates afresh
	// (no reused authorizations) and no nonce is rejected on purpose, so
	// that the counts below are exact.
	env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_AUTHZREUSE=0", "PEBBLE_WFE_NONCEREJECT=0"}
	p.proc = startProc(t, dir, env, pebbleBin, "-config", cfgFile, "-dnsserver", dnsAddr)
	waitListening(t, p.proc, p.mgmt)

	root := p.manage(t, "/roots/0")
	p.roots = x509.NewCertPool()
	if blk, _ := pem.Decode(root); blk == nil || !p.roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble's /roots/0 is not a PEM certificate: %q", root)
	}
	return p
}

// manage GETs path from Pebble's management API.
func (p *pebbleCA) manage(t *testing.T, path string) []byte {
	t.Helper()
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(p.caRoot)
	pool.AppendCertsFromPEM(b)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := c.Get("https://" + p.mgmt + path)
	if err != nil {
		t.Fatalf("pebble's management API %s: %v", path, err)
	}
	body := readAll(t, res)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("pebble's management API %s: %s %q", path, res.Status, body)
	}
	return []byte(body)
}

// orders counts the orders Pebble has accepted.
func (p *pebbleCA) orders() int { return strings.Count(p.out.String(), "Added order") }

// startBulwarkAt runs bulwark on the given addresses (the ports Pebble
// validates), with its state directory under dir.
func startBulwarkAt(t *testing.T, dir, https, httpAddr, admin, config string, args ...string) *instance {
	t.Helper()
	in := &instance{https: https, http: httpAddr, admin: admin, dir: dir}
	cfgPath := filepath.Join(dir, "bulwark.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"XDG_STATE_HOME=" + filepath.Join(dir, "state")}
	in.proc = startProc(t, dir, env, bulwarkBin, append([]string{"run", "--config", cfgPath}, args...)...)
	waitListening(t, in.proc, https)
	return in
}

// servedLeaf completes a handshake for name at addr, verifying the chain
// against roots, and returns the leaf.
func servedLeaf(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// waitServed waits until name is served with a certificate that chains to
// roots, and returns it.
func waitServed(t *testing.T, in *instance, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	var last error
	deadline := time.Now().Add(90 * time.Second)
	for {
		leaf, last = servedLeaf(in.https, name, roots)
		if last == nil {
			return leaf
		}
		if (in.cmd != nil && in.exited()) || time.Now().After(deadline) {
			t.Fatalf("%s not served with a certificate from pebble: %v\nbulwark:\n%s", name, last, tail(in.out.String(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// acmeStatus is the part of /status this test reads.
type acmeStatus struct {
	Certs []struct {
		Name        string    `json:"name"`
		NotAfter    time.Time `json:"not_after"`
		LastRenewal time.Time `json:"last_renewal"`
		LastError   string    `json:"last_error"`
	} `json:"certs"`
}

func readACMEStatus(t *testing.T, admin string) acmeStatus {
	t.Helper()
	var s acmeStatus
	res, err := http.Get("http://" + admin + "/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	if err := json.Unmarshal([]byte(readAll(t, res)), &s); err != nil {
		t.Fatalf("decoding /status: %v", err)
	}
	return s
}

// TestACMEObtainServeReloadUpgrade is the ACME issue's end-to-end test
// against a real Pebble: a.test is obtained over http-01 on the plain
// listener, then b.test over tls-alpn-01 on the HTTPS listener by a second
// process sharing the storage (which loads a.test instead of ordering it
// again); both are served and verify against Pebble's root, a name covered
// by a certificate file is served from the file, and neither a reload nor
// a binary upgrade orders again.
func TestACMEObtainServeReloadUpgrade(t *testing.T) {
	httpsPort, httpPort := freePort(t), freePort(t)
	ca := startPebble(t, httpPort, httpsPort, 0)
	dir := t.TempDir()
	https := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	plain := fmt.Sprintf("127.0.0.1:%d", httpPort)
	fileCert, fileKey, fileLeaf := writeCert(t, dir, "localhost", 42)
	storage := filepath.Join(dir, "acme")
	config := func(admin string, domains, challenges string) string {
		return fmt.Sprintf(`[listen]
https = %q
http = %q
[tls]
cert = %q
key = %q
[admin]
listen = %q
[log]
access = "off"
[acme]
domains = %s
ca = %q
ca_root = %q
challenges = %s
storage = %q
`, https, plain, fileCert, fileKey, admin, domains, ca.dir, ca.caRoot, challenges, storage)
	}

	// 1. a.test over http-01 only.
	admin1 := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	in := startBulwarkAt(t, dir, https, plain, admin1, config(admin1, `["a.test"]`, `["http-01"]`))
	a1 := waitServed(t, in, "a.test", ca.roots)
	if !strings.Contains(in.out.String(), "challenge=http-01") {
		t.Errorf("no http-01 challenge answered in bulwark's log:\n%s", tail(in.out.String(), 30))
	}
	// The plain listener still redirects everything else.
	res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).
		Get("http://" + plain + "/.well-known/acme-challenge/unknown-token")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("unknown challenge token on the plain listener: %d, want 308", res.StatusCode)
	}
	if fi, err := os.Stat(storage); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("storage %s has mode %v, want 0700", storage, fi.Mode().Perm())
	}
	if err := in.stop(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatalf("bulwark exited with %v", err)
	}
	if n := ca.orders(); n != 1 {
		t.Fatalf("pebble accepted %d orders after a.test, want 1", n)
	}

	// 2. A second process adds b.test, over tls-alpn-01 only; a.test is
	// loaded from storage.
	admin2 := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	pidFile := filepath.Join(dir, "bulwark.pid")
	in = startBulwarkAt(t, dir, https, plain, admin2, config(admin2, `["a.test", "b.test"]`, `["tls-alpn-01"]`), "--pid-file", pidFile)
	b1 := waitServed(t, in, "b.test", ca.roots)
	if !strings.Contains(in.out.String(), "challenge=tls-alpn-01") {
		t.Errorf("no tls-alpn-01 challenge answered in bulwark's log:\n%s", tail(in.out.String(), 30))
	}
	if a := waitServed(t, in, "a.test", ca.roots); !a.Equal(a1) {
		t.Errorf("a.test: a new certificate (serial %s) instead of the stored one (%s)", a.SerialNumber, a1.SerialNumber)
	}
	if n := ca.orders(); n != 2 {
		t.Fatalf("pebble accepted %d orders after b.test, want 2", n)
	}
	// A name a certificate file covers is served from the file.
	filePool := x509.NewCertPool()
	filePool.AddCert(fileLeaf)
	if leaf, err := servedLeaf(https, "localhost", filePool); err != nil || !leaf.Equal(fileLeaf) {
		t.Errorf("localhost: %v; want the file's certificate", err)
	}
	st := readACMEStatus(t, admin2)
	if len(st.Certs) != 2 || st.Certs[0].Name != "a.test" || st.Certs[1].Name != "b.test" {
		t.Fatalf("/status certs = %+v, want a.test and b.test", st.Certs)
	}
	for i, want := range []*x509.Certificate{a1, b1} {
		if c := st.Certs[i]; !c.NotAfter.Equal(want.NotAfter) || c.LastError != "" {
			t.Errorf("/status %s: not_after %v (want %v), last_error %q", c.Name, c.NotAfter, want.NotAfter, c.LastError)
		}
	}
	if st.Certs[1].LastRenewal.IsZero() {
		t.Errorf("/status b.test: no last_renewal after obtaining it")
	}
	m := scrape(t, admin2)
	for _, n := range []string{"a.test", "b.test"} {
		v := m[fmt.Sprintf("bulwark_cert_expiry_seconds{name=%q}", n)]
		if v < 3600 {
			t.Errorf("bulwark_cert_expiry_seconds{name=%q} = %v, want the certificate's remaining life", n, v)
		}
	}

	// 3. A reload orders nothing.
	in.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the reload", func() bool { return strings.Contains(in.out.String(), "config reloaded") })
	if leaf, err := servedLeaf(https, "b.test", ca.roots); err != nil || !leaf.Equal(b1) {
		t.Errorf("b.test after the reload: %v; want the same certificate", err)
	}

	// 4. Nor does a binary upgrade: the new process reads storage.
	oldPID, _ := os.ReadFile(pidFile)
	out, err := exec.Command(bulwarkBin, "upgrade", "--pid-file", pidFile).CombinedOutput()
	if err != nil {
		t.Fatalf("bulwark upgrade: %v\n%s", err, out)
	}
	newPID, _ := os.ReadFile(pidFile)
	if strings.TrimSpace(string(newPID)) == strings.TrimSpace(string(oldPID)) {
		t.Fatalf("the pid file still names %s after the upgrade", oldPID)
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
	select {
	case <-in.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the old process did not exit after the upgrade")
	}
	if in.exit != nil {
		t.Errorf("the old process exited with %v, want 0", in.exit)
	}
	// The new process writes to the same output; nothing tracks its exit.
	in = &instance{https: in.https, proc: &proc{out: in.out}}
	// The new process manages both names from storage: its status shows
	// their expiry without having ordered.
	waitFor(t, 30*time.Second, "the new process to load both certificates", func() bool {
		s := readACMEStatus(t, admin2)
		return len(s.Certs) == 2 && !s.Certs[0].NotAfter.IsZero() && !s.Certs[1].NotAfter.IsZero()
	})
	for name, want := range map[string]*x509.Certificate{"a.test": a1, "b.test": b1} {
		if leaf := waitServed(t, in, name, ca.roots); !leaf.Equal(want) {
			t.Errorf("%s after the upgrade: serial %s, want the stored %s", name, leaf.SerialNumber, want.SerialNumber)
		}
	}
	if n := ca.orders(); n != 2 {
		t.Errorf("pebble accepted %d orders after the reload and the upgrade, want still 2", n)
	}
}

// TestACMERenewalAndFailures: a failed challenge is reported in /status
// and the log; a certificate made to expire soon (Pebble issues 40-minute
// certificates, inside the engine's renewal margin) is renewed by the next
// process, which then serves the new one; and with Pebble down at renewal
// time the old certificate keeps being served while the failure is shown.
func TestACMERenewalAndFailures(t *testing.T) {
	httpsPort, httpPort, deadPort := freePort(t), freePort(t), freePort(t)
	// Pebble validates http-01 on a port nobody listens on: http-01 fails.
	ca := startPebble(t, deadPort, httpsPort, 40*time.Minute)
	dir := t.TempDir()
	https := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	plain := fmt.Sprintf("127.0.0.1:%d", httpPort)
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	config := func(challenges string) string {
		return fmt.Sprintf(`[listen]
https = %q
http = %q
[admin]
listen = %q
[log]
access = "off"
[acme]
domains = ["a.test"]
ca = %q
ca_root = %q
challenges = %s
storage = %q
`, https, plain, admin, ca.dir, ca.caRoot, challenges, filepath.Join(dir, "acme"))
	}
	lastError := func() string {
		s := readACMEStatus(t, admin)
		if len(s.Certs) != 1 {
			t.Fatalf("/status certs = %+v, want a.test", s.Certs)
		}
		return s.Certs[0].LastError
	}

	// 1. A failed challenge: shown in /status and logged at error level.
	in := startBulwarkAt(t, dir, https, plain, admin, config(`["http-01"]`))
	waitFor(t, 60*time.Second, "the failed http-01 challenge in /status", func() bool { return lastError() != "" })
	t.Logf("last_error after the failed challenge: %s", lastError())
	if !strings.Contains(in.out.String(), `level=ERROR msg="acme: obtaining a certificate failed`) {
		t.Errorf("the failure is not logged at error level:\n%s", tail(in.out.String(), 20))
	}
	in.stop(syscall.SIGTERM, 15*time.Second)

	// 2. Obtained over tls-alpn-01; the error clears.
	in = startBulwarkAt(t, dir, https, plain, admin, config(`["tls-alpn-01"]`))
	first := waitServed(t, in, "a.test", ca.roots)
	waitFor(t, 10*time.Second, "last_error to clear", func() bool { return lastError() == "" })
	in.stop(syscall.SIGTERM, 15*time.Second)
	orders := ca.orders()

	// 3. The stored certificate expires within the renewal margin: the
	// next process renews it and serves the new one.
	in = startBulwarkAt(t, dir, https, plain, admin, config(`["tls-alpn-01"]`))
	var renewed *x509.Certificate
	waitFor(t, 60*time.Second, "the renewed certificate to be served", func() bool {
		leaf, err := servedLeaf(https, "a.test", ca.roots)
		if err == nil && !leaf.Equal(first) {
			renewed = leaf
		}
		return renewed != nil
	})
	if n := ca.orders(); n != orders+1 {
		t.Errorf("pebble accepted %d orders, want %d (one renewal)", n, orders+1)
	}
	if !strings.Contains(in.out.String(), `msg="acme: certificate obtained" name=a.test renewal=true`) {
		t.Errorf("the renewal is not logged:\n%s", tail(in.out.String(), 20))
	}
	in.stop(syscall.SIGTERM, 15*time.Second)

	// 4. Pebble is down at renewal time: the old certificate is still
	// served, and the failure is in /status and the log.
	ca.stop(syscall.SIGTERM, 15*time.Second)
	in = startBulwarkAt(t, dir, https, plain, admin, config(`["tls-alpn-01"]`))
	waitFor(t, 60*time.Second, "the failed renewal in /status", func() bool { return lastError() != "" })
	if leaf, err := servedLeaf(https, "a.test", ca.roots); err != nil || !leaf.Equal(renewed) {
		t.Errorf("a.test with the CA down: %v; want the current certificate still served", err)
	}
	if !strings.Contains(in.out.String(), `msg="acme: obtaining a certificate failed; retrying with backoff" name=a.test renewal=true`) {
		t.Errorf("the failed renewal is not logged:\n%s", tail(in.out.String(), 20))
	}
}
