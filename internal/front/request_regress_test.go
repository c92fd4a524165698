package front

import "testing"

// TestBareCRInHeaderValueRefused is CVE-2022-1705's vector, found by
// FuzzRequestFraming: parseHead trims a value with textproto.TrimBytes,
// which removes CR as well as SP and HTAB, so "Transfer-Encoding: \rchunked"
// is read as chunked and "Content-Length:\r3" as 3, where net/http (since
// Go 1.18.4) refuses the head. RFC 9110 5.6.3 OWS is SP and HTAB only; a
// bare CR is invalid (RFC 9112 2.2). Fixed: parseHead trims only " \t", so that
// ValidHeaderFieldValue refuses the CR.
func TestBareCRInHeaderValueRefused(t *testing.T) {
	for _, in := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \rchunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\r\n\r\n1\r\na\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost:\rx\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\nX-A: a\r \n\n",
	} {
		if r := bulwarkFraming(t, []byte(in)); r.headOK() {
			t.Errorf("%q: accepted, want 400 (net/http refuses it)", in)
		}
	}
}

// TestTrailerBareLFRefused: readTrailer ends a trailer line, and the
// trailer section, at a bare LF. Go's own HTTP/1 server does the same in
// Go 1.26 (when a CRLF CRLF follows somewhere in its buffer) and upstream
// now calls that a bug (golang/go#81143, "security hardening"): with an
// intermediary that reads the bare LF differently, the bytes after "0\r\n\n"
// are a request to one and trailer to the other. Fixed: readTrailer
// refuses a line that does not end in CRLF.
func TestTrailerBareLFRefused(t *testing.T) {
	for _, body := range []string{
		"0\r\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		"0\r\nX: 1\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		"0\r\nX: 1\r\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		in := chunkedHead + body
		if r := bulwarkFraming(t, []byte(in)); r.headOK() && r.bodyErr == nil {
			t.Errorf("%q: body read to its end, next request %q; want a body error", in, r.rest)
		}
	}
}
