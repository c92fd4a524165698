package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// wsEchoApp answers a WebSocket upgrade with 101 and then echoes every
// line it reads over the hijacked connection; it first says "hello".
func wsEchoApp(t *testing.T) (*httptest.Server, chan http.Header) {
	t.Helper()
	headers := make(chan http.Header, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers <- r.Header.Clone()
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello\n")
		brw.Flush()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo " + line)
			brw.Flush()
		}
	}))
	t.Cleanup(app.Close)
	return app, headers
}

func TestWebSocketPassesThrough(t *testing.T) {
	app, headers := wsEchoApp(t)
	p, set := newTestProxy(t, hostOf(app), nil)
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)

	c, err := net.Dial("tcp", hostOf(front))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: chat.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the upgrade answer: %v", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(res.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("upgrade answer = %d Upgrade %q, want 101 websocket", res.StatusCode, res.Header.Get("Upgrade"))
	}
	h := <-headers
	if h.Get("Sec-Websocket-Key") == "" || !strings.EqualFold(h.Get("Upgrade"), "websocket") || !strings.EqualFold(h.Get("Connection"), "Upgrade") {
		t.Errorf("the app got upgrade headers %v, want Upgrade, Connection and the key", h)
	}
	// App to client, unprompted.
	if line, err := br.ReadString('\n'); err != nil || line != "hello\n" {
		t.Errorf("first message from the app = %q, %v; want %q", line, err, "hello\n")
	}
	// Client to app and back, twice.
	for _, msg := range []string{"one\n", "two\n"} {
		io.WriteString(c, msg)
		if line, err := br.ReadString('\n'); err != nil || line != "echo "+msg {
			t.Errorf("echo of %q = %q, %v; want %q", msg, line, err, "echo "+msg)
		}
	}
	// The client closes its side; the app's side ends too.
	c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after the client closed: read %q, %v; want a clean end", rest, err)
	}
	if want := `bulwark_upstream_requests_total{code_class="1xx"} 1`; !strings.Contains(metricsText(set), want) {
		t.Errorf("metrics lack %q", want)
	}
}

// TestStreamsFlushAtOnce: an event the app flushed reaches the client while
// the app is still running, for SSE and for any unknown-length answer.
func TestStreamsFlushAtOnce(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		first       string
	}{
		{"sse", "text/event-stream", "data: first\n\n"},
		{"chunked", "application/x-ndjson", "{\"n\":1}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			finish := make(chan struct{})
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				io.WriteString(w, tt.first)
				w.(http.Flusher).Flush()
				select {
				case <-finish:
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
				io.WriteString(w, "last\n")
			}))
			t.Cleanup(app.Close)
			t.Cleanup(func() { close(finish) })
			p, _ := newTestProxy(t, hostOf(app), nil)
			front := httptest.NewServer(p)
			t.Cleanup(front.Close)

			res, err := http.Get(front.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			got := make(chan string, 1)
			go func() {
				b := make([]byte, len(tt.first))
				n, _ := io.ReadFull(res.Body, b)
				got <- string(b[:n])
			}()
			select {
			case s := <-got:
				if s != tt.first {
					t.Errorf("first part = %q, want %q", s, tt.first)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("the flushed part did not reach the client while the app was still running")
			}
		})
	}
}
