package h1

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
)

// This file writes heads (RFC 9112 3-5): a client's request head and a
// server's status line and fields. Errors stay in the bufio.Writer, for
// the caller's Flush to report.

// WriteRequestHead writes req's request line and fields to bw, framed as f
// says, as http.Request.Write does, without the Go User-Agent: a request
// without one (or with an empty one) is sent without. Fields with an
// invalid name are dropped, as net/http drops them; the framing fields
// (Host, Content-Length, Transfer-Encoding, Trailer) are f's.
func WriteRequestHead(bw *bufio.Writer, req *http.Request, f *RequestFraming) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	writeRequestURI(bw, req)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(f.Host)
	bw.WriteString("\r\n")
	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		WriteField(bw, "User-Agent", ua[0])
	}
	if f.Close {
		bw.WriteString("Connection: close\r\n")
	}
	if f.SendLength {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), f.Length, 10))
		bw.WriteString("\r\n")
	} else if f.Chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if f.Trailer != "" {
		WriteField(bw, "Trailer", f.Trailer)
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if !ValidFieldName(k) {
			continue
		}
		for _, v := range vv {
			WriteField(bw, k, v)
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

// writeNoCTL writes s with any control byte percent-encoded (net/http
// refuses the request instead; a client can't get one past the server
// anyway).
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

// WriteField writes one field line of a request or trailer, with line
// breaks in v turned into spaces and v trimmed, as http.Header.Write does.
// k must be a valid name.
func WriteField(bw *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	v = strings.Trim(v, " \t\r\n")
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// WriteHeaderLines writes the fields of a server's answer, leaving out a
// field with an invalid name and a value that is not valid (a CR or LF in
// it would split the answer; net/http's server writes it with the line
// breaks turned into spaces).
func WriteHeaderLines(bw *bufio.Writer, h http.Header) {
	for k, vs := range h {
		if !ValidFieldName(k) {
			continue
		}
		for _, v := range vs {
			if !ValidFieldValue(v) {
				continue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
}

// StatusLine returns the status line of code after "HTTP/1.1 ", without
// its CRLF: "200 OK" for 200, "599 status code 599" for a code with no
// standard text, as net/http writes it.
func StatusLine(code int) string {
	if code >= 0 && code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return formatStatusLine(code)
}

// statusLines holds StatusLine for every code with a standard text, built
// once, so answering costs no allocation for it. It is read-only.
var statusLines = func() (t [600]string) {
	for code := range t {
		if http.StatusText(code) != "" {
			t[code] = formatStatusLine(code)
		}
	}
	return t
}()

func formatStatusLine(code int) string {
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	return strconv.Itoa(code) + " " + text
}
