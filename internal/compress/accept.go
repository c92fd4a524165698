package compress

import (
	"strconv"
	"strings"
)

// acceptQ is the weight an Accept-Encoding header gives coding: its own
// entry's q, else the "*" entry's, else 0.
func acceptQ(header, coding string) float64 {
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
