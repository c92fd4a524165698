package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"testing"
)

// wellFormedHeads are heads Bulwark must accept, and parse as net/http does.
var wellFormedHeads = []string{
	"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
	"GET /a?b=c HTTP/1.1\r\nHost: x\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n",
	"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2\r\n\r\nabc",
	"GET / HTTP/1.0\r\n\r\n",
	"GET /p HTTP/1.0\r\nCookie:  a=b ; c=d \t\r\nX-A: 1\r\nx-a: 2\r\nAccept: */*\r\n\r\n",
	"GET / HTTP/1.1\nHost: x\n\n",
	"\r\nGET / HTTP/1.1\r\nHost: x\r\nCookie:  a=b ; c=d \t\r\n\r\n",
	"GET http://example.com/p HTTP/1.1\r\nHost: other\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nEmpty:\r\n\r\n",
}

func TestParseHeadMatchesNetHTTP(t *testing.T) {
	for _, in := range wellFormedHeads {
		if !compareWithNetHTTP(t, []byte(in)) {
			t.Errorf("%q: refused", in)
		}
	}
}

// compareWithNetHTTP parses in with ReadRequestHead and ParseRequestHead
// and, if that and net/http both accept it, fails t unless both read the
// same method, target, Host and header values. It reports whether Bulwark
// accepted in.
func compareWithNetHTTP(t *testing.T, in []byte) bool {
	t.Helper()
	head, ends, err := ReadRequestHead(bufio.NewReader(bytes.NewReader(in)), nil, nil, 64<<10)
	if err != nil {
		return false
	}
	req := new(http.Request)
	if err := ParseRequestHead(req, head, ends); err != nil {
		return false
	}
	ref, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
	if err != nil {
		return true
	}
	if req.Method != ref.Method || req.RequestURI != ref.RequestURI || req.Host != ref.Host {
		t.Fatalf("%q: got %q %q host %q, net/http %q %q host %q", in, req.Method, req.RequestURI, req.Host, ref.Method, ref.RequestURI, ref.Host)
	}
	delete(ref.Header, "Host")
	if !reflect.DeepEqual(req.Header, ref.Header) {
		t.Fatalf("%q: header %q, net/http %q", in, req.Header, ref.Header)
	}
	return true
}

// FuzzParseHead feeds arbitrary bytes to the HTTP/1.1 head reader and
// parser. It must not panic, and a head that both it and net/http accept
// must come out the same: method, target, Host and every header value
// (ParseRequestHead slices all of them out of one copy of the head).
func FuzzParseHead(f *testing.F) {
	for _, seed := range wellFormedHeads {
		f.Add([]byte(seed))
	}
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nSpaced :v\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		compareWithNetHTTP(t, in)
	})
}
