package front

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The request framing differential: Bulwark's HTTP/1.1 request reader
// (readRequest: head, framing decision, body reader and the trailer after
// a chunked body) against net/http's http.ReadRequest and its body reader,
// on the same bytes. Where both accept a request they must read the same
// body and leave the same bytes for the next request (else one of them
// could be made to see a request the other does not: smuggling). Where one
// accepts and the other refuses, the difference must be one of the
// deliberate ones below, which docs/protocol.md lists too.
//
// Bulwark decodes chunks with net/http's own decoder
// (httputil.NewChunkedReader, the code behind http.ReadRequest's), so chunk
// sizes, extensions and line endings follow net/http by construction; what
// Bulwark writes itself is the framing decision and the trailer reader.
//
// Deliberate differences, as the fuzz targets found them (the map
// bulwarkStricterHead and deliberateFramingDifference encode them):
//
//	| input                                   | net/http                     | Bulwark                        |
//	|-----------------------------------------|------------------------------|--------------------------------|
//	| Content-Length with Transfer-Encoding   | chunked, CL dropped          | 400 (RFC 9112 6.1 allows)      |
//	| Transfer-Encoding in HTTP/1.0           | TE ignored, no body: the     | 400                            |
//	|                                         | chunks become the next head  |                                |
//	| Content-Length list "3, 3"              | refused                      | read as 3 (RFC 9112 6.3)       |
//	| Expect other than 100-continue          | ignored                      | 417                            |
//	| CONNECT                                 | parsed                       | 405                            |
//	| trailer lines                           | parsed as MIME header; ends  | skipped to the same empty line |
//	|                                         | only if CRLF CRLF is in its  | (CRLF or bare LF), bounded by  |
//	|                                         | buffer (a look-ahead guard)  | MaxHeaderBytes; not forwarded  |
//	| bare LF ending a trailer line/section   | accepted (upstream now calls | the body fails, see            |
//	|                                         | it a bug, golang/go#81143)   | TestTrailerBareLFRefused       |
//	| "Trailer:" naming a framing field       | refused                      | ignored: trailers are dropped  |
//	| heads net/http reads leniently          | accepted                     | 400 (see bulwarkStricterHead)  |
//
// Identical by construction: chunk sizes, extensions, bare LF or CR in a
// chunk line (refused since Go 1.24.2, CVE-2025-22871), the extension
// overhead bound (CVE-2023-39326), "Transfer-Encoding: gzip, chunked" and
// "identity" (refused by both), repeated equal Content-Length headers
// (accepted by both).

// framingRead is what a reader made of one request on the wire.
type framingRead struct {
	headErr string // why the head was refused: Bulwark's reason, net/http's error
	bodyErr error
	chunked bool
	length  int64 // ContentLength; -1 unknown
	body    []byte
	rest    []byte // the bytes left for the next request
}

func (r framingRead) headOK() bool { return r.headErr == "" }

// nopConn is a connection that reads nothing and discards writes (the
// 100 Continue an Expect header makes Bulwark send).
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

// bulwarkFraming reads one request from in with Bulwark's reader.
func bulwarkFraming(t testing.TB, in []byte) framingRead {
	srv, err := New(Options{Handler: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	c := &h1Conn{srv: srv, rwc: nopConn{}, remote: "127.0.0.1:1", br: bufio.NewReader(bytes.NewReader(in))}
	c.cr.c = c
	var r framingRead
	req, err := c.readRequest(context.Background())
	if err != nil {
		var he *headError
		if errors.As(err, &he) {
			r.headErr = he.reason
		} else {
			r.headErr = "read: " + err.Error()
		}
		return r
	}
	r.length, r.chunked = req.ContentLength, len(req.TransferEncoding) > 0
	r.body, r.bodyErr = io.ReadAll(io.LimitReader(req.Body, maxFuzzBody))
	r.rest, _ = io.ReadAll(c.br)
	return r
}

// netHTTPFraming reads one request from in with net/http's reader.
func netHTTPFraming(in []byte) framingRead {
	// Bulwark ignores empty lines before the request line, as RFC 9112
	// 2.2 allows; net/http refuses them (a deliberate difference). They
	// are skipped for http.ReadRequest here, so the rest is compared.
	for {
		if rest, ok := bytes.CutPrefix(in, []byte("\r\n")); ok {
			in = rest
		} else if rest, ok := bytes.CutPrefix(in, []byte("\n")); ok {
			in = rest
		} else {
			break
		}
	}
	br := bufio.NewReader(bytes.NewReader(in))
	var r framingRead
	req, err := http.ReadRequest(br)
	if err != nil {
		r.headErr = err.Error()
		return r
	}
	r.length, r.chunked = req.ContentLength, len(req.TransferEncoding) > 0
	r.body, r.bodyErr = io.ReadAll(io.LimitReader(req.Body, maxFuzzBody))
	r.rest, _ = io.ReadAll(br)
	return r
}

// bulwarkStricterHead lists the reasons Bulwark refuses heads net/http
// accepts: the deliberate differences of the head and framing decision.
var bulwarkStricterHead = map[string]string{
	"smuggling": "Content-Length with Transfer-Encoding, Transfer-Encoding in HTTP/1.0, " +
		"or a Transfer-Encoding other than one \"chunked\": refused, where net/http drops Content-Length or reads no body",
	"expect":           "Expect other than 100-continue: 417, where net/http ignores it",
	"connect":          "CONNECT: 405, where net/http parses it",
	"bad_target":       "request targets other than origin form, absolute http(s) form or OPTIONS *",
	"bad_host":         "a missing, repeated or malformed Host, or a malformed absolute-form authority",
	"bad_request_line": "a request line net/http reads leniently",
	"bad_method":       "a method that is not a token",
	"bad_header":       "a header line net/http reads leniently",
	"obs_fold":         "obsolete line folding",
	"version":          "an HTTP version other than 1.0 or 1.1",
	"uri_too_long":     "a head past MaxHeaderBytes (net/http allows 1 MiB)",
	"header_too_large": "a head past MaxHeaderBytes (net/http allows 1 MiB)",
}

// deliberateFramingDifference names the deliberate difference that
// explains why Bulwark (b) and net/http (n) read in differently, or
// returns "".
func deliberateFramingDifference(in []byte, b, n framingRead) string {
	switch {
	case !b.headOK() && n.headOK():
		return bulwarkStricterHead[b.headErr]
	case b.headOK() && !n.headOK():
		switch {
		case strings.Contains(n.headErr, "bad trailer key"):
			return "a Trailer header naming a framing field: Bulwark drops request trailers unread"
		case strings.Contains(n.headErr, "Content-Length") && sameContentLengths(in, b.length):
			return "equal Content-Length values (a list or repeated) read as one"
		}
		return ""
	case b.headOK() && b.chunked && b.bodyErr != nil && n.bodyErr == nil &&
		strings.Contains(b.bodyErr.Error(), "trailer line not ended by CRLF"):
		return "a trailer line ended by a bare LF: refused, where net/http reads it (golang/go#81143)"
	case b.headOK() && b.chunked && b.bodyErr == nil && n.bodyErr != nil:
		// The chunks are net/http's own decoder's: the trailer differs.
		// net/http ends a trailer where Bulwark does (at the first empty
		// line, CRLF or bare LF) but first looks ahead for a CRLF CRLF
		// in what it has buffered, and parses each line; Bulwark skips
		// the lines, bounded by MaxHeaderBytes, and never forwards them.
		// A bare LF there fails Bulwark's body (TestTrailerBareLFRefused,
		// golang/go#81143), so it never reaches this case.
		return "trailer lines skipped to the empty line, not parsed"
	}
	return ""
}

// sameContentLengths reports whether every Content-Length value in the
// head of in, comma lists split, is n.
func sameContentLengths(in []byte, n int64) bool {
	seen := false
	for _, line := range strings.Split(string(in), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(name, "Content-Length") {
			continue
		}
		for _, v := range strings.Split(value, ",") {
			if got, err := strconv.ParseUint(strings.TrimSpace(v), 10, 63); err != nil || int64(got) != n {
				return false
			}
			seen = true
		}
	}
	return seen
}

// compareFraming fails t unless Bulwark and net/http read in the same way,
// or the way they differ is deliberate.
func compareFraming(t *testing.T, in []byte) {
	t.Helper()
	b := bulwarkFraming(t, in)
	n := netHTTPFraming(in)
	if why := deliberateFramingDifference(in, b, n); why != "" {
		return
	}
	if b.headOK() != n.headOK() {
		t.Fatalf("%q: head: Bulwark %q, net/http %q", in, b.headErr, n.headErr)
	}
	if !b.headOK() {
		return
	}
	if (b.bodyErr == nil) != (n.bodyErr == nil) {
		t.Fatalf("%q: body error: Bulwark %v, net/http %v", in, b.bodyErr, n.bodyErr)
	}
	if b.chunked != n.chunked || b.length != n.length {
		t.Fatalf("%q: framing: Bulwark chunked %v length %d, net/http chunked %v length %d", in, b.chunked, b.length, n.chunked, n.length)
	}
	if !bytes.Equal(b.body, n.body) {
		t.Fatalf("%q: body: Bulwark %q, net/http %q", in, b.body, n.body)
	}
	if b.bodyErr == nil && !bytes.Equal(b.rest, n.rest) {
		t.Fatalf("%q: next request starts differently: Bulwark %q, net/http %q", in, b.rest, n.rest)
	}
}

// chunkedHead is the head FuzzChunkedBody puts before each fuzzed body.
const chunkedHead = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

// chunkedSeeds are chunked bodies (after chunkedHead): well-formed ones,
// the smuggling variants of the chunked framing, and those behind the
// advisories docs/protocol.md lists.
var chunkedSeeds = []string{
	"0\r\n\r\n",
	"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
	"3\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
	"3\nabc\r\n0\r\n\r\n", // bare LF after the size (CVE-2025-22871)
	"3\r\nabc\n0\r\n\r\n", // bare LF after the data
	"3\r\nabc\r\n0\n\n",   // bare LF at the last chunk
	"3\r\nabc\r\n0\r\n\n", // bare-LF empty line ends the trailer
	"3\rabc\r\n0\r\n\r\n", // bare CR
	"3;" + strings.Repeat("x", 5000) + "\r\nabc\r\n0\r\n\r\n", // long extension (CVE-2023-39326)
	"1;a\r\nx\r\n1;a\r\nx\r\n1;a\r\nx\r\n0\r\n\r\n",
	"3 \r\nabc\r\n0\r\n\r\n",  // whitespace after the size
	" 3\r\nabc\r\n0\r\n\r\n",  // before it
	"0x3\r\nabc\r\n0\r\n\r\n", // a prefix
	"+3\r\nabc\r\n0\r\n\r\n",  // a sign
	"-3\r\nabc\r\n0\r\n\r\n",
	"fffffffffffffffff\r\n",  // past 64 bits
	"3\r\nabcd\r\n0\r\n\r\n", // more data than the size
	"3\r\nab\r\n0\r\n\r\n",   // less
	"3\r\nabc\r\n",           // no last chunk
	"3\r\nabc\r\n0\r\n",      // no end of the trailer
	"0\r\nbad trailer line\r\n\r\n",
	"0\r\nContent-Length: 5\r\n\r\nhello",
	"0\r\nX: 1\r\n folded\r\n\r\n",
	"3;a=\"q;\r\n\"\r\nabc\r\n0\r\n\r\n", // quoted extension holding a line end
	"00000000000000000003\r\nabc\r\n0\r\n\r\n",
	"3\r\nabc\r\n00\r\n\r\n",
	"A\r\n0123456789\r\n0\r\n\r\n",
	"a\r\n0123456789\r\n0\r\n\r\n",
}

func TestChunkedBodyMatchesNetHTTP(t *testing.T) {
	for _, body := range chunkedSeeds {
		compareFraming(t, []byte(chunkedHead+body))
	}
}

// FuzzChunkedBody fuzzes the chunked body (and its trailer and whatever
// follows it) of a request whose head is fixed, against net/http.
func FuzzChunkedBody(f *testing.F) {
	for _, s := range chunkedSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		compareFraming(t, append([]byte(chunkedHead), body...))
	})
}

// framingSeeds are whole requests: the smuggling cases of
// TestSmugglingAndMalformedHeadsRefused and the framing variants around them.
var framingSeeds = []string{
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  chunked \r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 03\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\na",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\nContent-Length: 3\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.0\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\n\r\nabc",
	"POST / HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n x\r\n\r\n0\r\n\r\n",
}

func TestRequestFramingMatchesNetHTTP(t *testing.T) {
	for _, s := range framingSeeds {
		compareFraming(t, []byte(s))
	}
}

// FuzzRequestFraming fuzzes whole requests, head and body, against
// net/http: how the body is delimited and where the next request starts.
func FuzzRequestFraming(f *testing.F) {
	for _, s := range framingSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		compareFraming(t, in)
	})
}

// TestChunkedAttacksRefused: the chunked bodies behind net/http's
// advisories fail the body read (and so close the connection), whatever
// net/http does: a bare LF ending a chunk-size or chunk-data line
// (CVE-2025-22871), chunk extensions that outweigh the data
// (CVE-2023-39326), a size past 64 bits.
func TestChunkedAttacksRefused(t *testing.T) {
	overhead := strings.Repeat("1;"+strings.Repeat("e", 1000)+"\r\nx\r\n", 32) + "0\r\n\r\n"
	for name, body := range map[string]string{
		"bare LF after the size":    "3\nabc\r\n0\r\n\r\n",
		"bare LF after the data":    "3\r\nabc\n0\r\n\r\n",
		"bare LF in the last chunk": "3\r\nabc\r\n0\n\r\n",
		"bare CR in an extension":   "3;a\rb\r\nabc\r\n0\r\n\r\n",
		"extension overhead":        overhead,
		"size past 64 bits":         "10000000000000000\r\n0\r\n\r\n",
		"smuggled after a bare LF":  "0\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		r := bulwarkFraming(t, []byte(chunkedHead+body))
		if !r.headOK() || r.bodyErr == nil {
			t.Errorf("%s: head %q, body %q read without error; want a body error", name, r.headErr, r.body)
		}
	}
}
