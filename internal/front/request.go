package front

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"bulwark/internal/h1"

	"golang.org/x/net/http/httpguts"
)

// headError is a request that cannot be served; the connection closes after
// the answer.
type headError struct {
	status int
	reason string // X-Bulwark-Error and metric label
	msg    string
}

func (e *headError) Error() string { return e.msg }

func badRequest(reason, msg string) *headError {
	return &headError{status: http.StatusBadRequest, reason: reason, msg: msg}
}

var headPool = sync.Pool{New: func() any { return &headBuf{b: make([]byte, 0, 1024), ends: make([]int, 0, 16)} }}

// headBuf is a pooled request head and the ends of its lines.
type headBuf struct {
	b    []byte
	ends []int
}

// readRequest reads and checks one request head and returns the request
// with its body reader. Errors are *headError, or the read error when the
// client went away or timed out before a complete head.
func (c *h1Conn) readRequest(ctx context.Context) (*http.Request, error) {
	hb := headPool.Get().(*headBuf)
	defer func() {
		if cap(hb.b) <= 64<<10 && cap(hb.ends) <= 1024 {
			hb.b, hb.ends = hb.b[:0], hb.ends[:0]
			headPool.Put(hb)
		}
	}()
	head, lines, err := readHead(c.br, hb.b[:0], hb.ends[:0], c.srv.o().MaxHeaderBytes)
	hb.b, hb.ends = head, lines
	if err != nil {
		return nil, err
	}
	req, err := parseHead(ctx, head, lines)
	if err != nil {
		return nil, err
	}
	req.RemoteAddr = c.remote
	req.TLS = c.tlsState
	if err := c.frameBody(req); err != nil {
		return nil, err
	}
	return req, nil
}

// trimOWS removes the optional whitespace around a field value: SP and HTAB
// only (RFC 9110 5.6.3). textproto.TrimBytes would also remove a bare CR,
// reading "Transfer-Encoding: \rchunked" as chunked (the CVE-2022-1705
// vector); left in, the CR makes the value invalid and the head is refused.
// It re-slices b, so an all-blank value stays a non-nil empty slice.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// readHead reads the request head into buf up to and excluding the empty
// line, and appends the offsets of the ends of its lines to ends. It fails
// with 431 (414 for the request line) when the head exceeds max bytes.
func readHead(br *bufio.Reader, buf []byte, ends []int, max int) ([]byte, []int, error) {
	lineStart := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > max {
			if len(ends) == 0 {
				return buf, nil, &headError{status: http.StatusRequestURITooLong, reason: "uri_too_long", msg: "request line too long"}
			}
			return buf, nil, &headError{status: http.StatusRequestHeaderFieldsTooLarge, reason: "header_too_large", msg: "request header fields too large"}
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if len(buf) > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return buf, nil, err
		}
		line := buf[lineStart:]
		// A line is "...\n" or "...\r\n"; a bare CR elsewhere is refused later.
		content := len(line) - 1
		if content > 0 && line[content-1] == '\r' {
			content--
		}
		if content == 0 {
			if len(ends) == 0 {
				// RFC 9112 2.2: ignore empty lines before the request line.
				buf = buf[:lineStart]
				continue
			}
			return buf[:lineStart], ends, nil
		}
		ends = append(ends, lineStart+content)
		lineStart = len(buf)
	}
}

// parseHead parses a request head whose lines end at the given offsets
// (each followed by CRLF or LF). It refuses everything a lenient parser
// behind us could read differently.
func parseHead(ctx context.Context, head []byte, ends []int) (*http.Request, error) {
	start := 0
	next := func(i int) []byte {
		line := head[start:ends[i]]
		start = ends[i] + 1
		if start < len(head) && head[start-1] == '\r' {
			start++
		}
		return line
	}
	reqLine := next(0)
	if bytes.IndexByte(reqLine, '\r') >= 0 {
		return nil, badRequest("bad_request_line", "malformed request line")
	}
	method, rest, ok1 := bytes.Cut(reqLine, []byte{' '})
	target, proto, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || bytes.IndexByte(proto, ' ') >= 0 {
		return nil, badRequest("bad_request_line", "malformed request line")
	}
	if !h1.ValidMethod(method) {
		return nil, badRequest("bad_method", "malformed method")
	}
	// One copy of the head backs the method, the target and every value,
	// and one slice every header's first value: a request costs a few
	// allocations, not several per header line.
	text := string(head)
	sub := func(b []byte) string {
		off := cap(head) - cap(b) // b is a piece of head: both run to the end of one array
		return text[off : off+len(b)]
	}
	req := newRequest(ctx)
	req.Method, req.RequestURI, req.Header = sub(method), sub(target), make(http.Header, len(ends))
	firsts := make([]string, 0, len(ends)-1)
	switch string(proto) {
	case "HTTP/1.1":
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	case "HTTP/1.0":
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.0", 1, 0
	default:
		if maj, min, ok := http.ParseHTTPVersion(string(proto)); ok && !(maj == 1 && min <= 1) {
			return nil, &headError{status: http.StatusHTTPVersionNotSupported, reason: "version", msg: "HTTP version not supported"}
		}
		return nil, badRequest("bad_request_line", "malformed HTTP version")
	}
	if req.Method == http.MethodConnect {
		return nil, &headError{status: http.StatusMethodNotAllowed, reason: "connect", msg: "CONNECT is not supported"}
	}

	for i := 1; i < len(ends); i++ {
		line := next(i)
		if line[0] == ' ' || line[0] == '\t' {
			return nil, badRequest("obs_fold", "obsolete line folding is not accepted")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, badRequest("bad_header", "malformed header line")
		}
		name := line[:colon]
		if !h1.ValidFieldName(name) {
			// This also refuses whitespace before the colon (RFC 9112 5.1).
			return nil, badRequest("bad_header", "malformed header name")
		}
		value := sub(trimOWS(line[colon+1:]))
		if !h1.ValidFieldValue(value) {
			return nil, badRequest("bad_header", "malformed header value")
		}
		key := textproto.CanonicalMIMEHeaderKey(sub(name))
		if vs, seen := req.Header[key]; seen {
			req.Header[key] = append(vs, value)
			continue
		}
		// Capped at one, so a second value (or a handler's Add) copies
		// rather than writing over the next header's first value.
		firsts = append(firsts, value)
		req.Header[key] = firsts[len(firsts)-1 : len(firsts) : len(firsts)]
	}

	hosts := req.Header["Host"]
	switch {
	case len(hosts) > 1:
		return nil, badRequest("bad_host", "several Host headers")
	case len(hosts) == 0 && req.ProtoMinor == 1:
		return nil, badRequest("bad_host", "missing Host header")
	case len(hosts) == 1:
		if !h1.ValidHost(hosts[0]) {
			return nil, badRequest("bad_host", "malformed Host header")
		}
		req.Host = hosts[0]
	}
	delete(req.Header, "Host")

	u, err := parseTarget(req.Method, req.RequestURI)
	if err != nil {
		return nil, err
	}
	req.URL = u
	if u.Host != "" {
		// Absolute form: the target's authority wins over Host (RFC 9112 3.2.2).
		req.Host = u.Host
	}

	req.Close = shouldClose(req)
	return req, nil
}

// parseTarget parses the request target: origin form, absolute form, or "*"
// for OPTIONS.
func parseTarget(method, target string) (*url.URL, error) {
	if target == "*" {
		if method != http.MethodOptions {
			return nil, badRequest("bad_target", "malformed request target")
		}
		return &url.URL{Path: "*"}, nil
	}
	if target[0] != '/' && !strings.HasPrefix(target, "http://") && !strings.HasPrefix(target, "https://") {
		return nil, badRequest("bad_target", "malformed request target")
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, badRequest("bad_target", "malformed request target")
	}
	if u.Host != "" && !h1.ValidHost(u.Host) {
		return nil, badRequest("bad_target", "malformed request target")
	}
	return u, nil
}

// shouldClose reports whether the client asked to close after this request.
func shouldClose(req *http.Request) bool {
	conn := req.Header["Connection"]
	if req.ProtoMinor == 0 {
		return !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	}
	return httpguts.HeaderValuesContainsToken(conn, "close")
}

// frameBody decides how the request body is delimited, refusing the framing
// that request smuggling relies on, and attaches the body reader.
func (c *h1Conn) frameBody(req *http.Request) error {
	te := req.Header["Transfer-Encoding"]
	cl := req.Header["Content-Length"]
	b := &requestBody{c: c}
	switch {
	case len(te) > 0:
		if len(cl) > 0 {
			return badRequest("smuggling", "Content-Length and Transfer-Encoding together")
		}
		if req.ProtoMinor == 0 {
			return badRequest("smuggling", "Transfer-Encoding in an HTTP/1.0 request")
		}
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			return badRequest("smuggling", "Transfer-Encoding other than chunked")
		}
		delete(req.Header, "Transfer-Encoding")
		req.TransferEncoding = []string{"chunked"}
		req.ContentLength = -1
		b.chunked = true
		b.r = httputil.NewChunkedReader(c.br)
	case len(cl) > 0:
		n, err := parseContentLength(cl)
		if err != nil {
			return err
		}
		req.Header["Content-Length"] = []string{strconv.FormatInt(n, 10)}
		req.ContentLength = n
		b.remaining = n
		if n == 0 {
			b.eof = true
		}
	default:
		b.eof = true
	}
	req.Body = b
	if ex := req.Header["Expect"]; len(ex) > 0 {
		if len(ex) != 1 || !strings.EqualFold(ex[0], "100-continue") {
			return &headError{status: http.StatusExpectationFailed, reason: "expect", msg: "unsupported Expect"}
		}
		b.expectContinue = !b.eof && req.ProtoMinor == 1
	}
	// Expect is hop-by-hop in effect: Bulwark answers it itself.
	delete(req.Header, "Expect")
	stripH2CUpgrade(req.Header)
	return nil
}

// parseContentLength accepts one or more Content-Length values (several
// headers or a comma list) only when they are all the same decimal number.
func parseContentLength(values []string) (int64, error) {
	n := int64(-1)
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" || len(part) > 18 {
				return 0, badRequest("bad_content_length", "malformed Content-Length")
			}
			for i := 0; i < len(part); i++ {
				if part[i] < '0' || part[i] > '9' {
					return 0, badRequest("bad_content_length", "malformed Content-Length")
				}
			}
			v, _ := strconv.ParseInt(part, 10, 64)
			if n >= 0 && v != n {
				return 0, badRequest("smuggling", "differing Content-Length values")
			}
			n = v
		}
	}
	return n, nil
}

// stripH2CUpgrade removes an h2c upgrade: Bulwark never forwards one, and
// the app must not switch protocols under the proxy.
func stripH2CUpgrade(h http.Header) {
	for _, v := range h["Upgrade"] {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "h2c") {
				delete(h, "Upgrade")
				delete(h, "Http2-Settings")
				return
			}
		}
	}
	delete(h, "Http2-Settings")
}

// requestBody is the body of an HTTP/1.1 request. The proxy's transport may
// read or close it from another goroutine, even after the handler returned,
// so its state is guarded by mu.
type requestBody struct {
	c              *h1Conn
	mu             sync.Mutex
	r              io.Reader // chunked reader; nil for Content-Length bodies
	chunked        bool
	remaining      int64 // Content-Length bytes left
	eof            bool
	closed         bool // the handler is done; reads fail
	err            error
	expectContinue bool
	sentContinue   bool
	readAny        bool
	watch          bool // the request ran past clientGoneDelay: watch the client once the body is read
	returned       bool // the handler returned: no background read may start
}

// watchClient starts watching for the client going away, now if the body
// has been read, else once it has. It runs on a timer's goroutine.
func (b *requestBody) watchClient() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.returned {
		return
	}
	b.watch = true
	if b.eof {
		b.c.cr.startBackgroundRead()
	}
}

// handlerDone records that the handler returned, so that no background
// read starts after the connection loop aborted the last one.
func (b *requestBody) handlerDone() {
	b.mu.Lock()
	b.returned = true
	b.mu.Unlock()
}

// errBodyAfterHandler is returned to a reader of a body whose handler has
// already returned.
var errBodyAfterHandler = errors.New("http: invalid Read on closed Body")

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyAfterHandler
	}
	return b.readLocked(p)
}

func (b *requestBody) readLocked(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.expectContinue && !b.sentContinue {
		b.sentContinue = true
		if err := b.c.send100Continue(); err != nil {
			b.err = err
			return 0, err
		}
	}
	b.readAny = true
	b.c.rwc.SetReadDeadline(time.Now().Add(b.c.srv.o().BodyReadTimeout))
	var n int
	var err error
	if b.chunked {
		n, err = b.r.Read(p)
		if err == io.EOF {
			err = readTrailer(b.c.br, b.c.srv.o().MaxHeaderBytes)
			if err == nil {
				err = io.EOF
			}
		}
	} else {
		if int64(len(p)) > b.remaining {
			p = p[:b.remaining]
		}
		n, err = b.c.br.Read(p)
		b.remaining -= int64(n)
		if b.remaining == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	switch {
	case err == io.EOF:
		b.eof = true
		b.c.rwc.SetReadDeadline(time.Time{})
		if b.watch && !b.returned {
			b.c.cr.startBackgroundRead()
		}
	case err != nil:
		b.err = fmt.Errorf("read request body: %w", err)
		err = b.err
	}
	return n, err
}

// Close marks the body as finished from the handler's side; what is left is
// drained or the connection closed by the connection loop.
func (b *requestBody) Close() error { return nil }

// close ends the body for every reader.
func (b *requestBody) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

// unfinished reports whether the client may still be sending the body: it
// was not read to its end, and reading it did not fail.
func (b *requestBody) unfinished() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.eof && b.err == nil
}

// drain reads and discards what is left of the body so the connection can
// carry the next request, and reports whether that worked. A client that
// was told to wait for 100 Continue and never got it cannot be drained.
func (b *requestBody) drain() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.eof {
		return true
	}
	if b.err != nil || b.expectContinue && !b.sentContinue {
		return false
	}
	if !b.chunked && b.remaining > maxDrainBytes {
		return false
	}
	var buf [4096]byte
	total := 0
	for total <= maxDrainBytes {
		n, err := b.readLocked(buf[:])
		total += n
		if err == io.EOF {
			b.c.cr.abortPendingRead()
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// send100Continue tells a client waiting on Expect: 100-continue to send
// its body. Nothing else has been written for this request yet.
func (c *h1Conn) send100Continue() error {
	c.rwc.SetWriteDeadline(time.Now().Add(c.srv.o().WriteTimeout))
	_, err := io.WriteString(c.rwc, "HTTP/1.1 100 Continue\r\n\r\n")
	return err
}

// readTrailer reads and discards the trailer section after the last chunk,
// bounded like a head.
func readTrailer(br *bufio.Reader, max int) error {
	total := 0
	lineLen := 0    // bytes of the current line read so far
	lastCR := false // the byte before the next fragment is CR
	for {
		frag, err := br.ReadSlice('\n')
		total += len(frag)
		if total > max {
			return errors.New("trailer too large")
		}
		if err == bufio.ErrBufferFull {
			lineLen += len(frag)
			lastCR = frag[len(frag)-1] == '\r'
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		// Every trailer line ends in CRLF: a bare LF read differently by
		// another hop would let the bytes after it be a request to one and
		// trailer to the other (golang/go#81143).
		crlf := len(frag) >= 2 && frag[len(frag)-2] == '\r' || len(frag) == 1 && lastCR
		if !crlf {
			return errors.New("trailer line not ended by CRLF")
		}
		if lineLen+len(frag) == 2 {
			return nil
		}
		lineLen, lastCR = 0, false
	}
}
