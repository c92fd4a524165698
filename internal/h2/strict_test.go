package h2

import (
	"net/http"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawHeaders sends a header block made of exactly fields on stream id.
func (r *h2Raw) rawHeaders(t *testing.T, id uint32, endStream bool, fields ...string) {
	t.Helper()
	r.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.buf.Bytes(), EndStream: endStream, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

// TestH2PathAndAuthorityChecked: a :path that would not survive as an
// HTTP/1.1 request line, and an :authority or host that HTTP/1.1 would
// refuse as Host, reset the stream as malformed instead of reaching the
// app (issue 14 §5).
func TestH2PathAndAuthorityChecked(t *testing.T) {
	reached := make(chan string, 16)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached <- r.RequestURI + " host " + r.Host
	}), nil)
	get := []string{":method", "GET", ":scheme", "https"}
	cases := []struct {
		name   string
		fields []string
	}{
		{"space in path", append(get, ":path", "/x?a HTTP/1.0 foo", ":authority", "x")},
		{"tab in path", append(get, ":path", "/x\ty", ":authority", "x")},
		{"DEL in path", append(get, ":path", "/x\x7f", ":authority", "x")},
		{"non-ASCII path", append(get, ":path", "/caf\xc3\xa9", ":authority", "x")},
		{"CRLF in path", append(get, ":path", "/x\r\nX-Inj: 1", ":authority", "x")},
		{"space in authority", append(get, ":path", "/", ":authority", "a b")},
		{"CRLF in authority", append(get, ":path", "/", ":authority", "evil.com\r\nX-Inj: 1")},
		{"space in host", append(get, ":path", "/", "host", "a b")},
		{"slash in host", append(get, ":path", "/", "host", "a/b")},
	}
	for _, tc := range cases {
		r := ts.dialH2(t)
		r.rawHeaders(t, 1, true, tc.fields...)
		f := r.next(t)
		if rst, ok := f.(*http2.RSTStreamFrame); !ok || rst.ErrCode != http2.ErrCodeProtocol {
			t.Errorf("%s: got %v, want RST_STREAM PROTOCOL_ERROR", tc.name, f)
		}
		select {
		case got := <-reached:
			t.Errorf("%s: the app got %q", tc.name, got)
		default:
		}
	}
	// Valid ones still pass.
	r := ts.dialH2(t)
	r.rawHeaders(t, 1, true, append(get, ":path", "/a/b?c=d&e=%20", ":authority", "example.com:8443")...)
	if h := r.answerOn(t, 1); h.PseudoValue("status") != "200" {
		t.Errorf("valid request: status %s, want 200", h.PseudoValue("status"))
	}
	if got, want := <-reached, "/a/b?c=d&e=%20 host example.com:8443"; got != want {
		t.Errorf("valid request: app got %q, want %q", got, want)
	}
	r.rawHeaders(t, 3, true, append(get, ":path", "/", "host", "[::1]:443")...)
	if h := r.answerOn(t, 3); h.PseudoValue("status") != "200" {
		t.Errorf("host without :authority: status %s, want 200", h.PseudoValue("status"))
	}
	if got, want := <-reached, "/ host [::1]:443"; got != want {
		t.Errorf("host without :authority: app got %q, want %q", got, want)
	}
}

// TestH2NoHeadersAfterReset: once a stream is reset (here for a body
// longer than its content-length), the handler's answer is dropped, not
// sent as a HEADERS frame after the RST_STREAM (issue 14 §5).
func TestH2NoHeadersAfterReset(t *testing.T) {
	started, release, answered := make(chan struct{}), make(chan struct{}), make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte("too long"))
		w.(http.Flusher).Flush()
		close(answered)
	}), nil)
	r := ts.dialH2(t)
	r.headers(t, 1, false, "content-length", "5")
	<-started // a stream reset before its handler starts never runs it
	if err := r.fr.WriteData(1, true, []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	f := r.next(t)
	if rst, ok := f.(*http2.RSTStreamFrame); !ok || rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("got %v, want RST_STREAM PROTOCOL_ERROR on stream 1", f)
	}
	close(release)
	<-answered
	// Frames are written in order: anything the handler sent is before
	// the answer to this PING.
	if err := r.fr.WritePing(false, [8]byte{1}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
			return
		}
		if f.Header().StreamID == 1 {
			t.Fatalf("after RST_STREAM: got %v on stream 1", f)
		}
	}
	t.Fatal("no PING ack in 100 frames")
}
