package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"bulwark/internal/front"
)

// wsgiView is what a CGI/WSGI/ASGI framework such as Django makes of the
// header fields the app got: HTTP_ plus the name upper-cased with "-" as
// "_", the values of fields that read the same joined with ",".
func wsgiView(h http.Header) map[string]string {
	out := make(map[string]string)
	for k, vv := range h {
		key := "HTTP_" + strings.ReplaceAll(strings.ToUpper(k), "-", "_")
		for _, v := range vv {
			if out[key] != "" {
				out[key] += ","
			}
			out[key] += v
		}
	}
	return out
}

// spoofingRequest is a request from 203.0.113.7 that tries to set the
// forwarding fields under names with "_", as h1 (canonical keys) or h2
// (lower-case keys) would deliver them.
func spoofingRequest(h2 bool) *http.Request {
	req := httptest.NewRequest("GET", "https://shop.example/", nil)
	req.RemoteAddr = "203.0.113.7:4444"
	req.TLS = &tls.ConnectionState{}
	set := func(k, v string) {
		if h2 {
			req.Header[strings.ToLower(k)] = []string{v}
		} else {
			req.Header[http.CanonicalHeaderKey(k)] = []string{v}
		}
	}
	if h2 {
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	}
	set("X_Forwarded_For", "7.7.7.7")
	set("X_Real_IP", "7.7.7.7")
	set("X_Forwarded_Proto", "http")
	set("Transfer_Encoding", "chunked")
	set("X_Custom", "custom")
	set("X-Plain", "plain")
	return req
}

func TestUnderscoreHeadersDroppedByDefault(t *testing.T) {
	app := echoApp(t)
	for _, h2 := range []bool{false, true} {
		p, set := newTestProxy(t, hostOf(app), nil)
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, spoofingRequest(h2))
		e := decodeEcho(t, rec)
		for k := range e.Header {
			if strings.Contains(k, "_") {
				t.Errorf("h2=%v: %s reached the app; want every name with _ dropped", h2, k)
			}
		}
		env := wsgiView(e.Header)
		for k, want := range map[string]string{
			"HTTP_X_FORWARDED_FOR": "203.0.113.7", "HTTP_X_REAL_IP": "203.0.113.7",
			"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_PLAIN": "plain",
		} {
			if env[k] != want {
				t.Errorf("h2=%v: the app read %s = %q, want %q", h2, k, env[k], want)
			}
		}
		if got := metricsText(set); !strings.Contains(got, `bulwark_dropped_headers_total{reason="underscore"} 5`) {
			t.Errorf("h2=%v: want 5 fields counted as dropped for underscore; metrics:\n%s", h2, got)
		}
	}
}

func TestUnderscoreHeadersAllowedButNeverReserved(t *testing.T) {
	app := echoApp(t)
	for _, h2 := range []bool{false, true} {
		p, set := newTestProxy(t, hostOf(app), func(o *Options) { o.UnderscoresInHeaders = true })
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, spoofingRequest(h2))
		e := decodeEcho(t, rec)
		env := wsgiView(e.Header)
		for k, want := range map[string]string{
			"HTTP_X_CUSTOM": "custom", "HTTP_X_FORWARDED_FOR": "203.0.113.7", "HTTP_X_REAL_IP": "203.0.113.7",
			"HTTP_X_FORWARDED_PROTO": "https", "HTTP_TRANSFER_ENCODING": "",
		} {
			if env[k] != want {
				t.Errorf("h2=%v: the app read %s = %q, want %q", h2, k, env[k], want)
			}
		}
		if got := metricsText(set); !strings.Contains(got, `bulwark_dropped_headers_total{reason="reserved"} 4`) {
			t.Errorf("h2=%v: want 4 fields counted as dropped for a reserved name; metrics:\n%s", h2, got)
		}
	}
}

// TestUnderscoreSpoofThroughFront sends X_Forwarded_For through Bulwark's
// own front over HTTP/1.1 and HTTP/2, as curl -H 'X_Forwarded_For: ...'
// does: the app never sees it.
func TestUnderscoreSpoofThroughFront(t *testing.T) {
	app := echoApp(t)
	p, _ := newTestProxy(t, hostOf(app), nil)
	srv, err := front.New(front.Options{
		Handler:   p,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{testCertificate(t)}, NextProtos: []string{"h2", "http/1.1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		req, _ := http.NewRequest("GET", "https://"+ln.Addr().String()+"/", nil)
		req.Header["X_Forwarded_For"] = []string{"7.7.7.7"}
		req.Header["X_Real_IP"] = []string{"7.7.7.7"}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e echoed
		err = json.NewDecoder(res.Body).Decode(&e)
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		tr.CloseIdleConnections()
		if err != nil {
			t.Fatal(err)
		}
		want := 1
		if h2 {
			want = 2
		}
		if res.ProtoMajor != want {
			t.Errorf("h2=%v: answered over HTTP/%d", h2, res.ProtoMajor)
		}
		env := wsgiView(e.Header)
		if env["HTTP_X_FORWARDED_FOR"] != "127.0.0.1" || env["HTTP_X_REAL_IP"] != "127.0.0.1" {
			t.Errorf("h2=%v: the app read X-Forwarded-For %q and X-Real-IP %q, want 127.0.0.1 alone",
				h2, env["HTTP_X_FORWARDED_FOR"], env["HTTP_X_REAL_IP"])
		}
	}
}

// testCertificate returns a self-signed certificate for 127.0.0.1.
func testCertificate(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
