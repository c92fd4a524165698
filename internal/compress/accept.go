package compress

import (
	"strings"
)

// hasToken reports whether a comma-separated header value list holds token
// (case-insensitive), e.g. no-transform in Cache-Control.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			f, _, _ = strings.Cut(f, "=")
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}
