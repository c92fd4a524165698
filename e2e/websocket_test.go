package e2e

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wsEcho is an upstream that completes a WebSocket handshake and then echoes
// whatever bytes arrive, until the client closes.
func wsEcho(t *testing.T) (addr string, closed <-chan struct{}) {
	t.Helper()
	done := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want an upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		h := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
			base64.StdEncoding.EncodeToString(h[:])+"\r\n\r\n")
		io.Copy(conn, brw) // echo until the client closes
		close(done)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), done
}

func TestWebSocketPassesThrough(t *testing.T) {
	up, closed := wsEcho(t)
	in := startBulwark(t, withUpstream(up, ""), nil)
	c, err := tls.Dial("tcp", in.https, &tls.Config{RootCAs: in.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 101 || res.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("got %d %v, want 101 with the app's accept key", res.StatusCode, res.Header)
	}
	for _, msg := range []string{"hello", "second message", strings.Repeat("z", 70000)} {
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(got), err)
		}
	}
	c.Close()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Error("the app did not see the client close the WebSocket")
	}
}

// TestDrainDeadlineClosesWebSocket: on SIGTERM a WebSocket still open at
// listen.shutdown_timeout is closed by Bulwark, which then exits 0.
func TestDrainDeadlineClosesWebSocket(t *testing.T) {
	up, _ := wsEcho(t)
	in := startBulwark(t, strings.Replace(withUpstream(up, ""), "[listen]\n", "[listen]\nshutdown_timeout = \"1s\"\n", 1), nil)
	c, err := tls.Dial("tcp", in.https, &tls.Config{RootCAs: in.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	// The socket stays usable until the deadline, then Bulwark closes it.
	io.WriteString(c, "still here")
	got := make([]byte, len("still here"))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("echo during the drain: %v", err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("read a byte nobody sent")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the WebSocket was not closed at the drain deadline")
	}
	select {
	case <-in.done:
	case <-time.After(15 * time.Second):
		t.Fatal("bulwark did not exit after the drain deadline")
	}
	if in.exit != nil {
		t.Errorf("exit: %v, want 0", in.exit)
	}
}
