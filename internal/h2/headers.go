package h2

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"bulwark/internal/h1"

	"golang.org/x/net/http2/hpack"
)

// headerBlock is the header block being decoded on a connection, with the
// request fields it carries. Owned by the reader goroutine.
type headerBlock struct {
	c         *h2Conn
	id        uint32
	endStream bool
	selfDep   bool
	trailers  bool // the block ends an open stream's body
	closed    bool // the block is on a stream that can take no headers
	ignore    bool // ... one this side reset lately: drop the block
	malformed string
	sawPseudo bool
	sawReg    bool
	tooLarge  bool
	size      int // decoded, as RFC 9113 counts it
	raw       int // encoded bytes received
	limit     int

	method, scheme, path, authority string
	header                          http.Header
}

func (b *headerBlock) begin(c *h2Conn, id uint32, endStream bool) {
	limit := c.srv.o().MaxHeaderBytes
	if c.dec == nil {
		b.c = c
		c.dec = hpack.NewDecoder(h2TableSize, b.emit)
	}
	// Past the limit a block is still decoded, to keep the HPACK state,
	// and answered 431; a single field far past it ends the connection.
	c.dec.SetMaxStringLength(4 * limit)
	b.id, b.endStream, b.limit = id, endStream, limit
}

func (b *headerBlock) clear() {
	*b = headerBlock{c: b.c}
}

// emit receives each decoded field and checks it (RFC 9113 8.2, 8.3).
func (b *headerBlock) emit(f hpack.HeaderField) {
	b.size += len(f.Name) + len(f.Value) + 32
	if b.size > b.limit {
		b.tooLarge = true
	}
	if b.tooLarge || b.malformed != "" {
		return
	}
	if f.IsPseudo() {
		if b.sawReg {
			b.malformed = "pseudo-header field after a regular one"
			return
		}
		b.sawPseudo = true
		var dst *string
		switch f.Name {
		case ":method":
			dst = &b.method
		case ":scheme":
			dst = &b.scheme
		case ":path":
			dst = &b.path
		case ":authority":
			dst = &b.authority
		default:
			b.malformed = "unknown pseudo-header field " + f.Name
			return
		}
		if *dst != "" || f.Value == "" {
			b.malformed = "repeated or empty " + f.Name
			return
		}
		*dst = f.Value
		return
	}
	b.sawReg = true
	if !validH2FieldName(f.Name) || !h1.ValidFieldValue(f.Value) {
		b.malformed = "invalid header field"
		return
	}
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		b.malformed = "connection-specific header field " + f.Name
		return
	case "te":
		if f.Value != "trailers" {
			b.malformed = "te other than trailers"
			return
		}
	}
	if b.header == nil {
		b.header = make(http.Header, 8)
	}
	k := canonicalH2Key(f.Name)
	b.header[k] = append(b.header[k], f.Value)
}

// validH2FieldName reports whether name is a lowercase token.
func validH2FieldName(name string) bool {
	if !h1.ValidFieldName(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// newRequest builds the request a header block opens. A request Bulwark
// answers itself (header too large, CONNECT) comes with its refusal; a
// malformed one is an error, which resets the stream.
func (c *h2Conn) newRequest(ctx context.Context, b *headerBlock) (*http.Request, *refusal, error) {
	h := b.header
	if h == nil {
		h = make(http.Header)
	}
	req := newRequest(ctx)
	req.Method, req.Header, req.Body = b.method, h, http.NoBody
	req.Proto, req.ProtoMajor = "HTTP/2.0", 2
	req.Host, req.RemoteAddr, req.RequestURI, req.TLS = b.authority, c.remote, b.path, c.tlsState
	if b.tooLarge || b.method == http.MethodConnect {
		if req.Method == "" {
			req.Method = http.MethodGet
		}
		req.URL = &url.URL{Path: "/"}
		if b.tooLarge {
			return req, &refusal{status: http.StatusRequestHeaderFieldsTooLarge, reason: "header_too_large", msg: "request header fields too large"}, nil
		}
		return req, &refusal{status: http.StatusMethodNotAllowed, reason: "connect", msg: "CONNECT is not supported"}, nil
	}
	if b.method == "" || b.scheme == "" || b.path == "" {
		return nil, nil, errors.New("missing :method, :scheme or :path")
	}
	if !h1.ValidMethod(b.method) {
		return nil, nil, errors.New("invalid :method")
	}
	if b.path[0] != '/' && (b.path != "*" || b.method != http.MethodOptions) {
		return nil, nil, errors.New("invalid :path")
	}
	if !validH2Path(b.path) {
		return nil, nil, errors.New("invalid :path: a byte outside VCHAR")
	}
	u, err := url.ParseRequestURI(b.path)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid :path: %w", err)
	}
	req.URL = u
	// As HTTP/1.1's Host: the app sees the authority in X-Forwarded-Host
	// and in the request line Bulwark sends it.
	if !h1.ValidHost(b.authority) {
		return nil, nil, errors.New("invalid :authority")
	}
	if hosts, ok := h["Host"]; ok {
		if len(hosts) == 1 && !h1.ValidHost(hosts[0]) {
			return nil, nil, errors.New("invalid host")
		}
		if req.Host == "" && len(hosts) == 1 {
			req.Host = hosts[0]
		} else if len(hosts) != 1 || hosts[0] != req.Host {
			return nil, nil, errors.New("host differs from :authority")
		}
		delete(h, "Host")
	}
	if cookies := h["Cookie"]; len(cookies) > 1 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	cl := int64(-1)
	if vs, ok := h["Content-Length"]; ok {
		for _, v := range vs {
			n, err := strconv.ParseUint(v, 10, 63)
			if err != nil || cl >= 0 && int64(n) != cl {
				return nil, nil, errors.New("invalid content-length")
			}
			cl = int64(n)
		}
	}
	if b.endStream {
		if cl > 0 {
			return nil, nil, errors.New("content-length without a body")
		}
		req.ContentLength = 0
	} else {
		req.ContentLength = cl
	}
	if vs := h["Trailer"]; len(vs) > 0 && !b.endStream {
		req.Trailer = declaredTrailer(vs)
	}
	return req, nil, nil
}

// validH2Path reports whether p has only visible ASCII (VCHAR): what an
// HTTP/1.1 request target may hold. A space would let the path forge the
// rest of the request line Bulwark sends the app.
func validH2Path(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f {
			return false
		}
	}
	return true
}
