package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// HeadError is a request a server cannot serve: it answers Status and
// closes the connection.
type HeadError struct {
	Status int
	Reason string // a short label, for logs and metrics
	Msg    string
}

func (e *HeadError) Error() string { return e.Msg }

func badRequest(reason, msg string) *HeadError {
	return &HeadError{Status: http.StatusBadRequest, Reason: reason, Msg: msg}
}

// TrimOWS removes the optional whitespace around a field value: SP and
// HTAB only (RFC 9110 5.6.3). textproto.TrimBytes would also remove a bare
// CR, reading "Transfer-Encoding: \rchunked" as chunked (the CVE-2022-1705
// vector); left in, the CR makes the value invalid and the head is
// refused. It re-slices b, so an all-blank value stays a non-nil empty
// slice.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// ReadRequestHead reads a request head from br into buf, up to and
// excluding the empty line that ends it, and appends the offsets of the
// ends of its lines to ends. A line ends in CRLF or a bare LF (RFC 9112
// 2.2); a bare CR anywhere else is left for ParseRequestHead to refuse.
// Empty lines before the request line are skipped (RFC 9112 2.2). It fails
// with a *HeadError, 414 for the request line and 431 after it, once the
// head passes max bytes, and with the read error (io.ErrUnexpectedEOF for
// a head cut short) when the client went away first.
func ReadRequestHead(br *bufio.Reader, buf []byte, ends []int, max int) ([]byte, []int, error) {
	lineStart := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > max {
			if len(ends) == 0 {
				return buf, nil, &HeadError{Status: http.StatusRequestURITooLong, Reason: "uri_too_long", Msg: "request line too long"}
			}
			return buf, nil, &HeadError{Status: http.StatusRequestHeaderFieldsTooLarge, Reason: "header_too_large", Msg: "request header fields too large"}
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
		content := len(line) - 1
		if content > 0 && line[content-1] == '\r' {
			content--
		}
		if content == 0 {
			if len(ends) == 0 {
				buf = buf[:lineStart]
				continue
			}
			return buf[:lineStart], ends, nil
		}
		ends = append(ends, lineStart+content)
		lineStart = len(buf)
	}
}

// ParseRequestHead parses a request head read by ReadRequestHead into req
// (a new request with the caller's context): request line (RFC 9112 3),
// field lines (RFC 9112 5) and Host (RFC 9112 3.2). It sets Method,
// RequestURI, Proto, Header, Host, URL and Close; Host is moved out of
// Header, as net/http does. It refuses, with a *HeadError, everything a
// lenient parser behind Bulwark could read differently: a bare CR in the
// request line, a method that is not a token, obs-fold, whitespace before
// a colon, an invalid name or value, a missing, repeated or invalid Host,
// a version other than 1.0 and 1.1 (505), CONNECT (405).
//
// One string copy of head backs the method, the target and every value,
// and one slice every field's first value: a request costs a few
// allocations, not several per field line.
func ParseRequestHead(req *http.Request, head []byte, ends []int) error {
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
		return badRequest("bad_request_line", "malformed request line")
	}
	method, rest, ok1 := bytes.Cut(reqLine, []byte{' '})
	target, proto, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || bytes.IndexByte(proto, ' ') >= 0 {
		return badRequest("bad_request_line", "malformed request line")
	}
	if !ValidMethod(method) {
		return badRequest("bad_method", "malformed method")
	}
	text := string(head)
	sub := func(b []byte) string {
		off := cap(head) - cap(b) // b is a piece of head: both run to the end of one array
		return text[off : off+len(b)]
	}
	req.Method, req.RequestURI, req.Header = sub(method), sub(target), make(http.Header, len(ends))
	firsts := make([]string, 0, len(ends)-1)
	switch string(proto) {
	case "HTTP/1.1":
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	case "HTTP/1.0":
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.0", 1, 0
	default:
		if maj, min, ok := http.ParseHTTPVersion(string(proto)); ok && !(maj == 1 && min <= 1) {
			return &HeadError{Status: http.StatusHTTPVersionNotSupported, Reason: "version", Msg: "HTTP version not supported"}
		}
		return badRequest("bad_request_line", "malformed HTTP version")
	}
	if req.Method == http.MethodConnect {
		return &HeadError{Status: http.StatusMethodNotAllowed, Reason: "connect", Msg: "CONNECT is not supported"}
	}

	for i := 1; i < len(ends); i++ {
		line := next(i)
		if line[0] == ' ' || line[0] == '\t' {
			return badRequest("obs_fold", "obsolete line folding is not accepted")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return badRequest("bad_header", "malformed header line")
		}
		name := line[:colon]
		if !ValidFieldName(name) {
			// This also refuses whitespace before the colon (RFC 9112 5.1).
			return badRequest("bad_header", "malformed header name")
		}
		value := sub(TrimOWS(line[colon+1:]))
		if !ValidFieldValue(value) {
			return badRequest("bad_header", "malformed header value")
		}
		key := textproto.CanonicalMIMEHeaderKey(sub(name))
		if vs, seen := req.Header[key]; seen {
			req.Header[key] = append(vs, value)
			continue
		}
		// Capped at one, so a second value (or a handler's Add) copies
		// rather than writing over the next field's first value.
		firsts = append(firsts, value)
		req.Header[key] = firsts[len(firsts)-1 : len(firsts) : len(firsts)]
	}

	hosts := req.Header["Host"]
	switch {
	case len(hosts) > 1:
		return badRequest("bad_host", "several Host headers")
	case len(hosts) == 0 && req.ProtoMinor == 1:
		return badRequest("bad_host", "missing Host header")
	case len(hosts) == 1:
		if !ValidHost(hosts[0]) {
			return badRequest("bad_host", "malformed Host header")
		}
		req.Host = hosts[0]
	}
	delete(req.Header, "Host")

	u, err := parseTarget(req.Method, req.RequestURI)
	if err != nil {
		return err
	}
	req.URL = u
	if u.Host != "" {
		// Absolute form: the target's authority wins over Host (RFC 9112 3.2.2).
		req.Host = u.Host
	}
	req.Close = ShouldClose(req.ProtoMinor, req.Header["Connection"])
	return nil
}

// parseTarget parses the request target (RFC 9112 3.2): origin form,
// absolute http(s) form, or "*" for OPTIONS. Authority form is CONNECT's,
// refused before this.
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
	if u.Host != "" && !ValidHost(u.Host) {
		return nil, badRequest("bad_target", "malformed request target")
	}
	return u, nil
}
