package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"bulwark/internal/h1"

	"golang.org/x/net/http/httpguts"
)

// framing is how a request goes out, worked out once for all attempts.
type framing struct {
	host       string // Host header; "" when the request's is not valid
	hasBody    bool
	chunked    bool   // Transfer-Encoding: chunked
	sendLength bool   // send Content-Length: length
	length     int64  // the body's length; -1 if unknown
	close      bool   // send Connection: close
	trailer    string // value of the Trailer header, or ""
}

// framingFor checks req and works out its framing, as net/http would
// send it.
func (u *upstream) framingFor(req *http.Request) (framing, error) {
	var f framing
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" {
		return f, fmt.Errorf("request URL %q: want http://host/", req.URL)
	}
	if req.Method != "" && !h1.ValidMethod(req.Method) { // "" is GET
		return f, fmt.Errorf("invalid request method %q", req.Method)
	}
	f.hasBody = req.Body != nil && req.Body != http.NoBody
	if req.ContentLength != 0 && req.Body == nil {
		return f, fmt.Errorf("request ContentLength %d with no body", req.ContentLength)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	host, err := httpguts.PunycodeHostPort(host)
	if err != nil || !h1.ValidHost(host) {
		host = "" // as net/http: an invalid Host is not sent
	}
	f.host = removeZone(host)
	switch {
	case !f.hasBody:
		f.length = 0
	case req.ContentLength > 0 && !(len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"):
		f.length = req.ContentLength
	default:
		f.length = -1
		f.chunked = true
	}
	method := req.Method
	f.sendLength = f.length > 0 || (f.length == 0 && (method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch))
	hasClose := httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close")
	f.close = !hasClose && (req.Close || (u.maxIdle.Load() <= 0 && !isUpgrade(req.Header)))
	if f.chunked && len(req.Trailer) > 0 {
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
		f.trailer = strings.Join(keys, ",")
	}
	return f, nil
}

// isUpgrade reports whether h asks to switch protocols (a WebSocket).
func isUpgrade(h http.Header) bool {
	return len(h["Upgrade"]) > 0 && h["Upgrade"][0] != "" && httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade")
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

// writeHead writes req's request line and header to bw, as
// http.Request.Write does, without the Go User-Agent: a request without
// one (or with an empty one) is sent without. Errors stay in bw.
func writeHead(bw *bufio.Writer, req *http.Request, f *framing) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	writeRequestURI(bw, req)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(f.host)
	bw.WriteString("\r\n")
	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		writeField(bw, "User-Agent", ua[0])
	}
	if f.close {
		bw.WriteString("Connection: close\r\n")
	}
	if f.sendLength {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), f.length, 10))
		bw.WriteString("\r\n")
	} else if f.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if f.trailer != "" {
		writeField(bw, "Trailer", f.trailer)
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if !h1.ValidFieldName(k) {
			continue // as net/http: dropped, not sent
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	bw.WriteString("\r\n")
}

// writeRequestURI writes req.URL.RequestURI() without building it; a
// control byte in it is replaced so it cannot split the request line.
func writeRequestURI(bw *bufio.Writer, req *http.Request) {
	u := req.URL
	if u.Opaque != "" {
		writeNoCTL(bw, u.RequestURI())
		return
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	writeNoCTL(bw, p)
	if u.ForceQuery || u.RawQuery != "" {
		bw.WriteByte('?')
		writeNoCTL(bw, u.RawQuery)
	}
}

// writeNoCTL writes s with any control byte escaped (net/http refuses the
// request instead; a client can't get one past the server anyway).
func writeNoCTL(bw *bufio.Writer, s string) {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b == 0x7f {
			bw.WriteString(s[:i])
			for ; i < len(s); i++ {
				if b := s[i]; b < ' ' || b == 0x7f {
					bw.WriteString("%" + strconv.FormatUint(uint64(b)|0x100, 16)[1:])
				} else {
					bw.WriteByte(b)
				}
			}
			return
		}
	}
	bw.WriteString(s)
}

// writeField writes one header line, with line breaks in v turned into
// spaces and v trimmed, as http.Header.Write does.
func writeField(bw *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	v = strings.Trim(v, " \t\r\n")
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// writeBody sends the request body after the head already in the write
// buffer, on its own goroutine, so the answer can be read meanwhile. It
// publishes the outcome in pc.body and, on a failure before any answer,
// closes the socket so the reader stops waiting. When the answer ended
// first (bodyHandedOff), the connection is its own to pool or close. It
// uses bw, not pc.bw, which the reader may clear on its way out. It always
// closes body.
func (pc *upConn) writeBody(bw *bufio.Writer, body io.ReadCloser, f framing, trailer http.Header) {
	defer body.Close()
	err := pc.copyBody(bw, body, &f, trailer)
	if err == nil {
		if !pc.body.CompareAndSwap(bodyWriting, bodySent) { // handed off
			pc.body.Store(bodySent)
			pc.u.put(pc)
		}
		return // pc is not touched after bodySent
	}
	pc.bodyErr = err
	if !pc.body.CompareAndSwap(bodyWriting, bodyFailed) { // handed off
		pc.body.Store(bodyFailed)
		pc.close()
		return
	}
	if !pc.gotHead.Load() {
		pc.c.Conn.Close()
	}
}

// copyBody writes body, framed as f says, and flushes after each piece it
// read, so a slow upload reaches the app (and restarts the read clock) as
// it comes.
func (pc *upConn) copyBody(bw *bufio.Writer, body io.Reader, f *framing, trailer http.Header) error {
	buf := pc.u.copyBufs.Get()
	defer pc.u.copyBufs.Put(buf)
	left := f.length
	for {
		p := buf
		if !f.chunked && int64(len(p)) > left {
			p = p[:left]
		}
		n, rerr := body.Read(p)
		if n > 0 {
			if f.chunked {
				bw.Write(strconv.AppendUint(bw.AvailableBuffer(), uint64(n), 16))
				bw.WriteString("\r\n")
				bw.Write(p[:n])
				bw.WriteString("\r\n")
			} else {
				bw.Write(p[:n])
				left -= int64(n)
			}
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("sending the request body to the app: %w", err)
			}
		}
		if !f.chunked && left == 0 {
			return nil
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr // the client's failure, or MaxBody: bodyReader says which
		}
	}
	if !f.chunked {
		return fmt.Errorf("request body ended %d bytes short of its Content-Length %d: %w", left, f.length, io.ErrUnexpectedEOF)
	}
	bw.WriteString("0\r\n")
	if len(trailer) > 0 {
		for k, vv := range trailer {
			if !h1.ValidFieldName(k) {
				continue
			}
			for _, v := range vv {
				writeField(bw, k, v)
			}
		}
	}
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("sending the request body to the app: %w", err)
	}
	return nil
}
