package h1

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ErrTooLarge fails a head or trailer section past its limit.
var ErrTooLarge = errors.New("head or trailer section too large")

// ReadBlock reads lines from br into buf[:0] up to and including the empty
// line that ends a head or trailer section, at most limit bytes (else
// ErrTooLarge). A line ends in CRLF or a bare LF. It returns what it read
// (buf, perhaps grown), with the error too, so the caller can keep the
// buffer.
func ReadBlock(br *bufio.Reader, buf []byte, limit int) ([]byte, error) {
	b := buf[:0]
	lineStart := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(b)+len(line) > limit {
			return b, ErrTooLarge
		}
		b = append(b, line...)
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

// ParseResponseHead parses a response head read by ReadBlock: a status
// line (RFC 9112 4) and field lines (RFC 9112 5), ending with an empty
// line. Field names are made canonical in place in block, which is then
// copied once into a string that every name and value of the header
// shares. A line may end in a bare LF, as net/http's client allows.
func ParseResponseHead(block []byte) (*http.Response, error) {
	fields, err := CheckFields(block, true)
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

// parseStatusLine fills res's protocol and status from a status line:
// HTTP/1.x, then a three-digit code from 100 up. net/http also accepts
// other protocols, a signed code and one below 100.
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

// CheckFields validates the lines of block, a head or trailer section read
// by ReadBlock (after the status line when statusLine is set), and makes
// field names canonical in place. It reports the number of fields. It
// refuses a control byte (but HTAB) anywhere, a name that is not a token,
// whitespace before the colon (RFC 9112 5.1: a MUST, where net/http
// accepts it as part of the name) and obs-fold (RFC 9112 5.2 allows a
// proxy to; net/http joins the lines).
func CheckFields(block []byte, statusLine bool) (int, error) {
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
			if !ValidFieldValue(line) {
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
			if !tokenByte[c] {
				if c == ' ' || c == '\t' {
					return 0, fmt.Errorf("header line %q: whitespace in or before the field name", line)
				}
				return 0, fmt.Errorf("header line %q: invalid field name", line)
			}
		}
		if colon < 1 {
			return 0, fmt.Errorf("header line %q: no field name", line)
		}
		if !ValidFieldValue(line[colon+1:]) {
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

// fillHeader adds the n fields of s (checked by CheckFields) to h; the
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
