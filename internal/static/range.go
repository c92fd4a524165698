package static

import (
	"cmp"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
)

// maxRanges is the most ranges one Range header may ask for; past it the
// header is ignored and the whole file sent. Each part of a multipart
// answer costs some 100 bytes of headers, so thousands of tiny ranges
// would make a small request into a large answer (Apache caps them at
// 200 since CVE-2011-3192).
const maxRanges = 100

// maxOverlaps is the most ranges that may overlap an earlier one (in the
// order of their starts) before the header is ignored: RFC 9110 §14.2
// lets a server ignore more than two overlapping ranges, which no client
// needs and which repeat the same bytes.
const maxOverlaps = 2

// byteRange is one range of a Range header that overlaps the file, as
// http.ServeContent resolves it, with its text.
type byteRange struct {
	start, length int64
	spec          string
}

// fixRange is the Range header to hand http.ServeContent in place of h
// for a file of size bytes: h itself, "" to ignore it and send the whole
// file, or h without the ranges that resolve to nothing. ServeContent
// still makes every answer, so that If-None-Match (304), If-Match (412)
// and If-Range keep their order before the range. It would otherwise
// answer a zero-length range with a 206 and an invalid Content-Range
// ("bytes 11-10/11" for bytes=-0, "bytes 0--1/0" on an empty file), and
// send thousands of tiny or overlapping ranges as one part each.
func fixRange(h string, size int64) string {
	rs, n, ok := parseRange(h, size)
	if !ok || n == 0 {
		return h // ServeContent answers a bad one with 416, an empty one with 200
	}
	if size == 0 || n > maxRanges {
		// An empty file: 200, as ServeContent answers bytes=0- there,
		// and some clients put a Range on every request to bound the
		// answer.
		return ""
	}
	kept := slices.DeleteFunc(slices.Clone(rs), func(br byteRange) bool { return br.length == 0 })
	if overlaps(kept) > maxOverlaps {
		return ""
	}
	switch len(kept) {
	case len(rs):
		return h
	case 0:
		// Only zero-length suffixes (bytes=-0): no range is satisfiable,
		// and a start past the end gets ServeContent's 416 with
		// Content-Range: bytes */size.
		return "bytes=" + strconv.FormatInt(size, 10) + "-"
	}
	specs := make([]string, len(kept))
	for i, br := range kept {
		specs[i] = br.spec
	}
	return "bytes=" + strings.Join(specs, ",")
}

// overlaps counts the ranges that start before the end of one that starts
// no later.
func overlaps(rs []byteRange) int {
	if len(rs) < 2 {
		return 0
	}
	sorted := slices.SortedFunc(slices.Values(rs), func(a, b byteRange) int { return cmp.Compare(a.start, b.start) })
	n, end := 0, int64(0)
	for i, br := range sorted {
		if i > 0 && br.start < end {
			n++
		}
		end = max(end, br.start+br.length)
	}
	return n
}

// parseRange reads a Range header as net/http's parseRange (behind
// http.ServeContent) does, which it does not export: the ranges that
// overlap a file of size bytes, resolved against it; n, the number of
// range specs in all, and ok false when ServeContent would find the
// header invalid. It stops past maxRanges specs, since the header is
// then ignored, so that a long header costs no more than that.
func parseRange(h string, size int64) (rs []byteRange, n int, ok bool) {
	specs, found := strings.CutPrefix(h, "bytes=")
	if !found {
		return nil, 0, false
	}
	for spec := range strings.SplitSeq(specs, ",") {
		spec = textproto.TrimString(spec)
		if spec == "" {
			continue
		}
		if n++; n > maxRanges {
			return nil, n, true
		}
		start, end, found := strings.Cut(spec, "-")
		if !found {
			return nil, 0, false
		}
		start, end = textproto.TrimString(start), textproto.TrimString(end)
		br := byteRange{spec: spec}
		if start == "" {
			// A suffix: the last end bytes, or the whole file when it is
			// shorter.
			if end == "" || end[0] == '-' {
				return nil, 0, false
			}
			i, err := strconv.ParseInt(end, 10, 64)
			if err != nil || i < 0 {
				return nil, 0, false
			}
			br.start = size - min(i, size)
			br.length = size - br.start
		} else {
			i, err := strconv.ParseInt(start, 10, 64)
			if err != nil || i < 0 {
				return nil, 0, false
			}
			if i >= size {
				continue // past the end: no overlap
			}
			br.start = i
			if end == "" {
				br.length = size - i
			} else {
				j, err := strconv.ParseInt(end, 10, 64)
				if err != nil || i > j {
					return nil, 0, false
				}
				br.length = min(j, size-1) - i + 1
			}
		}
		rs = append(rs, br)
	}
	return rs, n, true
}
