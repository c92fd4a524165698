package front

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"bulwark/internal/listen"
)

// writeCounter is a listener whose connections count their Write calls:
// each is one write(2), and on TLS one record.
type writeCounter struct {
	net.Listener
	writes atomic.Int64
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, n: &l.writes}, nil
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// TestH1HeadAndBodyInOneWrite: an answer whose whole body comes in one
// Write with its Content-Length (a small static file, a buffered app
// answer) leaves with its head in one write, as nginx sends it, up to
// what a TLS record holds; a larger one still streams.
func TestH1HeadAndBodyInOneWrite(t *testing.T) {
	srv, err := New(Options{Metrics: metrics.NewSet(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write([]byte(strings.Repeat("x", n)))
	})})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := listen.TCP(context.Background(), "127.0.0.1:0", 16)
	if err != nil {
		t.Fatal(err)
	}
	ln := &writeCounter{Listener: inner}
	serveUntilCleanup(t, srv, ln)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for _, tc := range []struct {
		size      int
		maxWrites int64
	}{
		{100, 1}, {3000, 1}, {4096, 1}, {14 << 10, 1}, {64 << 10, 99},
	} {
		before := ln.writes.Load()
		io.WriteString(c, "GET /?n="+strconv.Itoa(tc.size)+" HTTP/1.1\r\nHost: x\r\n\r\n")
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		if err != nil || len(body) != tc.size {
			t.Fatalf("%d bytes: read %d, %v", tc.size, len(body), err)
		}
		got := ln.writes.Load() - before
		if tc.maxWrites == 1 && got != 1 {
			t.Errorf("a %d-byte answer took %d writes, want 1 (head and body together)", tc.size, got)
		}
		if tc.maxWrites > 1 && got < 2 {
			t.Errorf("a %d-byte answer took %d writes; the test cannot tell one write from many", tc.size, got)
		}
	}
}
