package h1

import (
	"bufio"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestShouldCloseMatchesNetHTTP: persistence (RFC 9112 9.3) is read as
// net/http reads it, for requests and answers alike. Before h1, the
// server kept an HTTP/1.0 connection whose request said both "keep-alive"
// and "close" open.
func TestShouldCloseMatchesNetHTTP(t *testing.T) {
	for _, tt := range []struct {
		minor int
		conn  []string
		want  bool
	}{
		{1, nil, false},
		{1, []string{"close"}, true},
		{1, []string{"Keep-Alive, Close"}, true},
		{1, []string{"keep-alive"}, false},
		{0, nil, true},
		{0, []string{"keep-alive"}, false},
		{0, []string{"keep-alive, close"}, true},
		{0, []string{"keep-alive", "close"}, true},
	} {
		if got := ShouldClose(tt.minor, tt.conn); got != tt.want {
			t.Errorf("HTTP/1.%d Connection %q: close %v, want %v", tt.minor, tt.conn, got, tt.want)
		}
		// net/http's reading, through a request it parses.
		head := "GET / HTTP/1." + string(rune('0'+tt.minor)) + "\r\nHost: x\r\n"
		for _, c := range tt.conn {
			head += "Connection: " + c + "\r\n"
		}
		ref, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head + "\r\n")))
		if err != nil {
			t.Fatal(err)
		}
		if ref.Close != tt.want {
			t.Errorf("HTTP/1.%d Connection %q: net/http close %v; the table is wrong", tt.minor, tt.conn, ref.Close)
		}
	}
}

// TestParseRequestHeadClose: the server's request parser uses the same
// rule (an HTTP/1.0 "keep-alive, close" closes).
func TestParseRequestHeadClose(t *testing.T) {
	head := []byte("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n")
	req := new(http.Request)
	if err := ParseRequestHead(req, head, []int{14, len(head) - 2}); err != nil {
		t.Fatal(err)
	}
	if !req.Close {
		t.Error("Close = false, want true")
	}
}

func TestFrameRequest(t *testing.T) {
	for _, tt := range []struct {
		header  http.Header
		minor   int
		chunked bool
		length  int64
		reason  string // the HeadError's, "" when accepted
	}{
		{http.Header{}, 1, false, 0, ""},
		{http.Header{"Content-Length": {"3"}}, 1, false, 3, ""},
		{http.Header{"Content-Length": {"3, 3", "3"}}, 1, false, 3, ""},
		{http.Header{"Content-Length": {"3", "4"}}, 1, false, 0, "smuggling"},
		{http.Header{"Content-Length": {"+3"}}, 1, false, 0, "bad_content_length"},
		{http.Header{"Content-Length": {"1234567890123456789"}}, 1, false, 0, "bad_content_length"},
		{http.Header{"Transfer-Encoding": {"Chunked"}}, 1, true, -1, ""},
		{http.Header{"Transfer-Encoding": {"chunked"}}, 0, false, 0, "smuggling"},
		{http.Header{"Transfer-Encoding": {"chunked"}, "Content-Length": {"3"}}, 1, false, 0, "smuggling"},
		{http.Header{"Transfer-Encoding": {"gzip, chunked"}}, 1, false, 0, "smuggling"},
		{http.Header{"Transfer-Encoding": {"chunked", "chunked"}}, 1, false, 0, "smuggling"},
	} {
		req := &http.Request{Header: tt.header, ProtoMajor: 1, ProtoMinor: tt.minor}
		chunked, n, err := FrameRequest(req)
		var he *HeadError
		switch {
		case tt.reason != "":
			if !errors.As(err, &he) || he.Reason != tt.reason || he.Status != http.StatusBadRequest {
				t.Errorf("%v: error %v, want 400 %s", tt.header, err, tt.reason)
			}
		case err != nil:
			t.Errorf("%v: %v", tt.header, err)
		case chunked != tt.chunked || n != tt.length || req.ContentLength != tt.length:
			t.Errorf("%v: chunked %v length %d (ContentLength %d), want %v %d", tt.header, chunked, n, req.ContentLength, tt.chunked, tt.length)
		case chunked && (req.Header["Transfer-Encoding"] != nil || len(req.TransferEncoding) != 1):
			t.Errorf("%v: Transfer-Encoding left in the header or not set", tt.header)
		}
	}
}

func TestFrameAnswer(t *testing.T) {
	for _, tt := range []struct {
		method   string
		status   int
		declared int64
		complete bool
		minor    int
		want     AnswerFraming
	}{
		{"GET", 204, -1, true, 1, AnswerNoLength},
		{"GET", 304, 10, false, 1, AnswerNoLength},
		{"HEAD", 200, -1, true, 1, AnswerAsIs},
		{"HEAD", 204, -1, true, 1, AnswerAsIs},
		{"GET", 200, 10, false, 1, AnswerAsIs},
		{"GET", 200, -1, true, 0, AnswerLength},
		{"GET", 200, -1, false, 1, AnswerChunked},
		{"GET", 200, -1, false, 0, AnswerToClose},
	} {
		noBody := tt.method == http.MethodHead || tt.status == 204 || tt.status == 304
		if got := FrameAnswer(tt.method, tt.status, noBody, tt.declared, tt.complete, tt.minor); got != tt.want {
			t.Errorf("%+v: %d, want %d", tt, got, tt.want)
		}
	}
}

func TestNewRequestFraming(t *testing.T) {
	u, _ := url.Parse("http://app/p")
	body := strings.NewReader("abc")
	for _, tt := range []struct {
		name      string
		req       *http.Request
		keepAlive bool
		want      RequestFraming
		fails     bool
	}{
		{"GET", &http.Request{Method: "GET", URL: u, Header: http.Header{}}, true,
			RequestFraming{Host: "app"}, false},
		{"POST empty", &http.Request{Method: "POST", URL: u, Header: http.Header{}}, true,
			RequestFraming{Host: "app", SendLength: true}, false},
		{"known length", &http.Request{Method: "PUT", URL: u, Header: http.Header{}, Body: http.NoBody, ContentLength: 0}, true,
			RequestFraming{Host: "app", SendLength: true}, false},
		{"unknown length", &http.Request{Method: "POST", URL: u, Header: http.Header{}, Body: nopCloser{body}, ContentLength: -1,
			Trailer: http.Header{"x-b": nil, "X-A": nil}}, true,
			RequestFraming{Host: "app", HasBody: true, Chunked: true, Length: -1, Trailer: "X-A,X-B"}, false},
		{"no pooling", &http.Request{Method: "GET", URL: u, Header: http.Header{}}, false,
			RequestFraming{Host: "app", Close: true}, false},
		{"no pooling, upgrade", &http.Request{Method: "GET", URL: u, Header: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}}, false,
			RequestFraming{Host: "app"}, false},
		{"bad Host", &http.Request{Method: "GET", URL: u, Host: "a b", Header: http.Header{}}, true,
			RequestFraming{}, false},
		{"zone", &http.Request{Method: "GET", URL: u, Host: "[fe80::1%25eth0]:80", Header: http.Header{}}, true,
			RequestFraming{Host: "[fe80::1]:80"}, false},
		{"bad method", &http.Request{Method: "G T", URL: u, Header: http.Header{}}, true, RequestFraming{}, true},
		{"bad trailer", &http.Request{Method: "POST", URL: u, Header: http.Header{}, Body: nopCloser{body}, ContentLength: -1,
			Trailer: http.Header{"Content-Length": nil}}, true, RequestFraming{}, true},
	} {
		f, err := NewRequestFraming(tt.req, tt.keepAlive)
		if (err != nil) != tt.fails {
			t.Errorf("%s: error %v", tt.name, err)
			continue
		}
		if !tt.fails && f != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, f, tt.want)
		}
	}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }
