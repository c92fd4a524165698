package front

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"bulwark/internal/limit"
)

// dialFrom opens a TLS connection to addr from the local address from
// (127.0.0.2 works as a second client: Linux routes all of 127/8 to the
// loopback) and returns it, or the error of the handshake.
func dialFrom(addr, from string) (*tls.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, nil
}

// get sends one GET on c and returns the status line.
func get(c net.Conn) (string, error) {
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return resp.Status, nil
}

// TestMaxConnsPerIPRefusedBeforeHandshake: a client address over
// max_conns_per_ip is closed at accept, before any TLS work, while a client
// on another address is served; a connection that closes gives its place
// back.
func TestMaxConnsPerIPRefusedBeforeHandshake(t *testing.T) {
	set := metrics.NewSet()
	conns := limit.NewConns(limit.ConnsOptions{PerIP: 2, FDReserve: -1, Metrics: set})
	ts := start(t, echoHandler(), true, func(o *Options) { o.Conns = conns; o.Metrics = set })
	var held []*tls.Conn
	for i := range 2 {
		c, err := dialFrom(ts.addr, "127.0.0.1")
		if err != nil {
			t.Fatalf("connection %d from 127.0.0.1: %v", i+1, err)
		}
		defer c.Close()
		if st, err := get(c); err != nil || st != "200 OK" {
			t.Fatalf("connection %d from 127.0.0.1: %q, %v; want 200", i+1, st, err)
		}
		held = append(held, c)
	}
	if c, err := dialFrom(ts.addr, "127.0.0.1"); err == nil {
		st, gerr := get(c)
		c.Close()
		t.Fatalf("third connection from 127.0.0.1 was served (%q, %v); want it closed at accept", st, gerr)
	}
	other, err := dialFrom(ts.addr, "127.0.0.2")
	if err != nil {
		t.Fatalf("127.0.0.2 refused while 127.0.0.1 is at its cap: %v", err)
	}
	defer other.Close()
	if st, err := get(other); err != nil || st != "200 OK" {
		t.Fatalf("127.0.0.2: %q, %v; want 200", st, err)
	}
	if n := set.GetOrCreateCounter(`bulwark_rejected_total{reason="max_conns_per_ip"}`).Get(); n != 1 {
		t.Errorf("bulwark_rejected_total{reason=max_conns_per_ip} = %d, want 1", n)
	}
	var b bytes.Buffer
	set.WritePrometheus(&b)
	if strings.Contains(b.String(), "bulwark_tls_handshake_failures_total") {
		t.Errorf("a refused connection reached the TLS handshake:\n%s", b.String())
	}

	// The server closes an idle connection the client closed: its place
	// is given back.
	held[0].Close()
	lo := netip.MustParseAddr("127.0.0.1")
	for i := 0; ; i++ {
		if _, n := conns.Open(lo); n == 1 {
			break
		}
		if i == 500 {
			t.Fatal("the closed connection's place was not given back within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := dialFrom(ts.addr, "127.0.0.1")
	if err != nil {
		t.Fatalf("127.0.0.1 refused after one of its connections closed: %v", err)
	}
	defer c.Close()
	if st, err := get(c); err != nil || st != "200 OK" {
		t.Errorf("127.0.0.1 after a close: %q, %v; want 200", st, err)
	}
}

// TestMaxConnsSharedByListeners: the redirect listener and the TLS one
// share one cap.
func TestMaxConnsSharedByListeners(t *testing.T) {
	conns := limit.NewConns(limit.ConnsOptions{Max: 1, FDReserve: -1})
	tlsSrv := start(t, echoHandler(), true, func(o *Options) { o.Conns = conns })
	plain := start(t, RedirectHandler("localhost:443"), false, func(o *Options) { o.Conns = conns })
	c, err := dialFrom(tlsSrv.addr, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st, err := get(c); err != nil || st != "200 OK" {
		t.Fatalf("first connection: %q, %v", st, err)
	}
	pc, err := net.Dial("tcp", plain.addr)
	if err != nil {
		return // reset so soon that connect(2) saw it: refused too
	}
	defer pc.Close()
	pc.SetDeadline(time.Now().Add(5 * time.Second))
	if st, err := get(pc); err == nil {
		t.Errorf("a connection over max_conns on the other listener got %q; want it closed", st)
	}
}

// emfileListener fails Accept with EMFILE n times, then waits until closed.
type emfileListener struct {
	n      int
	calls  int
	failed chan struct{} // closed when the loop comes back after the n-th failure
	closed chan struct{}
	once   sync.Once
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.calls++
	if l.calls <= l.n {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	if l.calls == l.n+1 {
		// Only now has the loop handled (and counted) the n-th failure.
		close(l.failed)
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *emfileListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *emfileListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestAcceptEMFILEOneLogLine: out of descriptors, the accept loop backs
// off, counts every failure, and logs one line per interval, not one per
// failed accept.
func TestAcceptEMFILEOneLogLine(t *testing.T) {
	var logs lockedBuffer
	set := metrics.NewSet()
	srv, err := New(Options{Handler: echoHandler(), Metrics: set, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln := &emfileListener{n: 6, failed: make(chan struct{}), closed: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-ln.failed:
	case <-time.After(10 * time.Second):
		t.Fatal("the accept loop did not retry 6 times within 10 s")
	}
	srv.Close()
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve = %v, want http.ErrServerClosed", err)
	}
	if n := set.GetOrCreateCounter(`bulwark_accept_errors_total{reason="fd_exhausted"}`).Get(); n != 6 {
		t.Errorf("bulwark_accept_errors_total{reason=fd_exhausted} = %d, want 6", n)
	}
	if lines := strings.Count(logs.String(), "\n"); lines != 1 {
		t.Errorf("%d log lines for 6 failed accepts within %s, want 1:\n%s", lines, acceptLogInterval, logs.String())
	}
}
