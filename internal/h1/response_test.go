package h1

import (
	"bufio"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestParseResponseHead: heads are read as net/http reads them, field
// names made canonical, values trimmed; the lenient forms net/http
// accepts are refused. package proxy's FuzzReadResponse compares the whole
// reader against http.ReadResponse.
func TestParseResponseHead(t *testing.T) {
	for _, in := range []string{
		"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nSet-Cookie: a\r\nset-cookie: b\r\nX-Pad:  v \t\r\nX-Empty:\r\n\r\n",
		"HTTP/1.0 404 Not Found\nContent-Length: 0\n\n",
		"HTTP/1.1 200\r\n\r\n",
	} {
		res, err := ParseResponseHead([]byte(in))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		ref, err := http.ReadResponse(bufio.NewReader(strings.NewReader(in)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != ref.StatusCode || res.Status != ref.Status || res.Proto != ref.Proto || !reflect.DeepEqual(res.Header, ref.Header) {
			t.Errorf("%q: %d %q %s %q; net/http %d %q %s %q", in, res.StatusCode, res.Status, res.Proto, res.Header, ref.StatusCode, ref.Status, ref.Proto, ref.Header)
		}
	}
	for _, in := range []string{
		"HTTP/2.0 200 OK\r\n\r\n",
		"HTTP/1.1 099 Odd\r\n\r\n",
		"HTTP/1.1 +20 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: \rchunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A\r\n\r\n",
	} {
		if _, err := ParseResponseHead([]byte(in)); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
}

func TestReadBlockLimit(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 100) + "\r\n\r\n"
	if _, err := ReadBlock(bufio.NewReaderSize(strings.NewReader(in), 16), nil, 64); !errors.Is(err, ErrTooLarge) {
		t.Errorf("error %v, want ErrTooLarge", err)
	}
	b, err := ReadBlock(bufio.NewReaderSize(strings.NewReader(in+"body"), 16), nil, 1024)
	if err != nil || string(b) != in {
		t.Errorf("%q, %v; want the head up to its empty line", b, err)
	}
}

func TestFrameResponse(t *testing.T) {
	for _, tt := range []struct {
		head, method string
		kind         BodyKind
		length       int64
		close, fails bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "GET", BodyLength, 2, false, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "HEAD", BodyEmpty, 2, false, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", BodyChunked, -1, false, false},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", "GET", BodyEmpty, 0, false, false},
		{"HTTP/1.1 200 OK\r\n\r\n", "GET", BodyToClose, -1, true, false},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", "GET", BodyLength, 2, true, false},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", "GET", BodyLength, 2, false, false},
		{"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", BodyToClose, -1, true, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", 0, 0, false, true},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET", 0, 0, false, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", "GET", 0, 0, false, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n", "GET", 0, 0, false, true},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n", "GET", 0, 0, false, true},
	} {
		res, err := ParseResponseHead([]byte(tt.head))
		if err != nil {
			t.Fatal(err)
		}
		kind, n, err := FrameResponse(res, tt.method)
		if (err != nil) != tt.fails {
			t.Errorf("%s %q: error %v", tt.method, tt.head, err)
			continue
		}
		if !tt.fails && (kind != tt.kind || res.ContentLength != tt.length || res.Close != tt.close || kind == BodyLength && n != tt.length) {
			t.Errorf("%s %q: kind %d length %d/%d close %v; want %d %d %v", tt.method, tt.head, kind, n, res.ContentLength, res.Close, tt.kind, tt.length, tt.close)
		}
	}
}
