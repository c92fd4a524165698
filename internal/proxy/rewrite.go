package proxy

import (
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"

	"golang.org/x/net/http/httpguts"

	"bulwark/internal/clientip"
	"bulwark/internal/httperr"
	"bulwark/internal/httphdr"
)

// rewrite is ReverseProxy's Rewrite hook, for the upgrades it serves.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) { p.rewriteOut(pr.In, pr.Out) }

// rewriteOut builds the request to the app from the client's in, as the
// guide's nginx block does: Host kept, X-Real-IP and X-Forwarded-* set, the
// query passed as the client sent it, and never an h2c upgrade. Hop-by-hop
// headers and the client's Forwarded and X-Forwarded-* headers are already
// gone from out (by outgoing, or by ReverseProxy).
func (p *Proxy) rewriteOut(in, out *http.Request) {
	t := p.targets.Load().route(in.Context())
	out.URL.Scheme = "http"
	out.URL.Host = t.urlHost
	// Bulwark does not interpret the query, so the app gets it verbatim
	// (ReverseProxy would re-encode one containing ';').
	out.URL.RawQuery = in.URL.RawQuery
	out.Host = in.Host
	if out.Host == "" && t.network == "unix" {
		out.Host = "localhost" // never leak the pool key as Host
	}
	p.dropUnderscored(out.Header)
	setForwarded(out.Header, in, p.o().TrustedProxies)
	stripH2C(out.Header)
	p.wrapBody(out)
}

// dropUnderscored removes the request header fields whose name contains
// "_", as nginx does by default (underscores_in_headers off): CGI, WSGI and
// ASGI frameworks such as Django turn both X-Real-IP and X_Real_IP into
// HTTP_X_REAL_IP, so the client's X_Real_IP could stand in for the one
// Bulwark sets, depending on the order the app sees them in. With
// UnderscoresInHeaders the other names pass, but never one that reads as a
// field Bulwark sets or removes. Every field dropped is counted.
func (p *Proxy) dropUnderscored(h http.Header) {
	allow := p.o().UnderscoresInHeaders
	for k := range h {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		reason := dropUnderscore
		if allow {
			if !httphdr.Reserved(k) {
				continue
			}
			reason = dropReserved
		}
		delete(h, k)
		p.m.dropped[reason].Inc()
	}
}

// setForwarded sets X-Forwarded-For, X-Real-IP, X-Forwarded-Proto and
// X-Forwarded-Host on h for the client request in. The client's own
// X-Forwarded-For is kept only when in comes from a trusted proxy; X-Real-IP
// is then the right-most address of the chain that is not a trusted proxy
// (clientip.Real, which the per-client limits use too).
func setForwarded(h http.Header, in *http.Request, trusted []netip.Prefix) {
	peer, peerAddr := clientip.Peer(in.RemoteAddr)
	realIP := peer
	xff := peer
	if len(trusted) > 0 && clientip.Trusted(peerAddr, trusted) {
		if prior := in.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			chain := strings.Join(prior, ", ")
			xff = chain + ", " + peer
			if a := clientip.Real(chain, peerAddr, trusted); a != peerAddr {
				realIP = a.String()
			}
		}
	}
	vals := make([]string, 4) // one allocation for the four values
	if xff != "" {
		vals = setShared(h, "X-Forwarded-For", xff, vals)
		vals = setShared(h, "X-Real-Ip", realIP, vals)
	} else {
		delete(h, "X-Real-Ip")
	}
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	vals = setShared(h, "X-Forwarded-Proto", proto, vals)
	if in.Host != "" {
		setShared(h, "X-Forwarded-Host", in.Host, vals)
	}
}

// setShared sets h[key] (a canonical key) to v, stored in vals[0], and
// returns the rest of vals.
func setShared(h http.Header, key, v string, vals []string) []string {
	vals[0] = v
	h[key] = vals[:1:1]
	return vals[1:]
}

// stripH2C removes an h2c upgrade, which ReverseProxy would otherwise pass
// on (it re-adds Upgrade after removing hop-by-hop headers). Any other
// upgrade (WebSocket) goes through.
func stripH2C(h http.Header) {
	h.Del("Http2-Settings")
	if !httpguts.HeaderValuesContainsToken(h["Upgrade"], "h2c") {
		return
	}
	h.Del("Upgrade")
	h.Del("Connection")
}

// wrapBody makes the outgoing body tell client read errors from the app's
// and, for a body of unknown length, stop at MaxBody. The upstream client
// closes the body it was given, but the client's body belongs to the server
// (ReverseProxy shields it the same way). GetBody, set by the spool so the
// upstream client can replay the body on a fresh connection, is wrapped the
// same way, and its bodies are closed.
func (p *Proxy) wrapBody(out *http.Request) {
	if out.Body == nil || out.Body == http.NoBody {
		return
	}
	limit := int64(-1)
	if p.o().MaxBody > 0 && out.ContentLength < 0 {
		limit = p.o().MaxBody
	}
	out.Body = &bodyReader{rc: out.Body, limit: limit, keepOpen: true}
	if getBody := out.GetBody; getBody != nil {
		out.GetBody = func() (io.ReadCloser, error) {
			rc, err := getBody()
			if err != nil || rc == http.NoBody {
				return rc, err
			}
			return &bodyReader{rc: rc, limit: limit}, nil
		}
	}
}

// bodyReader reads the client's body on its way to the app.
type bodyReader struct {
	rc       io.ReadCloser
	limit    int64 // negative: none
	n        int64
	keepOpen bool // Close leaves rc open: it is the client's
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.limit >= 0 {
		if rest := b.limit - b.n; int64(len(p)) > rest+1 {
			p = p[:rest+1]
		}
	}
	n, err := b.rc.Read(p)
	if b.limit >= 0 && b.n+int64(n) > b.limit {
		// One byte too many: send up to the limit, then fail the request.
		n = int(b.limit - b.n)
		b.n = b.limit
		return n, httperr.BodyTooLarge(b.limit)
	}
	b.n += int64(n)
	if err != nil && err != io.EOF {
		err = &clientBodyError{err}
	}
	return n, err
}

func (b *bodyReader) Close() error {
	if b.keepOpen {
		return nil
	}
	return b.rc.Close()
}

// clientBodyError is a failure to read the request body from the client,
// which is not the app's fault.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return errClientBody.Error() + ": " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }
func (e *clientBodyError) Is(target error) bool {
	return target == errClientBody
}
