// Package route applies per-path request rules (nginx location): each
// request takes the rule with the longest path prefix that matches it.
// What it enforces itself is the request body limit; a rule's other
// settings are the caller's to apply (see Router.Match). Which prefixes
// exist, and what the limit is where none matches, is the caller's choice.
package route

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"bulwark/internal/httperr"
)

// Rule is the rules for one path prefix.
type Rule struct {
	// Path is the URL path prefix, e.g. "/api/upload/".
	Path string
	// MaxBody is the largest request body under Path; 413 beyond. Zero
	// means Options.MaxBody.
	MaxBody int64
}

// Options configure a Router. The zero value enforces nothing.
type Options struct {
	// Rules are the prefixes with their rules, in any order.
	Rules []Rule
	// MaxBody is the largest request body where no rule sets one; zero
	// means no limit.
	MaxBody int64
}

// Router matches requests to rules; Update replaces them while it serves.
type Router struct {
	opts atomic.Pointer[Options] // Rules sorted longest Path first
}

// New returns a Router with options o.
func New(o Options) *Router {
	r := &Router{}
	r.Update(o)
	return r
}

// Update replaces the rules for requests that start from now on.
func (rt *Router) Update(o Options) {
	o.Rules = slices.Clone(o.Rules)
	slices.SortStableFunc(o.Rules, func(a, b Rule) int { return len(b.Path) - len(a.Path) })
	rt.opts.Store(&o)
}

// Match returns the rule with the longest prefix of path, and false when
// none matches.
func (rt *Router) Match(path string) (Rule, bool) { return match(rt.opts.Load().Rules, path) }

// match returns the first of rules, longest prefix first, that path is under.
func match(rules []Rule, path string) (Rule, bool) {
	for _, r := range rules {
		if strings.HasPrefix(path, r.Path) {
			return r, true
		}
	}
	return Rule{}, false
}

// maxBody is the body limit for path; 0 = none.
func (rt *Router) maxBody(path string) int64 {
	o := rt.opts.Load() // one snapshot: a reload must not mix two rule sets
	if r, ok := match(o.Rules, path); ok && r.MaxBody > 0 {
		return r.MaxBody
	}
	return o.MaxBody
}

// Middleware enforces the body limit of each request's rule before next
// sees the request: a declared Content-Length past it is answered 413 at
// once; a body of unknown length is cut off with an *httperr.Error (413)
// from its reader once it passes the limit, which the spool and the
// proxy answer as such.
func (rt *Router) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := rt.maxBody(r.URL.Path)
		if limit <= 0 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > limit {
			httperr.Write(w, r, tooLarge(limit))
			return
		}
		if r.ContentLength < 0 {
			r2 := new(http.Request)
			*r2 = *r
			r2.Body = &limitedBody{rc: r.Body, left: limit, limit: limit}
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

// tooLarge is the answer to a body past limit.
func tooLarge(limit int64) *httperr.Error {
	return &httperr.Error{
		Status: http.StatusRequestEntityTooLarge,
		Reason: "body_too_large",
		Msg:    "the request body is larger than the " + strconv.FormatInt(limit, 10) + " bytes allowed for this path",
	}
}

// limitedBody fails once more than limit bytes were read.
type limitedBody struct {
	rc    io.ReadCloser
	left  int64
	limit int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, tooLarge(l.limit)
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1] // one byte past the limit tells "too large" from "exactly the limit"
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, tooLarge(l.limit)
	}
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }
