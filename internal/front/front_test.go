package front

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/net/http2"

	"bulwark/internal/listen"
)

var (
	certOnce sync.Once
	testCert tls.Certificate
)

func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "localhost"},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return testCert
}

type testServer struct {
	srv  *Server
	addr string
	set  *metrics.Set
}

// start runs a Server on 127.0.0.1 with TLS (tlsOn) or plain, serving h.
func start(t *testing.T, h http.Handler, tlsOn bool, mod func(*Options)) *testServer {
	t.Helper()
	set := metrics.NewSet()
	o := Options{Handler: h, Metrics: set}
	if tlsOn {
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2", "http/1.1"}}
	}
	if mod != nil {
		mod(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listen.TCP(context.Background(), "127.0.0.1:0", 128)
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, srv, ln)
	return &testServer{srv: srv, addr: ln.Addr().String(), set: set}
}

// serveUntilCleanup runs srv on ln until the test ends, then shuts it down.
func serveUntilCleanup(t *testing.T, srv *Server, ln net.Listener) {
	t.Helper()
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
}

func (ts *testServer) dial(t *testing.T, tlsOn bool) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if tlsOn {
		c, err = tls.Dial("tcp", ts.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", ts.addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes raw to a fresh connection and returns everything the
// server sent until it closed the connection (or 3 s passed).
func (ts *testServer) roundTrip(t *testing.T, tlsOn bool, raw string) string {
	t.Helper()
	c := ts.dial(t, tlsOn)
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-CL", fmt.Sprint(r.ContentLength))
		w.Header().Set("X-Upgrade", r.Header.Get("Upgrade"))
		fmt.Fprintf(w, "%s %s body=%q", r.Method, r.URL.RequestURI(), b)
	})
}

func httpsClient(h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestServeHTTP1AndHTTP2(t *testing.T) {
	ts := start(t, echoHandler(), true, nil)
	for _, h2 := range []bool{false, true} {
		c := httpsClient(h2)
		for i := 0; i < 3; i++ {
			res, err := c.Post("https://"+ts.addr+"/p?q=1", "text/plain", strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			wantProto := "HTTP/1.1"
			if h2 {
				wantProto = "HTTP/2.0"
			}
			if res.Proto != wantProto || string(b) != `POST /p?q=1 body="hello"` {
				t.Errorf("h2=%v: got %s %q, want %s and the echoed body", h2, res.Proto, b, wantProto)
			}
		}
		c.CloseIdleConnections()
	}
}

func TestKeepAliveReusesOneConnection(t *testing.T) {
	ts := start(t, echoHandler(), true, nil)
	c := ts.dial(t, true)
	br := bufio.NewReader(c)
	for i := 0; i < 5; i++ {
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on the same connection: %v", i, err)
		}
		b, _ := io.ReadAll(res.Body)
		if want := fmt.Sprintf(`GET /%d body=""`, i); string(b) != want {
			t.Errorf("got %q, want %q", b, want)
		}
	}
}

// TestKeepAliveAnswersStartClean: the connection reuses its response and
// header map from one request to the next; nothing of one answer (a field,
// a status, a length, chunking) may show in the next.
func TestKeepAliveAnswersStartClean(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/first":
			w.Header().Set("X-Only-First", "1")
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, "first")
		case "/big":
			w.Header().Set("X-Only-Big", "1")
			io.WriteString(w, strings.Repeat("b", 3*pendMax)) // chunked
		default:
			io.WriteString(w, "second")
		}
	}), true, nil)
	c := ts.dial(t, true)
	br := bufio.NewReader(c)
	for i, path := range []string{"/first", "/second", "/big", "/second"} {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d (%s): %v", i, path, err)
		}
		b, _ := io.ReadAll(res.Body)
		if path != "/second" {
			continue
		}
		if res.StatusCode != 200 || string(b) != "second" || res.ContentLength != 6 || len(res.TransferEncoding) != 0 {
			t.Errorf("request %d: status %d, body %q, length %d, coding %v; want 200, \"second\", 6, none",
				i, res.StatusCode, b, res.ContentLength, res.TransferEncoding)
		}
		if res.Header.Get("X-Only-First") != "" || res.Header.Get("X-Only-Big") != "" {
			t.Errorf("request %d carries a field of an earlier answer: %v", i, res.Header)
		}
	}
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	ts := start(t, echoHandler(), false, nil)
	c := ts.dial(t, false)
	io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{`POST /a body="abc"`, `GET /b body=""`, `GET /c body=""`} {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		if string(b) != want {
			t.Errorf("got %q, want %q", b, want)
		}
	}
}

func TestSmugglingAndMalformedHeadsRefused(t *testing.T) {
	ts := start(t, echoHandler(), false, nil)
	tests := []struct {
		name, raw  string
		wantStatus string
	}{
		{"cl and te", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"differing cl", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "400"},
		{"differing cl list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd", "400"},
		{"obs fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", "400"},
		{"te gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "400"},
		{"te identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", "400"},
		{"te twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"te http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n", "400"},
		{"negative cl", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", "400"},
		{"plus cl", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", "400"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", "400"},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"},
		{"bad version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"},
		{"garbage", "HELLO\r\n\r\n", "400"},
		{"bare cr in request line", "GET /\rx HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"ctl in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", "400"},
		{"connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "405"},
		{"expect other", "POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\na", "417"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ts.roundTrip(t, false, tt.raw)
			if !strings.HasPrefix(got, "HTTP/1.1 "+tt.wantStatus+" ") {
				t.Fatalf("got %q, want status %s", got, tt.wantStatus)
			}
			if !strings.Contains(got, "Connection: close") {
				t.Errorf("got %q, want Connection: close", got)
			}
			if strings.Contains(got, "body=") {
				t.Errorf("the handler saw the request: %q", got)
			}
			if strings.Count(got, "HTTP/1.1 ") != 1 {
				t.Errorf("got more than one answer: %q", got)
			}
		})
	}
}

func TestSameContentLengthTwiceAccepted(t *testing.T) {
	ts := start(t, echoHandler(), false, nil)
	got := ts.roundTrip(t, false, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
	if !strings.Contains(got, `body="abc"`) {
		t.Errorf("got %q, want the body", got)
	}
}

func TestH2CUpgradeNotForwarded(t *testing.T) {
	ts := start(t, echoHandler(), false, nil)
	got := ts.roundTrip(t, false, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200") || !strings.Contains(got, "X-Upgrade: \r\n") {
		t.Errorf("got %q, want 200 with no Upgrade seen by the handler", got)
	}
}

func TestHeaderLimits(t *testing.T) {
	ts := start(t, echoHandler(), false, func(o *Options) { o.MaxHeaderBytes = 1024 })
	big := strings.Repeat("a", 2000)
	if got := ts.roundTrip(t, false, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+big+"\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Errorf("large header: got %q, want 431", got)
	}
	if got := ts.roundTrip(t, false, "GET /"+big+" HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 414 ") {
		t.Errorf("long request line: got %q, want 414", got)
	}
	if got := ts.roundTrip(t, false, "GET / HTTP/1.1\r\nHost: x\r\nX-Ok: "+strings.Repeat("a", 900)+"\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Errorf("header under the limit: got %q, want 200", got)
	}
}

func TestChunkedRequestAndResponse(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got:")
		w.(http.Flusher).Flush()
		w.Write(b)
	}), false, nil)
	got := ts.roundTrip(t, false, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n")
	if !strings.Contains(got, "Transfer-Encoding: chunked") || !strings.HasSuffix(got, "4\r\ngot:\r\n5\r\nabcde\r\n0\r\n\r\n") {
		t.Errorf("got %q, want a chunked echo of abcde", got)
	}
}

func TestSmallAnswerGetsContentLength(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }), false, nil)
	got := ts.roundTrip(t, false, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.Contains(got, "Content-Length: 2\r\n") || !strings.HasSuffix(got, "\r\n\r\nhi") {
		t.Errorf("got %q", got)
	}
}

func TestHeadAnd204HaveNoBody(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/204" {
			w.WriteHeader(204)
			return
		}
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	}), false, nil)
	c := ts.dial(t, false)
	io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(c)
	got := string(b)
	if strings.Count(got, "HTTP/1.1 ") != 3 || !strings.HasSuffix(got, "hello") || strings.Count(got, "hello") != 1 {
		t.Errorf("got %q, want HEAD without body, 204 without body, then GET with body", got)
	}
	if i := strings.Index(got, "HTTP/1.1 204"); i < 0 || strings.Contains(got[i:strings.Index(got[i:], "\r\n\r\n")+i], "Content-Length") {
		t.Errorf("204 carries framing: %q", got)
	}
}

func TestHTTP10ClosesWithoutKeepAlive(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "x")
		w.(http.Flusher).Flush()
		io.WriteString(w, "y")
	}), false, nil)
	got := ts.roundTrip(t, false, "GET / HTTP/1.0\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200") || strings.Contains(got, "chunked") || !strings.HasSuffix(got, "\r\n\r\nxy") {
		t.Errorf("got %q, want a close-delimited body", got)
	}
}

func TestExpectContinue(t *testing.T) {
	ts := start(t, echoHandler(), false, nil)
	c := ts.dial(t, false)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("got %q, %v; want 100 Continue before the body is sent", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, "body")
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	if string(b) != `POST / body="body"` {
		t.Errorf("got %q", b)
	}
}

func TestUnreadBodyDrainedOrClosed(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }), false, nil)
	c := ts.dial(t, false)
	io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /bGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(c)
	if got := string(b); strings.Count(got, "HTTP/1.1 200") != 2 || !strings.HasSuffix(got, "/c") || strings.Contains(got, "/b") {
		t.Errorf("got %q, want /a and /c answered, the body not read as a request", got)
	}
}

func TestSlowlorisHeadTimesOut(t *testing.T) {
	ts := start(t, echoHandler(), false, func(o *Options) { o.ReadHeaderTimeout = 200 * time.Millisecond })
	c := ts.dial(t, false)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || len(b) != 0 {
		t.Errorf("got %q, %v; want the connection closed with no answer", b, err)
	}
}

func TestIdleKeepAliveClosed(t *testing.T) {
	ts := start(t, echoHandler(), false, func(o *Options) { o.IdleTimeout = 200 * time.Millisecond })
	c := ts.dial(t, false)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(res.Body)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("got %v, want EOF: the idle connection closed by the server", err)
	}
}

// heldHandler is a handler that signals started as each request begins and
// answers "done" once it receives on release.
func heldHandler() (h http.Handler, started, release chan struct{}) {
	started, release = make(chan struct{}, 1), make(chan struct{})
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "done")
	})
	return h, started, release
}

// cancelWatcher is a handler that closes started when it runs and canceled
// when its request's context is canceled, waiting at most 5 s for that. It
// serves one request.
func cancelWatcher() (h http.Handler, started, canceled chan struct{}) {
	started, canceled = make(chan struct{}), make(chan struct{})
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			close(canceled)
		case <-time.After(5 * time.Second):
		}
	})
	return h, started, canceled
}

func TestClientGoneCancelsRequest(t *testing.T) {
	h, started, canceled := cancelWatcher()
	ts := start(t, h, true, nil)
	c := ts.dial(t, true)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	c.Close()
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("request context not canceled after the client closed")
	}
}

func TestHijackPassesBufferedBytes(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(brw, buf); err != nil {
			return
		}
		conn.Write(buf) // echo
	}), true, nil)
	c := ts.dial(t, true)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nping")
	b, _ := io.ReadAll(c)
	if got := string(b); !strings.HasPrefix(got, "HTTP/1.1 101") || !strings.HasSuffix(got, "ping") {
		t.Errorf("got %q, want 101 then the echo", got)
	}
}

func TestHSTSOnTLSOnly(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	ts := start(t, h, true, func(o *Options) { o.HSTS = 24 * time.Hour })
	for _, h2 := range []bool{false, true} {
		res, err := httpsClient(h2).Get("https://" + ts.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Strict-Transport-Security"); got != "max-age=86400" {
			t.Errorf("h2=%v: got %q, want max-age=86400", h2, got)
		}
	}
	plain := start(t, h, false, func(o *Options) { o.HSTS = 24 * time.Hour })
	if got := plain.roundTrip(t, false, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); strings.Contains(got, "Strict-Transport") {
		t.Errorf("plain HTTP got HSTS: %q", got)
	}
}

func TestRedirectToHTTPS(t *testing.T) {
	ts := start(t, RedirectHandler("127.0.0.1:8443"), false, nil)
	got := ts.roundTrip(t, false, "GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 308") || !strings.Contains(got, "Location: https://example.com:8443/a/b?c=d\r\n") {
		t.Errorf("got %q", got)
	}
	ts443 := start(t, RedirectHandler(":443"), false, nil)
	got = ts443.roundTrip(t, false, "GET /x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	if !strings.Contains(got, "Location: https://example.com/x\r\n") {
		t.Errorf("got %q", got)
	}
}

func TestHandshakeFailuresCounted(t *testing.T) {
	ts := start(t, echoHandler(), true, nil)
	got := ts.roundTrip(t, false, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if strings.Contains(got, "200") {
		t.Fatalf("plain HTTP on the TLS port was served: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ts.set.GetOrCreateCounter(`bulwark_tls_handshake_failures_total{reason="not_tls"}`).Get() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("handshake failure not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The server still serves after the failure.
	res, err := httpsClient(false).Get("https://" + ts.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
}

func TestShutdownLetsRequestsFinish(t *testing.T) {
	h, started, release := heldHandler()
	ts := start(t, h, true, nil)
	idle := ts.dial(t, true)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	release <- struct{}{} // unblock later via close
	ibr := bufio.NewReader(idle)
	if res, err := http.ReadResponse(ibr, nil); err == nil {
		io.ReadAll(res.Body)
	}
	busy := ts.dial(t, true)
	io.WriteString(busy, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errc <- ts.srv.Shutdown(ctx)
	}()
	// The idle connection is closed by the shutdown.
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: got %v, want EOF", err)
	}
	close(release)
	b, _ := io.ReadAll(busy)
	if got := string(b); !strings.HasSuffix(got, "done") || !strings.Contains(got, "Connection: close") {
		t.Errorf("in-flight request: got %q, want its answer with Connection: close", got)
	}
	if err := <-errc; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestAbortedAnswerDoesNotEndCleanly(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(http.ServerContextKey) == nil {
			t.Error("no http.ServerContextKey: ReverseProxy would not abort cut-off answers")
		}
		io.WriteString(w, strings.Repeat("x", 5000)) // past the pending buffer: sent chunked
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}), false, nil)
	got := ts.roundTrip(t, false, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.Contains(got, "Transfer-Encoding: chunked") || strings.HasSuffix(got, "0\r\n\r\n") {
		t.Errorf("got %q...; want a chunked answer cut off without its last chunk", got[:min(len(got), 120)])
	}
}

func TestHTTP2SettingsCapped(t *testing.T) {
	ts := start(t, echoHandler(), true, func(o *Options) { o.MaxHeaderBytes = 8 << 10; o.MaxConcurrentStreams = 64 })
	c, err := tls.Dial("tcp", ts.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %T, want SETTINGS", f)
	}
	want := map[http2.SettingID]uint32{
		http2.SettingMaxConcurrentStreams: 64,
		http2.SettingMaxFrameSize:         16 << 10,
	}
	for id, v := range want {
		if got, ok := sf.Value(id); !ok || got != v {
			t.Errorf("%v = %d (sent %v), want %d", id, got, ok, v)
		}
	}
	if got, ok := sf.Value(http2.SettingMaxHeaderListSize); !ok || got > 16<<10 {
		t.Errorf("MAX_HEADER_LIST_SIZE = %d (sent %v), want at most 16KiB", got, ok)
	}
}

func TestShutdownDeadlineClosesHijacked(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(io.Discard, conn) // a long-lived stream until closed
	}), true, nil)
	c := ts.dial(t, true)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Fatalf("got %q %v", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != context.DeadlineExceeded {
			t.Errorf("Shutdown = %v, want the deadline error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown hung past its deadline with a hijacked connection open")
	}
	for {
		if _, err := br.ReadByte(); err != nil {
			break // closed by the server
		}
	}
}

func TestConnectionStatesCounted(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			entered <- struct{}{}
			<-release
		}
	}), true, nil)
	stats := func() Stats { return ts.srv.Stats() }
	waitStats := func(what string, cond func(Stats) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond(stats()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: stats %+v", what, stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	h1, h2 := httpsClient(false), httpsClient(true)
	done := make(chan struct{}, 2)
	for _, c := range []*http.Client{h1, h2} {
		go func() {
			if res, err := c.Get("https://" + ts.addr + "/wait"); err == nil {
				res.Body.Close()
			}
			done <- struct{}{}
		}()
	}
	<-entered
	<-entered
	waitStats("both busy", func(s Stats) bool { return s.H1Active == 1 && s.H2Active == 1 && s.H1Idle == 0 && s.H2Idle == 0 })
	close(release)
	<-done
	<-done
	waitStats("both idle", func(s Stats) bool { return s.H1Active == 0 && s.H2Active == 0 && s.H1Idle == 1 && s.H2Idle == 1 })
	h1.CloseIdleConnections()
	h2.CloseIdleConnections()
	waitStats("both closed", func(s Stats) bool { return s.H1Open == 0 && s.H2Open == 0 })
}

func TestUpdateAppliesToNewRequests(t *testing.T) {
	ts := start(t, echoHandler(), false, func(o *Options) { o.MaxHeaderBytes = 4096 })
	big := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 6000) + "\r\nConnection: close\r\n\r\n"
	if got := ts.roundTrip(t, false, big); !strings.HasPrefix(got, "HTTP/1.1 431") {
		t.Fatalf("before Update: got %q, want 431", got[:min(len(got), 40)])
	}
	o := *ts.srv.o()
	o.MaxHeaderBytes = 16 << 10
	ts.srv.Update(o)
	if got := ts.roundTrip(t, false, big); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Errorf("after raising max header bytes: got %q, want 200", got[:min(len(got), 40)])
	}
}

// TestHijackOutlivesClientGoneWatch: a hijacked connection that stays open
// past the client-gone delay does not race with the watch (run with -race).
func TestHijackOutlivesClientGoneWatch(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
		time.Sleep(clientGoneDelay + 100*time.Millisecond)
		buf := make([]byte, 4)
		if _, err := io.ReadFull(brw, buf); err == nil {
			conn.Write(buf)
		}
	}), true, nil)
	c := ts.dial(t, true)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	io.WriteString(c, "pong")
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "pong" {
		t.Errorf("echo after the watch delay: %q %v", got, err)
	}
}
