package e2e

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// acmeConfig is a bulwark.toml managing a.test with Pebble ca.
func acmeConfig(https, plain, admin string, ca *pebbleCA, storage string) string {
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
storage = %q
`, https, plain, admin, ca.dir, ca.caRoot, storage)
}

// certState is one name's entry in /status, with the retry fields.
type certState struct {
	Name        string    `json:"name"`
	NotAfter    time.Time `json:"not_after"`
	LastRenewal time.Time `json:"last_renewal"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error"`
	LastErrorAt time.Time `json:"last_error_at"`
}

func readCertState(t *testing.T, admin string) certState {
	t.Helper()
	var s struct {
		Certs []certState `json:"certs"`
	}
	res, err := http.Get("http://" + admin + "/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	if err := json.Unmarshal([]byte(readAll(t, res)), &s); err != nil || len(s.Certs) != 1 {
		t.Fatalf("/status certs = %+v, %v; want a.test", s.Certs, err)
	}
	return s.Certs[0]
}

// TestACMERetrySucceedsAfterFailure: the CA's validation cannot reach
// Bulwark at first (pebble-challtestsrv resolves every name to 127.0.0.2,
// where nothing listens), so the first order fails and /status shows it
// with the engine's next attempt a minute on. The DNS is then fixed, and
// the same process obtains the certificate on its own retry, serves it,
// and clears last_error. The engine's first retry interval is one minute
// (certmagic's retryIntervals, not configurable), so this test takes
// about that long.
func TestACMERetrySucceedsAfterFailure(t *testing.T) {
	httpsPort, httpPort := freePort(t), freePort(t)
	ca := startPebbleWith(t, pebbleOpts{httpPort: httpPort, tlsPort: httpsPort, dnsIP: "127.0.0.2"})
	dir := t.TempDir()
	https := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	plain := fmt.Sprintf("127.0.0.1:%d", httpPort)
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	in := startBulwarkAt(t, dir, https, plain, admin, acmeConfig(https, plain, admin, ca, filepath.Join(dir, "acme")))

	var failed certState
	waitFor(t, 60*time.Second, "the failed order in /status", func() bool {
		failed = readCertState(t, admin)
		return failed.LastError != ""
	})
	t.Logf("first attempt: %s (next attempt %v after it)", failed.LastError, failed.NextAttempt.Sub(failed.LastErrorAt))
	if d := failed.NextAttempt.Sub(failed.LastErrorAt); d <= 0 || d > 2*time.Minute {
		t.Errorf("next_attempt is %v after last_error_at, want the engine's first backoff (1 minute)", d)
	}
	if _, err := servedLeaf(https, "a.test", ca.roots); err == nil {
		t.Fatalf("a.test is served with a certificate from pebble before any order succeeded")
	}

	// Fix the DNS: validation now reaches Bulwark's listeners.
	res, err := http.Post("http://"+ca.challMgmt+"/set-default-ipv4", "application/json", strings.NewReader(`{"ip":"127.0.0.1"}`))
	if err != nil {
		t.Fatalf("pebble-challtestsrv /set-default-ipv4: %v", err)
	}
	if body := readAll(t, res); res.StatusCode != http.StatusOK {
		t.Fatalf("pebble-challtestsrv /set-default-ipv4: %s %q", res.Status, body)
	}
	ordersBefore := ca.orders()

	// The retry is the engine's: no restart, no reload.
	var leaf *x509.Certificate
	waitFor(t, 150*time.Second, "a.test to be obtained on the engine's retry", func() bool {
		if in.exited() {
			t.Fatalf("bulwark exited:\n%s", tail(in.out.String(), 30))
		}
		leaf, err = servedLeaf(https, "a.test", ca.roots)
		return err == nil
	})
	var st certState
	waitFor(t, 10*time.Second, "last_error to clear", func() bool {
		st = readCertState(t, admin)
		return st.LastError == ""
	})
	if !st.NotAfter.Equal(leaf.NotAfter) || st.LastRenewal.IsZero() {
		t.Errorf("/status a.test = %+v, want not_after %v and a last_renewal", st, leaf.NotAfter)
	}
	if !st.LastRenewal.After(failed.LastErrorAt) {
		t.Errorf("last_renewal %v is not after the failure at %v", st.LastRenewal, failed.LastErrorAt)
	}
	if n := ca.orders(); n <= ordersBefore {
		t.Errorf("pebble accepted %d orders, %d before the fix: the certificate did not come from a new order", n, ordersBefore)
	}
	if strings.Count(in.out.String(), "managing certificates") != 1 {
		t.Errorf("the manager started more than once:\n%s", tail(in.out.String(), 30))
	}
}

// ocspResponder answers OCSP requests for certificates issued under
// Pebble's intermediate (signed with its key, read from Pebble's
// management API), each with status good, valid for an hour.
type ocspResponder struct {
	issuer atomic.Pointer[x509.Certificate]
	key    atomic.Pointer[rsa.PrivateKey]

	mu      sync.Mutex
	serials []string // asked for, in order; guarded by mu
}

func (o *ocspResponder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req, err := ocsp.ParseRequest(body)
	issuer, key := o.issuer.Load(), o.key.Load()
	if err != nil || issuer == nil || key == nil {
		w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	o.mu.Lock()
	o.serials = append(o.serials, req.SerialNumber.String())
	o.mu.Unlock()
	now := time.Now().Truncate(time.Minute)
	resp, err := ocsp.CreateResponse(issuer, issuer, ocsp.Response{
		Status: ocsp.Good, SerialNumber: req.SerialNumber,
		ThisUpdate: now, NextUpdate: now.Add(time.Hour),
	}, key)
	if err != nil {
		w.Write(ocsp.InternalErrorErrorResponse)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(resp)
}

// TestACMEStaplesOCSP: Pebble v2.10.3 runs no OCSP responder (Let's
// Encrypt ended OCSP in 2025), but it writes a configured responder URL
// into the certificates it issues. Here that URL is a responder in this
// test signing with Pebble's own intermediate key, so the response is one
// the engine verifies against the real chain: Bulwark obtains a.test and
// its handshakes then staple a good response for that certificate.
func TestACMEStaplesOCSP(t *testing.T) {
	responder := &ocspResponder{}
	srv := httptest.NewServer(responder) // 127.0.0.1
	t.Cleanup(srv.Close)
	httpsPort, httpPort := freePort(t), freePort(t)
	ca := startPebbleWith(t, pebbleOpts{httpPort: httpPort, tlsPort: httpsPort, ocspURL: srv.URL, rsa: true})
	issuerPEM, _ := pem.Decode(ca.manage(t, "/intermediates/0"))
	keyPEM, _ := pem.Decode(ca.manage(t, "/intermediate-keys/0"))
	if issuerPEM == nil || keyPEM == nil {
		t.Fatal("pebble's /intermediates/0 or /intermediate-keys/0 is not PEM")
	}
	issuer, err := x509.ParseCertificate(issuerPEM.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS1PrivateKey(keyPEM.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	responder.issuer.Store(issuer)
	responder.key.Store(key)

	dir := t.TempDir()
	https := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	plain := fmt.Sprintf("127.0.0.1:%d", httpPort)
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	in := startBulwarkAt(t, dir, https, plain, admin, acmeConfig(https, plain, admin, ca, filepath.Join(dir, "acme")))
	leaf := waitServed(t, in, "a.test", ca.roots)
	if len(leaf.OCSPServer) != 1 || leaf.OCSPServer[0] != srv.URL {
		t.Fatalf("a.test's certificate names OCSP responders %v, want %s", leaf.OCSPServer, srv.URL)
	}

	var staple []byte
	waitFor(t, 30*time.Second, "a stapled OCSP response", func() bool {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", https,
			&tls.Config{ServerName: "a.test", RootCAs: ca.roots})
		if err != nil {
			return false
		}
		defer c.Close()
		cs := c.ConnectionState()
		if !cs.PeerCertificates[0].Equal(leaf) {
			return false
		}
		staple = cs.OCSPResponse
		return len(staple) > 0
	})
	resp, err := ocsp.ParseResponseForCert(staple, leaf, issuer)
	if err != nil {
		t.Fatalf("the stapled response does not verify for a.test's certificate: %v", err)
	}
	if resp.Status != ocsp.Good || resp.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("stapled response: status %d, serial %s; want good for %s", resp.Status, resp.SerialNumber, leaf.SerialNumber)
	}
	responder.mu.Lock()
	asked := responder.serials
	responder.mu.Unlock()
	if len(asked) == 0 || asked[0] != leaf.SerialNumber.String() {
		t.Errorf("the responder was asked about %v, want a.test's serial %s", asked, leaf.SerialNumber)
	}
}
