package proxy

import "testing"

// TestAnswerTrailerBareLFRefused: readBlock ends the trailer lines of an
// app's chunked answer at a bare LF, as Go 1.26's net/http does and as
// upstream now calls a bug (golang/go#81143). The app is Bulwark's own
// backend, so this is hardening: the pooled connection's next answer must
// start where the app meant. Fixed: readTrailer refuses a trailer whose
// lines do not all end in CRLF.
func TestAnswerTrailerBareLFRefused(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"
	for _, tail := range []string{
		"0\r\n\n",
		"0\r\nX: 1\n\r\n",
		"0\r\nX: 1\r\n\n",
	} {
		r := bulwarkResponse([]byte(head+tail), "GET")
		if r.err == nil && r.bodyErr == nil {
			t.Errorf("%q: read whole (trailer %q); want a body error", tail, r.trailer)
		}
	}
}
