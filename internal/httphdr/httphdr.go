// Package httphdr holds the small header readings and edits that several
// pieces of the request path share (CORS, compression, the spool, the
// proxy), so that each is written, and fixed, once. It knows nothing of
// the pieces that call it.
package httphdr

import (
	"net/http"
	"strings"
)

// IsEventStream reports whether a Content-Type is text/event-stream,
// whatever its parameters and case. It does not use mime.ParseMediaType,
// which builds a map of the parameters for every answer.
func IsEventStream(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}

// AddVary adds name to h's Vary header unless a Vary line names it
// already (in any case) or is "*".
func AddVary(h http.Header, name string) {
	for _, v := range h.Values("Vary") {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f == "*" || strings.EqualFold(f, name) {
				return
			}
		}
	}
	h.Add("Vary", name)
}

// reservedNames are the fields Bulwark sets for the app or never passes on
// (hop-by-hop and framing ones), lower case. The proxy drops a client's
// field that reads as one with "_" for "-", and HTTP/2 takes none of them
// from a request trailer: one list, so that a field added for the app is
// guarded on both paths.
var reservedNames = [...]string{
	"x-real-ip", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded",
	"connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
	"te", "trailer", "transfer-encoding", "upgrade", "http2-settings", "content-length", "host",
}

// Reserved reports whether name, lower-cased and with "_" read as "-", is
// one of the fields Bulwark sets for the app (Forwarded, X-Forwarded-*,
// X-Real-IP) or never passes on (hop-by-hop and framing fields, Host). It
// does not allocate.
func Reserved(name string) bool {
	for _, r := range reservedNames {
		if sameFieldName(name, r) {
			return true
		}
	}
	return false
}

// sameFieldName reports whether name equals want (lower case) once
// lower-cased with "_" read as "-", without allocating.
func sameFieldName(name, want string) bool {
	if len(name) != len(want) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}
