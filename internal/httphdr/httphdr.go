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
