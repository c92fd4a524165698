package tlsconf

import (
	"crypto/tls"
	"errors"
	"slices"
	"sync"
	"testing"
)

// fakeManaged stands in for internal/acme: it manages some names, serves
// one certificate for them (or fails, like a name not obtained yet), and a
// distinct one for tls-alpn-01 challenges.
type fakeManaged struct {
	names     []string
	cert      *tls.Certificate
	challenge *tls.Certificate
	fail      bool

	mu    sync.Mutex
	asked []string // server names GetCertificate was called for
}

func (f *fakeManaged) Manages(name string) bool { return slices.Contains(f.names, name) }

func (f *fakeManaged) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	f.asked = append(f.asked, hello.ServerName)
	f.mu.Unlock()
	if slices.Equal(hello.SupportedProtos, []string{acmeTLS1}) {
		return f.challenge, nil
	}
	if f.fail {
		return nil, errors.New("no certificate yet")
	}
	return f.cert, nil
}

func tlsCert(t *testing.T, p testPair) *tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestManagedSource checks how files and a Managed source share names: a
// name a file covers (exactly or by wildcard) is served from the file even
// when ACME manages it; a managed name no file covers gets the managed
// certificate, or the default one while it has none; a ClientHello
// offering only acme-tls/1 is a tls-alpn-01 validation and gets the
// challenge certificate, through an ALPN list that offers acme-tls/1.
func TestManagedSource(t *testing.T) {
	dir := t.TempDir()
	def := makePair(t, dir, "default", certSpec{names: []string{"default.test"}})
	file := makePair(t, dir, "file", certSpec{names: []string{"both.test", "*.w.test"}})
	acme := makePair(t, dir, "acme", certSpec{names: []string{"acme.test", "both.test", "x.w.test"}})
	chal := makePair(t, dir, "chal", certSpec{names: []string{"acme.test"}})
	m := &fakeManaged{names: []string{"acme.test", "both.test", "x.w.test"}, cert: tlsCert(t, acme), challenge: tlsCert(t, chal)}
	s, err := New(Options{Pairs: []Pair{def.Pair, file.Pair}, Managed: m})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.TLSConfig().NextProtos, acmeTLS1) {
		t.Errorf("NextProtos = %q, want acme-tls/1 offered", s.TLSConfig().NextProtos)
	}
	addr := serve(t, s.TLSConfig())
	for _, tt := range []struct {
		name string
		want testPair
	}{
		{"acme.test", acme},
		{"ACME.test.", acme},
		{"both.test", file},
		{"x.w.test", file},
		{"other.test", def},
	} {
		leaf, err := servedLeaf(addr, tt.name)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !leaf.Equal(tt.want.leaf) {
			t.Errorf("%s: served %v, want %v", tt.name, leaf.DNSNames, tt.want.leaf.DNSNames)
		}
	}
	m.mu.Lock()
	asked := slices.Clone(m.asked)
	m.mu.Unlock()
	if want := []string{"acme.test", "ACME.test"}; !slices.Equal(asked, want) {
		t.Errorf("the managed source was asked for %q, want only %q (files first, unmanaged names never)", asked, want)
	}

	// A tls-alpn-01 validation.
	st, err := handshake(addr, &tls.Config{ServerName: "acme.test", NextProtos: []string{acmeTLS1}, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("tls-alpn-01 handshake: %v", err)
	}
	if st.NegotiatedProtocol != acmeTLS1 || !st.PeerCertificates[0].Equal(chal.leaf) {
		t.Errorf("tls-alpn-01: protocol %q, certificate %v; want acme-tls/1 and the challenge certificate",
			st.NegotiatedProtocol, st.PeerCertificates[0].DNSNames)
	}

	// acme-tls/1 for a name not managed: refused before the engine.
	if _, err := handshake(addr, &tls.Config{ServerName: "other.test", NextProtos: []string{acmeTLS1}, InsecureSkipVerify: true}); err == nil {
		t.Error("tls-alpn-01 handshake for an unmanaged name succeeded; want it refused")
	}
	m.mu.Lock()
	asked = slices.Clone(m.asked)
	m.mu.Unlock()
	if slices.Contains(asked, "other.test") {
		t.Errorf("the managed source was asked for an unmanaged name: %q", asked)
	}

	// No certificate yet: the default one is served.
	m.fail = true
	s2, err := New(Options{Pairs: []Pair{def.Pair}, Managed: m})
	if err != nil {
		t.Fatal(err)
	}
	addr2 := serve(t, s2.TLSConfig())
	if leaf, err := servedLeaf(addr2, "acme.test"); err != nil || !leaf.Equal(def.leaf) {
		t.Errorf("acme.test before it has a certificate: %v; want the default certificate", err)
	}
}

// TestNoManagedNoACMEProtocol: without ACME, acme-tls/1 is not offered, so
// a validation attempt cannot negotiate it.
func TestNoManagedNoACMEProtocol(t *testing.T) {
	dir := t.TempDir()
	def := makePair(t, dir, "default", certSpec{names: []string{"default.test"}})
	s, err := New(Options{Pairs: []Pair{def.Pair}})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(s.TLSConfig().NextProtos, acmeTLS1) {
		t.Errorf("NextProtos = %q without a managed source", s.TLSConfig().NextProtos)
	}
}
