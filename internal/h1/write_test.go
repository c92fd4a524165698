package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestWriteRequestHeadReadByNetHTTP: a written head is one request to
// net/http's server, with the framing and fields it was given, whatever
// control bytes the target and values hold.
func TestWriteRequestHeadReadByNetHTTP(t *testing.T) {
	u := &url.URL{Scheme: "http", Host: "app", Path: "/a b\r\nX: y", RawQuery: "q=\n1"}
	req := &http.Request{Method: "POST", URL: u, Header: http.Header{
		"User-Agent":   {"ua"},
		"X-Split":      {"a\r\nInjected: 1"},
		"Bad Name":     {"v"},
		"Content-Type": {"text/plain"},
	}, Body: http.NoBody}
	f, err := NewRequestFraming(req, false)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	WriteRequestHead(bw, req, &f)
	bw.Flush()
	br := bufio.NewReader(&buf)
	got, err := http.ReadRequest(br)
	if err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if br.Buffered() != 0 {
		t.Errorf("%d bytes after the head", br.Buffered())
	}
	if got.Method != "POST" || got.Host != "app" || got.ContentLength != 0 || !got.Close {
		t.Errorf("method %s host %s length %d close %v", got.Method, got.Host, got.ContentLength, got.Close)
	}
	if got.Header.Get("Injected") != "" || got.Header.Get("X") != "" || got.Header.Get("Bad Name") != "" {
		t.Errorf("a field was injected or an invalid name sent: %q", got.Header)
	}
	if got.Header.Get("X-Split") != "a  Injected: 1" || got.Header.Get("User-Agent") != "ua" {
		t.Errorf("header %q", got.Header)
	}
	if !strings.HasPrefix(got.RequestURI, "/a%20b%0D%0AX:%20y?q=%0a1") {
		t.Errorf("target %q", got.RequestURI)
	}
}

func TestWriteHeaderLines(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	WriteHeaderLines(bw, http.Header{"X-A": {"1", "a\r\nB: 2"}, "Bad Name": {"v"}})
	bw.Flush()
	if buf.String() != "X-A: 1\r\n" {
		t.Errorf("%q, want only the valid field", buf.String())
	}
}

func TestStatusLine(t *testing.T) {
	for code, want := range map[int]string{200: "200 OK", 404: "404 Not Found", 599: "599 status code 599", 1000: "1000 status code 1000"} {
		if got := StatusLine(code); got != want {
			t.Errorf("StatusLine(%d) = %q, want %q", code, got, want)
		}
	}
}
