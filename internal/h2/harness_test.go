package h2

import (
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
	"sync"
	"testing"
	"time"
)

// selfSigned returns a certificate for localhost, 127.0.0.1 and ::1.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
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
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testMetrics counts what a Server reports.
type testMetrics struct {
	mu                    sync.Mutex
	idle, active, streams int
	rejected              map[string]int
	refused               map[string]int
}

func (m *testMetrics) ConnState(idle, active int) {
	m.mu.Lock()
	m.idle += idle
	m.active += active
	m.mu.Unlock()
}

func (m *testMetrics) Streams(delta int) {
	m.mu.Lock()
	m.streams += delta
	m.mu.Unlock()
}

func (m *testMetrics) Rejected(reason string) {
	m.mu.Lock()
	if m.rejected == nil {
		m.rejected = make(map[string]int)
	}
	m.rejected[reason]++
	m.mu.Unlock()
}

func (m *testMetrics) Refused(status int, reason string) {
	m.mu.Lock()
	if m.refused == nil {
		m.refused = make(map[string]int)
	}
	m.refused[fmt.Sprint(status, " ", reason)]++
	m.mu.Unlock()
}

// rejectedCount returns how many refusals were counted under reason.
func (m *testMetrics) rejectedCount(reason string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rejected[reason]
}

// streamCount returns the streams whose handler runs.
func (m *testMetrics) streamCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.streams
}

// testServer is a Server behind a TLS listener on 127.0.0.1 that offers
// only h2, as the front door does for a client that negotiates it.
type testServer struct {
	srv  *Server
	addr string
	m    *testMetrics
	ln   net.Listener
}

// start serves h on a fresh listener; mod may change the options.
func start(t *testing.T, h http.Handler, mod func(*Options)) *testServer {
	t.Helper()
	m := &testMetrics{}
	o := Options{Handler: h, Metrics: m}
	if mod != nil {
		mod(&o)
	}
	srv := NewServer(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}}
	ts := &testServer{srv: srv, addr: ln.Addr().String(), m: m, ln: ln}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc := tls.Server(c, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := tc.HandshakeContext(ctx)
				cancel()
				if err != nil {
					tc.Close()
					return
				}
				st := tc.ConnectionState()
				srv.ServeConn(tc, &st)
			}()
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.shutdown(ctx)
		srv.Close()
		wg.Wait()
	})
	return ts
}

// shutdown stops accepting and shuts the server down gracefully, waiting
// until every connection is gone or ctx ends.
func (ts *testServer) shutdown(ctx context.Context) error {
	ts.ln.Close()
	ts.srv.Shutdown()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for ts.srv.Open() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
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
