package proxy

import (
	"io"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"

	"bulwark/internal/httphdr"
)

// relay forwards r to the app and copies the answer to w: what
// httputil.ReverseProxy does for a request that switches no protocol, with
// the same rules (hop-by-hop headers dropped both ways, 1xx answers and
// trailers passed on, streams flushed at once, a cut-off answer aborting the
// client connection), written out to cost less: ReverseProxy clones the
// request whole, copies every header value and wraps the context twice;
// here the outgoing request shares the client's header values and the
// app's answer hands its value slices to w (46 allocations a request down
// to 38, measured through the binary).
// Upgrades (WebSocket) still go through ReverseProxy, which owns the hijack.
func (p *Proxy) relay(w http.ResponseWriter, r *http.Request) {
	out := p.outgoing(r)
	res, err := p.roundTrip(out, func(code int, h textproto.MIMEHeader) error {
		// An informational answer (103 Early Hints) goes out as it came,
		// and its fields do not stay for the final one.
		dst := w.Header()
		addHeader(dst, http.Header(h))
		w.WriteHeader(code)
		clear(dst)
		return nil
	})
	if err != nil {
		p.handleError(w, out, err)
		return
	}
	if err := p.modifyResponse(res); err != nil {
		res.Body.Close() // a 101 the client did not ask for
		p.handleError(w, out, err)
		return
	}

	dst := w.Header()
	streaming := isStream(res)
	copyEndToEnd(dst, res.Header)
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)

	if err := p.copyBody(w, res.Body, streaming); err != nil {
		res.Body.Close()
		// The answer has started: all that is left is to cut the client
		// off, which the server does on this panic (net/http's contract,
		// kept by package front). Outside a server, as in unit tests, the
		// answer just ends short, as from ReverseProxy.
		if r.Context().Value(http.ServerContextKey) != nil {
			panic(http.ErrAbortHandler)
		}
		return
	}
	res.Body.Close() // fills res.Trailer

	if len(res.Trailer) == 0 {
		return
	}
	// A trailer forces a chunked answer, short bodies included.
	_ = http.NewResponseController(w).Flush()
	if len(res.Trailer) == announced {
		addHeader(dst, res.Trailer)
		return
	}
	for k, vv := range res.Trailer {
		for _, v := range vv {
			dst.Add(http.TrailerPrefix+k, v)
		}
	}
}

// outgoing returns the request to send to the app for the client's in. It
// is a shallow copy sharing in's context, body (wrapped so the upstream
// client cannot close the client's) and header values; its header map is
// its own, without hop-by-hop and forwarding fields.
func (p *Proxy) outgoing(in *http.Request) *http.Request {
	out := new(http.Request)
	*out = *in
	u := *in.URL
	out.URL = &u
	out.Close = false
	if in.ContentLength == 0 {
		out.Body = nil
	}
	h := make(http.Header, len(in.Header)+4)
	named := connectionTokens(in.Header)
	for k, vv := range in.Header {
		switch k {
		case "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue // set again by rewriteOut, from what Bulwark saw
		}
		if isHopByHop(k) || named.has(k) {
			continue
		}
		h[k] = vv
	}
	// The one hop-by-hop field that says something about the client:
	// that it takes trailers (golang/go#21096).
	if httpguts.HeaderValuesContainsToken(in.Header["Te"], "trailers") {
		h["Te"] = []string{"trailers"}
	}
	out.Header = h
	p.rewriteOut(in, out)
	return out
}

// isHopByHop reports whether the canonical field name k is hop-by-hop by
// definition (RFC 9110 section 7.6.1; ReverseProxy's list).
func isHopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// tokens is the canonical field names a Connection header lists.
type tokens []string

// connectionTokens returns the fields h's Connection header names; nil,
// without allocating, when it has none.
func connectionTokens(h http.Header) tokens {
	var named tokens
	for _, v := range h["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			if t = textproto.TrimString(t); t != "" {
				named = append(named, http.CanonicalHeaderKey(t))
			}
		}
	}
	return named
}

func (t tokens) has(k string) bool {
	for _, n := range t {
		if n == k {
			return true
		}
	}
	return false
}

// copyEndToEnd adds the app's end-to-end fields to dst. The value slices
// are handed over, not copied: src is the app's parsed answer, which
// nothing reads after this.
func copyEndToEnd(dst, src http.Header) {
	named := connectionTokens(src)
	for k, vv := range src {
		if isHopByHop(k) || named.has(k) {
			continue
		}
		if old, ok := dst[k]; ok {
			dst[k] = append(old, vv...)
		} else {
			dst[k] = vv
		}
	}
}

// addHeader adds every value of src to dst, as http.Header.Add would.
func addHeader(dst, src http.Header) {
	for k, vv := range src {
		for _, v := range vv {
			dst.Add(k, v)
		}
	}
}

// isStream reports whether res must reach the client as it comes: a
// server-sent event stream, or any answer of unknown length (a chunked
// stream may be a long poll), as ReverseProxy decides.
func isStream(res *http.Response) bool {
	if res.ContentLength == -1 {
		return true
	}
	ct := res.Header["Content-Type"]
	if len(ct) == 0 {
		return false
	}
	return httphdr.IsEventStream(ct[0])
}

// copyBody copies the answer's body to w through a pooled buffer. A stream
// is flushed at once, its head included, and after every piece. The error
// is the first failure to read from the app or to write to the client.
func (p *Proxy) copyBody(w http.ResponseWriter, body io.Reader, streaming bool) error {
	var rc *http.ResponseController
	if streaming {
		rc = http.NewResponseController(w)
		_ = rc.Flush() // a write error shows on the next write
	}
	if body == http.NoBody {
		return nil
	}
	buf := p.bufs.Get()
	defer p.bufs.Put(buf)
	for {
		nr, rerr := body.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
			if rc != nil {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
