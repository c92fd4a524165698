package h1

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// This file decides how a message body is delimited (RFC 9112 6, 9.3):
// by Content-Length, by chunked coding, or by the connection's close, for
// the four messages Bulwark handles: requests it receives (FrameRequest)
// and sends (NewRequestFraming), answers it receives (FrameResponse) and
// sends (FrameAnswer).

// ShouldClose reports whether a message of HTTP/1.<minor> with these
// Connection values ends its connection (RFC 9112 9.3): "close" does;
// HTTP/1.0 does unless it says "keep-alive". As net/http's shouldClose.
func ShouldClose(minor int, connection []string) bool {
	hasClose := httpguts.HeaderValuesContainsToken(connection, "close")
	if minor == 0 {
		return hasClose || !httpguts.HeaderValuesContainsToken(connection, "keep-alive")
	}
	return hasClose
}

// IsUpgrade reports whether h asks to switch protocols (RFC 9110 7.8),
// such as a WebSocket handshake or its 101 answer.
func IsUpgrade(h http.Header) bool {
	return len(h["Upgrade"]) > 0 && h["Upgrade"][0] != "" && httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade")
}

// FrameRequest decides how the body of a received request is delimited
// (RFC 9112 6.1-6.3), refusing with a *HeadError the framing request
// smuggling relies on: Transfer-Encoding with Content-Length, in HTTP/1.0,
// or other than one "chunked"; Content-Length values that differ or are
// not decimal digits. A chunked request gets req.TransferEncoding
// ["chunked"], ContentLength -1 and loses its Transfer-Encoding field; a
// Content-Length one gets ContentLength and the field as one value. It
// returns chunked, or the body's length (0 without a body).
func FrameRequest(req *http.Request) (chunked bool, length int64, err error) {
	te := req.Header["Transfer-Encoding"]
	cl := req.Header["Content-Length"]
	switch {
	case len(te) > 0:
		if len(cl) > 0 {
			return false, 0, badRequest("smuggling", "Content-Length and Transfer-Encoding together")
		}
		if req.ProtoMinor == 0 {
			return false, 0, badRequest("smuggling", "Transfer-Encoding in an HTTP/1.0 request")
		}
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			return false, 0, badRequest("smuggling", "Transfer-Encoding other than chunked")
		}
		delete(req.Header, "Transfer-Encoding")
		req.TransferEncoding = []string{"chunked"}
		req.ContentLength = -1
		return true, -1, nil
	case len(cl) > 0:
		n, err := ParseContentLength(cl)
		if err != nil {
			return false, 0, err
		}
		req.Header["Content-Length"] = []string{strconv.FormatInt(n, 10)}
		req.ContentLength = n
		return false, n, nil
	}
	return false, 0, nil
}

// ParseContentLength accepts one or more Content-Length values (several
// fields or a comma list) only when they are all the same decimal number
// (RFC 9112 6.3 allows reading such a list as one value; net/http refuses
// the list). A sign, hex, or more than 18 digits is refused.
func ParseContentLength(values []string) (int64, error) {
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

// BodyKind is how a received answer's body is delimited (RFC 9112 6.3).
type BodyKind int

// The kinds FrameResponse returns.
const (
	BodyEmpty   BodyKind = iota // HEAD, 1xx, 204, 304, or Content-Length: 0
	BodyLength                  // Content-Length
	BodyChunked                 // Transfer-Encoding: chunked
	BodyToClose                 // until the other side closes the connection
)

// FrameResponse works out how the body of res, an answer to a method
// request, is delimited (RFC 9112 6.3), and sets res.ContentLength,
// TransferEncoding, Close and Trailer as net/http does. It refuses
// ambiguous framing: both Content-Length and Transfer-Encoding, differing
// lengths, a length that is not a number, a coding other than chunked
// (HTTP/1.1), a Trailer naming a framing field. It returns the kind and
// the length of a BodyLength body.
func FrameResponse(res *http.Response, method string) (BodyKind, int64, error) {
	h := res.Header
	chunked := false
	if te, ok := h["Transfer-Encoding"]; ok {
		delete(h, "Transfer-Encoding")
		if len(h["Content-Length"]) > 0 {
			return 0, 0, errors.New("both Content-Length and Transfer-Encoding")
		}
		if res.ProtoAtLeast(1, 1) {
			if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
				return 0, 0, fmt.Errorf("unsupported Transfer-Encoding %q", te)
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
				return 0, 0, fmt.Errorf("several Content-Length values %q", cl)
			}
		}
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			return 0, 0, fmt.Errorf("invalid Content-Length %q", v)
		}
		if len(cl) > 1 {
			h["Content-Length"] = cl[:1]
		}
		length = int64(n)
	}
	res.Close = res.Close || ShouldClose(res.ProtoMinor, h["Connection"])
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
		return BodyEmpty, 0, nil
	case code/100 == 1, code == http.StatusNoContent, code == http.StatusNotModified:
		res.ContentLength = 0
		return BodyEmpty, 0, nil
	case chunked:
		res.ContentLength = -1
		return BodyChunked, -1, nil
	case length == 0:
		res.ContentLength = 0
		return BodyEmpty, 0, nil
	case length > 0:
		res.ContentLength = length
		return BodyLength, length, nil
	default:
		res.ContentLength = -1
		res.Close = true
		return BodyToClose, -1, nil
	}
}

// declaredTrailer returns the trailer keys an answer announces in its
// Trailer field, with nil values (a proxy announces them before the body),
// and removes that field, as net/http does.
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
				return nil, fmt.Errorf("trailer key %q", k)
			}
			tr[k] = nil
		}
	}
	if len(tr) == 0 {
		return nil, nil
	}
	return tr, nil
}

// RequestFraming is how a request goes out, worked out once for all the
// attempts at sending it.
type RequestFraming struct {
	Host       string // Host field; "" when the request's is not valid
	HasBody    bool
	Chunked    bool   // Transfer-Encoding: chunked
	SendLength bool   // send Content-Length: Length
	Length     int64  // the body's length; -1 if unknown
	Close      bool   // send Connection: close
	Trailer    string // value of the Trailer field, or ""
}

// NewRequestFraming checks req, a request to send, and works out its
// framing as net/http's client would: a body of known length goes with
// Content-Length (an empty one too for POST, PUT and PATCH), any other
// chunked; an invalid Host is sent empty. keepAlive false asks for
// "Connection: close" unless req upgrades the connection (the upgraded
// connection is never reused anyway). The empty method is GET.
func NewRequestFraming(req *http.Request, keepAlive bool) (RequestFraming, error) {
	var f RequestFraming
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" {
		return f, fmt.Errorf("request URL %q: want http://host/", req.URL)
	}
	if req.Method != "" && !ValidMethod(req.Method) {
		return f, fmt.Errorf("invalid request method %q", req.Method)
	}
	f.HasBody = req.Body != nil && req.Body != http.NoBody
	if req.ContentLength != 0 && req.Body == nil {
		return f, fmt.Errorf("request ContentLength %d with no body", req.ContentLength)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	host, err := httpguts.PunycodeHostPort(host)
	if err != nil || !ValidHost(host) {
		host = "" // as net/http: an invalid Host is not sent
	}
	f.Host = removeZone(host)
	switch {
	case !f.HasBody:
		f.Length = 0
	case req.ContentLength > 0 && !(len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"):
		f.Length = req.ContentLength
	default:
		f.Length = -1
		f.Chunked = true
	}
	method := req.Method
	f.SendLength = f.Length > 0 || (f.Length == 0 && (method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch))
	hasClose := httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close")
	f.Close = !hasClose && (req.Close || (!keepAlive && !IsUpgrade(req.Header)))
	if f.Chunked && len(req.Trailer) > 0 {
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			k = http.CanonicalHeaderKey(k)
			switch k {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return f, fmt.Errorf("invalid request trailer key %q", k)
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		f.Trailer = strings.Join(keys, ",")
	}
	return f, nil
}

// removeZone removes an IPv6 zone from host, as net/http does.
func removeZone(host string) string {
	if !strings.HasPrefix(host, "[") {
		return host
	}
	i := strings.LastIndex(host, "]")
	if i < 0 {
		return host
	}
	j := strings.LastIndex(host[:i], "%")
	if j < 0 {
		return host
	}
	return host[:j] + host[i:]
}

// AnswerFraming is how a server delimits the body of an answer it writes.
type AnswerFraming int

// The framings FrameAnswer returns.
const (
	AnswerAsIs     AnswerFraming = iota // no body, or the Content-Length the handler set
	AnswerNoLength                      // 204 or 304: no body and no Content-Length
	AnswerLength                        // the whole body is known: send its Content-Length
	AnswerChunked                       // Transfer-Encoding: chunked
	AnswerToClose                       // HTTP/1.0: the body ends when the connection does
)

// FrameAnswer decides how a server's answer with status to an
// HTTP/1.<minor> method request is delimited (RFC 9112 6.3): declared is
// the Content-Length the handler set (-1 for none) and complete reports
// that the handler returned, so the whole body is known. noBody is
// NoBody(method, status).
func FrameAnswer(method string, status int, noBody bool, declared int64, complete bool, minor int) AnswerFraming {
	switch {
	case noBody && status != http.StatusOK && method != http.MethodHead:
		return AnswerNoLength // 204/304 carry no framing
	case noBody, declared >= 0:
		return AnswerAsIs
	case complete:
		return AnswerLength
	case minor >= 1:
		return AnswerChunked
	}
	return AnswerToClose
}
