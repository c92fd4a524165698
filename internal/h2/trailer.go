package h2

import (
	"net/http"
	"strings"

	"bulwark/internal/httphdr"
)

// Request trailers on HTTP/2. The head's trailer field declares the names;
// req.Trailer starts with those names and nil values. The trailer block is
// read by the connection's reader goroutine while the handler (the proxy)
// may be iterating req.Trailer, so the reader never touches that map: it
// keeps what it received on the stream, and the body's Read copies it into
// req.Trailer just before it returns io.EOF, on the goroutine reading the
// body, as net/http promises ("after Body returns EOF").

// declaredTrailer returns the trailer names the values of a trailer field
// declare, with nil values, leaving out those that may not be trailers;
// nil if none is left.
func declaredTrailer(vs []string) http.Header {
	var t http.Header
	for _, v := range vs {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if k == "" || forbiddenTrailer(k) {
				continue
			}
			if t == nil {
				t = make(http.Header)
			}
			t[k] = nil
		}
	}
	return t
}

// forbiddenTrailer reports whether a request field named k (canonical)
// must not be taken from a trailer: the fields net/http refuses as
// trailers (framing, routing, authentication, content processing, RFC 9110
// 6.5.1), and httphdr.Reserved's: the connection-specific ones and the
// ones Bulwark sets for the app, which a trailer must not add to or
// replace. A name with "_" is
// judged by its spelling with "-": frameworks read X_Real_IP as X-Real-IP.
func forbiddenTrailer(k string) bool {
	if strings.HasPrefix(k, ":") || httphdr.Reserved(k) {
		return true
	}
	if strings.Contains(k, "_") {
		k = http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))
	}
	switch k {
	case "Authorization", "Cache-Control", "Content-Encoding", "Content-Range", "Content-Type",
		"Cookie", "Expect", "Max-Forwards", "Pragma", "Range", "Realm", "Www-Authenticate":
		return true
	}
	return false
}

// keepTrailerLocked keeps the fields of a trailer block h that the head
// declared, for the body's reader to hand over at EOF. c.mu must be held.
func (st *h2Stream) keepTrailerLocked(h http.Header) {
	for k, vs := range h {
		if _, ok := st.trailerNames[k]; !ok {
			continue
		}
		if st.gotTrailer == nil {
			st.gotTrailer = make(http.Header, len(st.trailerNames))
		}
		st.gotTrailer[k] = vs
	}
}

// fillTrailerLocked copies the trailer fields received into req.Trailer.
// The body's Read calls it as it returns io.EOF. c.mu must be held.
func (st *h2Stream) fillTrailerLocked() {
	for k, vs := range st.gotTrailer {
		st.trailer[k] = vs
	}
	st.gotTrailer = nil
}
