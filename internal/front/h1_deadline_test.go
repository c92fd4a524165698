package front

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// trickle writes the rest of a request head one byte every interval, at
// most n bytes, and returns when the server closed the connection (the
// read returned), or fails the test if the trickle ran out first.
func trickle(t *testing.T, c net.Conn, r io.Reader, interval time.Duration, n int) time.Time {
	t.Helper()
	closed := make(chan time.Time, 1)
	go func() {
		io.Copy(io.Discard, r)
		closed <- time.Now()
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for range n {
		select {
		case at := <-closed:
			return at
		case <-tick.C:
			c.Write([]byte{'a'})
		}
	}
	select {
	case at := <-closed:
		return at
	case <-time.After(10 * interval):
		t.Fatalf("the connection was still open after %d bytes trickled every %v", n, interval)
		return time.Time{}
	}
}

// TestSlowlorisOneDeadlineForTheFirstHead checks that a new connection's
// first head must be complete ReadHeaderTimeout after the connection began
// waiting for it, however late its first byte came: the deadline is not
// armed again when that byte arrives.
func TestSlowlorisOneDeadlineForTheFirstHead(t *testing.T) {
	const timeout = time.Second
	ts := start(t, echoHandler(), false, func(o *Options) { o.ReadHeaderTimeout = timeout })
	c := ts.dial(t, false)
	// The server's deadline started no earlier than the dial returned, and
	// no later than the first byte arriving; the first byte comes late.
	time.Sleep(timeout * 3 / 4)
	firstByte := time.Now()
	io.WriteString(c, "G")
	closed := trickle(t, c, c, timeout/10, 50)
	// A deadline armed again at the first byte cannot fire before
	// firstByte+timeout; one armed when the wait began fires about a
	// quarter timeout earlier.
	if end := firstByte.Add(timeout); !closed.Before(end) {
		t.Errorf("closed %v after the first byte; want before %v: the head's deadline was armed again at its first byte",
			closed.Sub(firstByte).Round(time.Millisecond), timeout)
	}
	if n := ts.set.GetOrCreateCounter(`bulwark_rejected_total{reason="read_header_timeout"}`).Get(); n != 1 {
		t.Errorf(`bulwark_rejected_total{reason="read_header_timeout"} = %d, want 1`, n)
	}
}

// TestSlowlorisKeepAliveHeadDeadlineNotExtended checks that on a keep-alive
// connection the next head gets ReadHeaderTimeout from its first byte, not
// more however it trickles in.
func TestSlowlorisKeepAliveHeadDeadlineNotExtended(t *testing.T) {
	const timeout = 400 * time.Millisecond
	ts := start(t, echoHandler(), false, func(o *Options) {
		o.ReadHeaderTimeout = timeout
		o.IdleTimeout = 5 * time.Second
	})
	c := ts.dial(t, false)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(res.Body)
	// Idle past the head timeout (the idle timeout covers the wait) and
	// past the idle hand-off to a fresh goroutine.
	time.Sleep(timeout + idleHandoff)
	firstByte := time.Now()
	io.WriteString(c, "G")
	closed := trickle(t, c, br, timeout/10, 50)
	if d := closed.Sub(firstByte); d < timeout*9/10 || d > timeout*5/2 {
		t.Errorf("closed %v after the first byte; want about %v", d.Round(time.Millisecond), timeout)
	}
}
