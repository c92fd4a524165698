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
	var q [1]float64
	EncodingQs(header, []string{coding}, q[:])
	return q[0]
}

// EncodingQs sets q[i] to the weight header gives codings[i], as
// EncodingQ does, reading the header once for all of them. q must be at
// least as long as codings.
func EncodingQs(header string, codings []string, q []float64) {
	star := 0.0
	clear(q[:len(codings)])
	var named uint64 // bit i: codings[i] has its own entry (the first 64)
	for part := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.TrimSpace(name)
		w := 1.0
		for p := range strings.SplitSeq(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					w = f
				}
			}
		}
		if name == "*" {
			star = w
			continue
		}
		for i, c := range codings {
			if i < 64 && named&(1<<i) == 0 && strings.EqualFold(name, c) {
				q[i], named = w, named|1<<i // the first entry counts, as EncodingQ always did
			}
		}
	}
	for i := range codings {
		if i >= 64 || named&(1<<i) == 0 {
			q[i] = star
		}
	}
}
