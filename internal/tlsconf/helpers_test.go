package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Test PKI: one root, one intermediate, leaves issued by the intermediate
// and written with the intermediate after them (so every test serves a
// chain). RSA-2048 generation is slow, so one RSA key is made per test
// binary and shared by every RSA leaf.
var (
	pkiOnce   sync.Once
	testRoot  *x509.Certificate
	testInter *x509.Certificate
	interKey  *ecdsa.PrivateKey
	rsaOnce   sync.Once
	rsaKey    *rsa.PrivateKey
)

func testPKI(t testing.TB) {
	t.Helper()
	pkiOnce.Do(func() {
		rootKey := mustECDSA(t)
		now := time.Now()
		root := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "tlsconf test root"},
			NotBefore:             now.Add(-48 * time.Hour),
			NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
		if err != nil {
			t.Fatalf("creating root: %v", err)
		}
		testRoot, _ = x509.ParseCertificate(der)
		interKey = mustECDSA(t)
		inter := &x509.Certificate{
			SerialNumber:          big.NewInt(2),
			Subject:               pkix.Name{CommonName: "tlsconf test intermediate"},
			NotBefore:             now.Add(-48 * time.Hour),
			NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err = x509.CreateCertificate(rand.Reader, inter, testRoot, &interKey.PublicKey, rootKey)
		if err != nil {
			t.Fatalf("creating intermediate: %v", err)
		}
		testInter, _ = x509.ParseCertificate(der)
	})
	if testRoot == nil || testInter == nil {
		t.Fatal("test PKI unavailable")
	}
}

func rootPool(t testing.TB) *x509.CertPool {
	testPKI(t)
	p := x509.NewCertPool()
	p.AddCert(testRoot)
	return p
}

func mustECDSA(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating ECDSA key: %v", err)
	}
	return k
}

func sharedRSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err == nil {
			rsaKey = k
		}
	})
	if rsaKey == nil {
		t.Fatal("generating RSA key failed")
	}
	return rsaKey
}

// certSpec describes a test leaf.
type certSpec struct {
	names     []string  // DNS names and IP addresses
	key       string    // "ecdsa" (default), "rsa" or "ed25519"
	notBefore time.Time // zero: an hour ago
	notAfter  time.Time // zero: in 90 days
}

// testPair is a pair written to disk with what it holds.
type testPair struct {
	Pair
	leaf *x509.Certificate
	key  crypto.Signer
}

var serial = struct {
	sync.Mutex
	n int64
}{n: 100}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

// issue creates a leaf for spec, signed by the test intermediate.
func issue(t testing.TB, spec certSpec) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	testPKI(t)
	var key crypto.Signer
	switch spec.key {
	case "", "ecdsa":
		key = mustECDSA(t)
	case "rsa":
		key = sharedRSA(t)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatalf("generating ed25519 key: %v", err)
		}
		key = k
	default:
		t.Fatalf("unknown key type %q", spec.key)
	}
	nb, na := spec.notBefore, spec.notAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = time.Now().Add(90 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: spec.names[0]},
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range spec.names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, testInter, key.Public(), interKey)
	if err != nil {
		t.Fatalf("creating leaf: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing leaf: %v", err)
	}
	return leaf, key
}

// makePair issues a leaf and writes dir/base.crt (leaf + intermediate) and
// dir/base.key.
func makePair(t testing.TB, dir, base string, spec certSpec) testPair {
	t.Helper()
	leaf, key := issue(t, spec)
	p := testPair{
		Pair: Pair{CertFile: filepath.Join(dir, base+".crt"), KeyFile: filepath.Join(dir, base+".key")},
		leaf: leaf,
		key:  key,
	}
	writeFile(t, p.CertFile, certPEM(leaf))
	writeFile(t, p.KeyFile, keyPEM(t, key))
	return p
}

func certPEM(leaf *x509.Certificate) []byte {
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testInter.Raw})...)
}

func keyPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshalling key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// writeFile rewrites path in place (truncate and write).
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// renameInto writes data to a temporary file and renames it over path, as
// certbot and most deploy tools do.
func renameInto(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	writeFile(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// serve runs a TLS server on 127.0.0.1 that completes the handshake, writes
// one byte (so TLS 1.3 clients process their session ticket) and closes.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	return serveOn(t, "127.0.0.1:0", cfg)
}

func serveOn(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				c.Write([]byte{'x'})
				io.Copy(io.Discard, c) // until the client closes
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// handshake dials addr, reads the server's byte and returns the state.
func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

// servedLeaf returns the leaf a client asking for serverName receives, or
// nil and the error.
func servedLeaf(addr, serverName string) (*x509.Certificate, error) {
	st, err := handshake(addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	if len(st.PeerCertificates) == 0 {
		return nil, errors.New("no peer certificates")
	}
	return st.PeerCertificates[0], nil
}

// waitFor polls cond every 20ms for up to 5s and reports whether it held.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 250 && time.Now().Before(deadline); i++ {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}
