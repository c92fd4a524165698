package h1

import (
	"net/http"
	"strconv"
)

// The rules a handler's answer follows whatever the protocol it goes out
// on (RFC 9110 6.4.1, 8.6, 9.3.2): front's HTTP/1.1 writer and internal/h2's
// HTTP/2 writer share them, so an answer to HEAD or a 304 is cut the same
// way on both.

// DeclaredLength returns the Content-Length a handler set, or -1; an
// invalid one is dropped from h.
func DeclaredLength(h http.Header) int64 {
	cl := h.Get("Content-Length")
	if cl == "" {
		return -1
	}
	if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
		return n
	}
	h.Del("Content-Length")
	return -1
}

// CheckBodyWrite applies the rules every answer's Write shares to a write
// of n bytes: nothing to write, no body allowed (an answer to HEAD
// swallows it), or past the declared length. done reports that Write must
// return ret and err without writing.
func CheckBodyWrite(method string, noBody bool, declared, written int64, n int) (ret int, done bool, err error) {
	switch {
	case n == 0:
		return 0, true, nil
	case noBody && method == http.MethodHead:
		return n, true, nil
	case noBody:
		return 0, true, http.ErrBodyNotAllowed
	case declared >= 0 && written+int64(n) > declared:
		return 0, true, http.ErrContentLength
	}
	return 0, false, nil
}

// NoBody reports whether an answer to method with status code carries no
// body.
func NoBody(method string, code int) bool {
	return method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
}
