package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"

	"bulwark/internal/h1"

	"golang.org/x/net/http/httpguts"
)

// maxTrailerBytes bounds the trailer of a chunked answer.
const maxTrailerBytes = 64 << 10

// keepHeadScratch is the largest head buffer a connection keeps between
// requests; a larger one, grown for an unusual head, is dropped.
const keepHeadScratch = 16 << 10

// errHeadTooLarge fails an answer whose head passes maxResponseHeaderBytes.
var errHeadTooLarge = errors.New("the app's response head is too large")

// readResponse waits for the answer to req and reads its head: 100
// Continue is skipped, other 1xx answers go to got1xx (which forwards
// them), and reading goes on to the final answer. It reports whether any
// byte of an answer arrived.
func (pc *upConn) readResponse(req *http.Request, got1xx func(int, textproto.MIMEHeader) error) (*http.Response, bool, error) {
	if _, err := pc.br.Peek(1); err != nil {
		return nil, false, err
	}
	limit := maxResponseHeaderBytes
	for range maxInformational {
		res, n, err := pc.readHead(limit)
		if err != nil {
			return nil, true, err
		}
		res.Request = req
		code := res.StatusCode
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			pc.gotHead.Store(true)
			return res, true, nil
		}
		limit -= n
		if code != http.StatusContinue && got1xx != nil {
			if err := got1xx(code, textproto.MIMEHeader(res.Header)); err != nil {
				return nil, true, err
			}
			limit = maxResponseHeaderBytes // delivered: the receiver bounds them
		}
	}
	return nil, true, fmt.Errorf("the app sent more than %d informational (1xx) answers", maxInformational)
}

// readHead reads one response head of at most limit bytes and returns it
// parsed, with its size.
func (pc *upConn) readHead(limit int) (*http.Response, int, error) {
	block, err := pc.readBlock(limit)
	if err != nil {
		if errors.Is(err, io.EOF) && len(block) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, len(block), err
	}
	res, err := parseHead(block)
	if cap(pc.head) > keepHeadScratch {
		pc.head = nil
	}
	if err != nil {
		return nil, len(block), fmt.Errorf("malformed answer from the app: %w", err)
	}
	return res, len(block), nil
}

// readBlock reads lines into pc.head up to and including the empty line
// that ends a head or trailer, at most limit bytes.
func (pc *upConn) readBlock(limit int) ([]byte, error) {
	b := pc.head[:0]
	lineStart := 0
	for {
		line, err := pc.br.ReadSlice('\n')
		if len(b)+len(line) > limit {
			return b, errHeadTooLarge
		}
		b = append(b, line...)
		pc.head = b
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return b, err
		}
		if l := len(b) - lineStart; l == 1 || (l == 2 && b[lineStart] == '\r') {
			return b, nil
		}
		lineStart = len(b)
	}
}

// cutLine splits off the first line of s, without its line end.
func cutLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	line, rest = s[:i], s[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// parseHead parses a response head: a status line and header fields,
// ending with an empty line. Field names are made canonical in place in
// block, which is then copied once into a string that every name and
// value of the header shares.
func parseHead(block []byte) (*http.Response, error) {
	fields, err := checkFields(block, true)
	if err != nil {
		return nil, err
	}
	s := string(block)
	statusLine, rest := cutLine(s)
	res := &http.Response{}
	if err := parseStatusLine(res, statusLine); err != nil {
		return nil, err
	}
	res.Header = make(http.Header, fields)
	fillHeader(res.Header, rest, fields)
	return res, nil
}

// parseStatusLine fills res's protocol and status from a status line.
func parseStatusLine(res *http.Response, line string) error {
	proto, status, ok := strings.Cut(line, " ")
	if !ok {
		return fmt.Errorf("status line %q", line)
	}
	switch {
	case len(proto) == 8 && proto[:7] == "HTTP/1." && proto[7] >= '0' && proto[7] <= '9':
		res.Proto, res.ProtoMajor, res.ProtoMinor = proto, 1, int(proto[7]-'0')
	default:
		return fmt.Errorf("status line %q: protocol %q", line, proto)
	}
	status = strings.TrimLeft(status, " ")
	code, _, _ := strings.Cut(status, " ")
	n := 0
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			n = -1
			break
		}
		n = n*10 + int(code[i]-'0')
	}
	if len(code) != 3 || n < 100 {
		return fmt.Errorf("status line %q: status code %q", line, code)
	}
	res.Status, res.StatusCode = status, n
	return nil
}

// checkFields validates the lines of block (after the status line when
// statusLine is set) and makes field names canonical in place. It reports
// the number of fields. Folded lines (obs-fold) are refused, as RFC 9112
// allows a proxy to.
func checkFields(block []byte, statusLine bool) (int, error) {
	fields := 0
	first := statusLine
	for len(block) > 0 {
		i := indexNL(block)
		line := block[:i]
		block = block[i+1:]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if first {
			first = false
			if !h1.ValidFieldValue(line) {
				return 0, fmt.Errorf("status line %q", line)
			}
			continue
		}
		if len(line) == 0 {
			break
		}
		colon := -1
		for j, c := range line {
			if c == ':' {
				colon = j
				break
			}
			if !h1.IsTokenByte(c) {
				if c == ' ' || c == '\t' {
					return 0, fmt.Errorf("header line %q: whitespace in or before the field name", line)
				}
				return 0, fmt.Errorf("header line %q: invalid field name", line)
			}
		}
		if colon < 1 {
			return 0, fmt.Errorf("header line %q: no field name", line)
		}
		if !h1.ValidFieldValue(line[colon+1:]) {
			return 0, fmt.Errorf("header line %q: invalid byte in value", line)
		}
		canonicalize(line[:colon])
		fields++
	}
	return fields, nil
}

// indexNL returns the index of the first '\n' in b, or len(b)-1.
func indexNL(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return len(b) - 1
}

// fillHeader adds the n fields of s (checked by checkFields) to h; the
// value slices share one backing array.
func fillHeader(h http.Header, s string, n int) {
	vals := make([]string, n)
	for s != "" {
		var line string
		line, s = cutLine(s)
		if line == "" {
			return
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.Trim(v, " \t")
		if vv, ok := h[k]; ok {
			h[k] = append(vv, v)
			continue
		}
		vals[0] = v
		h[k] = vals[:1:1]
		vals = vals[1:]
	}
}

// canonicalize makes a field name canonical in place ("content-type" →
// "Content-Type"), as textproto does.
func canonicalize(k []byte) {
	upper := true
	for i, c := range k {
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		k[i] = c
		upper = c == '-'
	}
}

// bodyKind is how an answer's body is delimited (RFC 9112 section 6.3).
type bodyKind int

const (
	bodyEmpty   bodyKind = iota // HEAD, 1xx, 204, 304, or Content-Length: 0
	bodyLength                  // Content-Length
	bodyChunked                 // Transfer-Encoding: chunked
	bodyToClose                 // until the app closes the connection
)

// frame works out how res's body is delimited, sets res.ContentLength,
// TransferEncoding, Close and Trailer as net/http does, and refuses
// ambiguous framing (both Content-Length and Transfer-Encoding, several
// different lengths, a length that is not a number, an unknown coding).
func frame(res *http.Response, method string) (bodyKind, int64, error) {
	h := res.Header
	chunked := false
	if te, ok := h["Transfer-Encoding"]; ok {
		delete(h, "Transfer-Encoding")
		if len(h["Content-Length"]) > 0 {
			return 0, 0, errors.New("malformed answer from the app: both Content-Length and Transfer-Encoding")
		}
		if res.ProtoAtLeast(1, 1) {
			if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
				return 0, 0, fmt.Errorf("malformed answer from the app: unsupported Transfer-Encoding %q", te)
			}
			chunked = true
			res.TransferEncoding = []string{"chunked"}
		} else {
			res.Close = true // HTTP/1.0 with a coding: faulty framing, close after
		}
	}
	length := int64(-1)
	if cl := h["Content-Length"]; len(cl) > 0 {
		v := strings.TrimSpace(cl[0])
		for _, other := range cl[1:] {
			if strings.TrimSpace(other) != v {
				return 0, 0, fmt.Errorf("malformed answer from the app: several Content-Length values %q", cl)
			}
		}
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			return 0, 0, fmt.Errorf("malformed answer from the app: invalid Content-Length %q", v)
		}
		if len(cl) > 1 {
			h["Content-Length"] = cl[:1]
		}
		length = int64(n)
	}
	conn := h["Connection"]
	if res.ProtoMinor == 0 {
		res.Close = res.Close || !httpguts.HeaderValuesContainsToken(conn, "keep-alive") || httpguts.HeaderValuesContainsToken(conn, "close")
	} else {
		res.Close = res.Close || httpguts.HeaderValuesContainsToken(conn, "close")
	}
	if chunked {
		tr, err := declaredTrailer(h)
		if err != nil {
			return 0, 0, err
		}
		res.Trailer = tr
	}
	code := res.StatusCode
	switch {
	case method == http.MethodHead:
		res.ContentLength = length
		return bodyEmpty, 0, nil
	case code/100 == 1, code == http.StatusNoContent, code == http.StatusNotModified:
		res.ContentLength = 0
		return bodyEmpty, 0, nil
	case chunked:
		res.ContentLength = -1
		return bodyChunked, -1, nil
	case length == 0:
		res.ContentLength = 0
		return bodyEmpty, 0, nil
	case length > 0:
		res.ContentLength = length
		return bodyLength, length, nil
	default:
		res.ContentLength = -1
		res.Close = true
		return bodyToClose, -1, nil
	}
}

// declaredTrailer returns the trailer keys an answer announces in its
// Trailer header, with nil values (the relay announces them to the client
// before the body), and removes that header, as net/http does.
func declaredTrailer(h http.Header) (http.Header, error) {
	vv, ok := h["Trailer"]
	if !ok {
		return nil, nil
	}
	delete(h, "Trailer")
	tr := make(http.Header)
	for _, v := range vv {
		for k := range strings.SplitSeq(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			switch k {
			case "":
				continue
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return nil, fmt.Errorf("malformed answer from the app: trailer key %q", k)
			}
			tr[k] = nil
		}
	}
	if len(tr) == 0 {
		return nil, nil
	}
	return tr, nil
}

// attachBody gives res its Body, which owns pc from now on. A 101 answer's
// body is the raw connection, which never returns to the pool.
func (pc *upConn) attachBody(res *http.Response, ctx context.Context) error {
	if res.StatusCode == http.StatusSwitchingProtocols {
		if !pc.unwatch() {
			return fmt.Errorf("switching protocols: %w", context.Cause(ctx))
		}
		res.Body = &upgradeBody{br: pc.br, c: pc.c}
		pc.br, pc.bw = nil, nil // they go with the connection
		return nil
	}
	kind, n, err := frame(res, res.Request.Method)
	if err != nil {
		return err
	}
	if kind == bodyEmpty {
		res.Body = http.NoBody
		pc.finish(!res.Close)
		return nil
	}
	b := &respBody{pc: pc, res: res, ctx: ctx, kind: kind, left: n}
	if kind == bodyChunked {
		b.chunks = httputil.NewChunkedReader(pc.br)
	}
	res.Body = b
	return nil
}

// respBody is an answer's body read straight from the connection's
// buffer. At its end the connection goes back to the pool (when the
// answer allows it), before Close. Read and Close are for one goroutine.
type respBody struct {
	pc     *upConn // nil once the exchange is over
	res    *http.Response
	ctx    context.Context
	kind   bodyKind
	left   int64     // bytes left of a Content-Length body
	chunks io.Reader // decodes a chunked body
	err    error     // returned by every Read once set
}

func (b *respBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	var n int
	var err error
	switch b.kind {
	case bodyLength:
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err = b.pc.br.Read(p)
		b.left -= int64(n)
		if b.left == 0 {
			b.end(true)
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	case bodyChunked:
		n, err = b.chunks.Read(p)
		if err == io.EOF {
			if terr := b.pc.readTrailer(b.res); terr != nil {
				err = terr
				break
			}
			b.end(true)
			return n, io.EOF
		}
	default:
		n, err = b.pc.br.Read(p)
		if err == io.EOF {
			b.end(false)
			return n, io.EOF
		}
	}
	if err != nil {
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
		b.end(false)
		b.err = fmt.Errorf("reading the app's answer body: %w", err)
		return n, b.err
	}
	return n, nil
}

// end ends the exchange: clean, the connection may be pooled.
func (b *respBody) end(clean bool) {
	if b.pc == nil {
		return
	}
	if b.err == nil {
		b.err = io.EOF
	}
	pc := b.pc
	b.pc, b.chunks = nil, nil
	pc.finish(clean && !b.res.Close)
}

// Close ends the body; before its end that closes the connection.
func (b *respBody) Close() error {
	b.end(false)
	b.err = http.ErrBodyReadAfterClose
	return nil
}

// readTrailer reads the trailer after a chunked body's last chunk into
// res.Trailer.
func (pc *upConn) readTrailer(res *http.Response) error {
	if p, err := pc.br.Peek(2); err == nil && p[0] == '\r' && p[1] == '\n' {
		pc.br.Discard(2)
		return nil
	}
	block, err := pc.readBlock(maxTrailerBytes)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("reading the app's trailer: %w", err)
	}
	// Unlike a head, a trailer gets no bare-LF leniency: every line ends
	// in CRLF, or the pooled connection's next answer could start where
	// the app did not mean it to (golang/go#81143).
	for i, c := range block {
		if c == '\n' && (i == 0 || block[i-1] != '\r') {
			return errors.New("malformed trailer from the app: a line not ended by CRLF")
		}
	}
	n, err := checkFields(block, false)
	if err != nil {
		return fmt.Errorf("malformed trailer from the app: %w", err)
	}
	if n == 0 {
		return nil
	}
	h := make(http.Header, n)
	fillHeader(h, string(block), n)
	if res.Trailer == nil {
		res.Trailer = h
		return nil
	}
	for k, vv := range h {
		res.Trailer[k] = vv
	}
	return nil
}

// upgradeBody is the body of a 101 answer: the connection itself, whose
// bytes already buffered are read first. ReverseProxy copies both ways.
type upgradeBody struct {
	br *bufio.Reader // nil once drained
	c  *deadlineConn
}

func (b *upgradeBody) Read(p []byte) (int, error) {
	if b.br != nil {
		if n := b.br.Buffered(); n > 0 {
			if len(p) > n {
				p = p[:n]
			}
			return b.br.Read(p)
		}
		b.br = nil
	}
	return b.c.Read(p)
}

// Write sends p to the app, without the stale check of a new request: the
// app may well have closed its sending side and still read.
func (b *upgradeBody) Write(p []byte) (int, error) { return b.c.write(p) }

func (b *upgradeBody) Close() error { return b.c.Close() }

// CloseWrite half-closes the connection, passing on the client's end of
// its stream.
func (b *upgradeBody) CloseWrite() error {
	if cw, ok := b.c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
