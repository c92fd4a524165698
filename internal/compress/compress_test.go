package compress

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var testOpts = Options{
	Types:   []string{"text/*", "application/json", "application/javascript", "image/svg+xml", "image/*"},
	MinSize: 1024,
}

var big = strings.Repeat(`{"id":1,"name":"bulwark"},`, 200) // 5200 bytes

// answer is an app answer: headers, status and body; withLength sets
// Content-Length as the proxy does when the app sent one.
type answer struct {
	header     map[string]string
	status     int
	body       string
	withLength bool
}

func (a answer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	if a.withLength {
		w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	}
	if a.status != 0 {
		w.WriteHeader(a.status)
	}
	// In pieces, as a proxy relays them.
	for b := a.body; len(b) > 0; {
		n := min(len(b), 700)
		w.Write([]byte(b[:n]))
		b = b[n:]
	}
}

func run(c *Compressor, h http.Handler, method, accept string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/x", nil)
	if accept != "" {
		r.Header.Set("Accept-Encoding", accept)
	}
	rec := httptest.NewRecorder()
	c.Middleware(h).ServeHTTP(rec, r)
	return rec
}

func decode(t *testing.T, coding string, b []byte) string {
	t.Helper()
	var r io.Reader
	switch coding {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		defer zr.Close()
		r = zr
	default:
		return string(b)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", coding, err)
	}
	return string(out)
}

func TestCompresses(t *testing.T) {
	tests := []struct {
		accept, want string
		withLength   bool
	}{
		{"gzip", "gzip", true},
		{"gzip, deflate, br, zstd", "zstd", true},
		{"zstd", "zstd", false},
		{"gzip;q=1, zstd;q=0.5", "gzip", false},
		{"*", "zstd", false},
	}
	c := New(testOpts)
	for _, tt := range tests {
		app := answer{header: map[string]string{"Content-Type": "application/json", "ETag": `"v1"`}, body: big, withLength: tt.withLength}
		rec := run(c, app, http.MethodGet, tt.accept)
		h := rec.Header()
		if got := h.Get("Content-Encoding"); got != tt.want {
			t.Errorf("Accept-Encoding %q: Content-Encoding = %q; want %q", tt.accept, got, tt.want)
			continue
		}
		if got := decode(t, tt.want, rec.Body.Bytes()); got != big {
			t.Errorf("Accept-Encoding %q: decoded body differs (%d bytes)", tt.accept, len(got))
		}
		if rec.Body.Len() >= len(big)/2 {
			t.Errorf("Accept-Encoding %q: %d bytes compressed from %d", tt.accept, rec.Body.Len(), len(big))
		}
		if h.Get("Content-Length") != "" || h.Get("Vary") != "Accept-Encoding" || h.Get("ETag") != `W/"v1"` {
			t.Errorf("Accept-Encoding %q: Content-Length %q, Vary %q, ETag %q; want none, Accept-Encoding, W/\"v1\"",
				tt.accept, h.Get("Content-Length"), h.Get("Vary"), h.Get("ETag"))
		}
	}
	if len(c.slots) != 0 {
		t.Errorf("%d encoder slots held after the answers; want 0", len(c.slots))
	}
}

func TestLeavesAlone(t *testing.T) {
	c := New(testOpts)
	json := map[string]string{"Content-Type": "application/json"}
	tests := []struct {
		name, method, accept string
		app                  answer
		wantVary             bool
	}{
		{"client takes neither", "GET", "br, deflate", answer{header: json, body: big}, true},
		{"no Accept-Encoding", "GET", "", answer{header: json, body: big}, true},
		{"gzip refused", "GET", "gzip;q=0, zstd;q=0", answer{header: json, body: big}, true},
		{"HEAD", "HEAD", "gzip", answer{header: json, body: big}, false},
		{"small with length", "GET", "gzip", answer{header: json, body: "{}", withLength: true}, true},
		{"small without length", "GET", "gzip", answer{header: json, body: strings.Repeat("x", 1023)}, true},
		{"type not listed", "GET", "gzip", answer{header: map[string]string{"Content-Type": "application/x-thing"}, body: big}, false},
		{"no type", "GET", "gzip", answer{body: big}, false},
		{"png", "GET", "gzip", answer{header: map[string]string{"Content-Type": "image/png"}, body: big}, false},
		{"woff2", "GET", "gzip", answer{header: map[string]string{"Content-Type": "font/woff2"}, body: big}, false},
		{"encoded by the app", "GET", "gzip", answer{header: map[string]string{"Content-Type": "text/html", "Content-Encoding": "br"}, body: big}, false},
		{"no-transform", "GET", "gzip", answer{header: map[string]string{"Content-Type": "text/html", "Cache-Control": "public, no-transform"}, body: big}, false},
		{"partial", "GET", "gzip", answer{header: map[string]string{"Content-Type": "text/html", "Content-Range": "bytes 0-5199/9999"}, status: 206, body: big}, false},
		{"range on 200", "GET", "gzip", answer{header: map[string]string{"Content-Type": "text/html", "Content-Range": "bytes 0-5199/5200"}, body: big}, false},
	}
	for _, tt := range tests {
		rec := run(c, tt.app, tt.method, tt.accept)
		h := rec.Header()
		if ce := h.Get("Content-Encoding"); ce != "" && ce != tt.app.header["Content-Encoding"] {
			t.Errorf("%s: Content-Encoding = %q; want the answer untouched", tt.name, ce)
		}
		if rec.Body.String() != tt.app.body {
			t.Errorf("%s: body changed (%d bytes)", tt.name, rec.Body.Len())
		}
		if got := h.Get("Vary") == "Accept-Encoding"; got != tt.wantVary {
			t.Errorf("%s: Vary = %q; want Accept-Encoding %v", tt.name, h.Get("Vary"), tt.wantVary)
		}
	}
	// An answer of unknown length held while deciding goes out with its length.
	rec := run(c, answer{header: json, body: "{}"}, "GET", "gzip")
	if rec.Header().Get("Content-Length") != "2" {
		t.Errorf("short answer of unknown length: Content-Length = %q; want 2", rec.Header().Get("Content-Length"))
	}
	if len(c.slots) != 0 {
		t.Errorf("%d encoder slots held; want 0", len(c.slots))
	}
}

func TestOff(t *testing.T) {
	c := New(Options{})
	rec := run(c, answer{header: map[string]string{"Content-Type": "text/html"}, body: big}, "GET", "gzip")
	if rec.Header().Get("Content-Encoding") != "" || rec.Header().Get("Vary") != "" {
		t.Errorf("with no types: Content-Encoding %q, Vary %q; want neither", rec.Header().Get("Content-Encoding"), rec.Header().Get("Vary"))
	}
	c.Update(testOpts)
	if rec := run(c, answer{header: map[string]string{"Content-Type": "text/html"}, body: big}, "GET", "gzip"); rec.Header().Get("Content-Encoding") != "gzip" {
		t.Errorf("after Update: Content-Encoding %q; want gzip", rec.Header().Get("Content-Encoding"))
	}
}

// TestSlotsFull: with every full encoder in use, an answer is gzipped
// statelessly, or sent as it is to a client that takes only zstd.
func TestSlotsFull(t *testing.T) {
	o := testOpts
	o.MaxEncoders = 1
	c := New(o)
	c.slots <- struct{}{} // another answer holds the only encoder
	app := answer{header: map[string]string{"Content-Type": "text/html"}, body: big}
	rec := run(c, app, "GET", "zstd, gzip")
	if rec.Header().Get("Content-Encoding") != "gzip" || decode(t, "gzip", rec.Body.Bytes()) != big {
		t.Errorf("no free slot, gzip accepted: Content-Encoding %q; want a stateless gzip", rec.Header().Get("Content-Encoding"))
	}
	rec = run(c, app, "GET", "zstd")
	if rec.Header().Get("Content-Encoding") != "" || rec.Body.String() != big {
		t.Errorf("no free slot, zstd only: Content-Encoding %q; want the answer as it is", rec.Header().Get("Content-Encoding"))
	}
	<-c.slots
	if len(c.slots) != 0 {
		t.Errorf("%d slots held; want 0", len(c.slots))
	}
}

// TestStreamFlushes: a stream's event reaches the client compressed as
// soon as the app flushes it, while the app still holds the stream open.
func TestStreamFlushes(t *testing.T) {
	for _, ct := range []string{"text/event-stream", "text/plain"} {
		release := make(chan struct{})
		c := New(testOpts)
		srv := httptest.NewServer(c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ct)
			io.WriteString(w, "data: event 0\n\n")
			http.NewResponseController(w).Flush()
			select { // the stream stays open until the test has read the event
			case <-release:
			case <-time.After(20 * time.Second):
			}
		})))
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		res, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("%s: Content-Encoding = %q; want gzip", ct, res.Header.Get("Content-Encoding"))
		}
		got := make(chan string, 1)
		go func() {
			zr, err := gzip.NewReader(res.Body)
			if err != nil {
				got <- err.Error()
				return
			}
			line, err := bufio.NewReader(zr).ReadString('\n')
			if err != nil {
				line += err.Error()
			}
			got <- line
		}()
		select {
		case line := <-got:
			if line != "data: event 0\n" {
				t.Errorf("%s: first line = %q; want data: event 0", ct, line)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: the flushed event did not arrive within 5s while the stream was open", ct)
		}
		close(release)
		res.Body.Close()
		srv.Close()
		if len(c.slots) != 0 {
			t.Errorf("%s: %d slots held after the stream; want 0", ct, len(c.slots))
		}
	}
}

// TestHijack: a WebSocket-style upgrade passes through the writer.
func TestHijack(t *testing.T) {
	c := New(testOpts)
	srv := httptest.NewServer(c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack through the compress writer: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nhello")
		brw.Flush()
	})))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "test")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 5))
	if res.StatusCode != 101 || string(b) != "hello" {
		t.Errorf("upgrade = %d %q; want 101 hello", res.StatusCode, b)
	}
}
