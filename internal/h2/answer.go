package h2

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// The rules an answer's head and body follow, whatever the protocol.

// declaredLength returns the Content-Length a handler set, or -1; an
// invalid one is dropped from h.
func declaredLength(h http.Header) int64 {
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

// checkBodyWrite applies the rules every answer's Write shares to a write
// of n bytes: nothing to write, no body allowed (an answer to HEAD
// swallows it), or past the declared length. done reports that Write must
// return ret and err without writing.
func checkBodyWrite(method string, noBody bool, declared, written int64, n int) (ret int, done bool, err error) {
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

// noBody reports whether an answer to method with status code carries no
// body.
func noBody(method string, code int) bool {
	return method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
}

// newRequest returns an empty request that carries ctx. WithContext on a
// literal that does not escape costs one allocation, where building the
// request first and then calling WithContext costs two.
func newRequest(ctx context.Context) *http.Request {
	return (&http.Request{}).WithContext(ctx)
}

// cachedDate is a Date header value and the second it was made for.
type cachedDate struct {
	sec int64
	s   string
}

// httpDate returns the Date header value for now, renewed at most once a
// second.
func (s *Server) httpDate() string {
	now := time.Now()
	if d := s.date.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &cachedDate{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	s.date.Store(d)
	return d.s
}
