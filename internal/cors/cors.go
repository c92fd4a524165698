// Package cors answers cross-origin (CORS) preflights at the edge and adds
// the CORS headers to the answers of allowed origins, so the app needs no
// CORS middleware and never sees an OPTIONS preflight. Which origins are
// allowed is the caller's choice (Options); checking that the choice makes
// sense (origins as browsers send them, no "*" with credentials) is left to
// the configuration. Decorate gives the same headers to the answers
// Bulwark makes in front of Middleware (the 429 of rate_per_ip).
package cors

import (
	"bufio"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"bulwark/internal/h1"
	"bulwark/internal/httphdr"
)

// Options say which cross-origin requests are allowed. The zero value
// allows none: the handler passes every request through untouched.
type Options struct {
	// Origins are the allowed origins, compared exactly as browsers send
	// them ("https://app.example.com"); "*" alone allows any. An entry
	// with a "*" inside it ("https://*.example.com") matches nothing.
	// Empty turns CORS off.
	Origins []string
	// Methods are the methods a preflight may ask for, besides GET, HEAD
	// and POST, which the Fetch standard always allows; "*" allows any.
	// Empty allows only those.
	Methods []string
	// Headers are the request headers a preflight may ask for; "*" allows
	// any. The CORS-safelisted headers are always allowed.
	Headers []string
	// Credentials lets the browser send cookies and read the answer; the
	// allowed origin is then echoed, never "*".
	Credentials bool
	// MaxAge is how long a browser may cache a preflight's answer; zero
	// sends no Access-Control-Max-Age (the browser's default, 5 s).
	MaxAge time.Duration
}

// CORS is the handler factory; its options can be replaced while it serves.
type CORS struct {
	opts atomic.Pointer[compiled]
}

// compiled is Options prepared for lookups on every request.
type compiled struct {
	on          bool // some origin was configured
	anyOrigin   bool
	origins     map[string]bool
	methods     string // Access-Control-Allow-Methods, without "*"
	methodSet   map[string]bool
	anyMethod   bool
	anyHeader   bool
	headers     map[string]bool // lower case
	credentials bool
	maxAge      string // "" = not sent
}

// New returns a CORS with options o.
func New(o Options) *CORS {
	c := &CORS{}
	c.Update(o)
	return c
}

// Update replaces the options for requests that start from now on.
func (c *CORS) Update(o Options) {
	p := &compiled{on: len(o.Origins) > 0, origins: map[string]bool{}, methodSet: map[string]bool{}, headers: map[string]bool{}, credentials: o.Credentials}
	for _, s := range o.Origins {
		switch {
		case s == "*":
			p.anyOrigin = true
		case strings.Contains(s, "*"):
			// A browser never sends a "*" in an origin, so such an entry
			// (a subdomain pattern the config refuses) could only match a
			// forged Origin header: it is left out, not taken literally.
			continue
		}
		p.origins[s] = true
	}
	var methods []string
	for _, m := range o.Methods {
		m = strings.ToUpper(m)
		if m == "*" {
			// Browsers read "*" in Access-Control-Allow-Methods as a
			// method name on credentialed requests: the preflight echoes
			// the method asked for instead.
			p.anyMethod = true
			continue
		}
		if !p.methodSet[m] {
			p.methodSet[m] = true
			methods = append(methods, m)
		}
	}
	p.methods = strings.Join(methods, ", ")
	for _, h := range o.Headers {
		if h == "*" {
			p.anyHeader = true
		}
		p.headers[strings.ToLower(h)] = true
	}
	if o.MaxAge > 0 {
		p.maxAge = strconv.FormatInt(int64(o.MaxAge/time.Second), 10)
	}
	c.opts.Store(p)
}

// Middleware answers preflights (OPTIONS with Origin and
// Access-Control-Request-Method) itself, never calling next for them, and
// adds Access-Control-Allow-Origin (and -Credentials) to the answers next
// gives to allowed origins, replacing any the app set, so a browser never
// sees two. Every answer gets Vary: Origin while CORS is on, because the
// headers depend on it. With no origins configured, requests pass through.
func (c *CORS) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := c.opts.Load()
		if !p.on {
			next.ServeHTTP(w, r)
			return
		}
		origin := r.Header.Get("Origin")
		if isPreflight(r, origin) {
			p.preflight(w, r, origin)
			return
		}
		if _, ok := w.(*writer); ok {
			// Decorate, further out, sets the headers already; a second
			// writer would only set them again.
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&writer{ResponseWriter: w, p: p, origin: origin}, r)
	})
}

// Decorate adds the CORS headers of an actual answer, as Middleware does,
// to every answer next gives, but answers no preflight: it is for the
// pieces in front of Middleware that answer by themselves (the 429 of
// limits.rate_per_ip), so a browser page can read that answer instead of
// seeing a CORS error. Preflights pass through untouched, for Middleware
// to answer: a browser takes any preflight answer that is not 2xx as a
// refusal, CORS headers or not.
func (c *CORS) Decorate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := c.opts.Load()
		origin := r.Header.Get("Origin")
		if !p.on || isPreflight(r, origin) {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&writer{ResponseWriter: w, p: p, origin: origin}, r)
	})
}

// isPreflight reports whether r is a CORS preflight.
func isPreflight(r *http.Request, origin string) bool {
	return r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// setHeaders sets the CORS headers of an actual answer in h, dropping any
// set before (by the app), so that a browser never sees two.
func (p *compiled) setHeaders(h http.Header, origin string) {
	h.Del("Access-Control-Allow-Origin")
	h.Del("Access-Control-Allow-Credentials")
	if allow := p.allowOrigin(origin); allow != "" {
		h.Set("Access-Control-Allow-Origin", allow)
		if p.credentials {
			h.Set("Access-Control-Allow-Credentials", "true")
		}
	}
	httphdr.AddVary(h, "Origin")
}

// allowOrigin returns the Access-Control-Allow-Origin value for origin, or
// "" when origin is not allowed.
func (p *compiled) allowOrigin(origin string) string {
	switch {
	case origin == "":
		return ""
	case p.origins[origin]:
		return origin
	case p.anyOrigin && p.credentials:
		// Never echo any origin with credentials: that would let every
		// site read the user's answers. Config refuses the pair; a caller
		// that did not check gets no CORS at all.
		return ""
	case p.anyOrigin:
		return "*"
	}
	return ""
}

// preflight answers a preflight: 204 with the allow headers when the
// origin, method and headers are all allowed, and 204 without them (which
// the browser takes as a refusal) otherwise.
func (p *compiled) preflight(w http.ResponseWriter, r *http.Request, origin string) {
	h := w.Header()
	h.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	allow := p.allowOrigin(origin)
	method := r.Header.Get("Access-Control-Request-Method")
	if allow == "" || !p.methodAllowed(method) || !p.headersAllowed(r.Header.Values("Access-Control-Request-Headers")) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h.Set("Access-Control-Allow-Origin", allow)
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	switch {
	case p.anyMethod:
		// Echo what was asked for (methodAllowed checked it is a token),
		// as the headers below: a literal "*" is not a wildcard on
		// credentialed requests, and the method's case is kept because
		// browsers compare it case-sensitively (a page's "patch").
		h.Set("Access-Control-Allow-Methods", method)
	case p.methods != "":
		h.Set("Access-Control-Allow-Methods", p.methods)
	}
	// Echo what was asked for: it all passed headersAllowed, and a
	// literal "*" is not a wildcard on credentialed requests.
	if req := strings.Join(r.Header.Values("Access-Control-Request-Headers"), ","); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	}
	if p.maxAge != "" {
		h.Set("Access-Control-Max-Age", p.maxAge)
	}
	w.WriteHeader(http.StatusNoContent)
}

// methodAllowed reports whether a preflight may go on with method m.
func (p *compiled) methodAllowed(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost:
		return true
	}
	if p.anyMethod {
		// Only a method name is echoed back, never whatever a
		// non-browser client put in the header.
		return h1.ValidToken(m)
	}
	return p.methodSet[strings.ToUpper(m)]
}

// safelisted are the request headers a browser never asks about (Fetch
// standard, "CORS-safelisted request-header"), lower case.
var safelisted = []string{"accept", "accept-language", "content-language", "content-type", "range"}

// headersAllowed reports whether every header named in the preflight's
// Access-Control-Request-Headers values is allowed.
func (p *compiled) headersAllowed(values []string) bool {
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			switch {
			case name == "" || p.headers[name] || slices.Contains(safelisted, name):
				continue
			case p.anyHeader && h1.ValidToken(name):
				// The list is echoed: only header names go back.
				continue
			}
			return false
		}
	}
	return true
}

// writer sets the CORS headers of an actual answer when it starts.
type writer struct {
	http.ResponseWriter
	p       *compiled
	origin  string
	started bool
}

var (
	_ http.Flusher  = (*writer)(nil)
	_ http.Hijacker = (*writer)(nil)
)

func (w *writer) WriteHeader(code int) {
	if !w.started && code >= 200 {
		w.started = true
		w.p.setHeaders(w.ResponseWriter.Header(), w.origin)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *writer) Write(p []byte) (int, error) {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Flush sends what was written so far (SSE).
func (w *writer) Flush() { _ = w.FlushError() }

// FlushError is Flush that reports the write error (http.ResponseController).
func (w *writer) FlushError() error {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hands the connection over (WebSocket).
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap serves http.ResponseController.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
