// Package route applies per-path request rules (nginx location): each
// request takes the rule with the longest path prefix that matches it.
// Select takes one snapshot of the rules per request and attaches the
// request's rule to its context (From reads it back), so a reload in the
// middle of a request cannot mix two rule sets. What the package enforces
// itself is the request body limit (Middleware); a rule's other settings
// are the caller's to apply from the attached rule. Which prefixes exist,
// and the values where none matches, are the caller's choice.
package route

import (
	"context"
	"io"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"bulwark/internal/httperr"
	"bulwark/internal/limit"
)

// Rule is the rules for one path prefix. The router interprets MaxBody
// only; the other fields are carried for the packages that apply them,
// and hold the values in force under Path (the caller fills in the global
// value for a key the route leaves out).
type Rule struct {
	// Path is the URL path prefix, e.g. "/api/upload/"; "" in
	// Options.Default.
	Path string
	// MaxBody is the largest request body under Path; 413 beyond. Zero
	// means Options.MaxBody.
	MaxBody int64
	// BodyBuffer is how much of one body is held in memory before it
	// spills to disk.
	BodyBuffer int64
	// BufferRequests and BufferResponses turn the request and response
	// spools on.
	BufferRequests, BufferResponses bool
	// ReadTimeout and SendTimeout bound the gaps between reads from, and
	// writes to, the app (SendTimeout also the writes of a spooled answer
	// to the client).
	ReadTimeout, SendTimeout time.Duration
	// Rates is this path's own rate_per_ip table; nil means the global one.
	Rates *limit.Rates
}

// Options configure a Router. The zero value enforces nothing.
type Options struct {
	// Rules are the prefixes with their rules, in any order.
	Rules []Rule
	// MaxBody is the largest request body where no rule sets one; zero
	// means no limit.
	MaxBody int64
	// Default is the rule Select attaches to a request no rule matches
	// (its Path and MaxBody are ignored). It is attached only while Rules
	// is not empty: without routes, every request takes the global values
	// from the packages' own options, and Select costs nothing.
	Default Rule
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
	for i := range o.Rules {
		if o.Rules[i].MaxBody <= 0 {
			o.Rules[i].MaxBody = o.MaxBody // the limit in force, for From's readers
		}
	}
	o.Default.Path, o.Default.MaxBody = "", o.MaxBody
	rt.opts.Store(&o)
}

// Match returns the rule with the longest prefix of path, and false when
// none matches.
func (rt *Router) Match(path string) (Rule, bool) { return match(rt.opts.Load().Rules, path) }

// cleanPath is path as a prefix is matched against: "//", "/./" and
// "/../" resolved, as nginx does before it matches a location, so that
// "//api/login" or "/x/../api/login" cannot dodge the rule of "/api/". A
// trailing slash is kept. The app still gets the path as sent.
func cleanPath(p string) string {
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p // the common case costs two scans, no allocation
	}
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// match returns the first of rules, longest prefix first, that path is under.
func match(rules []Rule, path string) (Rule, bool) {
	path = cleanPath(path)
	for _, r := range rules {
		if strings.HasPrefix(path, r.Path) {
			return r, true
		}
	}
	return Rule{}, false
}

type ctxKey struct{}

// From returns the rule Select attached to ctx, and false when none was
// (no routes were configured then): the caller's global values apply.
// Its MaxBody is the limit in force (Options.MaxBody filled in).
func From(ctx context.Context) (*Rule, bool) {
	r, ok := ctx.Value(ctxKey{}).(*Rule)
	return r, ok
}

// Select attaches each request's rule (From) to its context, from one
// snapshot of the rules, before next sees it. It does nothing while there
// are no rules.
func (rt *Router) Select(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o := rt.opts.Load()
		if len(o.Rules) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, selectRule(o, r.URL.Path))))
	})
}

// selectRule returns the rule of path in snapshot o: a pointer into it,
// never written after Update.
func selectRule(o *Options, path string) *Rule {
	path = cleanPath(path)
	for i := range o.Rules {
		if strings.HasPrefix(path, o.Rules[i].Path) {
			return &o.Rules[i]
		}
	}
	return &o.Default
}

// maxBody is the body limit of r: its attached rule's, or from the
// current snapshot when Select did not run; 0 = none.
func (rt *Router) maxBody(r *http.Request) int64 {
	if rule, ok := From(r.Context()); ok {
		return rule.MaxBody
	}
	return selectRule(rt.opts.Load(), r.URL.Path).MaxBody
}

// Middleware enforces the body limit of each request's rule (the one
// Select attached, else the current one) before next
// sees the request: a declared Content-Length past it is answered 413 at
// once; a body of unknown length is cut off with an *httperr.Error (413)
// from its reader once it passes the limit, which the spool and the
// proxy answer as such.
func (rt *Router) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := rt.maxBody(r)
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
