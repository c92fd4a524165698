package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

var rsaOnlySuites = []uint16{
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

var ecdsaOnlySuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
}

func TestCertificateSelection(t *testing.T) {
	dir := t.TempDir()
	def := makePair(t, dir, "default", certSpec{names: []string{"default.test", "127.0.0.1"}})
	aEC := makePair(t, dir, "a-ecdsa", certSpec{names: []string{"a.test", "www.a.test"}})
	aRSA := makePair(t, dir, "a-rsa", certSpec{names: []string{"a.test", "www.a.test"}, key: "rsa"})
	wild := makePair(t, dir, "wild", certSpec{names: []string{"*.w.test"}})
	bRSA := makePair(t, dir, "b-rsa", certSpec{names: []string{"b.test"}, key: "rsa"})
	// RSA listed before ECDSA for a.test: ECDSA must still be preferred.
	s, err := New(Options{Pairs: []Pair{def.Pair, aRSA.Pair, wild.Pair, aEC.Pair, bRSA.Pair}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	addr := serve(t, s.TLSConfig())

	tests := []struct {
		name       string
		serverName string
		suites     []uint16 // nil: a default (TLS 1.3) client
		verifyAs   string   // "" : verify against serverName
		insecure   bool     // the served certificate does not cover serverName
		want       testPair
	}{
		{"no SNI gets the first pair", "", nil, "127.0.0.1", false, def},
		{"exact name, default client", "a.test", nil, "", false, aEC},
		{"exact name, TLS 1.2 RSA-only client", "a.test", rsaOnlySuites, "", false, aRSA},
		{"second name, TLS 1.2 RSA-only client", "www.a.test", rsaOnlySuites, "", false, aRSA},
		{"exact name, TLS 1.2 ECDSA-only client", "a.test", ecdsaOnlySuites, "", false, aEC},
		{"name in other case", "WWW.A.Test", nil, "", false, aEC},
		{"wildcard one label deep", "x.w.test", nil, "", false, wild},
		{"wildcard does not cover two labels", "y.x.w.test", nil, "", true, def},
		{"wildcard does not cover the apex", "w.test", nil, "", true, def},
		{"RSA-only name, default client", "b.test", nil, "", false, bRSA},
		{"unknown name gets the first pair", "unknown.test", nil, "", true, def},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &tls.Config{ServerName: tt.serverName, RootCAs: rootPool(t), InsecureSkipVerify: tt.insecure}
			if tt.verifyAs != "" {
				cfg.ServerName = tt.verifyAs
			}
			if tt.suites != nil {
				cfg.MaxVersion = tls.VersionTLS12
				cfg.CipherSuites = tt.suites
			}
			st, err := handshake(addr, cfg)
			if err != nil {
				t.Fatalf("handshake for %q: %v", tt.serverName, err)
			}
			if got := st.PeerCertificates[0]; !got.Equal(tt.want.leaf) {
				t.Errorf("handshake for %q got certificate %v (%T), want %v (%T)",
					tt.serverName, got.DNSNames, got.PublicKey, tt.want.leaf.DNSNames, tt.want.leaf.PublicKey)
			}
			if got := len(st.PeerCertificates); got != 2 {
				t.Errorf("handshake for %q got a chain of %d, want 2 (leaf + intermediate)", tt.serverName, got)
			}
		})
	}
}

func TestProtocolPolicy(t *testing.T) {
	dir := t.TempDir()
	ec := makePair(t, dir, "ec", certSpec{names: []string{"a.test"}})
	rs := makePair(t, dir, "rs", certSpec{names: []string{"a.test"}, key: "rsa"})
	pairs := []Pair{ec.Pair, rs.Pair}
	s12, err := New(Options{Pairs: pairs})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s13, err := New(Options{Pairs: pairs, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	addr12, addr13 := serve(t, s12.TLSConfig()), serve(t, s13.TLSConfig())

	tests := []struct {
		name        string
		addr        string
		client      *tls.Config
		wantErr     bool
		wantVersion uint16
		wantProto   string
	}{
		{"default client gets TLS 1.3 and h2", addr12, &tls.Config{NextProtos: []string{"h2", "http/1.1"}}, false, tls.VersionTLS13, "h2"},
		{"HTTP/1.1-only client", addr12, &tls.Config{NextProtos: []string{"http/1.1"}}, false, tls.VersionTLS13, "http/1.1"},
		{"TLS 1.2 client", addr12, &tls.Config{MaxVersion: tls.VersionTLS12}, false, tls.VersionTLS12, ""},
		{"TLS 1.1 client refused", addr12, &tls.Config{MaxVersion: tls.VersionTLS11}, true, 0, ""},
		{"CBC-only TLS 1.2 client refused", addr12, &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, true, 0, ""},
		{"static-RSA TLS 1.2 client refused", addr12, &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}, true, 0, ""},
		{"TLS 1.2 client refused by 1.3 minimum", addr13, &tls.Config{MaxVersion: tls.VersionTLS12}, true, 0, ""},
		{"TLS 1.3 client on 1.3 minimum", addr13, &tls.Config{}, false, tls.VersionTLS13, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.client.Clone()
			cfg.ServerName = "a.test"
			cfg.RootCAs = rootPool(t)
			st, err := handshake(tt.addr, cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("handshake error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if st.Version != tt.wantVersion {
				t.Errorf("version = %#x, want %#x", st.Version, tt.wantVersion)
			}
			if st.NegotiatedProtocol != tt.wantProto {
				t.Errorf("ALPN = %q, want %q", st.NegotiatedProtocol, tt.wantProto)
			}
		})
	}

	cfg := s12.TLSConfig()
	if got, want := strings.Join(cfg.NextProtos, ","), "h2,http/1.1"; got != want {
		t.Errorf("TLSConfig().NextProtos = %q, want %q", got, want)
	}
	if got := s12.TLSConfig(); got != cfg {
		t.Errorf("TLSConfig() returned a new config on the second call, want the same one")
	}
}

func TestReloadAndUpdate(t *testing.T) {
	dir := t.TempDir()
	first := makePair(t, dir, "site", certSpec{names: []string{"a.test"}})
	set := metrics.NewSet()
	s, err := New(Options{Pairs: []Pair{first.Pair}, Metrics: set})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	addr := serve(t, s.TLSConfig())
	served := func() *x509.Certificate {
		t.Helper()
		leaf, err := servedLeaf(addr, "a.test")
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return leaf
	}

	// A valid new pair, renamed into place, is served after Reload.
	secondLeaf, secondKey := issue(t, certSpec{names: []string{"a.test"}})
	renameInto(t, first.KeyFile, keyPEM(t, secondKey))
	renameInto(t, first.CertFile, certPEM(secondLeaf))
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload of a valid pair: %v", err)
	}
	if got := served(); !got.Equal(secondLeaf) {
		t.Errorf("after Reload served serial %v, want %v", got.SerialNumber, secondLeaf.SerialNumber)
	}

	// An expired pair is refused and the previous one stays.
	expLeaf, expKey := issue(t, certSpec{names: []string{"a.test"},
		notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
	writeFile(t, first.KeyFile, keyPEM(t, expKey))
	writeFile(t, first.CertFile, certPEM(expLeaf))
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Reload of an expired pair = %v, want an expiry error", err)
	}
	if got := served(); !got.Equal(secondLeaf) {
		t.Errorf("after a failed Reload served serial %v, want the previous %v", got.SerialNumber, secondLeaf.SerialNumber)
	}
	if got, want := counter(set, "bulwark_tls_reloads_total"), uint64(1); got != want {
		t.Errorf("bulwark_tls_reloads_total = %d, want %d", got, want)
	}
	if got, want := counter(set, "bulwark_tls_reload_failures_total"), uint64(1); got != want {
		t.Errorf("bulwark_tls_reload_failures_total = %d, want %d", got, want)
	}

	// Update switches to another pair and to a TLS 1.3 minimum.
	other := makePair(t, dir, "other", certSpec{names: []string{"a.test"}})
	if err := s.Update(Options{Pairs: []Pair{other.Pair}, MinVersion: tls.VersionTLS13}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := served(); !got.Equal(other.leaf) {
		t.Errorf("after Update served serial %v, want %v", got.SerialNumber, other.leaf.SerialNumber)
	}
	if _, err := handshake(addr, &tls.Config{ServerName: "a.test", RootCAs: rootPool(t), MaxVersion: tls.VersionTLS12}); err == nil {
		t.Errorf("TLS 1.2 handshake after Update to a 1.3 minimum succeeded, want refused")
	}
	// A bad Update changes nothing.
	if err := s.Update(Options{Pairs: []Pair{{CertFile: first.CertFile, KeyFile: first.KeyFile}}}); err == nil {
		t.Errorf("Update to an expired pair = nil error, want one")
	}
	if got := served(); !got.Equal(other.leaf) {
		t.Errorf("after a failed Update served serial %v, want %v", got.SerialNumber, other.leaf.SerialNumber)
	}
	if _, err := handshake(addr, &tls.Config{ServerName: "a.test", RootCAs: rootPool(t), MaxVersion: tls.VersionTLS12}); err == nil {
		t.Errorf("TLS 1.2 handshake after a failed Update succeeded, want the 1.3 minimum kept")
	}
}

func counter(set *metrics.Set, name string) uint64 {
	return set.GetOrCreateCounter(name).Get()
}

func TestExpiriesMetricsAndLogs(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().Truncate(time.Second)
	soonAfter := now.Add(5 * 24 * time.Hour)
	laterAfter := now.Add(60 * 24 * time.Hour)
	soon := makePair(t, dir, "soon", certSpec{names: []string{"soon.test"}, notAfter: soonAfter})
	later := makePair(t, dir, "later", certSpec{names: []string{"later.test", "www.later.test"}, key: "rsa", notAfter: laterAfter})

	var logs bytes.Buffer
	set := metrics.NewSet()
	s, err := New(Options{
		Pairs:   []Pair{soon.Pair, later.Pair},
		Metrics: set,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		Now:     func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	got := s.Expiries()
	if len(got) != 2 {
		t.Fatalf("Expiries() = %d entries, want 2", len(got))
	}
	if got[0].File != soon.CertFile || got[0].KeyType != "ECDSA" || !got[0].NotAfter.Equal(soonAfter) {
		t.Errorf("Expiries()[0] = %+v, want %s ECDSA until %v", got[0], soon.CertFile, soonAfter)
	}
	if got[1].KeyType != "RSA" || strings.Join(got[1].Names, ",") != "later.test,www.later.test" {
		t.Errorf("Expiries()[1] = %+v, want RSA for later.test,www.later.test", got[1])
	}

	var out bytes.Buffer
	set.WritePrometheus(&out)
	for _, want := range []string{
		`bulwark_tls_cert_expiry_seconds{name="soon.test"} 432000`,
		`bulwark_tls_cert_expiry_seconds{name="later.test"} 5184000`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics output lacks %q; got\n%s", want, out.String())
		}
	}

	text := logs.String()
	if got := strings.Count(text, "tls certificate loaded"); got != 2 {
		t.Errorf("logged %d 'loaded' lines, want 2; logs:\n%s", got, text)
	}
	if got := strings.Count(text, "expires soon"); got != 1 || !strings.Contains(text, "soon.test") {
		t.Errorf("logged %d expiry warnings, want 1 for soon.test; logs:\n%s", got, text)
	}

	// A certificate no longer served loses its series.
	if err := s.Update(Options{Pairs: []Pair{later.Pair}}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	out.Reset()
	set.WritePrometheus(&out)
	if strings.Contains(out.String(), `name="soon.test"`) {
		t.Errorf("metrics still carry soon.test after it was removed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), `name="later.test"`) {
		t.Errorf("metrics lost later.test:\n%s", out.String())
	}
}

func TestExpiryWarningOff(t *testing.T) {
	dir := t.TempDir()
	soon := makePair(t, dir, "soon", certSpec{names: []string{"soon.test"}, notAfter: time.Now().Add(24 * time.Hour)})
	var logs bytes.Buffer
	_, err := New(Options{Pairs: []Pair{soon.Pair}, ExpiryWarning: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if strings.Contains(logs.String(), "expires soon") {
		t.Errorf("ExpiryWarning<0 still warned:\n%s", logs.String())
	}
}

func TestTLSConfigServesHTTP2WithNetHTTP(t *testing.T) {
	dir := t.TempDir()
	p := makePair(t, dir, "a", certSpec{names: []string{"127.0.0.1"}})
	s, err := New(Options{Pairs: []Pair{p.Pair}, SessionTickets: true})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }),
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != http.ErrServerClosed {
			t.Errorf("ServeTLS = %v, want ErrServerClosed", err)
		}
	})

	tests := []struct {
		name string
		h2   bool
		want string
	}{
		{"HTTP/2 client", true, "HTTP/2.0"},
		{"HTTP/1.1 client", false, "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: rootPool(t)}, ForceAttemptHTTP2: tt.h2}
			if !tt.h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			resp, err := c.Get("https://" + ln.Addr().String() + "/")
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if got := string(body); got != tt.want {
				t.Errorf("server saw protocol %q, want %q", got, tt.want)
			}
		})
	}
}
