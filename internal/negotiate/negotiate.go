// Package negotiate reads the weights a client gives content codings in
// Accept-Encoding (RFC 9110 12.5.3), for the static file server's choice
// of a precompressed sibling and for compression of the app's answers.
package negotiate

import (
	"strconv"
	"strings"
)

// EncodingQ is the weight an Accept-Encoding header gives coding: its own
// entry's q, else the "*" entry's, else 0 (not acceptable).
func EncodingQ(header, coding string) float64 {
	star := 0.0
	for part := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.TrimSpace(name)
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch {
		case strings.EqualFold(name, coding):
			return q
		case name == "*":
			star = q
		}
	}
	return star
}
