package h2

import (
	"context"
	"net/http"
	"time"
)

// What an answer needs besides the shared rules in internal/h1.

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
