package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The response differential: Bulwark's reader of the app's answers
// (readResponse, frame, the body and trailer readers of upstream_read.go)
// against net/http's http.ReadResponse and its body reader, on the same
// bytes. Where both accept an answer they must agree on the status, the
// header values, the framing (Content-Length, chunked or until close, and
// Close), the body and the trailer. Where one accepts and the other
// refuses, the difference must be one of the deliberate ones (checked on
// the seeds below, and what the fuzzer found):
//
//	| answer from the app                    | net/http                      | Bulwark                        |
//	|----------------------------------------|-------------------------------|--------------------------------|
//	| Content-Length with Transfer-Encoding  | chunked, CL dropped           | refused (502)                  |
//	| protocol other than HTTP/1.x           | "HTTP/2.0 200" read to close  | refused                        |
//	| status code with a sign, or below 100  | "+20", "099" accepted         | refused                        |
//	| whitespace before a field's colon      | accepted, as a field named    | refused (RFC 9112 5.1 MUST)    |
//	|                                        | "Content-Length " (to close)  |                                |
//	| obs-fold                               | joined with a space           | refused (RFC 9112 5.2 allows)  |
//	| the same in a trailer field            | accepted                      | the body fails                 |
//	| trailer ended by a bare-LF empty line  | fails unless a CRLF CRLF is   | the body fails, see            |
//	|                                        | in its buffer (look-ahead)    | TestAnswerTrailerBareLFRefused |
//	| head over 1 MiB, trailer over 64 KiB   | 10 MiB head; trailer 4 KiB    | refused                        |
//	| "Connection: close"                    | removed from the header       | kept (the relay drops it)      |
//	| 1xx answers                            | one at a time                 | skipped up to the final one,   |
//	|                                        |                               | at most 32; 101 is final       |
//
// Agreed: several equal Content-Length fields (one kept), a list "2, 2"
// (refused by both), a CTL or bare CR in a value (refused by both), bare LF
// in chunk lines (refused by both: the chunks are decoded by net/http's
// decoder), HTTP/1.0 with Transfer-Encoding (read to close by both), 204
// and 304 and HEAD without a body.
//
// The comparison reads net/http's 1xx answers in a loop as its Transport
// does, so both sides stop at the same final answer.

// respRead is what a reader made of one answer.
type respRead struct {
	err     error // the head or its framing was refused
	status  int
	proto   string
	header  http.Header
	length  int64
	chunked bool
	close   bool
	body    []byte
	bodyErr error
	trailer http.Header
}

// nopConn is a connection that reads nothing and discards writes.
type nopConn struct{}

func (nopConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (nopConn) Write(p []byte) (int, error)      { return len(p), nil }
func (nopConn) Close() error                     { return nil }
func (nopConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (nopConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (nopConn) SetDeadline(time.Time) error      { return nil }
func (nopConn) SetReadDeadline(time.Time) error  { return nil }
func (nopConn) SetWriteDeadline(time.Time) error { return nil }

// maxFuzzBody bounds what either side reads of one body.
const maxFuzzBody = 1 << 20

// bulwarkResponse reads an answer to method from in with Bulwark's reader.
func bulwarkResponse(in []byte, method string) respRead {
	u := newUpstream(nil, -1, time.Minute, nil)
	pc := &upConn{u: u, key: "app", c: &deadlineConn{Conn: nopConn{}}, br: bufio.NewReaderSize(bytes.NewReader(in), upBufSize)}
	req, _ := http.NewRequest(method, "http://app/", nil)
	var r respRead
	res, _, err := pc.readResponse(req, nil)
	if err == nil {
		err = pc.attachBody(res, context.Background())
	}
	if err != nil {
		r.err = err
		return r
	}
	r.fill(res)
	r.readBody(res)
	return r
}

// netHTTPResponse reads an answer to method from in with net/http's
// reader, skipping 1xx answers but 101 as its Transport does.
func netHTTPResponse(in []byte, method string) respRead {
	br := bufio.NewReader(bytes.NewReader(in))
	req, _ := http.NewRequest(method, "http://app/", nil)
	var r respRead
	var res *http.Response
	for range maxInformational + 1 {
		var err error
		res, err = http.ReadResponse(br, req)
		if err != nil {
			r.err = err
			return r
		}
		if res.StatusCode < 100 || res.StatusCode > 199 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	if res.StatusCode >= 100 && res.StatusCode <= 199 && res.StatusCode != http.StatusSwitchingProtocols {
		r.err = io.ErrUnexpectedEOF // more 1xx than Bulwark reads
		return r
	}
	r.fill(res)
	r.readBody(res)
	return r
}

// readBody reads res's body and trailer; a 101 answer's body is the
// connection itself, not compared.
func (r *respRead) readBody(res *http.Response) {
	if res.StatusCode != http.StatusSwitchingProtocols {
		r.body, r.bodyErr = io.ReadAll(io.LimitReader(res.Body, maxFuzzBody))
	}
	res.Body.Close()
	r.trailer = res.Trailer
}

// fill records res's head. Connection is left out: net/http drops a
// "close" from it, Bulwark keeps it, and the relay drops the field anyway
// (hop-by-hop); what it says is compared as Close.
func (r *respRead) fill(res *http.Response) {
	delete(res.Header, "Connection")
	r.status, r.proto, r.header = res.StatusCode, res.Proto, res.Header
	r.length, r.chunked, r.close = res.ContentLength, len(res.TransferEncoding) > 0, res.Close
}

// deliberateResponseDifference names the deliberate difference between
// Bulwark's reading (b) and net/http's (n) of an answer, or returns "".
func deliberateResponseDifference(in []byte, b, n respRead) string {
	switch {
	case b.err != nil && n.err == nil:
		switch {
		case strings.Contains(b.err.Error(), "both Content-Length and Transfer-Encoding"):
			return "Content-Length with Transfer-Encoding"
		case strings.Contains(b.err.Error(), "Transfer-Encoding"):
			return "a Transfer-Encoding other than chunked"
		case strings.Contains(b.err.Error(), "status line"):
			return "a status line net/http reads leniently (protocol, status code)"
		case strings.Contains(b.err.Error(), "header line"):
			return "a field line net/http reads leniently"
		case strings.Contains(b.err.Error(), "Content-Length"):
			return "a Content-Length net/http reads leniently"
		case strings.Contains(b.err.Error(), "too large"):
			return "a head over 1 MiB"
		}
	case b.err == nil && n.err == nil && b.bodyErr != nil && n.bodyErr == nil:
		if strings.Contains(b.bodyErr.Error(), "trailer") {
			return "a trailer net/http reads leniently"
		}
	case b.err == nil && n.err == nil && b.bodyErr == nil && n.bodyErr != nil && b.chunked:
		// Both end a trailer at its first empty line, CRLF or bare LF,
		// but net/http first looks for a CRLF CRLF in what it has
		// buffered, and fails without one.
		// A bare LF there fails Bulwark's body
		// (TestAnswerTrailerBareLFRefused, golang/go#81143); net/http
		// also refuses a trailer over its 4 KiB look-ahead.
		if strings.Contains(n.bodyErr.Error(), "trailer") {
			return "a trailer net/http's look-ahead refuses"
		}
	}
	return ""
}

// compareResponses fails t unless Bulwark and net/http read the answer in
// to a method request the same way, or the difference is deliberate.
func compareResponses(t *testing.T, in []byte, method string) {
	t.Helper()
	b := bulwarkResponse(in, method)
	n := netHTTPResponse(in, method)
	if deliberateResponseDifference(in, b, n) != "" {
		return
	}
	if (b.err == nil) != (n.err == nil) {
		t.Fatalf("%s %q: head: Bulwark %v, net/http %v", method, in, b.err, n.err)
	}
	if b.err != nil {
		return
	}
	if b.status != n.status || b.proto != n.proto {
		t.Fatalf("%s %q: status: Bulwark %d %s, net/http %d %s", method, in, b.status, b.proto, n.status, n.proto)
	}
	if !reflect.DeepEqual(b.header, n.header) {
		t.Fatalf("%s %q: header: Bulwark %q, net/http %q", method, in, b.header, n.header)
	}
	if b.status == http.StatusSwitchingProtocols {
		return // the body is the connection: no framing to compare
	}
	if b.length != n.length || b.chunked != n.chunked || b.close != n.close {
		t.Fatalf("%s %q: framing: Bulwark length %d chunked %v close %v, net/http length %d chunked %v close %v",
			method, in, b.length, b.chunked, b.close, n.length, n.chunked, n.close)
	}
	if (b.bodyErr == nil) != (n.bodyErr == nil) {
		t.Fatalf("%s %q: body error: Bulwark %v, net/http %v", method, in, b.bodyErr, n.bodyErr)
	}
	if !bytes.Equal(b.body, n.body) {
		t.Fatalf("%s %q: body: Bulwark %q, net/http %q", method, in, b.body, n.body)
	}
	if b.bodyErr == nil && len(b.trailer)+len(n.trailer) > 0 && !reflect.DeepEqual(b.trailer, n.trailer) {
		t.Fatalf("%s %q: trailer: Bulwark %q, net/http %q", method, in, b.trailer, n.trailer)
	}
}

// responseSeeds are answers from the app: well-formed ones of each
// framing, and the malformed ones of TestUpstreamMalformedAnswers.
var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Late: 1\r\nX-Late: 2\r\n\r\n",
	"HTTP/1.1 200 OK\r\n\r\nuntil close",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
	"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nX-Empty:\r\nX-Pad:  v \t\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
	"SPDY/9 what\r\n\r\n",
	"HTTP/2.0 200 OK\r\n\r\n",
	"HTTP/1.1\r\n\r\n",
	"HTTP/1.1 20 OK\r\n\r\n",
	"HTTP/1.1 099 Odd\r\n\r\n",
	"HTTP/1.1 2x0 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
	"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nX-A\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=\"x\"\r\nok\r\n0\r\n\r\n",
}

func TestResponseReadingMatchesNetHTTP(t *testing.T) {
	for _, s := range responseSeeds {
		for _, m := range []string{"GET", "HEAD"} {
			compareResponses(t, []byte(s), m)
		}
	}
}

// FuzzReadResponse fuzzes the answers of the app against net/http's
// reader, for a GET and a HEAD request.
func FuzzReadResponse(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add(false, []byte(s))
	}
	f.Add(true, []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head bool, in []byte) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		compareResponses(t, in, method)
	})
}

// TestChunkedAnswerAttacksRefused: the app's chunked answers behind
// net/http's advisories fail the body (the connection is not reused): a
// bare LF ending a chunk line (CVE-2025-22871), extensions that outweigh
// the data (CVE-2023-39326), "Transfer-Encoding: \rchunked"
// (CVE-2022-1705).
func TestChunkedAnswerAttacksRefused(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	overhead := strings.Repeat("1;"+strings.Repeat("e", 1000)+"\r\nx\r\n", 32) + "0\r\n\r\n"
	for name, in := range map[string]string{
		"bare LF after the size": head + "3\nabc\r\n0\r\n\r\n",
		"bare LF after the data": head + "3\r\nabc\n0\r\n\r\n",
		"extension overhead":     head + overhead,
		"CR before chunked":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: \rchunked\r\n\r\n0\r\n\r\n",
		"CR after chunked":       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\r\n\r\n0\r\n\r\n",
		"CL and TE":              "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		r := bulwarkResponse([]byte(in), "GET")
		if r.err == nil && r.bodyErr == nil {
			t.Errorf("%s: read as %d with body %q; want an error", name, r.status, r.body)
		}
	}
}
